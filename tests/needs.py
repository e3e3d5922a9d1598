"""Whether CI requires a thing a developer's machine may lack (tests/README.md lists them).

A test that needs PostgreSQL, Chromium, the strict sandbox, R, Spark or network namespaces
skips without it, unless its ``NDL_REQUIRE_*`` variable is set, which makes that a failure.
"""

from __future__ import annotations

import os


def required(var: str) -> bool:
    return os.environ.get(var, "").lower() in ("1", "true", "yes")
