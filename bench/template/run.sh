#!/usr/bin/env bash
# Runs Django's speed anchor and outflow-template's benchmark back to back on
# the same input (shared/conformance/templates/bench_*), then prints the ratio.
# Needs: a venv with django==5.2.19 at $VENV (default: <repo>/.venv).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
SHARED="${SHARED:-$REPO/../shared}"
VENV="${VENV:-$REPO/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q django==5.2.19
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target/tpl}"
(cd "$REPO" && cargo bench -p outflow-template --bench render --no-run -q)
DJ=$("$VENV/bin/python" "$SHARED/conformance/templates/bench_django.py" --json)
echo "django: $DJ"
OURS=$(cd "$REPO" && cargo bench -p outflow-template --bench render -q 2>/dev/null | tee /dev/stderr | sed -n 's/^render only (compiled once): \([0-9.]*\) renders.*/\1/p')
DJR=$(echo "$DJ" | python3 -c 'import json,sys; print(json.load(sys.stdin)["render_only_per_sec_median"])')
python3 -c "print('outflow-template %.0f renders/s, Django %.1f renders/s, ratio %.0fx' % ($OURS, $DJR, $OURS/$DJR))"
