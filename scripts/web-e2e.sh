#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# web-e2e.sh BIN — the storefront and back office in a real browser: installs the pinned
# playwright-core and axe-core (tests/e2e/package-lock.json) into build/e2e-tools once, then
# runs tests/e2e/*.test.mjs against BIN, which each suite starts itself on a free port with
# a fresh data dir. The browser is Debian's /usr/bin/chromium (scripts/bootstrap.sh test);
# nothing downloads one. Screenshots (failures, and the pages the journeys pass through) go
# to build/e2e-screenshots. Exits 3 when npm or Chromium is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/emporium}
tools=build/e2e-tools
command -v npm >/dev/null || { echo "web-e2e: npm is not installed" >&2; exit 3; }
[ -x "${EMPORIUM_CHROMIUM:-/usr/bin/chromium}" ] || { echo "web-e2e: ${EMPORIUM_CHROMIUM:-/usr/bin/chromium} is not installed" >&2; exit 3; }
if ! cmp -s tests/e2e/package-lock.json "$tools/package-lock.json" || [ ! -d "$tools/node_modules/playwright-core" ]; then
  mkdir -p "$tools"
  cp tests/e2e/package.json tests/e2e/package-lock.json "$tools/"
  echo "web-e2e: installing playwright-core and axe-core into $tools" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund --prefix "$tools" >/dev/null
fi
rm -rf build/e2e-screenshots
mkdir -p build/e2e-screenshots
EMPORIUM_BIN="$bin" E2E_TOOLS="$tools" E2E_SHOTS=build/e2e-screenshots \
  node --test --test-concurrency=1 tests/e2e/
