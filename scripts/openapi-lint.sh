#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# openapi-lint.sh BIN — lints the OpenAPI document the binary serves with Redocly CLI (a
# third-party validator, pinned), installed from the npm registry into build/tools on first
# use. Errors fail; warnings are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/emporium}
tools=build/tools
version=2.77.0
if ! command -v npm >/dev/null; then
  echo "openapi-lint: npm is not installed; skipped" >&2
  exit 0
fi
if [ ! -x "$tools/node_modules/.bin/redocly" ]; then
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" "@redocly/cli@$version" >/dev/null
fi
"$bin" openapi > "$tools/openapi.json"
set +e
out=$(REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
  "$tools/node_modules/.bin/redocly" lint "$tools/openapi.json" --format=summary 2>&1)
rc=$?
set -e
# Drop the runtime's boxed deprecation banner; keep the findings.
printf '%s\n' "$out" | grep -v -e '║' -e '╔' -e '╚' -e '^$' || true
exit $rc
