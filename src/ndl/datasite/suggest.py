"""Suggest what each column is: its type, its sensitivity tag and its join key.

Types (:func:`infer_types`) come from a sample of the first block of the file: the narrowest
type every sampled value fits, with a note when a column nearly fits one (so the steward can
insist with ``--type``, and the bad rows are then reported). :func:`convert_batch` casts each
batch to those types with vectorised Arrow kernels, using the same parsers, and returns the
rows that failed and why instead of stopping at the first bad cell. Sensitivity and join keys
(:func:`suggest_column`) are only ever suggestions: a steward confirms them before publishing.

Each tag detector looks at the column's name *and* its values, because either alone misleads:
a column called ``ref`` may hold NHS numbers, and one called ``name`` may hold hospital names.
A suggestion carries a reason in words, so the steward can judge it.

Detectors, most specific first: NHS number (ten digits passing the modulus-11 check), unique
pupil number, email address, UK phone number, UK postcode, date of birth, people's names,
local patient identifiers, then name-only hints for quasi-identifiers (sex, age, ethnicity)
and special-category data (diagnosis, religion...).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ndl.core.errors import InvalidInput
from ndl.datasite.ingest import Source, native_type
from ndl.linkage.nhs_number import is_valid as nhs_is_valid

__all__ = [
    "ARROW_TYPES", "INFER_ROWS", "Inferred", "Suggestion", "as_text", "convert_batch",
    "guess_date_format", "infer_column", "infer_types", "parse_text", "suggest_column",
    "suggest_columns",
]

INFER_ROWS = 50_000  # types are inferred from this many rows of the first block
# Cells that mean "no value" in a typed column, in the spellings exports use.
NULL_TOKENS = pa.array(sorted({v for t in ("", "na", "n/a", "null", "none")
                               for v in (t, t.upper(), t.capitalize())}))
TRUE_TOKENS = pa.array(["true", "yes"])
FALSE_TOKENS = pa.array(["false", "no"])
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "integer": pa.int64(), "float": pa.float64(),
    "boolean": pa.bool_(), "date": pa.date32(),
}
# Dates: ISO first (unambiguous), then the UK's day-first form. US month-first is never guessed.
DATE_FORMATS: dict[str, tuple[str, str]] = {
    "%Y-%m-%d": (r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})$", "2024-03-31"),
    "%d/%m/%Y": (r"^(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})$", "31/03/2024"),
}
_INT_RE = r"^[+-]?\d{1,18}$"
LEADING_ZERO_RE = r"^[+-]?0\d"
_FLOAT_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_WHAT: dict[str, str] = {
    "integer": "is not a whole number", "float": "is not a number",
    "boolean": "is not true/false/yes/no",
}


# -- types ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inferred:
    type: str
    date_format: str | None = None
    note: str = ""


def short_repr(v: Any, limit: int = 40) -> str:
    s = str(v)
    return repr(s if len(s) <= limit else s[:limit] + "…")


def null_cells(trimmed: pa.Array) -> pa.Array:
    return pc.fill_null(pc.is_in(trimmed, value_set=NULL_TOKENS), True)


def no_nulls(mask: pa.Array) -> pa.Array:
    return pc.fill_null(mask, False)


def parse_text(text: pa.Array, type_: str, date_format: str | None = None
               ) -> tuple[pa.Array, pa.Array]:
    """Parse text as ``type_``: (typed values, a mask of cells that are neither valid nor null)."""
    if type_ == "string":
        out = pc.if_else(no_nulls(pc.equal(text, "")), pa.scalar(None, pa.string()), text)
        return out, pa.repeat(pa.scalar(False), len(text))
    trimmed = pc.utf8_trim_whitespace(text)
    isnull = null_cells(trimmed)
    if type_ == "integer":
        ok = no_nulls(pc.match_substring_regex(trimmed, _INT_RE))
        typed = pc.cast(pc.replace_substring_regex(
            pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), r"^\+", ""), pa.int64())
    elif type_ == "float":
        ok = no_nulls(pc.match_substring_regex(trimmed, _FLOAT_RE))
        typed = pc.cast(pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), pa.float64())
    elif type_ == "boolean":
        low = pc.utf8_lower(trimmed)
        yes = no_nulls(pc.is_in(low, value_set=TRUE_TOKENS))
        ok = pc.or_(yes, no_nulls(pc.is_in(low, value_set=FALSE_TOKENS)))
        typed = pc.if_else(ok, yes, pa.scalar(None, pa.bool_()))
    elif type_ == "date":
        fmt = date_format or "%Y-%m-%d"
        parts = pc.extract_regex(trimmed, DATE_FORMATS[fmt][0])
        ts = pc.strptime(pc.if_else(parts.is_valid(), trimmed, pa.scalar(None, pa.string())),
                         format=fmt, unit="s", error_is_null=True)
        # strptime rolls 2024-02-30 over to 1 March: insist the day and month survive.
        same_day = pc.equal(pc.day(ts), pc.cast(pc.struct_field(parts, "d"), pa.int64()))
        same_month = pc.equal(pc.month(ts), pc.cast(pc.struct_field(parts, "m"), pa.int64()))
        ok = no_nulls(pc.and_(same_day, same_month))
        typed = pc.cast(ts, pa.date32())
    else:
        raise InvalidInput(f"unknown column type {type_!r}; types are "
                           f"{', '.join(ARROW_TYPES)}")
    bad = pc.and_(pc.invert(isnull), pc.invert(ok))
    typed = pc.if_else(pc.or_(isnull, bad), pa.scalar(None, ARROW_TYPES[type_]), typed)
    return typed, bad


def describe_bad(type_: str, date_format: str | None) -> str:
    if type_ == "date":
        return f"is not a date like {DATE_FORMATS[date_format or '%Y-%m-%d'][1]}"
    return _WHAT.get(type_, f"is not a valid {type_}")


def as_text(column: pa.Array) -> pa.Array:
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_boolean(column.type):
        return pc.if_else(column, "true", "false")
    return pc.cast(column, pa.string())


def convert_batch(batch: pa.RecordBatch, plans: dict[str, Inferred], *,
                  empty_is_null: bool = True) -> tuple[pa.RecordBatch, dict[int, str]]:
    """Cast ``batch`` to the planned types: (good rows, typed; {index of bad row: reason}).

    ``empty_is_null``: in text sources an empty cell means "no value"; Parquet can say so
    itself, so its empty strings are kept.
    """
    arrays: list[pa.Array] = []
    bad_any: pa.Array | None = None
    reasons: dict[int, str] = {}
    extra: dict[int, int] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        plan = plans[name]
        target = ARROW_TYPES[plan.type]
        if native_type(column.type) == plan.type:  # also int32 -> int64, decimal -> float64
            try:
                typed = pc.cast(column, target)
            except pa.ArrowInvalid:  # e.g. a uint64 beyond int64: check it value by value
                pass
            else:
                if plan.type == "string" and empty_is_null:
                    typed, _ = parse_text(typed, "string")
                arrays.append(typed)
                continue
        typed, bad = parse_text(as_text(column), plan.type, plan.date_format)
        arrays.append(typed)
        if pc.any(bad).as_py():
            bad_any = bad if bad_any is None else pc.or_(bad_any, bad)
            what = describe_bad(plan.type, plan.date_format)
            for i in pc.indices_nonzero(bad).to_pylist():
                if i in reasons:
                    extra[i] = extra.get(i, 0) + 1
                else:
                    reasons[i] = f"column {name!r} value {short_repr(column[i].as_py())} {what}"
    for i, more in extra.items():
        reasons[i] += f" (and {more} more column{'s' if more > 1 else ''})"
    schema = pa.schema([(n, ARROW_TYPES[plans[n].type]) for n in batch.schema.names])
    typed_batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    if bad_any is not None:
        typed_batch = typed_batch.filter(pc.invert(bad_any))
    return typed_batch, reasons


def _fraction(mask: pa.Array, n: int) -> float:
    return pc.sum(pc.cast(mask, pa.int64())).as_py() / n if n else 0.0


_CANDIDATES = ("integer", "float", "date:%Y-%m-%d", "date:%d/%m/%Y", "boolean")


def _bad_as(values: pa.Array, key: str) -> pa.Array:
    type_, _, fmt = key.partition(":")
    return parse_text(values, type_, fmt or None)[1]


def infer_column(text: pa.Array) -> Inferred:
    """A column type for a sample of text values; notes explain any near misses."""
    text = text.slice(0, INFER_ROWS)
    trimmed = pc.utf8_trim_whitespace(text)
    values = pc.filter(trimmed, pc.invert(null_cells(trimmed)))
    n = len(values)
    if n == 0:
        return Inferred("string", note="no values in the sample; kept as text")
    probe = values.slice(0, 1000)
    shares: dict[str, float] = {}
    for key in _CANDIDATES:
        if _fraction(_bad_as(probe, key), len(probe)) > 0.2:
            continue  # clearly not this type: skip the full check
        shares[key] = share = 1 - _fraction(_bad_as(values, key), n)
        if share < 1.0:
            continue
        type_, _, fmt = key.partition(":")
        if type_ == "integer":
            zeros = pc.filter(values, no_nulls(pc.match_substring_regex(values, LEADING_ZERO_RE)))
            if len(zeros):
                return Inferred("string", note=f"kept as text: values like {short_repr(zeros[0])} "
                                "have leading zeros that a number would lose")
        if type_ == "float" and pc.all(no_nulls(pc.match_substring_regex(values, r"^[+-]?\d+$"))
                                       ).as_py():
            return Inferred("string", note="kept as text: some values have more digits than "
                            "a 64-bit integer holds")
        return Inferred(type_, fmt or None)
    if shares:
        key, share = max(shares.items(), key=lambda kv: kv[1])
        if share >= 0.9:
            type_, _, fmt = key.partition(":")
            example = short_repr(pc.filter(values, _bad_as(values, key))[0])
            return Inferred("string", note=(
                f"mostly {type_} ({share:.0%} of {n:,} sampled values) but {example} is not; "
                f"kept as text. Pass --type COLUMN={type_} to check every row as {type_}"))
    return Inferred("string")


def infer_types(batch: pa.RecordBatch, source: Source) -> dict[str, Inferred]:
    """Column types: inferred from the sample for text sources, the file's own for Parquet."""
    native = source.native_types()
    out: dict[str, Inferred] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        kind = native.get(name)
        if source.text:
            out[name] = infer_column(column)
        elif kind is None:
            out[name] = Inferred("string", note=f"{column.type} values are published as text")
        else:
            out[name] = Inferred(kind)
    return out


def guess_date_format(text: pa.Array) -> str:
    """For a ``--type col=date`` override: the format most sampled values match."""
    best, best_n = "%Y-%m-%d", -1
    for fmt in DATE_FORMATS:
        _, bad = parse_text(text, "date", fmt)
        n = len(text) - pc.sum(pc.cast(bad, pa.int64())).as_py()
        if n > best_n:
            best, best_n = fmt, n
    return best


# -- sensitivity and join keys ------------------------------------------------------------
SAMPLE_SIZE = 1000

_POSTCODE = re.compile(
    r"^(GIR ?0AA|[A-PR-UWYZ]([0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]|"
    r"[A-HK-Y][0-9][ABEHMNPRV-Y]) ?[0-9][ABD-HJLNP-UW-Z]{2})$", re.IGNORECASE)
_OUTWARD = re.compile(
    r"^[A-PR-UWYZ]([0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]|[A-HK-Y][0-9][ABEHMNPRV-Y])$",
    re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
# UK numbers: 0 or +44/0044, then ten digits (nine for a few old area codes) starting 1-3 or
# 5-9 (geographic, non-geographic, mobile, freephone, premium).
_PHONE = re.compile(r"^(?:(?:\+|00)44|0)[1235789]\d{8,9}$")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
# A unique pupil number (DfE): a check letter, the LA and school numbers, then a serial.
_UPN = re.compile(r"^[A-HJ-NP-RT-Z][0-9]{11}[0-9A-HJ-NP-RT-Z]$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}/\d{1,2}/\d{4}$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_NAME_WORDS = {"forename", "forenames", "firstname", "givenname", "surname", "lastname",
               "familyname", "fullname", "middlename", "maidenname", "patientname",
               "personname", "childname", "pupilname", "christianname", "preferredname"}
_NAME_PAIRS = {("first", "name"), ("given", "name"), ("last", "name"), ("family", "name"),
               ("full", "name"), ("middle", "name"), ("maiden", "name"), ("patient", "name"),
               ("person", "name"), ("child", "name"), ("pupil", "name"), ("preferred", "name")}
_LOCAL_ID = {"mrn", "patientid", "personid", "pupilid", "clientid", "hospitalnumber",
             "hospitalno", "localid", "casenumber", "chinumber", "crn"}
_QUASI = {
    "sex": "sex", "gender": "gender", "age": "age", "ageyears": "age",
    "yearofbirth": "year of birth", "birthyear": "year of birth", "yob": "year of birth",
    "ethnicity": "ethnicity",
    "ethnicgroup": "ethnicity", "ethniccategory": "ethnicity", "ward": "small-area geography",
    "lsoa": "small-area geography", "msoa": "small-area geography", "oa": "small-area geography",
    "occupation": "occupation", "address": "address", "addressline1": "address",
    "street": "address",
}
_SENSITIVE = ("diagnosis", "diagnoses", "condition", "icd10", "icd", "snomed", "religion",
              "sexualorientation", "disability", "hiv", "mentalhealth", "medication",
              "procedure", "opcs", "pregnan", "criminal", "offence", "conviction",
              "safeguarding", "genetic")


@dataclass(frozen=True)
class Suggestion:
    column: str
    kind: str  # what was detected: nhs_number, postcode, email, ...
    sensitivity: str
    join_key: str | None
    reason: str


def _tokens(name: str) -> list[str]:
    spaced = _CAMEL.sub("_", name.strip())
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _sample(values: Iterable[object]) -> list[str]:
    out = []
    for v in values:
        if v is None:
            continue
        s = str(v).strip()
        if s:
            out.append(s)
        if len(out) >= SAMPLE_SIZE:
            break
    return out


def _share(values: Sequence[str], test: Callable[[str], bool]) -> tuple[float, int]:
    hits = sum(1 for v in values if test(v))
    return (hits / len(values) if values else 0.0), hits


def _phone(v: str) -> bool:
    return bool(_PHONE.match(_PHONE_SEPARATORS.sub("", v)))


@functools.cache
def _known_names() -> tuple[frozenset[str], frozenset[str]]:
    from faker.providers.person.en_GB import Provider

    first = {n.lower() for n in (*Provider.first_names_male, *Provider.first_names_female)}
    first |= {"oliver", "olivia", "amelia", "isla", "noah", "muhammad", "mohammed", "freya",
              "harry", "mia", "ava", "leo", "alfie", "poppy", "aisha", "fatima", "priya",
              "ravi", "amir", "zara", "sofia", "lily", "evie", "jack", "jacob", "charlie"}
    last = {n.lower() for n in Provider.last_names}
    last |= {"khan", "ahmed", "ali", "hussain", "patel", "singh", "begum", "kaur", "shah",
             "nguyen", "kowalski", "nowak", "okafor", "mensah", "osei", "o'brien", "murphy"}
    return frozenset(first), frozenset(last)


def _first_name_like(v: str) -> bool:
    first, _ = _known_names()
    words = v.replace("-", " ").split()
    return bool(words) and words[0].lower() in first


def _surname_like(v: str) -> bool:
    _, last = _known_names()
    words = v.replace("-", " ").split()
    return bool(words) and words[-1].lower() in last


def _pct(share: float, hits: int, n: int, what: str) -> str:
    return f"{hits:,} of {n:,} sampled values ({share:.0%}) {what}"


def suggest_column(name: str, values: Iterable[object], type_: str = "string"
                   ) -> Suggestion | None:
    """One suggestion for a column, or None when nothing about it looks identifying."""
    sample = _sample(values)
    n = len(sample)
    toks = _tokens(name)
    joined = "".join(toks)
    pairs = set(itertools.pairwise(toks))

    def says(*words: str) -> bool:
        return any(w in toks for w in words)

    # NHS number: the check digit makes the value test strong on its own.
    share, hits = _share(sample, nhs_is_valid)
    if n and share >= 0.9:
        return Suggestion(name, "nhs_number", "direct_identifier", "nhs_number",
                          _pct(share, hits, n, "are valid NHS numbers (mod-11 check digit)"))
    if says("nhs") or "nhsnumber" in joined or "nhsno" in joined:
        detail = f"; {_pct(share, hits, n, 'pass the check digit')}" if n else ""
        return Suggestion(name, "nhs_number", "direct_identifier", "nhs_number",
                          f"the column name mentions an NHS number{detail}")
    share, hits = _share(sample, lambda v: bool(_UPN.match(v.upper())))
    if says("upn") or (n and share >= 0.9):
        why = _pct(share, hits, n, "look like unique pupil numbers") if share >= 0.9 else \
            "the column name says UPN (unique pupil number)"
        return Suggestion(name, "upn", "direct_identifier", "upn", why)
    share, hits = _share(sample, lambda v: bool(_EMAIL.match(v)))
    if (n and share >= 0.8) or says("email") or "emailaddress" in joined:
        why = _pct(share, hits, n, "are email addresses") if share >= 0.8 else \
            "the column name mentions email"
        return Suggestion(name, "email", "direct_identifier", None, why)
    share, hits = _share(sample, _phone)
    if (n and share >= 0.8) or says("phone", "telephone", "tel", "mobile", "phoneno"):
        why = _pct(share, hits, n, "are UK phone numbers") if share >= 0.8 else \
            "the column name mentions a phone number"
        return Suggestion(name, "phone", "direct_identifier", None, why)
    share, hits = _share(sample, lambda v: bool(_POSTCODE.match(v)))
    if n and share >= 0.8:
        return Suggestion(name, "postcode", "quasi_identifier", "postcode",
                          _pct(share, hits, n, "are full UK postcodes"))
    if says("postcode", "postal", "zip") or ("post", "code") in pairs:
        share, hits = _share(sample, lambda v: bool(_OUTWARD.match(v)))
        why = ("the column name says postcode; " + _pct(share, hits, n, "are postcode districts")
               if n and share >= 0.8 else "the column name says postcode")
        return Suggestion(name, "postcode_district", "quasi_identifier", None, why)
    if says("dob", "birthdate", "dateofbirth") or "dateofbirth" in joined or (
            says("birth") and says("date", "dt", "day")):
        share, _ = _share(sample, lambda v: bool(_ISO_DATE.match(v)))
        if type_ == "date" or (n and share >= 0.8):
            return Suggestion(name, "date_of_birth", "quasi_identifier", "date_of_birth",
                              "the column name says date of birth and its values are dates")
        return Suggestion(name, "date_of_birth", "quasi_identifier", None,
                          "the column name says date of birth (its values are not dates; "
                          "publish it as a date to link on it)")
    if (_NAME_WORDS & {joined, *toks}) or (_NAME_PAIRS & pairs):
        return Suggestion(name, "name", "direct_identifier", "name",
                          "the column name says it holds people's names")
    if type_ == "string" and n:
        share, hits = _share(sample, _first_name_like)
        if share >= 0.6 or (joined == "name" and share >= 0.3):
            return Suggestion(name, "name", "direct_identifier", "name",
                              _pct(share, hits, n, "start with a common first name"))
        share, hits = _share(sample, _surname_like)
        if toks and toks[-1] == "name" and len(toks) <= 2 and share >= 0.5:
            return Suggestion(name, "name", "direct_identifier", "name",
                              _pct(share, hits, n, "are common surnames"))
    if joined in _LOCAL_ID:
        return Suggestion(name, "local_id", "direct_identifier", "local_id",
                          "the column name looks like a local patient or person identifier")
    if joined in _QUASI:
        return Suggestion(name, _QUASI[joined].replace(" ", "_"), "quasi_identifier", None,
                          f"{_QUASI[joined]} helps single people out when combined with "
                          "other columns")
    # Prefixes of a word, so "hiv" does not fire inside "archive".
    hit = next((w for w in _SENSITIVE if any(t.startswith(w) for t in toks)
                or (len(w) >= 8 and w in joined)), None)
    if hit is not None:
        return Suggestion(name, "special_category", "sensitive", None,
                          f"the column name suggests special-category data ({hit})")
    return None


def suggest_columns(columns: Mapping[str, tuple[str, Iterable[object]]]) -> list[Suggestion]:
    """Suggestions for every column given as ``{name: (type, sample values)}``, in order."""
    out = []
    for name, (type_, values) in columns.items():
        s = suggest_column(name, values, type_)
        if s is not None:
            out.append(s)
    return out
