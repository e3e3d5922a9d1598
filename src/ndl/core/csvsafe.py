"""CSV cells that a spreadsheet will not run as formulas.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel,
LibreOffice and Google Sheets as a formula (``=HYPERLINK(...)``, ``-2+3+cmd|...``), so a value
written by a datasite or a steward could run in a downloader's spreadsheet. Following the
OWASP convention every such text cell gets a leading single quote, which spreadsheets show as
text. Every CSV the library writes goes through :func:`safe_row`, so the rule lives here only.

Numbers stay numbers: an ``int``/``float`` value, or text that is just a plain number such as
``-12.5``, cannot hold a formula, and quoting it would spoil the column for every reader.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

CsvCell = str | int | float


def safe_cell(value: object) -> CsvCell:
    """One value as a CSV cell: None is empty, booleans are ``true``/``false``, text that a
    spreadsheet would run as a formula starts with a single quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def safe_row(values: Iterable[object]) -> list[CsvCell]:
    return [safe_cell(v) for v in values]


def csv_text(columns: Sequence[object], rows: Iterable[Iterable[object]], *,
             quote_text: bool = False) -> str:
    """A header and rows as CSV text (CRLF line ends), every cell made safe.

    ``quote_text`` quotes every text cell (numbers stay bare), as pyarrow's writer does.
    """
    buf = io.StringIO()
    write_csv(buf, columns, rows, quote_text=quote_text)
    return buf.getvalue()


def write_csv(out: TextIO, columns: Sequence[object], rows: Iterable[Iterable[object]], *,
              quote_text: bool = False, header: bool = True) -> None:
    """Write CSV to a text stream, as :func:`csv_text` does (for files of any size)."""
    # CRLF as RFC 4180 says; with it, Python 3.11's writer also quotes a lone CR in a cell
    # (with "\n" it would not, and a CR would split the row for most readers).
    writer = csv.writer(out, lineterminator="\r\n",
                        quoting=csv.QUOTE_NONNUMERIC if quote_text else csv.QUOTE_MINIMAL)
    if header:
        writer.writerow(safe_row(columns))
    for row in rows:
        writer.writerow(safe_row(row))


__all__ = ["FORMULA_STARTS", "CsvCell", "csv_text", "safe_cell", "safe_row", "write_csv"]
