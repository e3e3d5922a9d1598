"""The environments a datasite offers jobs: fixed sets of packages, never installed at run time.

An environment is the interpreter the datasite itself runs on, with the analysis packages ndl
depends on (pinned in ``pyproject.toml``): a job cannot ``pip install`` (the sandbox has no
network) and sees exactly the versions listed here, which a bundle names and the register
records. R is not offered yet (say so rather than pretend).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from ndl.core.errors import InvalidInput

PYTHON_DATA = "python-data"
PYTHON_SPARK = "python-spark"
R_BASE = "r-base"
_PACKAGES = ("pandas", "polars", "pyarrow", "duckdb", "numpy", "scipy", "statsmodels",
             "scikit-learn", "matplotlib")


@dataclass(frozen=True)
class Environment:
    name: str
    description: str
    languages: tuple[str, ...]
    packages: dict[str, str]  # name → version


@cache
def offered() -> dict[str, Environment]:
    versions = {}
    for p in _PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            continue
    import platform
    versions = {"python": platform.python_version(), **versions}
    envs = {PYTHON_DATA: Environment(
        PYTHON_DATA, "Python with pandas, Polars, pyarrow, DuckDB, NumPy, SciPy, statsmodels, "
        "scikit-learn and matplotlib (fixed versions; nothing installed at run time)",
        ("python", "sql"), versions)}
    spark = _spark_versions()
    if spark is not None:
        envs[PYTHON_SPARK] = Environment(
            PYTHON_SPARK, "python-data plus PySpark: ndl.job.dataset(name, as_=\"spark\") is a "
            "DataFrame of a local Spark inside the sandbox (no cluster, no network)",
            ("python",), {**versions, **spark})
    r_version = _r_version()
    if r_version is not None:
        envs[R_BASE] = Environment(
            R_BASE, "R with its base packages only (stats, utils, ...): datasets arrive as "
            "CSV, tables and text leave through the ndl_* helpers; nothing installed at run "
            "time", ("r",), {"R": r_version})
    return envs


def rscript() -> str | None:
    """The datasite's ``Rscript`` (its resolved path), or None when R is not installed."""
    found = shutil.which("Rscript", path="/usr/bin:/bin:/usr/local/bin")
    return None if found is None else str(Path(found).resolve())


@cache
def _r_version() -> str | None:
    """R's version from ``Rscript --version``, asked once; None when R is missing or broken."""
    path = rscript()
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=30,
                              check=False, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    except (OSError, subprocess.SubprocessError):
        return None
    # "Rscript (R) version 4.2.2 Patched (2022-11-10 r83330)": older R says it on stderr.
    found = re.search(rb"version (\d+\.\d+\.\d+)", done.stdout + done.stderr)
    return found.group(1).decode() if done.returncode == 0 and found else None


def java_home() -> Path | None:
    """The JDK that ``java`` on the system PATH belongs to, or None without Java."""
    found = shutil.which("java", path="/usr/bin:/bin:/usr/local/bin")
    if found is None:
        return None
    home = Path(found).resolve().parent.parent  # <home>/bin/java
    return home if (home / "release").is_file() else None


@cache
def _spark_versions() -> dict[str, str] | None:
    """pyspark's and Java's versions where both exist (python-spark is offered), else None."""
    home = java_home()
    try:
        spark = metadata.version("pyspark")
    except metadata.PackageNotFoundError:
        return None
    if home is None:
        return None
    found = re.search(r'^JAVA_VERSION="([^"]+)"', (home / "release").read_text("utf-8"), re.M)
    return {"pyspark": spark, "java": found.group(1) if found else "unknown"}


def require(name: str, language: str) -> Environment:
    envs = offered()
    env = envs.get(name)
    if env is None:
        raise InvalidInput(f"environment {name!r} is not offered; the environments are "
                           f"{', '.join(sorted(envs))} ('ndl job environments' lists them)")
    if language not in env.languages:
        raise InvalidInput(f"environment {name!r} runs {' and '.join(env.languages)}, "
                           f"not {language}")
    return env
