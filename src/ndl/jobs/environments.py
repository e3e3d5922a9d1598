"""The environments a datasite offers jobs: fixed sets of packages, never installed at run time.

An environment is the interpreter the datasite itself runs on, with the analysis packages ndl
depends on (pinned in ``pyproject.toml``): a job cannot ``pip install`` (the sandbox has no
network) and sees exactly the versions listed here, which a bundle names and the register
records. R is not offered yet (say so rather than pretend).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import metadata

from ndl.core.errors import InvalidInput

PYTHON_DATA = "python-data"
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
    return {PYTHON_DATA: Environment(
        PYTHON_DATA, "Python with pandas, Polars, pyarrow, DuckDB, NumPy, SciPy, statsmodels, "
        "scikit-learn and matplotlib (fixed versions; nothing installed at run time)",
        ("python", "sql"), versions)}


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
