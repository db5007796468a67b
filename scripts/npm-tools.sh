#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# npm-tools.sh DIR — installs the pinned third-party checkers the tests use (Redocly CLI for
# the OpenAPI lint, Stoplight Prism for the live contract test) from the npm registry into
# DIR/node_modules, once. Exits 3 when npm is not available.
set -euo pipefail
dir=${1:-build/tools}
pkgs=("@redocly/cli@2.77.0" "@stoplight/prism-cli@5.14.2")
command -v npm >/dev/null || { echo "npm-tools: npm is not installed" >&2; exit 3; }
if [ -x "$dir/node_modules/.bin/redocly" ] && [ -x "$dir/node_modules/.bin/prism" ]; then
  exit 0
fi
mkdir -p "$dir"
echo "npm-tools: installing ${pkgs[*]} into $dir" >&2
npm install --silent --no-audit --no-fund --prefix "$dir" "${pkgs[@]}" >/dev/null
