"""Bad job bundles: each is refused with its own specific message, and nothing else happens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ndl.core.errors import InvalidInput, NdlError, PayloadTooLarge
from ndl.jobs import bundle as b

MANIFEST = """
name = "fsm-by-sen"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["dfe/pupils"]
context = "Free school meals by SEN status."
{extra}
[[outputs]]
name = "fsm_by_sen"
kind = "table"
description = "Pupils by FSM and SEN"
{more}"""
CODE = "from ndl import job\nd = job.dataset('dfe/pupils')\njob.table('fsm_by_sen', d, by='fsm')\n"
SQL = MANIFEST.replace('"python"', '"sql"').replace('"analysis.py"', '"query.sql"')


def files(manifest: str = MANIFEST, *, extra: str = "", more: str = "",
          **code: str) -> dict[str, str]:
    return {b.MANIFEST: manifest.format(extra=extra, more=more),
            **(code or {"analysis.py": CODE})}


def refused(given: object, error: type[NdlError] = InvalidInput) -> str:
    with pytest.raises(error) as caught:
        b.from_files(given)
    assert type(caught.value) is error
    return caught.value.message


def test_a_good_bundle_is_accepted_with_a_stable_hash() -> None:
    good = b.from_files(files())
    assert good.manifest.outputs[0].filename == "fsm_by_sen.csv"
    assert good.code_sha256 == b.from_files(dict(reversed(files().items()))).code_sha256
    assert good.code_sha256 != b.from_files(files(**{"analysis.py": CODE + "\n"})).code_sha256


def test_syntax_error_names_the_file_and_line() -> None:
    msg = refused(files(**{"analysis.py": CODE, "helpers/util.py": "x = 1\ndef f(:\n"}))
    assert msg.startswith("helpers/util.py line 2: ") and "fix the syntax" in msg


def test_no_manifest() -> None:
    msg = refused({"analysis.py": CODE})
    assert f"the bundle has no {b.MANIFEST}" in msg and "ndl job init" in msg


def test_not_a_set_of_files() -> None:
    assert "a set of files" in refused({})
    assert "a set of files" in refused(["analysis.py"])
    assert "name and its text" in refused({b.MANIFEST: b"bytes"})


def test_bad_toml() -> None:
    msg = refused(files(extra="oops = ["))
    assert msg.startswith(f"{b.MANIFEST} is not valid TOML: ")


@pytest.mark.parametrize(("extra", "more", "where"), [
    ('colour = "blue"', "", "colour: extra inputs are not permitted"),
    ("", 'shape = "round"', "outputs.0.shape: extra inputs are not permitted"),
    ("", 'count_column = 3', "outputs.0.count_column: input should be a valid string"),
])
def test_unknown_or_mistyped_fields_are_named(extra: str, more: str, where: str) -> None:
    msg = refused(files(extra=extra, more=more))
    assert msg.startswith(f"{b.MANIFEST} is not valid: ") and where in msg, msg


def test_missing_outputs_and_entry() -> None:
    no_outputs = files()[b.MANIFEST].split("[[outputs]]")[0]
    assert "outputs: field required" in refused({b.MANIFEST: no_outputs, "analysis.py": CODE})
    assert "the entry 'analysis.py' named in" in refused(files(**{"other.py": CODE}))


def test_undeclared_output_kind_and_duplicates() -> None:
    bad_kind = refused(files(more='[[outputs]]\nname = "x"\nkind = "video"\n'
                             'description = "x"\n'))
    assert "outputs.1.kind" in bad_kind
    twice = refused(files(more='[[outputs]]\nname = "fsm_by_sen"\nkind = "text"\n'
                          'description = "again"\n'))
    assert twice == "two outputs have the same name: each output needs its own name"


@pytest.mark.parametrize("name", ["../x", "A B", "Upper", "1st", "x" * 64, "a-b", ""])
def test_bad_output_names(name: str) -> None:
    msg = refused(files(MANIFEST.replace('name = "fsm_by_sen"', f'name = "{name}"')))
    assert "outputs.0.name" in msg and "lower-case letters, digits and _" in msg


@pytest.mark.parametrize("path", ["data.csv", "lib.so", "cohort.parquet", "run.sh",
                                  "model.pkl"])
def test_disallowed_file_types(path: str) -> None:
    assert ".csv" not in b.CODE_SUFFIXES  # data stays at the datasite, even as CSV
    msg = refused(files(**{"analysis.py": CODE, path: "x"}))
    assert msg.startswith(f"bundle file {path!r} is not code or text")
    assert "data stays at the datasite" in msg


@pytest.mark.parametrize("path", ["../analysis.py", "/etc/x.py", "a/../b.py", "a b.py",
                                  ".hidden.py", "a/b/c/d/e/f/g.py", "x\\y.py"])
def test_bad_file_paths(path: str) -> None:
    msg = refused(files(**{"analysis.py": CODE, path: "x = 1\n"}))
    assert msg.startswith("bundle file name ") and "is not allowed" in msg


def test_oversized_file_and_bundle_and_too_many_files() -> None:
    big = "#" * (b.MAX_FILE_BYTES + 1)
    msg = refused(files(**{"analysis.py": CODE, "notes.md": big}), PayloadTooLarge)
    assert msg.startswith("bundle file 'notes.md' is ") and "per file" in msg
    parts = {f"part{i}.md": "#" * (b.MAX_FILE_BYTES - 10) for i in range(5)}
    msg = refused(files(**{"analysis.py": CODE, **parts}), PayloadTooLarge)
    assert msg.startswith("the bundle is ") and f"at most {b.MAX_BUNDLE_BYTES:,}" in msg
    many = {f"m{i}.md": "x" for i in range(b.MAX_FILES)}
    msg = refused(files(**{"analysis.py": CODE, **many}), PayloadTooLarge)
    assert msg == f"a bundle holds at most {b.MAX_FILES} files; this one has {b.MAX_FILES + 2}"


def test_nul_bytes() -> None:
    msg = refused(files(**{"analysis.py": "x = 1\x00\n"}))
    assert msg == "bundle file 'analysis.py' is not text (it holds NUL bytes)"


def test_sql_job_has_one_table_output() -> None:
    two = refused(files(SQL, more='[[outputs]]\nname = "more"\nkind = "table"\n'
                        'description = "x"\n', **{"query.sql": "SELECT 1"}))
    assert two == "a SQL job has exactly one output, of kind 'table' (its rows)"
    empty = refused(files(SQL, **{"query.sql": "  \n"}))
    assert empty == "query.sql is empty: write one SELECT"
    wrong = refused(files(SQL, **{"query.py": "x = 1"}))
    assert "the entry 'query.sql'" in wrong
    ok = b.from_files(files(SQL, more='count_column = "pupils"\n',
                            **{"query.sql": "SELECT 1"}))
    assert ok.manifest.outputs[0].count_column == "pupils"


def test_count_column_is_for_sql_only() -> None:
    msg = refused(files(more='count_column = "n"\n'))
    assert msg.startswith("output 'fsm_by_sen': count_column is for SQL jobs")


def test_entry_must_match_the_language() -> None:
    msg = refused(files(MANIFEST.replace('"analysis.py"', '"notes.md"'),
                        **{"notes.md": "x", "analysis.py": CODE}))
    assert msg == "a python job's entry is a .py file, not 'notes.md'"


def test_read_folder_refuses_symlinks_and_leaves_the_folder_alone(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name, text in files().items():
        (folder / name).write_text(text)
    before = sorted(p.name for p in folder.iterdir())
    assert b.read_folder(folder).files == files()
    (tmp_path / "secret.py").write_text("key = 'x'\n")
    os.symlink(tmp_path / "secret.py", folder / "extra.py")
    with pytest.raises(InvalidInput) as caught:
        b.read_folder(folder)
    assert caught.value.message == ("bundle file 'extra.py' is a symbolic link: copy the "
                                    "file in")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*before, "extra.py"])
    assert (tmp_path / "secret.py").read_text() == "key = 'x'\n"


def test_read_folder_other_refusals(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is not a folder"):
        b.read_folder(tmp_path / "missing")
    folder = tmp_path / "b"
    folder.mkdir()
    for name, text in files().items():
        (folder / name).write_text(text)
    (folder / "latin.md").write_bytes(b"caf\xe9")
    with pytest.raises(InvalidInput, match=r"'latin\.md' is not UTF-8 text"):
        b.read_folder(folder)
    (folder / "latin.md").unlink()
    (folder / "big.md").write_text("#" * (b.MAX_FILE_BYTES + 1))
    with pytest.raises(PayloadTooLarge, match=r"'big\.md' is"):
        b.read_folder(folder)
    (folder / "big.md").unlink()
    (folder / ".git").mkdir()
    (folder / ".git" / "data.parquet").write_text("x")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "a.pyc").write_text("x")
    assert sorted(b.read_folder(folder / b.MANIFEST).files) == sorted(files())
