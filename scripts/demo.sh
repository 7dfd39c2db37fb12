#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: starts the example services, then runs the main job end to end
# on the embedded default (private PostgreSQL and Redis under X402R_HOME, started and stopped
# by x402r itself): plan → cost → approval → parallel execution with live progress → outputs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/build/x402r}"
TASK="${DEMO_TASK:-Analyze last 30 days of Solana DEX volume and create a trend report}"
PORT="${EXAMPLES_PORT:-5401}"

cd "$ROOT"
LOG="$(mktemp)"
node examples/services/server.mjs --port "$PORT" >"$LOG" 2>&1 &
SVC=$!
trap 'kill $SVC 2>/dev/null || true; wait $SVC 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$LOG" && break
  kill -0 $SVC 2>/dev/null || { cat "$LOG"; echo "demo: example services failed to start" >&2; exit 1; }
  sleep 0.1
done
URL="$(grep -o 'http://[0-9.:]*' "$LOG" | head -1)"
echo "demo: example services at $URL"

export EXAMPLES_URL="$URL"
export X402R_HOME="${X402R_HOME:-$ROOT/.x402r}"
unset DATABASE_URL REDIS_URL
echo "demo: x402r run \"$TASK\""
echo
"$BIN" run --yes --catalog examples/catalog.json "$TASK"
