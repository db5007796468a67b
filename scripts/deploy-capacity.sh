#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# deploy-capacity.sh [BENCH_OUTPUT] — capacity planning for the Kubernetes deployment from a
# `make bench` run (docs/operations.md, "Capacity planning and cost").
#
# Reads the seed-mix row of a bench table (the seed's request mix: product pages, search,
# cart, checkout, order status): the server CPU per 1,000 requests ("cpu s/1k"). Without a
# file it runs the bench for that row first (BENCH_SCENARIOS=seed-mix bench/run.sh; BACKEND
# and the other BENCH_* settings pass through). Then, for the seed's peak:
#   CPU at peak = peak req/s x CPU per request
#   pods        = CPU at peak / (500m request x 70 % HPA target), at least the HPA minimums
#   cost        = the pods' requested CPU at the seed's own unit price (its "100-150 CPU" of
#                 microservices for $2,000-3,000/month: $20 per CPU-month) + the seed's fixed
#                 lines (cluster, gateway, CDN, Redis, PostgreSQL, MongoDB, Kafka, monitoring)
#   per user    = cost / 50,000 users, beside the seed's $0.19.
# Settings: PEAK_RPS (5000, the seed's top), USERS (50000), CPU_MONTH_USD (20).
set -euo pipefail
cd "$(dirname "$0")/.."
peak=${PEAK_RPS:-5000}
users=${USERS:-50000}
cpu_usd=${CPU_MONTH_USD:-20}
out=${1:-}
if [ -z "$out" ]; then
  out=$(mktemp /tmp/emporium-capacity.XXXXXX)
  trap 'rm -f "$out"' EXIT
  echo "deploy-capacity: running the bench for the seed-mix row (BACKEND=${BACKEND:-sqlite})" >&2
  BENCH_SCENARIOS=seed-mix bench/run.sh >"$out"
fi
# The row: name, req/s, …; from the end: [verdict words] cpu-s/1k vs-health.
row=$(awk '$1 == "seed-mix" && $2 ~ /^[0-9]+$/' "$out" | tail -1)
[ -n "$row" ] || { echo "deploy-capacity: no seed-mix row in $out" >&2; exit 1; }
read -r rps cpu_1k < <(echo "$row" | awk '{
  n = 0; for (i = NF; i > 2 && n < 1; i--) if ($i ~ /^[0-9]+\.[0-9]+$/) { cpu = $i; n++ }
  print $2, cpu }')
[ -n "${cpu_1k:-}" ] || { echo "deploy-capacity: no cpu s/1k in: $row" >&2; exit 1; }
awk -v rps="$rps" -v c="$cpu_1k" -v peak="$peak" -v users="$users" -v usd="$cpu_usd" 'BEGIN {
  ms = c;                              # CPU ms per request = CPU s per 1,000 requests
  cores = peak * ms / 1000;
  per_pod = 0.5 * 0.70;                # a pod scales out past 70 % of its 500m request
  pods = cores / per_pod; if (pods != int(pods)) pods = int(pods) + 1;
  min_pods = 3 + 6 + 6 + 4 + 3 + 3 + 3 + 4 + 3 * 2;   # HPA minimums + two pods per worker group
  if (pods < min_pods) pods_run = min_pods; else pods_run = pods;
  app_usd = pods_run * 0.5 * usd;
  fixed = 500 + 200 + 100 + 720 + 3120 + 1080 + 560 + 300;  # the seed lines except microservices
  seed_lo = 8580 / users; seed_hi = 9580 / users;
  printf "bench seed-mix: %d req/s on this machine, %.3f CPU-seconds per 1,000 requests\n", rps, c;
  printf "seed peak %d req/s -> %.2f cores of emporium CPU\n", peak, cores;
  printf "pods at the 70 %% HPA target (500m requests): %d; the HPA minimums are %d, so %d pods run\n", pods, min_pods, pods_run;
  printf "pod CPU requested: %.1f cores -> $%.0f/month at $%d per CPU-month\n", pods_run * 0.5, app_usd, usd;
  printf "with the seed fixed lines ($%d): $%.0f/month = $%.3f per user per month (seed: $%.2f-%.2f, target < $0.20)\n", fixed, fixed + app_usd, (fixed + app_usd) / users, seed_lo, seed_hi;
}'
