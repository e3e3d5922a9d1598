"""The seccomp filter every strict sandbox run is loaded with (bubblewrap's ``--seccomp FD``).

Default allow, with refusals for the calls a job never needs and an attacker always wants:
kernel-attack surface (bpf, io_uring, userfaultfd, keyrings, perf), escaping or re-shaping the
sandbox (namespaces, mounts, chroot), reading other processes (ptrace, process_vm_*), and any
socket but AF_UNIX (Python needs socketpair; the network namespace has only loopback anyway,
so this is the second wall). Calls of any other ABI (i386, x32) are killed: libseccomp's default
bad-architecture action, since only the native architecture is added to the filter.

A Spark step (``inet=True``) may also make AF_INET sockets: pyspark talks to its JVM over TCP
on 127.0.0.1 (py4j has no AF_UNIX transport). The network namespace is then the only wall,
and it holds nothing but the sandbox's own ``lo``; AF_INET6, netlink, packet and every other
family stay refused.
"""

from __future__ import annotations

import errno
import importlib
import os
import socket
from typing import Any

# Refused with EPERM, the answer a process without the privilege would get.
DENIED_SYSCALLS: tuple[str, ...] = (
    "ptrace", "process_vm_readv", "process_vm_writev", "unshare", "setns", "mount", "umount2",
    "pivot_root", "chroot", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "open_by_handle_at", "name_to_handle_at", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "fsopen", "fsmount", "fsconfig", "move_mount",
    "open_tree", "mount_setattr", "swapon", "swapoff", "reboot", "acct", "quotactl",
    "lookup_dcookie", "syslog",
)

# Every CLONE_NEW* flag: a job may fork and make threads, but never new namespaces.
CLONE_NAMESPACE_FLAGS: tuple[int, ...] = (
    0x00000080,  # CLONE_NEWTIME
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python binding) is missing or cannot build the filter."""


def _filter_module() -> Any:
    # Imported by name: pyseccomp ships no type information, so it is Any on purpose here.
    try:
        seccomp = importlib.import_module("pyseccomp")
    except (ImportError, OSError) as exc:  # OSError: the binding loads libseccomp.so itself
        raise SeccompUnavailable(f"cannot load libseccomp through pyseccomp: {exc}") from exc
    return seccomp


def seccomp_filter_fd(*, inet: bool = False) -> int:
    """Compile the filter to BPF and return a readable fd positioned at its start.

    The fd is a memfd (no file on disk); the caller passes it to bwrap and closes it.
    ``inet``: allow AF_INET sockets besides AF_UNIX (see the module docstring).
    """
    seccomp = _filter_module()
    try:
        flt = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in DENIED_SYSCALLS:
            try:
                flt.add_rule(seccomp.ERRNO(errno.EPERM), name)
            except (RuntimeError, ValueError, OSError):
                # A call this libseccomp does not know is a call this kernel ABI lacks.
                continue
        for flag in CLONE_NAMESPACE_FLAGS:
            flt.add_rule(seccomp.ERRNO(errno.EPERM), "clone",
                         seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        # clone3 passes its flags in a struct seccomp cannot read: say "not implemented" so
        # glibc falls back to clone, whose flags the rules above do inspect.
        flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        if inet:  # AF_UNIX (1) and AF_INET (2) only: one rule per side of that range
            flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
                         seccomp.Arg(0, seccomp.LT, socket.AF_UNIX))
            flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
                         seccomp.Arg(0, seccomp.GT, socket.AF_INET))
        else:
            flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
                         seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
        fd = os.memfd_create("ndl-seccomp", os.MFD_CLOEXEC)
        with os.fdopen(os.dup(fd), "wb") as out:
            flt.export_bpf(out)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd
    except SeccompUnavailable:
        raise
    except Exception as exc:  # the binding raises a mix of RuntimeError/OSError/ValueError
        raise SeccompUnavailable(f"cannot build the seccomp filter: {exc}") from exc
