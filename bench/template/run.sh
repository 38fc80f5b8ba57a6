#!/usr/bin/env bash
# Django's speed anchor and outflow-template's benchmark, interleaved on the
# same input (shared/conformance/templates/bench_*) so both see the same
# machine load; prints each round's figures and the median ratio.
#   ROUNDS=3 bench/template/run.sh
# Needs a venv with django==5.2.19 at $VENV (default: <repo>/.venv; created if missing).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
SHARED="${SHARED:-$REPO/../shared}"
VENV="${VENV:-$REPO/.venv}"
ROUNDS="${ROUNDS:-3}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q django==5.2.19
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target/tpl}"
(cd "$REPO" && cargo bench -p outflow-template --bench render --no-run -q 2>/dev/null)
RATIOS=()
for r in $(seq 1 "$ROUNDS"); do
  DJ=$("$VENV/bin/python" "$SHARED/conformance/templates/bench_django.py" --json --repeats 3)
  DJR=$(echo "$DJ" | python3 -c 'import json,sys; print(json.load(sys.stdin)["render_only_per_sec_median"])')
  OUT=$(cd "$REPO" && BENCH_SECS=2 BENCH_REPEATS=3 cargo bench -p outflow-template --bench render -q 2>/dev/null)
  OURS=$(echo "$OUT" | sed -n 's/^render only (compiled once): \([0-9.]*\) renders.*/\1/p')
  RATIO=$(python3 -c "print(round($OURS/$DJR))")
  RATIOS+=("$RATIO")
  echo "round $r: django $DJR renders/s, outflow-template $OURS renders/s, ratio ${RATIO}x (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 -c "import statistics,sys; print('median ratio: %dx' % statistics.median(map(int, sys.argv[1:])))" "${RATIOS[@]}"
