#!/usr/bin/env bash
# Ingest benchmark: single-event POST /api/events against a release `outflow serve` on a fresh
# SQLite database, driven by wrk. Loopback only; bounded by DURATION.
#
#   bench/ingest/run.sh                 # defaults: -t2 -c128 -d20s, 10,000 profiles
#   THREADS=2 CONNECTIONS=64 DURATION=10s PROFILE_POOL=1000 bench/ingest/run.sh
#   OUTFLOW_BIN=target/release/outflow SKIP_BUILD=1 bench/ingest/run.sh
#   DATABASE_URL=postgres://root@127.0.0.1:5432/outflow_bench bench/ingest/run.sh   # (db must be empty)
#
# Exit status: non-zero when any response was not 2xx, or fewer events are stored than were
# acknowledged (an acknowledged write must never be lost).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-128}"
DURATION="${DURATION:-20s}"
export PROFILE_POOL="${PROFILE_POOL:-10000}"
export RUN_ID="${RUN_ID:-run$(date +%s)}"
export REVISION="${REVISION:-2026-07-15}"

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
    (cd "$root" && cargo build --release --bin outflow)
fi
bin="${OUTFLOW_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/outflow}"
[[ -x "$bin" ]] || { echo "no binary at $bin" >&2; exit 1; }

tmp="$(mktemp -d -t outflow-ingest-XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
db="${DATABASE_URL:-sqlite://$tmp/outflow.db}"
export OUTFLOW_API_KEY="pk_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

echo "==> outflow serve on $url, database $db"
OUTFLOW_BOOTSTRAP_API_KEY="$OUTFLOW_API_KEY" RUST_LOG="${RUST_LOG:-warn}" \
    "$bin" serve --listen "127.0.0.1:$port" --database "$db" >"$tmp/server.log" 2>&1 &
server_pid=$!

for i in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url/outflow/v1/health" 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "server exited:" >&2; tail -n 50 "$tmp/server.log" >&2; exit 1
    fi
    if [[ $i -eq 300 ]]; then echo "server not healthy after 30s" >&2; tail -n 50 "$tmp/server.log" >&2; exit 1; fi
    sleep 0.1
done

echo "==> wrk -t$THREADS -c$CONNECTIONS -d$DURATION -s events.lua ($PROFILE_POOL profiles)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$here/events.lua" "$url" | tee "$tmp/wrk.txt"

lua_line="$(grep '^ingest-lua:' "$tmp/wrk.txt")"
ok="$(sed -E 's/.* 2xx=([0-9]+).*/\1/' <<<"$lua_line")"
bad="$(sed -E 's/.* non2xx=([0-9]+).*/\1/' <<<"$lua_line")"
rps="$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.txt")"
sock="$(grep -E '^ +Socket errors:' "$tmp/wrk.txt" || true)"

# Count what was stored, through the API (cursor pagination via links.next, 1000 a page).
echo "==> counting stored events via GET /api/events"
stored="$(python3 - "$url" "$OUTFLOW_API_KEY" "$REVISION" <<'PY'
import json, sys, urllib.request
url, key, rev = sys.argv[1:4]
nxt, total, pages = url + "/api/events?page%5Bsize%5D=1000", 0, 0
while nxt:
    req = urllib.request.Request(nxt, headers={"Authorization": "Klaviyo-API-Key " + key, "revision": rev,
                                              "Accept": "application/vnd.api+json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        doc = json.load(r)
    total += len(doc["data"])
    pages += 1
    nxt = (doc.get("links") or {}).get("next")
    if nxt and nxt.startswith("/"):
        nxt = url + nxt
    if pages > 100000:
        sys.exit("too many pages")
print(total)
PY
)" || stored="?"

echo
echo "ingest: ${rps} req/s  (threads=$THREADS connections=$CONNECTIONS duration=$DURATION profiles=$PROFILE_POOL)"
echo "ingest: acknowledged 2xx=$ok  non-2xx=$bad  stored events=$stored"
[[ -n "$sock" ]] && echo "ingest: wrk$sock"
echo "ingest: latency $(sed -E 's/.*(p50_us=.*)/\1/' <<<"$lua_line")"

status=0
if [[ "$bad" != "0" ]]; then echo "FAIL: $bad non-2xx responses" >&2; status=1; fi
if [[ "$stored" == "?" ]]; then
    echo "FAIL: could not count stored events through GET /api/events" >&2; status=1
elif (( stored < ok )); then
    echo "FAIL: $ok events acknowledged but only $stored stored" >&2; status=1
elif (( stored > ok + CONNECTIONS )); then
    echo "FAIL: $stored stored but only $ok acknowledged (+$CONNECTIONS in flight at most)" >&2; status=1
fi
exit $status
