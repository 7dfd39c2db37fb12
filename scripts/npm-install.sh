#!/usr/bin/env bash
# scripts/npm-install.sh — install the Node dependencies of the integration tests (tests/) and
# of the local x402 marketplace (examples/marketplace/) and of the BullMQ benchmark peer
# (bench/throughput/), or of the folders given as arguments.
#
# Runs `npm ci` (or `npm install` when there is no package-lock.json) in each folder, but only when
# its node_modules is missing or package.json / package-lock.json is newer than it. Quiet:
# prints nothing on success, npm's output on failure. Needs the npm registry only when something
# must actually be installed. Install scripts are not needed (ws has none).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -eq 0 ]; then set -- tests examples/marketplace bench/throughput; fi
for sub in "$@"; do
(
dir="$root/$sub"
cd "$dir"

stamp=node_modules/.package-lock.json   # written by npm at the end of every install
need=0
if [ ! -d node_modules ] || [ ! -f "$stamp" ]; then
    need=1
elif [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; then
    need=1
elif [ package.json -nt "$stamp" ]; then
    need=1
fi
[ "$need" -eq 1 ] || exit 0
echo "npm-install: installing $sub (npm ci)" >&2

command -v npm >/dev/null || { echo "npm-install: npm not found" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -f package-lock.json ]; then
    cmd=(npm ci)
else
    cmd=(npm install)
fi
if ! "${cmd[@]}" --no-audit --no-fund --loglevel=error --ignore-scripts >"$log" 2>&1; then
    cat "$log" >&2
    echo "npm-install: '${cmd[*]}' failed in $dir" >&2
    exit 1
fi
# npm ci recreates node_modules; make sure the stamp is newer than the lock file
touch "$stamp" 2>/dev/null || true
)
done
