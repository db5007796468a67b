#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh — the scale-out step of `make test`: `scripts/scaleout.sh up` in a scratch directory,
# the acceptance suite through the gateway (tests/contract/contract.mjs, the same suite
# `make test` runs against embedded `serve`, with Prism validating every answer), the journey
# and fault test through the gateway (journey.sh), tracing (trace.sh), the faults under load
# (faults.sh: a frozen payment service, PgBouncer restarted), then everything stopped again
# whatever happened. Ports: EMP_TEST_SCALEOUT_PORT (default 25500) and the 99 above it.
# Usage: tests/scaleout/run.sh [BIN]   (default build/emporium; Prism from build/tools,
#        scripts/npm-tools.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
export SCALEOUT_BIN=${1:-build/emporium}
export SCALEOUT_PORT=${EMP_TEST_SCALEOUT_PORT:-25500}
export SCALEOUT_DIR=${SCALEOUT_DIR:-$(pwd)/build/scaleout-test}
# The fault drills wait for the order recovery sweep: run it often.
export SCALEOUT_ORDER_SWEEP_SECONDS=${SCALEOUT_ORDER_SWEEP_SECONDS:-3}
trap 'scripts/scaleout.sh down >/dev/null 2>&1 || true' EXIT
start=$(date +%s)
if ! scripts/scaleout.sh up >"${SCALEOUT_DIR%/}.up.log" 2>&1; then
    echo "scaleout: up failed:" >&2
    cat "${SCALEOUT_DIR%/}.up.log" >&2
    exit 1
fi
echo "scaleout: up in $(($(date +%s) - start)) s"
# The acceptance suite through the gateway, as an operator made with the CLI on the
# topology's databases (the way an operator makes the first admin).
tools=${SCALEOUT_TOOLS:-build/tools}
scripts/npm-tools.sh "$tools" || { echo "scaleout: npm-tools.sh failed (rc $?)" >&2; exit 1; }
umask 077
head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SCALEOUT_DIR/admin-password"
umask 022
admin="ops-$(date +%s%N)@example.com"
EMPORIUM_DATABASE_URL=$(grep '^EMPORIUM_DATABASE_URL=' "$SCALEOUT_DIR/env" | cut -d= -f2-) \
    "$SCALEOUT_BIN" user create --email "$admin" --password-file "$SCALEOUT_DIR/admin-password" \
    --role admin --data-dir "$SCALEOUT_DIR/data/cli" >"$SCALEOUT_DIR/logs/cli.log" 2>&1 ||
    { echo "scaleout: creating the operator failed:" >&2; cat "$SCALEOUT_DIR/logs/cli.log" >&2; exit 1; }
t=$(date +%s)
node tests/contract/contract.mjs "$SCALEOUT_BIN" "$tools/node_modules/.bin/prism" \
    --base-url "$(grep '^GATEWAY_URL=' "$SCALEOUT_DIR/env" | cut -d= -f2-)" \
    --admin-email "$admin" --admin-password-file "$SCALEOUT_DIR/admin-password"
echo "scaleout: acceptance suite through the gateway in $(($(date +%s) - t)) s"
tests/scaleout/journey.sh "$SCALEOUT_DIR/env"
tests/scaleout/trace.sh "$SCALEOUT_DIR/env"
tests/scaleout/faults.sh "$SCALEOUT_DIR/env"
echo "scaleout: done in $(($(date +%s) - start)) s"
