#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ops-prev.sh — the previous build for the upgrade drill (tests/ops/test_upgrade.c): checks out
# the recorded commit in a git worktree under build/ops-prev/src and builds its `emporium`
# there once (later runs reuse it). Prints the binary's path on stdout.
#
# The recorded commit is 497d411 (the parent of 743369e, which added orders migration 3:
# idempotency_keys.outcome_err), so the upgrade crosses real schema changes: expand
# migrations of analytics, orders_0..5, products, recommendations, notifications and
# events, plus the schema_compat table. Change PREV_COMMIT when a release is cut.
#
# Exit 3 (and the reason on stderr) when it cannot: no git history in this clone (a shallow
# or exported tree), or the build failed. The drill then skips and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PREV_COMMIT=${EMP_UPGRADE_PREV_COMMIT:-497d411aaedbf61651494a2f141e9636b2d95e1f}
dir=$PWD/build/ops-prev
bin=$dir/src/build/emporium
if [ -x "$bin" ] && [ "$(cat "$dir/commit" 2>/dev/null)" = "$PREV_COMMIT" ]; then
  echo "$bin"; exit 0
fi
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "ops-prev: not a git clone: the previous version cannot be checked out" >&2; exit 3
fi
if ! git cat-file -e "$PREV_COMMIT^{commit}" 2>/dev/null; then
  echo "ops-prev: commit $PREV_COMMIT is not in this clone (shallow?): git fetch --unshallow" >&2
  exit 3
fi
mkdir -p "$dir"
if [ -d "$dir/src" ]; then
  git worktree remove --force "$dir/src" >/dev/null 2>&1 || rm -rf "$dir/src"
  git worktree prune
fi
git worktree add --detach "$dir/src" "$PREV_COMMIT" >&2
log=$dir/build.log
if ! (cmake -S "$dir/src" -B "$dir/src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
      cmake --build "$dir/src/build" -j "$(nproc 2>/dev/null || echo 2)" --target emporium) >"$log" 2>&1; then
  echo "ops-prev: the build of $PREV_COMMIT failed (see $log)" >&2; exit 3
fi
echo "$PREV_COMMIT" >"$dir/commit"
echo "$bin"
