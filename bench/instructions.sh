#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: repeatable on a noisy machine where
# req/s are not. Runs the gateway under callgrind twice per path (N1 and N2 requests over one
# keep-alive connection) and prints (instructions(N2) - instructions(N1)) / (N2 - N1).
#
#   bench/instructions.sh CONFIG PATH [TOKEN]     e.g. a kong.yaml with /public and /auth routes
#
# The config's upstream, and its issuer for auth routes, must be running (python -m
# bench.issuer, nginx or bench.upstream). User-space instructions only: syscalls are not counted.
set -euo pipefail
config=$1 path=$2 token=${3:-}
n1=${N1:-200} n2=${N2:-1200}
python=${PYTHON:-.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" "$python" -m tokengate gateway \
    --config "$config" --listen 127.0.0.1:8300 --status-listen 127.0.0.1:8301 \
    --log-level warning >"$out/log.$1" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do curl -sf -o /dev/null http://127.0.0.1:8301/healthz && break; sleep 1; done
  sleep 2
  "$python" -m bench.drive 8300 "$path" "$1" $token >/dev/null
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  awk '/^(summary|totals):/ {print $2; exit}' "$out/cg.$1"
}
a=$(count "$n1"); b=$(count "$n2")
echo "$path: $(( (b - a) / (n2 - n1) )) instructions per request"
