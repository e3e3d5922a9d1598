"""Job bundles: a Python script or a SQL query, its declared outputs and its environment.

A bundle is a folder holding ``ndl-job.toml`` and the code it names::

    name = "fsm-by-sen"
    language = "python"            # or "sql", or "r" (where the datasite offers r-base)
    entry = "analysis.py"          # or "query.sql", or "analysis.R"
    environment = "python-data"    # one the datasite offers (ndl.jobs.environments)
    datasets = ["dfe/pupils"]
    context = "Free school meals by SEN status, for the 2024 attainment report."

    [[outputs]]
    name = "fsm_by_sen"
    kind = "table"                 # table | figure | model_summary | text
    description = "Pupils by FSM eligibility and SEN status"
    # SQL only: count_column = "pupils" (the column that counts people, for the checks)

Everything here is checked before the bundle leaves the researcher's machine and again at the
hub: a bad bundle is refused with the file, line and fix, and nothing is queued. The code's
identity is :attr:`Bundle.code_sha256`, a SHA-256 over the canonical JSON of every file, so a
steward's approval names exactly the code that will run.
"""

from __future__ import annotations

import ast
import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ndl.core.errors import InvalidInput, PayloadTooLarge

MANIFEST = "ndl-job.toml"
MAX_FILES = 32
MAX_FILE_BYTES = 256 * 1024
MAX_BUNDLE_BYTES = 1024 * 1024
CODE_SUFFIXES = frozenset({".py", ".sql", ".R", ".r", ".toml", ".md", ".txt", ".json", ".yaml",
                           ".yml"})
_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,80}(/[A-Za-z0-9_][A-Za-z0-9_.\-]{0,80}){0,4}$")
OUTPUT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
OutputKind = Literal["table", "figure", "model_summary", "text"]
# The file each kind of output is released as: the runner writes tables and model summaries
# itself, from the evidence; figures and text are the job's own files, for human judgement.
SUFFIX: dict[str, str] = {"table": ".csv", "figure": ".png", "model_summary": ".txt",
                          "text": ".txt"}


class OutputDecl(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    kind: OutputKind
    description: str = Field(min_length=1, max_length=2000)
    count_column: str | None = Field(default=None, max_length=63)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not OUTPUT_NAME.match(v):
            raise ValueError("an output name is lower-case letters, digits and _ (at most 63), "
                             "starting with a letter, e.g. fsm_by_sen")
        return v

    @property
    def filename(self) -> str:
        return self.name + SUFFIX[self.kind]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")
    language: Literal["python", "sql", "r"]
    entry: str
    environment: str = Field(min_length=1, max_length=63)
    datasets: list[str] = Field(min_length=1, max_length=8)
    context: str = Field(min_length=1, max_length=4000)
    outputs: list[OutputDecl] = Field(min_length=1, max_length=20)

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[str]) -> list[str]:
        for d in v:
            if not re.match(r"^[a-z0-9][a-z0-9_\-]{0,62}/[a-z0-9][a-z0-9_\-]{0,62}$", d):
                raise ValueError(f"dataset {d[:80]!r} is not an id such as 'dfe/pupils'")
        if len(set(v)) != len(v):
            raise ValueError("a dataset is named twice")
        return v

    def output(self, name: str) -> OutputDecl | None:
        return next((o for o in self.outputs if o.name == name), None)


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its manifest and its files (path → text)."""

    manifest: Manifest
    files: dict[str, str]

    @property
    def code_sha256(self) -> str:
        return code_sha256(self.files)

    def to_json(self) -> dict[str, Any]:
        return {"files": dict(sorted(self.files.items()))}


def code_sha256(files: dict[str, str]) -> str:
    """The code's identity: SHA-256 of the canonical JSON (RFC 8785) of path → text."""
    return hashlib.sha256(rfc8785.dumps(dict(sorted(files.items())))).hexdigest()


def _problems(exc: ValidationError) -> str:
    out = []
    for e in exc.errors(include_url=False, include_input=False)[:4]:
        where = ".".join(str(p) for p in e["loc"]) or "manifest"
        out.append(f"{where}: {e['msg'][:1].lower()}{e['msg'][1:]}")
    return "; ".join(out)


def _check_path(path: str) -> None:
    pure = PurePosixPath(path)
    if not _PATH.match(path) or ".." in pure.parts or pure.is_absolute():
        raise InvalidInput(f"bundle file name {path[:100]!r} is not allowed: use plain relative "
                           "names of letters, digits, '_', '-' and '.', at most 5 folders deep")
    if pure.suffix not in CODE_SUFFIXES:
        raise InvalidInput(f"bundle file {path!r} is not code or text: a bundle holds only "
                           f"{', '.join(sorted(CODE_SUFFIXES))} files (data stays at the "
                           "datasite)")


def from_files(files: Any) -> Bundle:
    """Check a bundle given as path → text (as the hub receives it) and return it."""
    if not isinstance(files, dict) or not files:
        raise InvalidInput(f"a bundle is a set of files holding {MANIFEST} and its code")
    if len(files) > MAX_FILES:
        raise PayloadTooLarge(f"a bundle holds at most {MAX_FILES} files; this one has "
                              f"{len(files)}")
    total = 0
    for path, text in files.items():
        if not isinstance(path, str) or not isinstance(text, str):
            raise InvalidInput("every bundle file is a name and its text (UTF-8)")
        _check_path(path)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_FILE_BYTES:
            raise PayloadTooLarge(f"bundle file {path!r} is {size:,} bytes; at most "
                                  f"{MAX_FILE_BYTES:,} per file")
        if "\x00" in text:
            raise InvalidInput(f"bundle file {path!r} is not text (it holds NUL bytes)")
        total += size
    if total > MAX_BUNDLE_BYTES:
        raise PayloadTooLarge(f"the bundle is {total:,} bytes; at most {MAX_BUNDLE_BYTES:,}")
    if MANIFEST not in files:
        raise InvalidInput(f"the bundle has no {MANIFEST}: write one naming the entry, the "
                           "environment, the datasets and each output ('ndl job init' shows "
                           "an example)")
    try:
        raw = tomllib.loads(files[MANIFEST])
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{MANIFEST} is not valid TOML: {exc}") from exc
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(f"{MANIFEST} is not valid: {_problems(exc)}",
                           detail=exc.errors(include_url=False, include_input=False)) from exc
    _check_code(manifest, files)
    return Bundle(manifest, dict(files))


def _check_code(m: Manifest, files: dict[str, str]) -> None:
    if m.entry not in files:
        raise InvalidInput(f"the entry {m.entry!r} named in {MANIFEST} is not in the bundle")
    want = {"python": ".py", "sql": ".sql", "r": ".R"}[m.language]
    if not m.entry.endswith(want):
        article = "an R" if m.language == "r" else f"a {m.language}"
        raise InvalidInput(f"{article} job's entry is a {want} file, not {m.entry!r}")
    names = [o.name for o in m.outputs]
    if len(set(names)) != len(names):
        raise InvalidInput("two outputs have the same name: each output needs its own name")
    # R files are not parsed here: the hub has no R to parse them with (and R's grammar is
    # not worth re-implementing). The datasite parses every .R file in the sandbox before
    # running any, and reports a syntax error with its file and line (ndl/jobs/r/inside.R).
    for path, text in files.items():
        if path.endswith(".py"):
            try:
                ast.parse(text, filename=path)
            except SyntaxError as exc:
                raise InvalidInput(f"{path} line {exc.lineno}: {exc.msg} — fix the syntax "
                                   "and try again") from None
    if m.language == "sql":
        if len(m.outputs) != 1 or m.outputs[0].kind != "table":
            raise InvalidInput("a SQL job has exactly one output, of kind 'table' (its rows)")
        if not files[m.entry].strip():
            raise InvalidInput(f"{m.entry} is empty: write one SELECT")
    else:
        for o in m.outputs:
            if o.count_column is not None:
                raise InvalidInput(f"output {o.name!r}: count_column is for SQL jobs; in "
                                   "Python (ndl.job.table) and R (ndl_table) the helper "
                                   "records the counts itself")


def read_folder(folder: Path) -> Bundle:
    """Read and check a bundle folder (hidden files and __pycache__ are left out)."""
    folder = Path(folder)
    if folder.is_file() and folder.name == MANIFEST:
        folder = folder.parent
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder: point at the folder holding {MANIFEST}")
    files: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in Path(rel).parts):
            continue
        if p.is_symlink():
            raise InvalidInput(f"bundle file {rel!r} is a symbolic link: copy the file in")
        if not p.is_file():
            continue
        if len(files) >= MAX_FILES:
            raise PayloadTooLarge(f"a bundle holds at most {MAX_FILES} files")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise PayloadTooLarge(f"bundle file {rel!r} is {p.stat().st_size:,} bytes; at most "
                                  f"{MAX_FILE_BYTES:,} per file (data stays at the datasite)")
        try:
            files[rel] = p.read_text("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"bundle file {rel!r} is not UTF-8 text") from None
    return from_files(files)
