"""Network namespaces behind a firewall, for tests that put datasites across a real boundary.

ndl says a datasite only ever connects out to its hub (it long-polls; nothing connects in), so
it can sit behind a firewall that refuses every inbound connection. These helpers build that
firewall for real: each namespace gets a veth pair to the root namespace (host side
``10.231.x.y+1``, inside ``+2``, a /30 picked at random and not already in use, so parallel
runs do not clash) and an nftables input chain whose policy is drop, accepting only loopback
and replies to connections the namespace opened itself. Needs root, ``ip``, ``nft`` and
``nsenter``; :func:`require_netns` skips without them unless ``NDL_REQUIRE_NETNS=1`` (CI)
makes that a failure.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from needs import required

POOL = ipaddress.IPv4Network("10.231.0.0/16")

# Policy drop on input: only loopback and the replies to connections made from inside pass.
# Forwarded and outbound traffic are untouched, so the namespace can still reach the hub.
FIREWALL = """table inet ndl_boundary {
  chain input {
    type filter hook input priority 0; policy drop;
    iif "lo" accept
    ct state established,related accept
  }
}
"""


def netns_unavailable() -> str | None:
    """Why namespaces with a firewall cannot be made here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    missing = [t for t in ("ip", "nft", "nsenter", "ss") if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian: iproute2, nftables, util-linux)"
    probe = f"ndl-probe-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def require_netns() -> None:
    """Skip the test when namespaces cannot be made, or fail if NDL_REQUIRE_NETNS is set."""
    why = netns_unavailable()
    if why is None:
        return
    if required("NDL_REQUIRE_NETNS"):
        pytest.fail(f"NDL_REQUIRE_NETNS is set but network namespaces are unavailable: {why}")
    pytest.skip(why)


def _sh(*cmd: str, input: str | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Listener:
    proto: str  # "tcp" or "udp"
    address: str  # e.g. "0.0.0.0:8000"
    pids: frozenset[int]


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # the root namespace's end of the veth: where the hub listens
    inside_ip: str
    host_link: str

    def exec_args(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def listeners(self) -> list[Listener]:
        """Every listening TCP socket and every bound UDP socket in the namespace."""
        out = _sh(*self.exec_args("ss", "-H", "-l", "-t", "-u", "-n", "-p"))
        found = []
        for line in out.splitlines():
            parts = line.split()
            if not parts:
                continue
            pids = frozenset(int(p) for p in re.findall(r"pid=(\d+)", line))
            found.append(Listener(parts[0], parts[4], pids))
        return found


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _sh("ip", "-o", "-4", "addr", "show")
    return [ipaddress.IPv4Interface(m).network for m in re.findall(r"inet (\S+)", out)]


def _free_slash30() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(100):
        net = ipaddress.IPv4Network(f"{POOL[random.randrange(POOL.num_addresses // 4) * 4]}/30")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /30 left in {POOL}")


def _make(name: str, link: str, *, firewall: bool) -> Namespace:
    net = _free_slash30()
    host, inside = str(net[1]), str(net[2])
    _sh("ip", "netns", "add", name)
    _sh("ip", "link", "add", f"{link}h", "type", "veth", "peer", "name", f"{link}n",
        "netns", name)
    _sh("ip", "addr", "add", f"{host}/30", "dev", f"{link}h")
    _sh("ip", "link", "set", f"{link}h", "up")
    _sh("ip", "-n", name, "addr", "add", f"{inside}/30", "dev", f"{link}n")
    _sh("ip", "-n", name, "link", "set", f"{link}n", "up")
    _sh("ip", "-n", name, "link", "set", "lo", "up")
    # Everything not on the /30 (another namespace's host side, where the hub may listen)
    # goes to the root namespace, as through a site's default gateway.
    _sh("ip", "-n", name, "route", "add", "default", "via", host)
    if firewall:
        _sh("ip", "netns", "exec", name, "nft", "-f", "-", input=FIREWALL)
    return Namespace(name, host, inside, f"{link}h")


def _remove(name: str, host_link: str) -> None:
    # Deleting the namespace destroys the veth pair with it; the explicit link delete covers a
    # half-made namespace whose veth is still in the root namespace.
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", host_link], capture_output=True)


_OURS = re.compile(r"ndl-[0-9a-f]{6}-\d+")
STALE_AFTER = 1800.0  # seconds; a test module keeps its namespaces for well under a minute


def sweep_stale() -> list[str]:
    """Delete namespaces of ours left by a killed test run: old and with no process inside.
    Young or busy ones may belong to a run going on in parallel, so they stay."""
    swept = []
    for line in _sh("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if not _OURS.fullmatch(name):
            continue
        try:
            age = time.time() - os.stat(f"/run/netns/{name}").st_mtime
        except FileNotFoundError:
            continue
        busy = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.strip()
        if age > STALE_AFTER and not busy:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            swept.append(name)
    return swept


@contextmanager
def namespaces(count: int, *, firewall: bool = True) -> Iterator[list[Namespace]]:
    """``count`` fresh namespaces (named ``ndl-<random>-<i>``), deleted on exit however the
    block ends. Stop processes running inside before leaving, or they keep the namespace."""
    sweep_stale()
    run = secrets.token_hex(3)
    made: list[tuple[str, str]] = []
    try:
        spaces = []
        for i in range(count):
            name, link = f"ndl-{run}-{i}", f"nb{run}{i}"
            made.append((name, f"{link}h"))
            spaces.append(_make(name, link, firewall=firewall))
        yield spaces
    finally:
        for name, host_link in made:
            _remove(name, host_link)


@contextmanager
def listener_inside(ns: Namespace, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A tiny HTTP server on every address inside ``ns``, ready when the block starts."""
    proc = subprocess.Popen(
        ns.exec_args(sys.executable, "-m", "http.server", "--bind", "0.0.0.0",  # noqa: S104
                     str(port)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not any(s.address.endswith(f":{port}") for s in ns.listeners()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"http.server inside {ns.name} did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def connect_from_inside(ns: Namespace, host: str, port: int, timeout: float = 2.0) -> str:
    """Try a TCP connect from inside ``ns``; return "ok", "refused" or "timeout"."""
    code = ("import socket,sys\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), timeout={timeout}).close()\n"
            "    print('ok')\n"
            "except ConnectionRefusedError:\n    print('refused')\n"
            "except TimeoutError:\n    print('timeout')\n")
    return _sh(*ns.exec_args(sys.executable, "-c", code)).strip()


def connect(host: str, port: int, timeout: float = 2.0) -> str:
    """Try a TCP connect from this (the root) namespace; "ok", "refused" or "timeout"."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    return "ok"


@dataclass(frozen=True)
class Scan:
    open: frozenset[int]  # accepted the connection
    refused: int  # answered with a reset: nothing listening
    silent: int  # no answer within the timeout (dropped)


def scan_tcp(host: str, ports: range, *, batch: int = 512, timeout: float = 2.0) -> Scan:
    """Try a TCP connect to every port in ``ports`` (non-blocking, ``batch`` at a time)."""
    import errno
    import selectors

    opened: set[int] = set()
    refused = silent = 0
    todo = list(ports)
    for start in range(0, len(todo), batch):
        pending: dict[socket.socket, int] = {}
        with selectors.DefaultSelector() as sel:
            for port in todo[start:start + batch]:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex((host, port))
                pending[s] = port
                sel.register(s, selectors.EVENT_WRITE, s)
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
                    s = key.data
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err == 0:
                        opened.add(pending[s])
                    elif err == errno.ECONNREFUSED:
                        refused += 1
                    else:
                        silent += 1
                    sel.unregister(s)
                    s.close()
                    del pending[s]
            silent += len(pending)
            for s in pending:
                s.close()
    return Scan(frozenset(opened), refused, silent)
