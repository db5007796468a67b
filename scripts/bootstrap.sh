#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bootstrap.sh — install the Debian packages Emporium needs, only when missing.
#   scripts/bootstrap.sh build   libraries and tools to build and run (make run)
#   scripts/bootstrap.sh test    + servers and checkers the tests start (make test)
set -euo pipefail
what=${1:-build}

build_pkgs=(gcc make cmake pkg-config curl ca-certificates
  libmicrohttpd-dev libjansson-dev libsodium-dev libsqlite3-dev sqlite3
  libpq-dev libcurl4-openssl-dev libhiredis-dev librdkafka-dev libcmocka-dev
  libmongoc-dev libbson-dev brotli)
test_pkgs=(postgresql-15 postgresql-client-15 pgbouncer redis-server redis-tools
  prometheus wrk kcat python3-aiosmtpd clang libclang-rt-14-dev clang-format chromium jq
  nginx buildah debootstrap yamllint)

pkgs=("${build_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The contract tests run third-party checkers from the npm registry: Node.js and npm from
# Debian unless some Node.js with npm is already installed.
if [ "$what" = test ] && ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
# deploy/ is rendered with `kubectl kustomize`: the image's kubectl, else Debian's
# kubernetes-client (scripts/deploy-validate.sh needs kustomize v5; an older one says so).
if [ "$what" = test ] && ! command -v kubectl >/dev/null; then
  missing+=(kubernetes-client)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bootstrap: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
