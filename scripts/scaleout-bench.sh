#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scaleout-bench.sh — what a hop between services costs: the same requests against the
# running `make scaleout` (through the gateway; the order process calls product, inventory,
# payment and shipping over HTTP) and against one all-in-one `emporium serve` on the same
# PostgreSQL and Redis (in-process calls), with the figures side by side.
#
#   1. checkout latency: BENCH_CHECKOUTS sequential checkouts of a one-line cart (each makes
#      7 calls to other services in scale-out: product lookup, shipping quote, reserve,
#      authorize, capture, confirm, create shipment), p50 / p90 / mean;
#   2. guest add-to-cart under wrk (BENCH_SECONDS, BENCH_CONNECTIONS): one product lookup
#      per request, in-process or over HTTP;
#   3. the order processes' own histogram of their calls to other services
#      (emporium_upstream_request_seconds): the mean cost of one hop, by upstream.
# Needs `make scaleout` up (with SCALEOUT_RATE_LIMITS=off, or the limits throttle wrk).
# Usage: scripts/scaleout-bench.sh   (env: SCALEOUT_DIR, BENCH_CHECKOUTS=40, BENCH_SECONDS=10,
#        BENCH_CONNECTIONS=16)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${SCALEOUT_DIR:-$(pwd)/build/scaleout}
ENVF="$DIR/env"
[ -f "$ENVF" ] || { echo "scaleout-bench: no $ENVF: run make scaleout first" >&2; exit 2; }
N=${BENCH_CHECKOUTS:-40}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-16}
GW=$(grep '^GATEWAY_URL=' "$ENVF" | cut -d= -f2-)
B=${GW##*:}
BIN=${SCALEOUT_BIN:-build/emporium}
PG=$(grep '^EMPORIUM_DATABASE_URL=' "$ENVF" | cut -d= -f2-)
CLUSTER=$(grep '^EMPORIUM_REDIS_CLUSTER=' "$ENVF" | cut -d= -f2-)
BROKERS=$(grep '^EMPORIUM_KAFKA_BROKERS=' "$ENVF" | cut -d= -f2-)
EMB=http://127.0.0.1:$((B + 18))
TMP=$(mktemp -d)
trap '[ -f "$TMP/emb.pid" ] && kill "$(cat "$TMP/emb.pid")" 2>/dev/null; rm -rf "$TMP"' EXIT

# The all-in-one process: every service, the same databases, no *_URL (in-process calls).
EMPORIUM_DATABASE_URL=$PG EMPORIUM_REDIS_CLUSTER=$CLUSTER EMPORIUM_KAFKA_BROKERS=$BROKERS \
    EMPORIUM_RATE_LIMITS=off EMPORIUM_DEMO=off EMPORIUM_CONSUMERS=none EMPORIUM_ACCESS_LOG=off \
    EMPORIUM_DATA_DIR="$TMP/data" "$BIN" serve --listen "127.0.0.1:$((B + 18))" >"$TMP/emb.log" 2>&1 &
echo $! >"$TMP/emb.pid"
for _ in $(seq 1 600); do curl -fs -o /dev/null "$EMB/ready" && break; sleep 0.1; done
curl -fs -o /dev/null "$EMB/ready" || { echo "scaleout-bench: the all-in-one process did not start" >&2; cat "$TMP/emb.log" >&2; exit 1; }

J='Content-Type: application/json'
ORDER='{"shipping_address":{"name":"Bench","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"},"payment":{"card_number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"},"shipping_method":"standard"}'

user_token() { # base
    local e="bench-$(date +%s%N)@example.com"
    curl -fs -X POST "$1/api/v1/auth/register" -H "$J" \
        -d "{\"email\":\"$e\",\"password\":\"a good password 1\",\"name\":\"Bench\"}" | jq -r .token
}

checkouts() { # base rank -> one latency (s) per line (rank: which best-stocked product)
    local base=$1 tok pid i
    tok=$(user_token "$base")
    pid=$(curl -fs "$base/api/v1/products?limit=100" | jq -r "[.items[]] | sort_by(-.stock.available) | .[$2].id")
    for i in $(seq 1 "$N"); do
        curl -fs -o /dev/null -X POST "$base/api/v1/cart/items" -H "$J" -H "Authorization: Bearer $tok" \
            -d "{\"product_id\":\"$pid\",\"quantity\":1}"
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST "$base/api/v1/orders" -H "$J" \
            -H "Authorization: Bearer $tok" -H "Idempotency-Key: bench-$i-$RANDOM$RANDOM" -d "$ORDER"
    done | awk '$1 != 201 { bad++ } $1 == 201 { print $2 } END { if (bad) print "failed:", bad > "/dev/stderr" }'
}

stats() { # -> "p50 p90 mean" in ms
    sort -n | awk '{ v[NR] = $1; s += $1 } END { if (!NR) { print "- - -"; exit }
        printf "%.1f %.1f %.1f", v[int(NR * 0.5 + 0.5)] * 1000, v[int(NR * 0.9 + 0.5)] * 1000, s / NR * 1000 }'
}

echo "scaleout-bench: $N sequential checkouts each way …" >&2
read -r s50 s90 smean <<<"$(checkouts "$GW" 0 | stats)"
read -r e50 e90 emean <<<"$(checkouts "$EMB" 1 | stats)"

wrk_add() { # base -> req/s and mean latency (ms)
    local pid
    pid=$(curl -fs "$1/api/v1/products?limit=20" | jq -r '.items[7].id')
    cat >"$TMP/add.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"product_id":"$pid","quantity":1}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.2f %d\n", summary.requests / (summary.duration / 1e6),
    latency.mean / 1000, summary.errors.status + summary.errors.connect + summary.errors.timeout))
end
EOF
    # no cart token: every request fills a new guest cart (no line reaches its quantity cap)
    wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$TMP/add.lua" "$1/api/v1/cart/items" 2>/dev/null | awk '/^RESULT/ { print $2, $3, $4 }'
}
echo "scaleout-bench: add-to-cart under wrk ($SECS s, $CONNS connections) each way …" >&2
read -r srps slat serr <<<"$(wrk_add "$GW")"
read -r erps elat eerr <<<"$(wrk_add "$EMB")"

echo
echo "| request | scale-out (gateway, HTTP between services) | all-in-one (in-process) |"
echo "|---|---|---|"
echo "| checkout p50 / p90 / mean (ms), $N sequential | $s50 / $s90 / $smean | $e50 / $e90 / $emean |"
echo "| add-to-cart req/s (mean latency ms; non-2xx) | $srps ($slat; $serr) | $erps ($elat; $eerr) |"
echo
echo "Calls from the order processes to other services (their emporium_upstream_request_seconds):"
for p in $((B + 3)) $((B + 13)); do curl -fs "http://127.0.0.1:$p/metrics"; done |
    awk '/^emporium_upstream_request_seconds_(sum|count)/ {
           match($0, /upstream="[a-z]+"/); u = substr($0, RSTART + 10, RLENGTH - 11)
           if ($0 ~ /_sum/) s[u] += $2; else c[u] += $2 }
         END { for (u in c) if (c[u] > 0) printf "  %-10s %7d calls, mean %.2f ms per call\n", u, c[u], s[u] / c[u] * 1000 }'
