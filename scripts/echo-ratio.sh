#!/usr/bin/env bash
# Throughput of HTTP functions as a ratio to the bare axum echo, in alternating rounds (this
# machine's speed drifts within minutes, so only figures taken side by side compare).
#
#   scripts/echo-ratio.sh BIN [ROUNDS] [DURATION] [ROUTE...]
#
# Starts `BIN serve` on the sample app and `BIN bench --echo-only`, then for each round loads
# the echo and each ROUTE (default: Validate ValidateParallel) with `BIN bench` (closed loop,
# 16 connections, body ../shared/samples/person-valid.json) and prints requests/s, the ratio
# to that round's echo, and the server's CPU time per request (user + system, from
# /proc/PID/stat).
set -euo pipefail
BIN=${1:?usage: $0 BIN [ROUNDS] [DURATION] [ROUTE...]}
ROUNDS=${2:-3}
DURATION=${3:-3s}
shift $(($# < 3 ? $# : 3))
ROUTES=("$@")
[ ${#ROUTES[@]} -eq 0 ] && ROUTES=(Validate ValidateParallel)
HERE=$(cd "$(dirname "$0")/.." && pwd)
BODY=$(cat "$HERE/../shared/samples/person-valid.json")
APP_PORT=$((20000 + RANDOM % 20000))
ECHO_PORT=$((APP_PORT + 1))
"$BIN" serve --app "$HERE/examples/person-validation" --listen 127.0.0.1:$APP_PORT \
  --log warn >/dev/null 2>&1 &
APP=$!
"$BIN" bench --echo-only --listen 127.0.0.1:$ECHO_PORT >/dev/null 2>&1 &
ECHO=$!
trap 'kill $APP $ECHO 2>/dev/null || true' EXIT
for port in $APP_PORT $ECHO_PORT; do
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
done
TICK=$(getconf CLK_TCK)
# CPU ticks (user + system) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Loads URL for DURATION; prints "req/s cpu-us-per-request" for the server PID.
load() {
  local pid=$1 url=$2 before after out rps n
  "$BIN" bench --url "$url" --body-json "$BODY" --duration 1s --warmup 0s -q >/dev/null
  before=$(ticks "$pid")
  out=$("$BIN" bench --url "$url" --body-json "$BODY" --duration "$DURATION" --warmup 0s --json -q)
  after=$(ticks "$pid")
  rps=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["throughput_rps"]))')
  n=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
  echo "$rps $(python3 -c "print(round(($after - $before) / $TICK * 1e6 / $n, 1))")"
}
for r in $(seq "$ROUNDS"); do
  read -r echo_rps echo_cpu < <(load $ECHO "http://127.0.0.1:$ECHO_PORT/echo")
  line="round $r: echo $echo_rps req/s (server ${echo_cpu} µs/req)"
  for route in "${ROUTES[@]}"; do
    read -r rps cpu < <(load $APP "http://127.0.0.1:$APP_PORT/api/$route")
    ratio=$(python3 -c "print(f'{$rps / $echo_rps:.2f}')")
    line="$line; $route $rps req/s = $ratio (server ${cpu} µs/req)"
  done
  echo "$line"
done
