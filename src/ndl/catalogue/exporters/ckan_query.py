"""The part of Solr's query syntax CKAN clients send to ``package_search``, read exactly.

CKAN hands ``q``, ``fq`` and ``sort`` to Solr, so harvesters and scripts write Solr:
ckanext-harvest sends ``fq=metadata_modified:[2026-12-05T11:00:00Z TO *]`` for an incremental
harvest, ``organization:a OR organization:b`` to include organisations and
``-organization:c`` to leave one out, and always ``sort=id asc``. This module parses that
subset into a small tree and checks it against package dicts (:mod:`.ckan`). What it cannot
read it refuses with the reason, never widening a result by ignoring a term.

Grammar (whitespace between clauses means AND, as in CKAN's default ``q.op``)::

    query  := or_expr
    or_expr := and_expr ("OR" and_expr)*
    and_expr := unary (("AND")? unary)*
    unary  := ("-" | "+" | "NOT")? atom
    atom   := "(" or_expr ")" | field ":" value | "*:*"
    value  := word | "quoted words" | [lo TO hi] | {lo TO hi} | "(" word ("OR" word)* ")"
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ndl.core.errors import InvalidInput

# Fields a query may name, and how each is read from a package dict.
FIELDS = ("organization", "owner_org", "tags", "groups", "theme", "name", "id", "title",
          "notes", "text", "license_id", "res_format", "tier", "publisher", "geography",
          "year", "join_key", "metadata_modified", "metadata_created", "dataset_type", "type",
          "state", "capacity")
DATE_FIELDS = ("metadata_modified", "metadata_created")
TEXT_FIELDS = ("title", "notes", "text")  # matched word by word, as Solr's text fields are
SORT_FIELDS = {"score": "score", "id": "id", "name": "name", "title": "title",
               "title_string": "title", "metadata_modified": "metadata_modified",
               "metadata_created": "metadata_created"}

# A field with its range or quoted value is one token, so spaces inside them do not split it.
_TOKEN = re.compile(r'\s+|\(|\)|[+-]?[\w.]+:(?:[\[{][^\]}]*[\]}]|"(?:[^"\\]|\\.)*")'
                    r'|"(?:[^"\\]|\\.)*"|[^\s()"]+')


@dataclass(frozen=True)
class Term:
    field: str
    values: tuple[str, ...]  # any of these (one unless field:(a OR b))
    low: str | None = None  # a range when low or high is set ("*" is open)
    high: str | None = None
    is_range: bool = False


@dataclass(frozen=True)
class Not:
    inner: Node


@dataclass(frozen=True)
class All:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    parts: tuple[Node, ...]


Node = Term | Not | All | Any_
EVERYTHING = All(())


def _tokens(text: str, what: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any character
            raise InvalidInput(f"{what}: cannot read {text[pos:pos + 40]!r}")
        if not m.group().isspace():
            out.append(m.group())
        pos = m.end()
    return out


def _unquote(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] == '"':
        return re.sub(r"\\(.)", r"\1", word[1:-1])
    return re.sub(r"\\(.)", r"\1", word)


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.what, self.text = what, text
        self.toks = _tokens(text, what)
        self.pos = 0

    def fail(self, why: str) -> InvalidInput:
        return InvalidInput(
            f"{self.what}: {why} in {self.text[:120]!r}; write terms as field:value, "
            'field:"two words", field:[from TO to], -field:value, or a OR b, e.g. '
            'organization:nhs-trust tags:"A&E" metadata_modified:[2026-01-01T00:00:00Z TO *]')

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise self.fail("the query ends too soon")
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            return EVERYTHING
        node = self.or_expr()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()!r}")
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.peek() == "OR":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.unary()]
        while (tok := self.peek()) is not None and tok not in ("OR", ")"):
            if tok == "AND":
                self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def unary(self) -> Node:
        tok = self.take()
        if tok == "NOT":
            return Not(self.unary())
        if tok.startswith("-") and len(tok) > 1:
            self.toks[self.pos - 1] = tok[1:]
            self.pos -= 1
            return Not(self.unary())
        if tok.startswith("+") and len(tok) > 1:
            self.toks[self.pos - 1] = tok[1:]
            self.pos -= 1
            return self.unary()
        self.pos -= 1
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok == "(":
            node = self.or_expr()
            if self.take() != ")":
                raise self.fail("a bracket is not closed")
            return node
        if tok == "*:*":
            return EVERYTHING
        field, colon, rest = tok.partition(":")
        if not colon:
            raise self.fail(f"{tok!r} names no field")
        if field not in FIELDS:
            raise InvalidInput(f"{self.what}: unknown field {field!r}; filter on one of "
                               f"{', '.join(sorted(FIELDS))}")
        if not rest:  # field:"quoted", field:[a TO b] or field:(a OR b) came as the next token
            rest = self.take()
            if rest == "(":
                values = [_unquote(self.take())]
                while (tok := self.take()) != ")":
                    if tok not in ("OR",):
                        values.append(_unquote(tok))
                return Term(field, tuple(v for v in values if v != "OR"))
        if rest[0] in "[{":
            inner = rest[1:-1].split()
            if len(inner) != 3 or inner[1] != "TO":
                raise self.fail(f"{rest!r} is not a range like [from TO to]")
            return Term(field, (), inner[0], inner[2], True)
        return Term(field, (_unquote(rest),))


def parse(text: str, what: str = "fq") -> Node:
    """The query tree of ``text``; an empty text matches everything."""
    return _Parser(text.strip(), what).parse()


def _datetime(value: str, what: str) -> datetime:
    text = value.strip().replace("Z", "+00:00")
    if text.upper().startswith("NOW"):
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{what}: {value!r} is not a date and time like "
                           "2026-12-05T11:00:00Z") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _extras(pkg: dict[str, Any]) -> dict[str, str]:
    return {e["key"]: str(e["value"]) for e in pkg.get("extras") or []}


def field_values(pkg: dict[str, Any], field: str) -> list[str]:
    """What a package holds in a query field (lower-cased by the caller)."""
    extras = _extras(pkg)
    org = pkg.get("organization") or {}
    simple: dict[str, Callable[[], list[str]]] = {
        "organization": lambda: [str(org.get("name") or "")],
        "owner_org": lambda: [str(pkg.get("owner_org") or ""), str(org.get("name") or "")],
        "tags": lambda: [v for t in pkg["tags"] for v in (t["name"], t["display_name"])],
        "groups": lambda: [g["name"] for g in pkg["groups"]],
        "theme": lambda: [g["name"] for g in pkg["groups"]],
        "name": lambda: [pkg["name"]],
        "id": lambda: [pkg["id"], extras.get("ndl_id", "")],
        "license_id": lambda: [str(pkg.get("license_id") or "")],
        "res_format": lambda: [r["format"] for r in pkg["resources"]],
        "tier": lambda: [extras.get("access_tier", "")],
        "publisher": lambda: [str(org.get("title") or ""), str(org.get("name") or "")],
        "geography": lambda: [extras.get("spatial_text", "")],
        "join_key": lambda: extras.get("join_keys", "").split(","),
        "dataset_type": lambda: [pkg["type"]],
        "type": lambda: [pkg["type"]],
        "state": lambda: [pkg["state"]],
        "capacity": lambda: ["public"],
        "metadata_modified": lambda: [str(pkg.get("metadata_modified") or "")],
        "metadata_created": lambda: [str(pkg.get("metadata_created") or "")],
        "title": lambda: [pkg["title"]],
        "notes": lambda: [pkg.get("notes") or ""],
        "text": lambda: [pkg["title"], pkg.get("notes") or "",
                         *(t["display_name"] for t in pkg["tags"])],
    }
    if field == "year":
        start, end = extras.get("temporal_start", ""), extras.get("temporal_end", "")
        if not start[:4].isdigit():
            return []
        last = int(end[:4]) if end[:4].isdigit() else datetime.now(UTC).year
        return [str(y) for y in range(int(start[:4]), last + 1)]
    return [v for v in simple[field]() if v]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _term_matches(pkg: dict[str, Any], term: Term) -> bool:
    held = field_values(pkg, term.field)
    if term.is_range:
        if term.field in DATE_FIELDS:
            lo = None if term.low in (None, "*") else _datetime(str(term.low), term.field)
            hi = None if term.high in (None, "*") else _datetime(str(term.high), term.field)
            moments = [_datetime(v, term.field) for v in held]
            return any((lo is None or m >= lo) and (hi is None or m <= hi) for m in moments)
        lo_s = None if term.low in (None, "*") else str(term.low).lower()
        hi_s = None if term.high in (None, "*") else str(term.high).lower()
        return any((lo_s is None or v.lower() >= lo_s) and (hi_s is None or v.lower() <= hi_s)
                   for v in held)
    for wanted in term.values:
        if wanted == "*":
            if held:
                return True
            continue
        if term.field in TEXT_FIELDS:
            # Every word of the value appears in the field, as Solr's tokenised text matches.
            if any(_words(wanted) <= _words(h) for h in held):
                return True
            continue
        low = wanted.lower()
        if low.endswith("*"):
            if any(h.lower().startswith(low[:-1]) for h in held):
                return True
        elif any(h.lower() == low for h in held):
            return True
    return False


def matches(pkg: dict[str, Any], node: Node) -> bool:
    """Whether a package dict passes the query tree."""
    if isinstance(node, Term):
        return _term_matches(pkg, node)
    if isinstance(node, Not):
        return not matches(pkg, node.inner)
    if isinstance(node, All):
        return all(matches(pkg, p) for p in node.parts)
    return any(matches(pkg, p) for p in node.parts)


def split_q(q: str) -> tuple[str, Node]:
    """A ``q`` split into free text (for the ranked search) and Solr field terms.

    ``q=title:attainment`` is a field query, as in CKAN; ``q=A&E attendances`` is free text.
    """
    text = q.strip()
    if text in ("", "*:*", "*"):
        return "", EVERYTHING
    words = _tokens(text, "q")
    fielded = [w for w in words if re.match(r"^[+-]?[a-z_]+:", w) and
               w.lstrip("+-").partition(":")[0] in FIELDS]
    if not fielded:
        return text, EVERYTHING
    if len(fielded) != len([w for w in words if w not in ("AND", "OR", "NOT", "(", ")")]):
        # Mixed: field terms and free words. Free words must all appear in the text fields.
        tree = parse(" ".join(w if w in fielded or w in ("AND", "OR", "NOT", "(", ")")
                              else f"text:{w}" for w in words), "q")
        return "", tree
    return "", parse(text, "q")


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool


def parse_sort(sort: str | None) -> list[SortKey]:
    """CKAN's ``sort`` (``id asc``, ``score desc, metadata_modified desc``) as sort keys."""
    keys: list[SortKey] = []
    for part in (sort or "").split(","):
        words = part.split()
        if not words:
            continue
        field = words[0]
        if field not in SORT_FIELDS:
            raise InvalidInput(f"sort: cannot sort on {field!r}; use one of "
                               f"{', '.join(SORT_FIELDS)}, each with asc or desc")
        direction = words[1].lower() if len(words) > 1 else "asc"
        if direction not in ("asc", "desc") or len(words) > 2:
            raise InvalidInput(f"sort: {part.strip()!r} must be a field then asc or desc")
        keys.append(SortKey(SORT_FIELDS[field], direction == "desc"))
    return keys or [SortKey("score", True)]


def sort_packages(packages: list[dict[str, Any]], keys: list[SortKey]) -> list[dict[str, Any]]:
    """Packages ordered by the keys; ``score`` keeps the search's own relevance order."""
    out = list(packages)
    for key in reversed(keys):
        if key.field == "score":
            continue  # the incoming order is the relevance order; stable sorts keep it
        out.sort(key=functools.partial(_sort_value, field=key.field), reverse=key.descending)
    return out


def _sort_value(pkg: dict[str, Any], *, field: str) -> str:
    text = str(pkg.get(field) or "")
    return text.lower() if field == "title" else text
