"""Values as JSON that RFC 8785 can sign, by one documented convention.

Used by the datasite's engine for answers and by the hub for mock rows; it lives here, with
no heavy imports, so the hub need not load DuckDB to serve a mock.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

_SAFE_INT = 2**53 - 1  # beyond this, JSON numbers lose digits and RFC 8785 signing refuses


def json_safe(v: Any) -> Any:
    """One DuckDB value as JSON that RFC 8785 can sign, by one documented convention.

    * NaN, Infinity and -Infinity become ``null``;
    * integers beyond +-(2**53 - 1) become their decimal string (``"9007199254740993"``);
      smaller integers stay numbers;
    * DECIMAL becomes a float (a string if it is a whole number beyond 2**53 - 1);
    * DATE, TIME and TIMESTAMP become ISO 8601 text; INTERVAL becomes Python's text for it
      (``"1 day, 2:00:00"``); UUID becomes its text; BLOB becomes hex;
    * LIST and STRUCT/MAP become arrays and objects (keys as text), converted likewise;
    * anything else becomes its text.
    """
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return v if -_SAFE_INT <= v <= _SAFE_INT else str(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Decimal):
        if not v.is_finite():
            return None
        if v == v.to_integral_value() and abs(v) > _SAFE_INT:
            return str(v.quantize(Decimal(1)))
        return float(v)
    if isinstance(v, dt.date | dt.datetime | dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta | uuid.UUID):
        return str(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    return str(v)
