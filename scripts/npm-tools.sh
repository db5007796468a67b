#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# npm-tools.sh DIR — installs the pinned third-party checkers the tests use (Redocly CLI for
# the OpenAPI lint, Stoplight Prism for the live contract test) from the npm registry into
# DIR/node_modules, once. Exits 3 when npm is not available.
#   npm-tools.sh DIR deploy — the validators of deploy/ (kubernetes-models & co.) into
#   DIR/deploy, exactly as tests/deploy/package-lock.json pins them (npm ci).
set -euo pipefail
dir=${1:-build/tools}
if [ "${2:-}" = deploy ]; then
  command -v npm >/dev/null || { echo "npm-tools: npm is not installed" >&2; exit 3; }
  src=$(cd "$(dirname "$0")/.." && pwd)/tests/deploy
  if ! cmp -s "$src/package-lock.json" "$dir/deploy/package-lock.json" || [ ! -d "$dir/deploy/node_modules" ]; then
    rm -rf "$dir/deploy"; mkdir -p "$dir/deploy"
    cp "$src/package.json" "$src/package-lock.json" "$dir/deploy/"
    echo "npm-tools: installing the deploy validators (tests/deploy/package-lock.json) into $dir/deploy" >&2
    (cd "$dir/deploy" && npm ci --silent --no-audit --no-fund --engine-strict=false >/dev/null 2>&1) ||
      { rm -rf "$dir/deploy"; echo "npm-tools: npm ci failed" >&2; exit 1; }
  fi
  exit 0
fi
pkgs=("@redocly/cli@2.77.0" "@stoplight/prism-cli@5.14.2")
command -v npm >/dev/null || { echo "npm-tools: npm is not installed" >&2; exit 3; }
if [ -x "$dir/node_modules/.bin/redocly" ] && [ -x "$dir/node_modules/.bin/prism" ]; then
  exit 0
fi
mkdir -p "$dir"
echo "npm-tools: installing ${pkgs[*]} into $dir" >&2
npm install --silent --no-audit --no-fund --prefix "$dir" "${pkgs[@]}" >/dev/null
