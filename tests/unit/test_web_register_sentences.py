"""Every kind of register entry has a sentence a member of the public understands.

The kinds are found in the source, not listed by hand: every ``register.append(..., kind=...)``
and every ``record=`` that ``ask_datasite`` appends. A new kind without a sentence fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ndl.ledger.sentences import SENTENCES, sentence, who
from ndl.wishlist.service import STATES as WISH_STATES

SRC = Path(__file__).resolve().parents[2] / "src" / "ndl"
# register.append(s, key, kind="x", ...) spans lines; record="x" is ask_datasite's kind.
APPEND = re.compile(r"register\.append\((?:[^()]|\([^()]*\))*?kind=(f?)\"([^\"]+)\"", re.S)
RECORD = re.compile(r"\brecord=\"([^\"]+)\"")
# The f-string kinds' values: request states (_close) and wish states (set_state).
EXPANSIONS = {"request.{state}": ["request.granted", "request.rejected"],
              "wish.{state}": [f"wish.{s}" for s in WISH_STATES]}
CONDITIONAL = {"request.approval", "request.rejection"}  # kind="a" if approve else "b"


def kinds_in_source() -> set[str]:
    found: set[str] = set(CONDITIONAL)
    for path in SRC.rglob("*.py"):
        text = path.read_text("utf-8")
        for is_f, kind in APPEND.findall(text):
            if is_f:
                assert kind in EXPANSIONS, f"{path}: new f-string kind {kind!r}: expand it here"
                found.update(EXPANSIONS[kind])
            else:
                found.add(kind)
        found.update(RECORD.findall(text))
    return found


def test_the_scan_finds_the_kinds_we_know() -> None:
    found = kinds_in_source()
    assert {"grant.issued", "private_query.submitted", "query.answered", "wish.planned",
            "request.granted", "dataset.published", "datasite.registered"} <= found


def test_every_kind_has_a_sentence() -> None:
    missing = sorted(kinds_in_source() - set(SENTENCES))
    assert not missing, f"register kinds with no sentence in ndl.ledger.sentences: {missing}"


@pytest.mark.parametrize("kind", sorted(SENTENCES))
def test_each_sentence_reads_as_a_sentence(kind: str) -> None:
    text = sentence(kind, "steward@nhs-trust", "nhs-trust/ae-attendances", {})
    assert text[:1].isupper() and text.endswith("."), text
    assert kind not in text and "{" not in text and "None" not in text, text


def test_the_sentences_people_read() -> None:
    assert sentence("request.granted", "steward@nhs-trust", "request:7",
                    {"dataset": "nhs-trust/ae-attendances", "reason": "approved"}) == (
        "Access to nhs-trust/ae-attendances was granted by a data steward of nhs-trust "
        "(reason: approved).")
    assert sentence("grant.issued", "hub", "grant:3",
                    {"project": "P-123", "dataset": "nhs-trust/ae-attendances",
                     "expires_at": "2027-12-05T14:03:00+00:00"}) == (
        "Project P-123 was given access to nhs-trust/ae-attendances until 2027-12-05.")
    assert sentence("private_query.submitted", "project:P-123", "nhs-trust/ae-attendances",
                    {"message_id": "m1"}).startswith(
        "Project P-123 asked a private question of nhs-trust/ae-attendances")
    assert sentence("query.answered", "datasite:nhs", "m1",
                    {"ok": True, "groups": 3, "suppressed": 1}) == (
        "The datasite nhs answered a question with 3 groups, 1 withheld as too small.")


def test_unknown_kinds_and_odd_payloads_still_read() -> None:
    assert sentence("future.kind", "admin", "x", {}) == (
        "A library administrator recorded \u201cfuture.kind\u201d about x.")
    assert sentence("mock.published", "datasite:nhs", "a/b", {"rows": 1}).endswith(
        "(1 made-up row).")
    assert who("user#12") == "registered user 12"
