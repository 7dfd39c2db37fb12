#!/usr/bin/env bash
# scripts/setup.sh — installs every Debian package x402r needs to build, test and run the demo,
# skipping what is already present. Idempotent; runs as root (CI does) or through sudo.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libuv1-dev libh2o-dev libwslay-dev libhiredis-dev libpq-dev libcurl4-openssl-dev
  libluajit2-5.1-dev lua-cjson-dev libsodium-dev libjansson-dev
  postgresql postgresql-contrib redis-server
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js is used only by the example services, the x402 marketplace and the integration tests.
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all packages present"
fi
# Debian starts the system-wide servers on install; x402r runs its own private ones and
# the system ones are left alone (they listen on the default ports, which we never use).
