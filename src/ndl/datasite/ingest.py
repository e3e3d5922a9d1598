"""Read a steward's file as a stream of Arrow batches and validate its rows.

Three formats: CSV (or other delimited text), Parquet and Excel (.xlsx). Each reader yields
:class:`Chunk`s of at most one block (a few MB) and never holds the whole file, so memory stays
bounded whatever the file's size. Row numbers are the ones a steward sees in their own tools:
for CSV and Excel the header is row 1 and the first data row is row 2 (blank lines are not
counted); for Parquet the first row is row 1.

Values arrive as text (CSV, Excel) or typed (Parquet); :mod:`ndl.datasite.suggest` infers
the column types and casts each batch to them, reporting bad rows rather than failing.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import threading
import time
import warnings
import zipfile
from array import array
from bisect import bisect_right
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


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


class Source(Protocol):
    format: str
    text: bool  # values arrive as text (CSV, Excel), so their types are inferred
    columns: list[str]
    total_bytes: int
    encoding: str | None

    def chunks(self) -> Generator[Chunk, None, None]: ...
    def bytes_read(self) -> int: ...
    def native_types(self) -> dict[str, str | None]: ...
    def close(self) -> None: ...


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
    if text and all(pc.match_substring_regex(pa.array(out), _NUMBER_RE).to_pylist()):
        raise InvalidInput(f"{where}: the first row ({', '.join(out[:4])}) looks like data, not "
                           "column names; add a header row")
    return out


# -- CSV -------------------------------------------------------------------------------------
class _PacedReader(io.RawIOBase):
    """The CSV's bytes for Arrow's background reader: counted, and never too far ahead.

    Arrow's streaming CSV reader reads ahead on its own thread with no limit, so a slow
    consumer (validation, Parquet writing) would let it pull most of a large file into
    memory. Reads from that thread wait while they are more than ``window`` bytes ahead of
    the batches consumed. Should the parser ever need more than that to finish a batch (the
    consumer has been waiting for one for a while), the window grows, so it never deadlocks.
    """

    STALL_SECONDS = 1.0

    def __init__(self, raw: io.BufferedIOBase, block_size: int, window_blocks: int = 4
                 ) -> None:
        self._raw = raw
        self._block = block_size
        self._window = window_blocks * block_size
        self._allowed = self._window
        self._consumer = threading.get_ident()
        self._waiting_since: float | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if threading.get_ident() != self._consumer:
            with self._cond:
                while not (self.count < self._allowed or self._stopped):
                    self._cond.wait(0.25)
                    since = self._waiting_since
                    if since is not None and time.monotonic() - since > self.STALL_SECONDS:
                        self._window += self._block  # the parser needs more: let it have it
                        self._allowed = self.count + self._block
        if self._stopped:
            return 0
        n = self._raw.readinto(buf) or 0
        self.count += n
        return n

    def waiting(self, waiting: bool) -> None:
        with self._cond:
            self._waiting_since = time.monotonic() if waiting else None

    def consumed(self, batches: int) -> None:
        with self._cond:
            self._allowed = max(self._allowed, batches * self._block + self._window)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def close(self) -> None:
        self.stop()
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
    format: str = "csv"
    text: bool = True
    encoding: str | None

    def __init__(self, path: Path, *, encoding: str | None, delimiter: str | None,
                 block_size: int) -> None:
        self.path = path
        self.total_bytes = path.stat().st_size
        self.block_size = block_size
        try:
            # A BOM is skipped either way; utf-8-sig would only route through a slow transcoder.
            self.encoding = codecs.lookup(encoding or "utf-8").name.replace("utf-8-sig",
                                                                              "utf-8")
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
        body = text.lstrip("\r\n")
        self._blank_lines = text[:len(text) - len(body)].count("\n")  # before the header
        first_line = body.split("\n", 1)[0]
        self.delimiter = delimiter or _sniff_delimiter(first_line)
        if len(self.delimiter) != 1:
            raise InvalidInput(f"--delimiter must be one character, not {self.delimiter!r}")
        if "\n" not in text and len(head) < self.total_bytes:
            raise InvalidInput(f"{path.name}: the header row is longer than 1 MiB; is this "
                               "really a CSV file?")
        header = next(csv.reader(io.StringIO(body), delimiter=self.delimiter))
        self.columns = check_header(header, path.name)
        self._skipped: array[int] = array("q")
        self._pending: list[BadRow] = []
        self._counter: _PacedReader | None = None
        self._last_record = 1

    def native_types(self) -> dict[str, str | None]:
        return dict.fromkeys(self.columns)

    def bytes_read(self) -> int:
        return self._counter.count if self._counter else 0

    def _record_number(self, index: int, offset: int = 0) -> int:
        # The k-th accepted row's record number: skip over the rows the parser set aside.
        k = index + offset
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

    def chunks(self) -> Generator[Chunk, None, None]:
        is_utf8 = self.encoding == "utf-8"
        self._counter = pacer = _PacedReader(self.path.open("rb"), self.block_size)
        read = pacsv.ReadOptions(
            column_names=self.columns, skip_rows=1 + self._blank_lines,
            block_size=self.block_size,
            # Serial reading is what makes the parser report row numbers for bad rows.
            use_threads=False, encoding="utf8" if is_utf8 else self.encoding)
        parse = pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True,
                                   invalid_row_handler=self._on_invalid)
        convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(self.columns, pa.string()),
            strings_can_be_null=False, quoted_strings_can_be_null=False)
        accepted = batches = 0
        reader = None
        try:
            reader = pacsv.open_csv(pa.PythonFile(pacer, mode="r"), read_options=read,
                                    parse_options=parse, convert_options=convert)
            while True:
                pacer.waiting(True)
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                finally:
                    pacer.waiting(False)
                batches += 1
                pacer.consumed(batches)
                start = accepted
                accepted += batch.num_rows
                bad, self._pending = self._pending, []
                yield Chunk(batch, functools.partial(self._record_number, offset=start), bad)
            if self._pending:
                yield Chunk(pa.RecordBatch.from_pylist([], schema=pa.schema(
                    [(c, pa.string()) for c in self.columns])), int, self._pending)
                self._pending = []
        except pa.ArrowInvalid as exc:
            msg = str(exc)
            if "UTF8" in msg:
                raise _utf8_error(self.path, self.encoding or "utf-8") from None
            raise InvalidInput(f"{self.path.name} could not be read as CSV after about "
                               f"{accepted + len(self._skipped):,} rows: {msg}") from None
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{self.path.name} could not be decoded as {self.encoding}: "
                               f"{exc}; give the right --encoding") from None
        finally:
            pacer.stop()  # wake Arrow's reader thread before closing it
            if reader is not None:
                reader.close()
            self.close()
        self._last_record = accepted + len(self._skipped) + 1

    @property
    def last_record(self) -> int:
        return self._last_record

    def close(self) -> None:
        if self._counter is not None and not self._counter.closed:
            self._counter.close()


# -- Parquet ---------------------------------------------------------------------------------
def _plus(offset: int, index: int) -> int:
    return offset + index


def native_type(t: pa.DataType) -> str | None:
    if pa.types.is_dictionary(t):
        return native_type(t.value_type)
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
    format: str = "parquet"
    text: bool = False
    encoding: str | None = None

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
        self._types = {f.name: native_type(f.type) for f in schema}
        self._rows_total: int = max(self._file.metadata.num_rows, 1)
        self._rows_done = 0

    def native_types(self) -> dict[str, str | None]:
        return dict(self._types)

    def bytes_read(self) -> int:
        return self.total_bytes * self._rows_done // self._rows_total

    def chunks(self) -> Generator[Chunk, None, None]:
        try:
            for batch in self._file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                start = self._rows_done
                self._rows_done += batch.num_rows
                cols = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c
                        for c in batch.columns]
                yield Chunk(pa.RecordBatch.from_arrays(cols, names=batch.schema.names),
                            functools.partial(_plus, start + 1))
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
    format: str = "xlsx"
    text: bool = True
    encoding: str | None = None

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

    def chunks(self) -> Generator[Chunk, None, None]:
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
                yield Chunk(batch, numbers.__getitem__, bad)
        finally:
            self.close()

    def close(self) -> None:
        self._wb.close()
