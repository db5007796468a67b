#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# openapi-lint.sh BIN — lints the OpenAPI document the binary serves with Redocly CLI (a
# third-party validator, pinned), installed from the npm registry into build/tools on first
# use. Errors fail; warnings are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/emporium}
tools=build/tools
rc=0
scripts/npm-tools.sh "$tools" || rc=$?
if [ $rc -eq 3 ]; then
  echo "openapi-lint: skipped (no npm)" >&2
  exit 0
fi
[ $rc -eq 0 ] || exit $rc
"$bin" openapi > "$tools/openapi.json"
set +e
out=$(REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
  "$tools/node_modules/.bin/redocly" lint "$tools/openapi.json" --format=summary 2>&1)
rc=$?
set -e
# Drop the runtime's boxed deprecation banner; keep the findings.
printf '%s\n' "$out" | grep -v -e '║' -e '╔' -e '╚' -e '^$' || true
exit $rc
