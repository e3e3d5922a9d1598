"""Read a steward's file as a stream of Arrow batches, infer column types and validate rows.

Three formats: CSV (or other delimited text), Parquet and Excel (.xlsx). Each reader yields
:class:`Chunk`s of at most one block (a few MB) and never holds the whole file, so memory stays
bounded whatever the file's size. Row numbers are the ones a steward sees in their own tools:
for CSV and Excel the header is row 1 and the first data row is row 2 (blank lines are not
counted); for Parquet the first row is row 1.

Values arrive as text (CSV, Excel) or typed (Parquet). :func:`infer_types` picks a column type
from a sample; :func:`convert_batch` casts a whole batch with vectorised Arrow kernels and, rather
than failing on the first bad cell, returns which rows failed and why.
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
import zipfile
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ndl.core.errors import InvalidInput

FORMATS: tuple[str, ...] = ("csv", "parquet", "xlsx")
BLOCK_SIZE = 16 << 20
HEAD_BYTES = 1 << 20
XLSX_CHUNK_ROWS = 8192
PARQUET_BATCH_ROWS = 65_536
NULL_TOKENS = pa.array(["", "na", "n/a", "null", "none"])
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
_LONG_DIGITS_RE = r"^[+-]?\d{19,}$"
_LEADING_ZERO_RE = r"^[+-]?0\d"
_FLOAT_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_WHAT: dict[str, str] = {
    "integer": "is not a whole number", "float": "is not a number",
    "boolean": "is not true/false/yes/no",
}


@dataclass
class BadRow:
    """A row that cannot be published as it stands, with the values it had in the source."""

    row: int
    reason: str
    values: list[str | None] = field(default_factory=list)


@dataclass
class Chunk:
    batch: pa.RecordBatch
    row_of: Callable[[int], int]  # index in ``batch`` -> the row number in the source
    bad: list[BadRow] = field(default_factory=list)  # rows the reader could not split


@dataclass(frozen=True)
class Inferred:
    type: str
    date_format: str | None = None
    note: str = ""


class Source(Protocol):
    format: str
    text: bool  # values arrive as text (CSV, Excel), so their types are inferred
    columns: list[str]
    total_bytes: int
    encoding: str | None

    def chunks(self) -> Iterator[Chunk]: ...
    def bytes_read(self) -> int: ...
    def native_types(self) -> dict[str, str | None]: ...
    def close(self) -> None: ...


def _short(v: Any, limit: int = 40) -> str:
    s = str(v)
    return repr(s if len(s) <= limit else s[:limit] + "…")


# -- format detection --------------------------------------------------------------------------
def detect_format(path: Path, fmt: str | None = None) -> str:
    """The file's format from ``fmt``, its first bytes, then its suffix."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown format {fmt!r}; give one of {', '.join(FORMATS)}")
        return fmt
    with path.open("rb") as f:
        magic = f.read(8)
    suffix = path.suffix.lower()
    if magic[:2] == b"\x1f\x8b":
        raise InvalidInput(f"{path.name} is gzip-compressed; decompress it first "
                           f"(gunzip {path.name}) and publish the file inside")
    if magic[:4] == b"\xd0\xcf\x11\xe0" or suffix == ".xls":
        raise InvalidInput(f"{path.name} is an old-style Excel .xls workbook; open it in Excel "
                           "and save it as .xlsx or CSV, then publish that")
    if magic[:4] == b"PAR1":
        return "parquet"
    if magic[:4] == b"PK\x03\x04":
        return "xlsx"
    if suffix in (".parquet", ".pq"):
        raise InvalidInput(f"{path.name} is not a readable Parquet file (it does not start with "
                           "PAR1): it is corrupt or truncated; export it again")
    if suffix in (".xlsx", ".xlsm"):
        raise InvalidInput(f"{path.name} is not a readable .xlsx workbook (not a zip file): it is "
                           "corrupt or truncated; save it again from Excel")
    return "csv"


def open_source(path: Path, *, fmt: str | None = None, encoding: str | None = None,
                delimiter: str | None = None, sheet: str | None = None,
                block_size: int = BLOCK_SIZE) -> Source:
    """Open ``path`` for streaming; raises InvalidInput for empty, corrupt or unreadable files."""
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name} is empty (0 bytes): nothing to publish")
    kind = detect_format(path, fmt)
    if kind == "parquet":
        return ParquetSource(path)
    if kind == "xlsx":
        return XlsxSource(path, sheet)
    return CsvSource(path, encoding=encoding, delimiter=delimiter, block_size=block_size)


def check_header(names: list[str], where: str, *, text: bool = True) -> list[str]:
    """Header names as given, or a clear error for blank, duplicate or over-long names."""
    out = []
    for i, raw in enumerate(names, start=1):
        name = (raw or "").strip()
        if not name:
            raise InvalidInput(f"{where}: column {i} has no name in the header row; give every "
                               "column a name")
        if len(name) > 100:
            raise InvalidInput(f"{where}: column {i}'s name is {len(name)} characters; names "
                               "may be at most 100")
        out.append(name)
    seen: set[str] = set()
    for name in out:
        if name in seen:
            raise InvalidInput(f"{where}: column {name!r} appears more than once in the header; "
                               "rename one of them")
        seen.add(name)
    if text and all(pc.match_substring_regex(pa.array(out), _FLOAT_RE).to_pylist()):
        raise InvalidInput(f"{where}: the first row ({', '.join(out[:4])}) looks like data, not "
                           "column names; add a header row")
    return out


# -- CSV -------------------------------------------------------------------------------------
class _CountingReader(io.RawIOBase):
    """A read-only file that counts the bytes pulled through it, for the progress bar."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = self._raw.readinto(buf)
        self.count += n or 0
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def _utf8_error(path: Path, encoding: str) -> InvalidInput:
    """Find the first undecodable byte (streamed, 1 MiB at a time) and say how to fix it."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with path.open("rb") as f:
        while block := f.read(HEAD_BYTES):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                where = offset + exc.start
                line += block[:exc.start].count(b"\n")
                bad = block[exc.start:exc.start + 1].hex().upper()
                fix = ("Files saved by Excel on Windows are usually cp1252: re-run with "
                       "--encoding cp1252 (or --encoding latin-1)" if encoding == "utf-8" else
                       "Check the file's encoding (latin-1 accepts every byte) and re-run "
                       "with the right --encoding")
                return InvalidInput(
                    f"{path.name} is not valid {encoding}: byte 0x{bad} at byte offset "
                    f"{where:,} (line {line:,}) cannot be decoded. {fix}",
                    detail={"byte_offset": where, "line": line, "encoding": encoding})
            offset += len(block)
            line += block.count(b"\n")
    return InvalidInput(f"{path.name} is not valid {encoding}; give the right --encoding")


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvSource:
    format = "csv"
    text = True

    def __init__(self, path: Path, *, encoding: str | None, delimiter: str | None,
                 block_size: int) -> None:
        self.path = path
        self.total_bytes = path.stat().st_size
        self.block_size = block_size
        try:
            self.encoding = codecs.lookup(encoding or "utf-8").name
        except LookupError:
            raise InvalidInput(f"unknown encoding {encoding!r}; try utf-8, cp1252 or latin-1"
                               ) from None
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        is_utf8 = self.encoding == "utf-8"
        try:
            decoder = codecs.getincrementaldecoder("utf-8-sig" if is_utf8 else self.encoding)()
            text = decoder.decode(head, final=len(head) == self.total_bytes)
        except UnicodeDecodeError:
            raise _utf8_error(path, self.encoding) from None
        if not text.strip():
            raise InvalidInput(f"{path.name} holds only blank lines: nothing to publish")
        if "\x00" in text:
            raise InvalidInput(f"{path.name} contains NUL bytes, so it is not a text CSV file "
                               "(a binary file, or UTF-16: re-save it as UTF-8 CSV)")
        first_line = text.lstrip("\r\n").split("\n", 1)[0]
        self.delimiter = delimiter or _sniff_delimiter(first_line)
        if len(self.delimiter) != 1:
            raise InvalidInput(f"--delimiter must be one character, not {self.delimiter!r}")
        if "\n" not in text and len(head) < self.total_bytes:
            raise InvalidInput(f"{path.name}: the header row is longer than 1 MiB; is this "
                               "really a CSV file?")
        header = next(csv.reader(io.StringIO(text.lstrip("\r\n")), delimiter=self.delimiter))
        self.columns = check_header(header, path.name)
        self._skipped: array[int] = array("q")
        self._pending: list[BadRow] = []
        self._counter: _CountingReader | None = None
        self._last_record = 1

    def native_types(self) -> dict[str, str | None]:
        return dict.fromkeys(self.columns)

    def bytes_read(self) -> int:
        return self._counter.count if self._counter else 0

    def _record_number(self, k: int) -> int:
        # The k-th accepted row's record number: skip over the rows the parser set aside.
        r = k + 2
        while True:
            nr = k + 2 + bisect_right(self._skipped, r)
            if nr == r:
                return r
            r = nr

    def _on_invalid(self, row: Any) -> str:
        number = int(row.number) if row.number is not None else -1
        self._skipped.append(number)
        values: list[str | None] = []
        try:
            values = list(next(csv.reader([row.text], delimiter=self.delimiter)))
        except (csv.Error, StopIteration):
            values = [row.text]
        fields = "field" if row.actual_columns == 1 else "fields"
        reason = (f"has {row.actual_columns} {fields}, expected {row.expected_columns} "
                  "(a missing or extra delimiter, or an unclosed quote?)")
        self._pending.append(BadRow(number, reason, values[:len(self.columns)]))
        return "skip"

    def chunks(self) -> Iterator[Chunk]:
        is_utf8 = self.encoding == "utf-8"
        self._counter = _CountingReader(self.path.open("rb"))
        read = pacsv.ReadOptions(
            column_names=self.columns, skip_rows=1, block_size=self.block_size,
            # Serial reading is what makes the parser report row numbers for bad rows.
            use_threads=False, encoding="utf8" if is_utf8 else self.encoding)
        parse = pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True,
                                   invalid_row_handler=self._on_invalid)
        convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(self.columns, pa.string()),
            strings_can_be_null=False, quoted_strings_can_be_null=False)
        accepted = 0
        try:
            reader = pacsv.open_csv(pa.PythonFile(self._counter, mode="r"), read_options=read,
                                    parse_options=parse, convert_options=convert)
            for batch in reader:
                start = accepted
                accepted += batch.num_rows
                bad, self._pending = self._pending, []
                yield Chunk(batch, lambda i, s=start: self._record_number(s + i), bad)
            if self._pending:
                yield Chunk(pa.RecordBatch.from_pylist([], schema=pa.schema(
                    [(c, pa.string()) for c in self.columns])), lambda i: i, self._pending)
                self._pending = []
        except pa.ArrowInvalid as exc:
            msg = str(exc)
            if "invalid UTF8" in msg or "UTF8" in msg:
                raise _utf8_error(self.path, self.encoding) from None
            raise InvalidInput(f"{self.path.name} could not be read as CSV after about "
                               f"{accepted + len(self._skipped):,} rows: {msg}") from None
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{self.path.name} could not be decoded as {self.encoding}: "
                               f"{exc}; give the right --encoding") from None
        finally:
            self.close()
        self._last_record = accepted + len(self._skipped) + 1

    @property
    def last_record(self) -> int:
        return self._last_record

    def close(self) -> None:
        if self._counter is not None and not self._counter.closed:
            self._counter.close()


# -- Parquet ---------------------------------------------------------------------------------
def _native(t: pa.DataType) -> str | None:
    if pa.types.is_dictionary(t):
        return _native(t.value_type)
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return None


class ParquetSource:
    format = "parquet"
    text = False
    encoding = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total_bytes = path.stat().st_size
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"{path.name} is not a readable Parquet file ({exc}); it is "
                               "corrupt or truncated: export it again") from None
        schema = self._file.schema_arrow
        self.columns = check_header(schema.names, path.name, text=False)
        for f in schema:
            if pa.types.is_nested(f.type) or pa.types.is_binary(f.type):
                raise InvalidInput(f"{path.name}: column {f.name!r} has type {f.type}, which a "
                                   "catalogue column cannot describe; flatten it or drop it")
        self._types = {f.name: _native(f.type) for f in schema}
        self._rows_total = max(self._file.metadata.num_rows, 1)
        self._rows_done = 0

    def native_types(self) -> dict[str, str | None]:
        return dict(self._types)

    def bytes_read(self) -> int:
        return self.total_bytes * self._rows_done // self._rows_total

    def chunks(self) -> Iterator[Chunk]:
        try:
            for batch in self._file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                start = self._rows_done
                self._rows_done += batch.num_rows
                cols = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c
                        for c in batch.columns]
                yield Chunk(pa.RecordBatch.from_arrays(cols, names=batch.schema.names),
                            lambda i, s=start: s + i + 1)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"{self.path.name}: could not read the rows after row "
                               f"{self._rows_done:,} ({exc}); the file is corrupt or truncated"
                               ) from None
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()


# -- Excel -----------------------------------------------------------------------------------
def _cell_text(v: Any) -> str | None:
    import datetime as dt

    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time() else v.isoformat(sep=" ")
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    return str(v)


class XlsxSource:
    format = "xlsx"
    text = True
    encoding = None

    def __init__(self, path: Path, sheet: str | None) -> None:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        self.path = path
        self.total_bytes = path.stat().st_size
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # openpyxl warns about styles it ignores
                self._wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError,
                EOFError) as exc:
            raise InvalidInput(f"{path.name} is not a readable .xlsx workbook ({exc}); it is "
                               "corrupt or truncated: save it again from Excel") from None
        names = self._wb.sheetnames
        if sheet is not None and sheet not in names:
            self._wb.close()
            raise InvalidInput(f"{path.name} has no sheet {sheet!r}; its sheets are "
                               f"{', '.join(map(repr, names))}")
        self._ws = self._wb[sheet] if sheet is not None else self._wb.worksheets[0]
        self.sheet = self._ws.title
        self._rows_total = max(self._ws.max_row or 1, 1)
        self._rows_done = 0
        self._rows = self._iter_rows()
        try:
            first = next(self._rows, None)
        except Exception:
            self.close()
            raise
        if first is None:
            self.close()
            raise InvalidInput(f"{path.name}: sheet {self.sheet!r} is empty: nothing to publish")
        header = list(first[1])
        while header and header[-1] is None:
            header.pop()
        self.columns = check_header([_cell_text(h) or "" for h in header],
                                    f"{path.name} sheet {self.sheet!r}")

    def _iter_rows(self) -> Iterator[tuple[int, tuple[Any, ...]]]:
        try:
            for number, row in enumerate(self._ws.iter_rows(values_only=True), start=1):
                self._rows_done = number
                if any(v is not None for v in row):
                    yield number, row
        except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as exc:
            raise InvalidInput(f"{self.path.name}: could not read the sheet after row "
                               f"{self._rows_done:,} ({exc}); the workbook is corrupt or "
                               "truncated") from None

    def native_types(self) -> dict[str, str | None]:
        return dict.fromkeys(self.columns)

    def bytes_read(self) -> int:
        return min(self.total_bytes, self.total_bytes * self._rows_done // self._rows_total)

    def chunks(self) -> Iterator[Chunk]:
        width = len(self.columns)
        schema = pa.schema([(c, pa.string()) for c in self.columns])
        try:
            while True:
                numbers: list[int] = []
                cols: list[list[str | None]] = [[] for _ in range(width)]
                bad: list[BadRow] = []
                for number, row in self._rows:
                    texts = [_cell_text(v) for v in row]
                    if any(t is not None for t in texts[width:]):
                        bad.append(BadRow(number, f"has values beyond the last named column "
                                          f"({width} columns have names)", texts[:width]))
                    else:
                        numbers.append(number)
                        for i in range(width):
                            cols[i].append(texts[i] if i < len(texts) else None)
                    if len(numbers) + len(bad) >= XLSX_CHUNK_ROWS:
                        break
                if not numbers and not bad:
                    return
                batch = pa.RecordBatch.from_arrays(
                    [pa.array(c, pa.string()) for c in cols], schema=schema)
                yield Chunk(batch, lambda i, n=numbers: n[i], bad)
        finally:
            self.close()

    def close(self) -> None:
        self._wb.close()


# -- types -----------------------------------------------------------------------------------
def _nulls(text: pa.Array) -> pa.Array:
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    return pc.fill_null(pc.is_in(lowered, value_set=NULL_TOKENS), True)


def _ok(mask: pa.Array) -> pa.Array:
    return pc.fill_null(mask, False)


def parse_text(text: pa.Array, type_: str, date_format: str | None = None
               ) -> tuple[pa.Array, pa.Array]:
    """Parse text as ``type_``: (typed values, a mask of cells that are neither valid nor null)."""
    if type_ == "string":
        out = pc.if_else(_ok(pc.equal(text, "")), pa.scalar(None, pa.string()), text)
        return out, pa.repeat(pa.scalar(False), len(text))
    trimmed = pc.utf8_trim_whitespace(text)
    isnull = _nulls(text)
    if type_ == "integer":
        ok = _ok(pc.match_substring_regex(trimmed, _INT_RE))
        typed = pc.cast(pc.replace_substring_regex(
            pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), r"^\+", ""), pa.int64())
    elif type_ == "float":
        ok = _ok(pc.match_substring_regex(trimmed, _FLOAT_RE))
        typed = pc.cast(pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), pa.float64())
    elif type_ == "boolean":
        low = pc.utf8_lower(trimmed)
        yes = _ok(pc.is_in(low, value_set=TRUE_TOKENS))
        ok = pc.or_(yes, _ok(pc.is_in(low, value_set=FALSE_TOKENS)))
        typed = pc.if_else(ok, yes, pa.scalar(None, pa.bool_()))
    elif type_ == "date":
        fmt = date_format or "%Y-%m-%d"
        parts = pc.extract_regex(trimmed, DATE_FORMATS[fmt][0])
        ts = pc.strptime(pc.if_else(parts.is_valid(), trimmed, pa.scalar(None, pa.string())),
                         format=fmt, unit="s", error_is_null=True)
        # strptime rolls 2024-02-30 over to 1 March: insist the day and month survive.
        same_day = pc.equal(pc.day(ts), pc.cast(pc.struct_field(parts, "d"), pa.int64()))
        same_month = pc.equal(pc.month(ts), pc.cast(pc.struct_field(parts, "m"), pa.int64()))
        ok = _ok(pc.and_(same_day, same_month))
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


def _fraction(mask: pa.Array, n: int) -> float:
    return pc.sum(pc.cast(mask, pa.int64())).as_py() / n if n else 0.0


def infer_column(text: pa.Array) -> Inferred:
    """A column type for a sample of text values; notes explain any near misses."""
    values = pc.utf8_trim_whitespace(pc.filter(text, pc.invert(_nulls(text))))
    n = len(values)
    if n == 0:
        return Inferred("string", note="no values in the sample; kept as text")

    def share(regex: str) -> float:
        return _fraction(_ok(pc.match_substring_regex(values, regex)), n)

    candidates: dict[str, tuple[float, str | None]] = {
        "integer": (share(_INT_RE), None), "float": (share(_FLOAT_RE), None)}
    for fmt in DATE_FORMATS:
        _, bad = parse_text(values, "date", fmt)
        candidates[f"date:{fmt}"] = (1 - _fraction(bad, n), fmt)
    _, bad = parse_text(values, "boolean")
    candidates["boolean"] = (1 - _fraction(bad, n), None)
    if candidates["integer"][0] == 1.0:
        zeros = pc.filter(values, _ok(pc.match_substring_regex(values, _LEADING_ZERO_RE)))
        if len(zeros):
            return Inferred("string", note=f"kept as text: values like {_short(zeros[0])} have "
                            "leading zeros that a number would lose")
        return Inferred("integer")
    if share(_LONG_DIGITS_RE) > 0 and candidates["float"][0] == 1.0 and share(r"^[+-]?\d+$") == 1:
        return Inferred("string", note="kept as text: some values have more digits than a "
                        "64-bit integer holds")
    for key, (frac, fmt) in candidates.items():
        if frac == 1.0:
            return Inferred(key.split(":")[0], fmt)
    key, (frac, fmt) = max(candidates.items(), key=lambda kv: kv[1][0])
    if frac >= 0.9:
        type_ = key.split(":")[0]
        _, bad = parse_text(values, type_, fmt)
        example = _short(pc.filter(values, bad)[0])
        return Inferred("string", note=(
            f"mostly {type_} ({frac:.0%} of {n:,} sampled values) but {example} is not; "
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
        if _native(column.type) == plan.type:  # also int32 -> int64, decimal -> float64
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
                    reasons[i] = f"column {name!r} value {_short(column[i].as_py())} {what}"
    for i, more in extra.items():
        reasons[i] += f" (and {more} more column{'s' if more > 1 else ''})"
    schema = pa.schema([(n, ARROW_TYPES[plans[n].type]) for n in batch.schema.names])
    typed_batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    if bad_any is not None:
        typed_batch = typed_batch.filter(pc.invert(bad_any))
    return typed_batch, reasons
