#!/usr/bin/env bash
# Build the separate virtual environment the syft-rds peer benchmark runs in.
#
# syft-rds and its dependencies (syft, syft-job, syft-dataset, ...) are not ndl's and must never
# be installed into the project's .venv, so they live in .bench-venv/syft at the repo root.
# Idempotent: an existing venv that already has the pinned versions is left as it is.
#
#   bench/peers/setup_syft.sh            # then:
#   .bench-venv/syft/bin/python bench/peers/syft_rds_flow.py --data pupils.parquet --runs 10
set -euo pipefail

SYFT_RDS_VERSION="0.6.1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${SYFT_VENV:-$ROOT/.bench-venv/syft}"
PY="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
fi

# The check is on the installed versions, not on the venv's existence, so a half-finished
# earlier install is completed rather than trusted.
if "$VENV/bin/python" - "$SYFT_RDS_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
assert version("syft-rds") == sys.argv[1]
for dist in ("pandas", "pyarrow"):
    version(dist)
PY
then
    echo "syft-rds $SYFT_RDS_VERSION already installed in $VENV"
    exit 0
fi

"$VENV/bin/python" -m pip install --quiet --upgrade pip
# pandas is what the job computes with; pyarrow lets pandas read Parquet.
"$VENV/bin/python" -m pip install --quiet "syft-rds==$SYFT_RDS_VERSION" pandas pyarrow
"$VENV/bin/python" -c "from importlib.metadata import version as v; \
print('installed in $VENV: syft-rds', v('syft-rds'), 'syft', v('syft'), 'pandas', v('pandas'))"
