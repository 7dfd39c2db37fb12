#!/usr/bin/env bash
# scripts/marketplace.sh — start / stop the local x402 marketplace (examples/marketplace).
#
#   scripts/marketplace.sh start DIR [index.mjs options: --port-base N --seed S --slot-ms MS ...]
#   scripts/marketplace.sh stop DIR
#   scripts/marketplace.sh status DIR
#
# start: installs examples/marketplace's Node dependencies (`npm ci`) when node_modules is
# missing, launches `node examples/marketplace/index.mjs --state DIR ...` in the background
# (log: DIR/marketplace.log, pid: DIR/marketplace.pid), waits until it prints
# "marketplace: ready DIR/marketplace.json" and prints that line. Starting a marketplace that is
# already running in DIR is a no-op. stop: SIGTERM, then SIGKILL after 5 s; idempotent.
# Env: MARKETPLACE_START_TIMEOUT (seconds, default 60).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
app="$root/examples/marketplace"

usage() { echo "usage: $0 start|stop|status DIR [options]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1; dir=$2; shift 2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pidfile="$dir/marketplace.pid"
log="$dir/marketplace.log"

alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$cmd" in
start)
    if alive; then
        echo "marketplace: ready $dir/marketplace.json"
        exit 0
    fi
    command -v node >/dev/null || { echo "marketplace: node not found" >&2; exit 1; }
    if [ ! -d "$app/node_modules" ]; then
        npmlog=$(mktemp)
        if ! (cd "$app" && npm ci --no-audit --no-fund --loglevel=error --ignore-scripts) >"$npmlog" 2>&1; then
            cat "$npmlog" >&2; rm -f "$npmlog"
            echo "marketplace: npm ci failed in $app" >&2
            exit 1
        fi
        rm -f "$npmlog"
    fi
    rm -f "$dir/marketplace.json"
    nohup node "$app/index.mjs" --state "$dir" "$@" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    timeout=${MARKETPLACE_START_TIMEOUT:-60}
    deadline=$((SECONDS + timeout))
    while [ $SECONDS -lt $deadline ]; do
        if grep -q '^marketplace: ready ' "$log" 2>/dev/null; then
            grep '^marketplace: ready ' "$log" | head -1 | sed 's/ (.*)$//'
            exit 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            rm -f "$pidfile"
            echo "marketplace: failed to start (log: $log)" >&2
            exit 1
        fi
        sleep 0.1
    done
    cat "$log" >&2
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "marketplace: not ready after ${timeout}s (log: $log)" >&2
    exit 1
    ;;
stop)
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    fi
    exit 0
    ;;
status)
    if alive; then echo "marketplace: running (pid $(cat "$pidfile"))"; exit 0; fi
    echo "marketplace: stopped"; exit 1
    ;;
*) usage ;;
esac
