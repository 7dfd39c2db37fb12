#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: a PAID workflow end to end on the embedded default.
#
#   bash scripts/demo.sh [path/to/x402r]              the paid demo (default)
#   DEMO=free bash scripts/demo.sh [path/to/x402r]    the free demo: examples/services + examples/catalog.json
#
# Paid demo, everything local and offline:
#   1. starts the local x402 marketplace (examples/marketplace: a LiteSVM chain, a facilitator,
#      paid x402 services, a registry, funded test wallets) in $X402R_HOME/marketplace, free ports;
#   2. points the engine at it: ESCROW_KEYPAIR (the marketplace's escrow wallet; never printed),
#      SOLANA_RPC_URL, NETWORK=devnet, ESCROW_ASSET (its USDC mint), REGISTRY_URL;
#   3. starts `x402r serve` (private PostgreSQL and Redis under $X402R_HOME), creates the user
#      "demo" and its API key, opens its escrow account for the test wallet user1, sends a
#      DEMO_DEPOSIT (2) USDC transfer from user1 to the escrow on chain and credits it through
#      POST /escrow/demo/deposit; then stops `serve`;
#   4. runs `x402r run --user demo --yes "$TASK"`: the plan over the registry's paid services and
#      its cost, the balance before, live progress with each settlement's transaction id, the
#      outputs, the total cost and the balance after.
# Everything it started is stopped on exit, also on failure or Ctrl-C. The exit status is the
# run's. Env: X402R_HOME (default ./.x402r), DEMO_TASK, DEMO_DEPOSIT, DEMO=free|paid.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/build/x402r}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
TASK="${DEMO_TASK:-Analyze last 30 days of Solana DEX volume and create a trend report}"
[ -x "$BIN" ] || { echo "demo: engine binary not found: $BIN (run make)" >&2; exit 1; }

cd "$ROOT"
export X402R_HOME="${X402R_HOME:-$ROOT/.x402r}"
mkdir -p "$X402R_HOME"
X402R_HOME="$(cd "$X402R_HOME" && pwd)"
unset DATABASE_URL REDIS_URL ESCROW_KEYPAIR CATALOG_FILE REGISTRY_URL PORT

# ---------------------------------------------------------------- free demo (DEMO=free)
if [ "${DEMO:-paid}" = free ]; then
  PORT_SVC="${EXAMPLES_PORT:-5401}"
  LOG="$(mktemp)"
  node examples/services/server.mjs --port "$PORT_SVC" >"$LOG" 2>&1 &
  SVC=$!
  trap 'kill $SVC 2>/dev/null || true; wait $SVC 2>/dev/null || true; rm -f "$LOG"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  for _ in $(seq 1 100); do
    grep -q "listening on" "$LOG" && break
    kill -0 $SVC 2>/dev/null || { cat "$LOG"; echo "demo: example services failed to start" >&2; exit 1; }
    sleep 0.1
  done
  URL="$(grep -o 'http://[0-9.:]*' "$LOG" | head -1)"
  echo "demo: example services at $URL"
  export EXAMPLES_URL="$URL"
  echo "demo: x402r run \"$TASK\""
  echo
  "$BIN" run --yes --catalog examples/catalog.json "$TASK"
  exit
fi

# ---------------------------------------------------------------- paid demo
MARKET="$X402R_HOME/marketplace"
SERVE_LOG="$X402R_HOME/demo-serve.log"
SERVE=""
cleanup() {
  if [ -n "$SERVE" ] && kill -0 "$SERVE" 2>/dev/null; then
    kill -TERM "$SERVE" 2>/dev/null || true
    wait "$SERVE" 2>/dev/null || true
  fi
  bash scripts/marketplace.sh stop "$MARKET" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "demo: starting the local x402 marketplace (chain, facilitator, paid services, registry)"
bash scripts/marketplace.sh start "$MARKET" --port-base 0 >/dev/null
# one field of marketplace.json; the escrow secret goes straight into the environment
field() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
  let v=j; for (const k of process.argv[2].split(".")) v=v[k]; process.stdout.write(String(v));' \
  "$MARKET/marketplace.json" "$1"; }
ESCROW_KEYPAIR="$(field escrow.secretBase64)"
export ESCROW_KEYPAIR
export SOLANA_RPC_URL="$(field rpcUrl)"
export NETWORK=devnet
export ESCROW_ASSET="$(field mint)"
export REGISTRY_URL="$(field registryUrl)"
USER_WALLET="$(field wallets.user1.address)"
echo "demo: registry $REGISTRY_URL, chain $SOLANA_RPC_URL, escrow wallet $(field escrow.address)"

echo "demo: starting x402r serve (private PostgreSQL and Redis under $X402R_HOME)"
PORT=0 BIND_ADDRESS=127.0.0.1 LOG_LEVEL="${LOG_LEVEL:-warn}" "$BIN" serve >"$SERVE_LOG" 2>&1 &
SERVE=$!
for _ in $(seq 1 1200); do
  grep -q "listening on" "$SERVE_LOG" && break
  kill -0 "$SERVE" 2>/dev/null || { cat "$SERVE_LOG" >&2; echo "demo: x402r serve failed to start" >&2; exit 1; }
  sleep 0.1
done
grep -q "listening on" "$SERVE_LOG" || { cat "$SERVE_LOG" >&2; echo "demo: x402r serve did not start" >&2; exit 1; }
API="http://127.0.0.1:$(grep -o 'listening on [0-9.]*:[0-9]*' "$SERVE_LOG" | head -1 | sed 's/.*://')"

# the key is made against serve's private PostgreSQL (not a second private server)
KEY="$(DATABASE_URL="postgresql:///x402r?host=$X402R_HOME/run&user=postgres" "$BIN" keys create --user demo)"
api() { # METHOD PATH [JSON] -> body on stdout; fails unless 2xx
  local out code data=()
  [ $# -ge 3 ] && data=(--data "$3")
  out="$(curl -sS -X "$1" -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
         "${data[@]}" -w '\n%{http_code}' "$API$2")"
  code="${out##*$'\n'}"
  out="${out%$'\n'*}"
  case "$code" in 2??) printf '%s\n' "$out" ;; *) echo "demo: $1 $2 → $code $out" >&2; return 1 ;; esac
}
api POST /escrow/demo/create "{\"userWallet\":\"$USER_WALLET\"}" >/dev/null
DEPOSIT="${DEMO_DEPOSIT:-2}"
SIG="$(node examples/marketplace/deposit.mjs --state "$MARKET" --from user1 --amount "$DEPOSIT")"
echo "demo: deposited $DEPOSIT USDC from user1 ($USER_WALLET): tx $SIG"
api POST /escrow/demo/deposit "{\"signature\":\"$SIG\"}" >/dev/null
kill -TERM "$SERVE"
wait "$SERVE" 2>/dev/null || true
SERVE=""

echo "demo: x402r run --user demo --yes \"$TASK\""
echo
rc=0
"$BIN" run --user demo --yes "$TASK" || rc=$?
exit "$rc"
