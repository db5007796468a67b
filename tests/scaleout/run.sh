#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh — the scale-out step of `make test`: `scripts/scaleout.sh up` in a scratch directory,
# the journey and fault test through the gateway (journey.sh), the faults under load
# (faults.sh: a frozen payment service, PgBouncer restarted), then everything stopped again
# whatever happened. Ports: EMP_TEST_SCALEOUT_PORT (default 25500) and the 99 above it.
# Usage: tests/scaleout/run.sh [BIN]   (default build/emporium)
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
tests/scaleout/journey.sh "$SCALEOUT_DIR/env"
tests/scaleout/trace.sh "$SCALEOUT_DIR/env"
tests/scaleout/faults.sh "$SCALEOUT_DIR/env"
echo "scaleout: done in $(($(date +%s) - start)) s"
