#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# chaos.sh — what `make chaos` does: the full operations drills of tests/ops (issue 17) against
# real servers: the crash loop (20 rounds of kill -9 under load, SQLite and PostgreSQL), the
# rolling restart behind nginx, the upgrade and rollback with a schema change, blue-green and
# canary. `make test` runs short versions of the same programs (scripts/test.sh, "operations
# drills"). Each drill prints its figures and its error budget ("ops budget:" lines).
#
#   scripts/chaos.sh              build (build/), start PostgreSQL + PgBouncer + Redis, run
#   CHAOS_ROUNDS=50 scripts/chaos.sh   more crash rounds (default 20)
#   CHAOS_BUILD=build-asan scripts/chaos.sh   the sanitizer build instead
# The servers use EMP_TEST_PG_PORT / EMP_TEST_BOUNCER_PORT / EMP_TEST_REDIS_PORT like
# scripts/test-servers.sh. Everything started here is stopped on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CHAOS_BUILD:-build}
servers=$(mktemp -d /tmp/emporium-chaos-servers.XXXXXX)
cleanup() { scripts/test-servers.sh stop "$servers" >/dev/null 2>&1 || true; }
# Interrupted (Ctrl-C, kill): stop, and let the EXIT trap clean up. A trap that only cleaned
# up would let the script go on to its next step with the servers gone.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "== starting test servers in $servers"
scripts/test-servers.sh start "$servers"
while read -r kv; do export "${kv?}"; done < <(scripts/test-servers.sh env "$servers")
san=OFF
[ "$dir" = build-asan ] && san=ON
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMP_SANITIZE="$san" >/dev/null
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)"
if prev_bin=$(scripts/ops-prev.sh); then export EMP_UPGRADE_PREV_BIN=$prev_bin
else echo "upgrade drill: no previous build (the reason is above); test_upgrade skips"; fi
export EMP_CHAOS_ROUNDS=${CHAOS_ROUNDS:-20}
export EMP_CHAOS_FULL=1
echo "== operations drills, full (crash rounds $EMP_CHAOS_ROUNDS)"
start=$(date +%s)
log=$(mktemp /tmp/emporium-chaos.XXXXXX)
status=0
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$dir" -L ops --output-on-failure --verbose --timeout 1800 >"$log" 2>&1 ||
  status=1
# The figures of every drill, then ctest's summary (the whole output is kept on failure).
grep -E '^[0-9]+: (crash loop|rolling|upgrade|bluegreen|canary|ops budget).*(rounds|served|figures|budget)' "$log" || true
grep -E 'tests passed|Failed|Not Run|\*\*\*' "$log" || true
if [ $status -eq 0 ]; then rm -f "$log"; else echo "the whole output: $log"; fi
echo "== make chaos finished in $(( $(date +%s) - start )) s, status $status"
exit $status
