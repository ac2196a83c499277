#!/usr/bin/env bash
# User-space instructions the server executes per request, counted by valgrind's callgrind:
# repeatable for the same binary and request, whatever else the machine is doing (unlike
# timings on a shared 2-core machine). Kernel work (TCP on loopback, wake-ups) is not counted.
#
#   scripts/instructions-per-request.sh BIN ROUTE [APP] [REQUESTS]
#
# ROUTE is a function of APP (default: examples/person-validation), or `echo` for the bare
# axum echo baseline (`baton bench --echo-only`). The body is ../shared/samples/person-valid.json.
# One connection, 300 requests to warm up, then REQUESTS (default 2000) counted.
set -euo pipefail
BIN=${1:?usage: $0 BIN ROUTE [APP] [REQUESTS]}
ROUTE=${2:?usage: $0 BIN ROUTE [APP] [REQUESTS]}
HERE=$(cd "$(dirname "$0")/.." && pwd)
APP=${3:-$HERE/examples/person-validation}
N=${4:-2000}
BODY=$(cat "$HERE/../shared/samples/person-valid.json")
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
PORT=$((20000 + RANDOM % 20000))
if [ "$ROUTE" = echo ]; then
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg" "$BIN" bench --echo-only \
    --listen 127.0.0.1:$PORT >/dev/null 2>"$OUT/valgrind.log" &
  URL=http://127.0.0.1:$PORT/echo
else
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg" "$BIN" serve --app "$APP" \
    --listen 127.0.0.1:$PORT --log warn >/dev/null 2>"$OUT/valgrind.log" &
  URL=http://127.0.0.1:$PORT/api/$ROUTE
fi
VG=$!
for _ in $(seq 200); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  sleep 0.3
done
"$BIN" bench --url "$URL" --body-json "$BODY" -n 300 -c 1 --warmup 0s -q >/dev/null
callgrind_control -z $VG >/dev/null
"$BIN" bench --url "$URL" --body-json "$BODY" -n "$N" -c 1 --warmup 0s -q >/dev/null
callgrind_control -d $VG >/dev/null
kill $VG
wait $VG 2>/dev/null || true
# The dump taken after the counted requests is the larger file (the other is the exit's).
DUMP=$(ls -S "$OUT"/cg* | head -1)
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$ROUTE: $((TOTAL / N)) instructions per request ($N requests)"
