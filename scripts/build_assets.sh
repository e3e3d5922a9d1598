#!/usr/bin/env bash
# Build the hub web pages' CSS and JavaScript from GOV.UK Frontend.
#
#   bash scripts/build_assets.sh           # build if anything changed, else do nothing
#   bash scripts/build_assets.sh --force   # rebuild anyway
#
# Inputs:  package.json + package-lock.json (pinned govuk-frontend and sass),
#          src/ndl/web/assets/ (ndl.scss, ndl.js)
# Outputs: src/ndl/web/static/ (ndl.css, ndl.js, work.js, govuk-frontend.min.js, favicon.svg).
#          Generated, not committed.
#
# ndl is not a GOV.UK service: the stylesheet uses Arial, and no GDS Transport font files, crown
# or crest images are copied. The pages still render (unstyled) if this has not been run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SRC=src/ndl/web/assets
OUT=src/ndl/web/static
GOVUK=node_modules/govuk-frontend/dist/govuk
OUTPUTS=("$OUT/ndl.css" "$OUT/ndl.js" "$OUT/work.js" "$OUT/govuk-frontend.min.js" "$OUT/favicon.svg")
INPUTS=(package.json package-lock.json scripts/build_assets.sh "$SRC")

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) echo "usage: bash scripts/build_assets.sh [--force]" >&2; exit 2 ;;
esac

# Up to date when every output exists and no input is newer than the oldest output.
up_to_date() {
  local oldest="" f
  for f in "${OUTPUTS[@]}"; do
    [[ -f "$f" ]] || return 1
    if [[ -z "$oldest" || "$f" -ot "$oldest" ]]; then oldest="$f"; fi
  done
  [[ -z "$(find "${INPUTS[@]}" -newer "$oldest" -print -quit)" ]]
}

if [[ $force -eq 0 ]] && up_to_date; then
  echo "web assets are up to date in $OUT"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is not installed, so the web assets cannot be built." >&2
  echo "Install Node.js 20 or newer (which includes npm) and run: bash scripts/build_assets.sh" >&2
  echo "The hub still works without them; its pages are then shown unstyled." >&2
  exit 1
fi

start=$(date +%s)

# Install exactly what package-lock.json pins, unless node_modules already matches it.
# --ignore-scripts: nothing we use needs an install script (sass is pure JavaScript).
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json \
      || ! -d "$GOVUK" || ! -x node_modules/.bin/sass ]]; then
  npm ci --no-audit --no-fund --ignore-scripts
fi

mkdir -p "$OUT"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ndl-assets.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

node_modules/.bin/sass --no-source-map --no-error-css --style=compressed \
  --load-path=node_modules "$SRC/ndl.scss" "$tmp/ndl.css"
if grep -q "GDS Transport" "$tmp/ndl.css"; then
  echo "error: the stylesheet names the GDS Transport font; ndl must use Arial" >&2
  exit 1
fi
cp "$GOVUK/govuk-frontend.min.js" "$tmp/govuk-frontend.min.js"
cp "$SRC/ndl.js" "$SRC/work.js" "$SRC/favicon.svg" "$tmp/"

# Move into place only when everything built, so a failed build never leaves a half set.
for f in favicon.svg govuk-frontend.min.js ndl.js work.js ndl.css; do
  mv -f "$tmp/$f" "$OUT/$f"
done

echo "built web assets in $OUT in $(( $(date +%s) - start )) s"
