#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test.sh — what `make test` does: start the real servers the tests need, build twice
# (normal, and AddressSanitizer + UndefinedBehaviorSanitizer), run every test in both builds
# against SQLite and PostgreSQL (through PgBouncer), stop what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
jobs=$(nproc 2>/dev/null || echo 2)
servers=$(mktemp -d /tmp/emporium-test-servers.XXXXXX)
# Every server log of the run is kept here (tests/support/harness.c) and scanned for secrets
# at the end (scripts/log-hygiene.sh); kept after a failed scan.
logs=$(mktemp -d /tmp/emporium-test-logs.XXXXXX)
export EMPORIUM_TEST_LOG_DIR=$logs
# libmongoc (linked in for the MongoDB sink) makes a shared-memory counter segment
# /dev/shm/mongoc-<pid> in every process it loads into, before main(); one killed with -9
# leaves it behind, and a later process with the same pid then warns on stderr ("Falling
# back to malloc for counters") — noise the CLI tests would see. The counters only serve
# MongoDB's debugging tools: off for every process of the run.
export MONGOC_DISABLE_SHM=1
keep_logs=0
# The output of the current step run through `logged` (its tail goes into the summary when
# the step fails).
step_log=$(mktemp /tmp/emporium-test-step.XXXXXX)
image_pid=
cleanup() {
  if [ -n "$image_pid" ]; then kill -TERM "$image_pid" 2>/dev/null || true; fi
  scripts/test-servers.sh stop "$servers" >/dev/null 2>&1 || true
  [ $keep_logs -eq 1 ] || rm -rf "$logs"
  rm -f "$step_log"
}
# Interrupted (Ctrl-C, kill): stop, and let the EXIT trap clean up. A trap that only cleaned
# up would let the script go on to its next step with the servers gone.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Where the time goes: each step is a phase; starting the next one prints the previous one's
# wall time ("== phase NAME took N s"), and the end prints them all again, slowest first.
phase_name=
phase_start=
phase_times=
failed=
logged() {
  "$@" 2>&1 | tee "$step_log"
}
# A failed step: the run goes on, and the end names it again (after the timings, so the last
# lines of a long log say what failed, and why).
fail() {
  status=1
  failed+="  $phase_name"$'\n'
  if [ -n "${1:-}" ] && [ -s "$1/Testing/Temporary/LastTestsFailed.log" ]; then
    # after a ctest run: the tests it failed (its own list)
    failed+=$(sed 's/^/    /' "$1/Testing/Temporary/LastTestsFailed.log")$'\n'
  elif [ -s "$step_log" ]; then
    # any other step: the last lines it printed
    failed+=$(tail -n 12 "$step_log" | cut -c1-200 | sed 's/^/    | /')$'\n'
  fi
}
phase() {
  local now
  now=$(date +%s)
  if [ -n "$phase_name" ]; then
    echo "== phase $phase_name took $((now - phase_start)) s"
    phase_times+="$(printf '%6d s  %s' $((now - phase_start)) "$phase_name")"$'\n'
  fi
  phase_name=$1
  phase_start=$now
  : >"$step_log"
  if [ -n "$1" ]; then echo "== $1"; fi
}

phase "starting test servers in $servers"
# Autovacuum off: it would visit each of the thousands of databases the suites create.
EMP_TEST_PG_AUTOVACUUM=off scripts/test-servers.sh start "$servers"
# one VAR=value per line (PostgreSQL, Redis)
while read -r kv; do export "${kv?}"; done < <(scripts/test-servers.sh env "$servers")


status=0
for variant in build:OFF build-asan:ON; do
  dir=${variant%%:*}
  san=${variant##*:}
  phase "$dir: build (sanitizers $san)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMP_SANITIZE="$san" >/dev/null
  cmake --build "$dir" -j "$jobs"
  # The drills (label ops) run later; the Redis variants labelled redisx (CMakeLists.txt)
  # in the normal build only.
  exclude=ops
  [ "$san" = OFF ] || exclude='ops|redisx'
  phase "$dir: ctest -LE '$exclude'"
  # ASan: fail on leaks at exit; UBSan: abort on the first report (set at compile time).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" -j "$jobs" -LE "$exclude" --output-on-failure --timeout 600 || fail "$dir"
done
# Layering rules: only *_http.c files see HTTP, no service includes another's internals.
phase "layering check"; scripts/check-layering.sh || fail
# The tree stays as .clang-format says (a tool checks style, not reviewers).
phase "format check"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror || fail
phase "docs check"; logged scripts/check-docs.sh --run build/emporium || fail   # links, settings, error codes, api.md examples
# A third-party validator on the OpenAPI document (Redocly CLI, from the npm registry).
phase "OpenAPI lint"
logged scripts/openapi-lint.sh build/emporium || fail

# The live server against its own document, through Stoplight Prism's validating proxy.
phase "contract test (Prism proxy)"
rc=0
scripts/npm-tools.sh build/tools || rc=$?
if [ $rc -eq 0 ]; then
  logged node tests/contract/contract.mjs build/emporium build/tools/node_modules/.bin/prism || fail
else
  # bootstrap.sh installed npm: without it (rc 3) the run is not complete, so it fails.
  fail
fi

# The storefront and back office in Debian's Chromium (playwright-core + axe-core, pinned).
phase "browser tests (Chromium)"
rc=0
logged scripts/web-e2e.sh build/emporium || rc=$?
# bootstrap.sh installed npm and Chromium: a missing one (rc 3) fails the run too.
[ $rc -eq 0 ] || fail

# The topology in miniature (scripts/scaleout.sh: one process per service group behind nginx,
# calls between them over HTTP): the shopper journey and the inventory-down fault through
# the gateway (tests/scaleout/).
phase "scale-out journey through the gateway"
logged tests/scaleout/run.sh build/emporium || fail

# The benchmark harness itself (not its figures): a 2-second run of every scenario.
phase "bench harness smoke run"
BENCH_SMOKE=1 EMPORIUM_BIN=build/emporium logged bench/run.sh || fail
# Every libFuzzer target for a few seconds from its seed corpus (which holds the inputs of
# past findings); `make fuzz` runs them longer.
phase "fuzz smoke run"
FUZZ_SECONDS=${FUZZ_TEST_SECONDS:-5} logged scripts/fuzz.sh || fail
# The operations drills (tests/ops, label "ops"), short versions, one at a time so the suites'
# load does not skew them: crash loop (5 rounds of kill -9 under load), rolling restart behind
# nginx, upgrade/rollback; SQLite and PostgreSQL, and once under the sanitizers with fewer
# rounds. `make chaos` runs the full ones and the blue-green/canary drill (kept out of here
# for the suite's time: it flips nginx configs under load for ~2 minutes).
phase "operations drills (short; make chaos runs the full ones)"
# The previous build for the upgrade drill (built once, then reused; scripts/ops-prev.sh).
if prev_bin=$(scripts/ops-prev.sh); then export EMP_UPGRADE_PREV_BIN=$prev_bin
else echo "upgrade drill: no previous build (the reason is above); test_upgrade skips"; fi
phase "operations drills: build (SQLite and PostgreSQL)"
ctest --test-dir build -L ops -E bluegreen --output-on-failure --timeout 600 || fail build
phase "operations drills: build-asan (SQLite)"
EMP_CHAOS_ROUNDS=2 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -L ops -E '_pg$' --output-on-failure --timeout 600 || fail build-asan
# Every file under deploy/: kustomize renders, schemas, the seed's numbers, yamllint,
# promtool, nginx -t, and broken inputs refused (scripts/deploy-validate.sh).
phase "deploy/ validation"
logged scripts/deploy-validate.sh build/emporium || fail
# The container image (deploy/Dockerfile, built and run with buildah; scripts/deploy-image.sh):
# a few minutes on a fresh machine, less once its cache (/var/cache/emporium/image) is warm.
# It runs after the suites, not beside them: its compile on the 2 cores slowed the
# PostgreSQL suites past their timeouts. EMPORIUM_TEST_IMAGE=off leaves it out.
phase "container image (buildah)"
image_log=$(mktemp /tmp/emporium-test-image.XXXXXX)
if [ "${EMPORIUM_TEST_IMAGE:-on}" = off ]; then
  echo "SKIPPED: EMPORIUM_TEST_IMAGE=off"
else
  rc=0
  scripts/deploy-image.sh >"$image_log" 2>&1 &
  image_pid=$!
  wait "$image_pid" || rc=$?
  image_pid=
  cat "$image_log" | tee "$step_log"
  case $rc in
    0) ;;
    3) echo "SKIPPED: buildah cannot run here (the reason is above)" ;;
    *) fail ;;
  esac
fi
rm -f "$image_log"
phase "log hygiene (server logs of the whole run)"
if ! scripts/log-hygiene.sh "$logs"; then
  keep_logs=1
  echo "the logs are kept in $logs" >&2
  fail
fi
phase ""
echo "== phases, slowest first:"
printf '%s' "$phase_times" | sort -rn
if [ -n "$failed" ]; then
  echo "== failed:"
  printf '%s' "$failed"
fi
echo "== make test finished in $(( $(date +%s) - start )) s, status $status"
exit $status
