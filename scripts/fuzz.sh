#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fuzz.sh — build the libFuzzer targets of tests/fuzz (clang, ASan + UBSan) and run each one.
#   scripts/fuzz.sh [name…]       every target (or the named ones, e.g. body_cart)
# Settings (environment):
#   FUZZ_SECONDS   seconds per target (default 60; `make test` uses a short run)
#   FUZZ_BUILD     build directory (default build-fuzz)
#   FUZZ_CORPUS    where new inputs go: "tmp" (default, thrown away) or "keep" (kept in
#                  FUZZ_BUILD/corpus/<name>, reused by the next run)
#   FUZZ_JOBS      targets run side by side (default: the number of cores)
# Each target starts from its committed seed corpus tests/fuzz/corpus/<name>/ (never written
# to). A crash, leak, sanitizer report or broken API promise stops that target; the input is
# saved under FUZZ_BUILD/artifacts/<name>/ and the run fails. Prints executions per target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
dir=${FUZZ_BUILD:-build-fuzz}
jobs=$(nproc 2>/dev/null || echo 2)

if ! command -v clang >/dev/null; then
  echo "fuzz.sh: clang is not installed (scripts/bootstrap.sh test installs it)" >&2
  exit 1
fi
# The core is built with -Wno-error here (CMakeLists.txt, EMP_FUZZ): clang warns about other
# things than gcc, and the gcc builds of `make test` already hold every file to -Werror.
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEMP_SANITIZE=ON -DEMP_FUZZ=ON -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
cmake --build "$dir" -j "$jobs" --target fuzz_all

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for f in tests/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    names+=("${n#fuzz_}")
  done
fi

tmp=$(mktemp -d /tmp/emporium-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# One target: its summary line into $tmp/$n.result, 1 there when it failed.
fuzz_one() {
  local n=$1 bin="$dir/tests/fuzz/fuzz_$1" seeds="tests/fuzz/corpus/$1" work t0 t1 rc=0 execs rate result
  if [ ! -x "$bin" ]; then
    echo "fuzz.sh: no target $n" >&2
    printf '%-16s %12s %10s %8s  %s\n' "$n" - - - "FAILED (no target)" > "$tmp/$n.result"
    return 1
  fi
  if [ "${FUZZ_CORPUS:-tmp}" = keep ]; then
    work="$dir/corpus/$n"
  else
    work="$tmp/corpus/$n"
  fi
  mkdir -p "$work" "$dir/artifacts/$n"
  echo "== fuzz $n (${secs} s)"
  t0=$(date +%s)
  # detect_leaks: every input that leaks fails; -timeout: one input may take at most 30 s.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$dir/artifacts/$n/" "$work" "$seeds" > "$tmp/$n.log" 2>&1 || rc=$?
  t1=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$n.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$tmp/$n.log" | tail -1)
  if [ $rc -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc; input in $dir/artifacts/$n/)"
    # one block on stderr (targets finish side by side)
    { echo "---- fuzz_$n log (last 80 lines)"; tail -n 80 "$tmp/$n.log"; } > "$tmp/$n.tail"
    cat "$tmp/$n.tail" >&2
  fi
  printf '%-16s %12s %10s %8s  %s\n' "$n" "${execs:-?}" "${rate:-?}" $((t1 - t0)) "$result" > "$tmp/$n.result"
  [ $rc -eq 0 ]
}
# The targets run side by side, one per core (FUZZ_JOBS overrides): each is single-threaded,
# and each still gets its FUZZ_SECONDS of wall time on a core of its own.
par=${FUZZ_JOBS:-$jobs}
status=0
running=0
for n in "${names[@]}"; do
  if [ "$running" -ge "$par" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  fuzz_one "$n" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
echo "== fuzz summary"
printf '%-16s %12s %10s %8s  %s\n' target executions exec/s seconds result
for n in "${names[@]}"; do cat "$tmp/$n.result"; done
exit $status
