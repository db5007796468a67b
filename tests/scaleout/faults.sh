#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# faults.sh — two faults under load through the gateway, against a running `make scaleout`
# (tests/scaleout/run.sh starts it). Background load (catalog and cart reads through the
# gateway) runs the whole time; every answer it gets must be 2xx or a retryable 503.
#
#   A. A slow payment service: the payment process frozen (SIGSTOP; every thread stopped).
#      Several shoppers check out at once: each gets a clear 503 `unavailable` (with
#      Retry-After) within the order process's upstream deadline — no request hangs; the
#      order processes' circuit breaker for payment opens (their /metrics); nothing is
#      half-done: the stock is released and, once the payment process runs again (SIGCONT),
#      no failed order keeps an authorization (the recovery sweep voids what the frozen
#      process may still have recorded); the retried checkouts are paid and take the stock
#      exactly once.
#   B. PgBouncer restarted while three shoppers check out in a loop (as clients that honour
#      Retry-After: a 503 is asked again with the same Idempotency-Key, a cart refill again
#      until it is in): every checkout answer is 201 or a 503 with Retry-After, every cart
#      answer 200 or such a 503 (never a 500, never a hang), every shopper gets a 201 again
#      after the restart, every acknowledged (201) order is there and paid afterwards, and
#      the services recovered without being restarted (same PIDs). FAULTS_BOUNCER=0 skips B.
#      FAULTS_PAYMENT=0 skips A.
# Waits are for conditions with generous deadlines, never fixed sleeps before an assertion.
# Usage: tests/scaleout/faults.sh [ENV_FILE]  (default build/scaleout/env)
set -euo pipefail
cd "$(dirname "$0")/../.."
ENVF=${1:-build/scaleout/env}
[ -f "$ENVF" ] || { echo "faults: no $ENVF (run make scaleout first)" >&2; exit 2; }
GW=$(grep '^GATEWAY_URL=' "$ENVF" | cut -d= -f2-)
DIR=$(grep '^SCALEOUT_DIR=' "$ENVF" | cut -d= -f2-)
TOKEN=$(cat "$(grep '^SCALEOUT_INTERNAL_TOKEN_FILE=' "$ENVF" | cut -d= -f2-)")
B=${GW##*:}
export SCALEOUT_DIR="$DIR" SCALEOUT_PORT="$B" # for scripts/scaleout.sh restart-bouncer
INV=http://127.0.0.1:$((B + 4))
PAY=http://127.0.0.1:$((B + 5))
ORDERS=("http://127.0.0.1:$((B + 3))" "http://127.0.0.1:$((B + 13))")
WORK=$(mktemp -d)
LOADPIDS=()
cleanup() {
    touch "$WORK/stop"
    for p in "${LOADPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -f "$DIR/payment.pid" ] && kill -CONT "$(cat "$DIR/payment.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

pass=0
fail() {
    echo "faults: FAIL: $*" >&2
    # the PgBouncer drill's shoppers: what each got, last answers last
    for f in "$WORK"/b.*; do [ -f "$f" ] && echo "faults: shopper ${f##*.}: $(tail -n 8 "$f" | tr '\n' ' ')" >&2; done
    exit 1
}
ok() { pass=$((pass + 1)); echo "faults: ok - $*"; }

# call METHOD URL [BODY] [extra curl args…]: sets $code and $body
call() {
    local m=$1 u=$2 d=${3:-}
    shift 3 || shift $#
    local out
    if [ -n "$d" ]; then
        out=$(curl -s --max-time 30 -X "$m" "$u" -H 'Content-Type: application/json' -d "$d" "$@" -w '\n%{http_code}')
    else
        out=$(curl -s --max-time 30 -X "$m" "$u" "$@" -w '\n%{http_code}')
    fi
    code=${out##*$'\n'}
    body=${out%$'\n'*}
}
expect() { [ "$code" = "$1" ] || fail "$2: expected $1, got $code: $body"; }
jqr() { jq -r "$1" <<<"$body"; }
level() { # product -> "available reserved"
    call GET "$INV/internal/v1/inventory/levels/$1" "" -H "X-Internal-Token: $TOKEN"
    expect 200 "the stock level of $1"
    echo "$(jqr .available) $(jqr .reserved)"
}
# wait_for SECONDS WHAT COMMAND…: runs COMMAND until it succeeds, at most SECONDS.
wait_for() {
    local secs=$1 what=$2 end
    shift 2
    end=$(($(date +%s) + secs))
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || fail "$what (waited $secs s)"
        sleep 0.2
    done
}
all_stopped() { # pid: every thread in state T
    local t
    for t in /proc/"$1"/task/*/stat; do
        [ "$(sed 's/.*) //' "$t" | cut -c1)" = T ] || return 1
    done
}
pids_of_services() { cat "$DIR"/{user,product-1,product-2,order-1,order-2,inventory,payment,shipping,notification,analytics}.pid | tr '\n' ' '; }

# ---- background load: catalog pages and a guest cart through the gateway, all the time.
# Paced, whatever the machine's speed: every client here is 127.0.0.1, and the gateway's edge
# limit is 100 requests/s per address (burst 200, deploy/nginx/gateway.conf). Unpaced, two
# loaders on a fast machine went past it, and the drill's own checkouts got nginx's 429
# instead of the service's 503. Two loaders × 4 requests per 0.25 s stay under 32/s.
load() { # n
    local i=0
    while [ ! -f "$WORK/stop" ]; do
        curl -s --max-time 30 -w '%{http_code}\n' -o /dev/null "$GW/api/v1/products?limit=5" \
            -o /dev/null "$GW/api/v1/categories" -o /dev/null "$GW/api/v1/products?limit=5&sort=price_asc" \
            -o /dev/null "$GW/api/v1/cart" >>"$WORK/load.$1" 2>/dev/null || true
        i=$((i + 1))
        sleep 0.25
    done
}
load_check() { # every answer of the background load: 200 or a retryable 503
    local bad
    bad=$(cat "$WORK"/load.* 2>/dev/null | grep -cvE '^(200|503)$' || true)
    [ "$bad" = 0 ] || fail "the background load got $bad answers other than 200/503: $(cat "$WORK"/load.* | sort | uniq -c | tr '\n' ' ')"
    echo "$(cat "$WORK"/load.* | wc -l)"
}
for n in 1 2; do load "$n" & LOADPIDS+=($!); done

# ---- shoppers, each with one unit of P in the cart
K=6
# P: the product with the most stock (phase B orders up to 3 × ROUNDS units of it).
ROUNDS=30
call GET "$GW/api/v1/products?limit=100&in_stock=true" ""
expect 200 "browse"
P=$(jq -r '.items | max_by(.stock.available) | .id' <<<"$body")
[ -n "$P" ] && [ "$P" != null ] || fail "the catalog is empty: $body"
[ "$(jq -r '.items | max_by(.stock.available) | .stock.available' <<<"$body")" -ge $((3 * ROUNDS + K + 5)) ] ||
    fail "no product with enough stock for the drill: $body"
ADDR='"shipping_address":{"name":"Fault Drill","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}'
CARD='"payment":{"card_number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"}'
ORDER="{$ADDR,$CARD,\"shipping_method\":\"standard\"}"
TOKS=()
for i in $(seq 1 $K); do
    # Registration has a tight per-address limit and every client here is 127.0.0.1 (the
    # acceptance suite and the journey registered before): a 429 is asked again after its
    # Retry-After, as a client would, for up to 60 s.
    for try in $(seq 1 60); do
        call POST "$GW/api/v1/auth/register" "{\"email\":\"fault-$i-$(date +%s%N)@example.com\",\"password\":\"a good password 1\",\"name\":\"Fault $i\"}"
        [ "$code" = 429 ] || break
        sleep 1
    done
    expect 201 "register shopper $i"
    TOKS+=("$(jqr .token)")
    call POST "$GW/api/v1/cart/items" "{\"product_id\":\"$P\",\"quantity\":1}" -H "Authorization: Bearer ${TOKS[$((i - 1))]}"
    expect 200 "add to cart (shopper $i)"
done
read -r a0 r0 <<<"$(level "$P")"

phase_a() {
# ---- A: the payment process frozen (FAULTS_PAYMENT=0 skips it, to run the other drill alone)
PAYPID=$(cat "$DIR/payment.pid")
kill -STOP "$PAYPID"
wait_for 30 "the payment process stops" all_stopped "$PAYPID"
checkout() { # i key -> "$WORK/co.i": code time body
    curl -s --max-time 30 -o "$WORK/co.$1.body" -w '%{http_code} %{time_total}' -X POST "$GW/api/v1/orders" \
        -H 'Content-Type: application/json' -H "Authorization: Bearer ${TOKS[$(($1 - 1))]}" \
        -H "Idempotency-Key: $2" -D "$WORK/co.$1.head" -d "$ORDER" >"$WORK/co.$1" || echo "000 timeout" >"$WORK/co.$1"
}
pids=()
for i in $(seq 1 $K); do checkout "$i" "fault-a-$i-$B" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
for i in $(seq 1 $K); do
    read -r c t <"$WORK/co.$i" || true
    [ "$c" = 503 ] || fail "checkout $i with payment frozen: expected 503, got $c ($t s): $(cat "$WORK/co.$i.body")"
    [ "$(jq -r .error.code "$WORK/co.$i.body")" = unavailable ] || fail "a clear unavailable error: $(cat "$WORK/co.$i.body")"
    grep -qi '^Retry-After:' "$WORK/co.$i.head" || fail "the 503 carries Retry-After"
done
ok "payment frozen: $K concurrent checkouts each answered 503 unavailable with Retry-After (times: $(cut -d' ' -f2 "$WORK"/co.[0-9] | tr '\n' ' ')s), none hung"

# The breaker: more attempts until each order process has opened its breaker for payment.
breaker_opened() { # order process url -> times opened
    curl -s --max-time 10 "$1/metrics" | awk '/^emporium_upstream_breaker_opened_total\{upstream="payment"\}/ {print $2}' | head -1
}
both_open() {
    local o n
    for o in "${ORDERS[@]}"; do
        n=$(breaker_opened "$o")
        [ "${n:-0}" -ge 1 ] || { checkout 1 "fault-a-more-$(date +%s%N)"; return 1; }
    done
}
wait_for 120 "the payment breaker opens in both order processes" both_open
call POST "$GW/api/v1/orders" "$ORDER" -H "Authorization: Bearer ${TOKS[0]}" -H "Idempotency-Key: fault-a-open-$B"
expect 503 "checkout while the breaker is open"
ok "the order processes' payment breaker opened (emporium_upstream_breaker_opened_total on /metrics)"

stock_back() { read -r a r <<<"$(level "$P")"; [ "$a $r" = "$a0 $r0" ]; }
wait_for 90 "the failed checkouts released their stock" stock_back
ok "nothing held: stock of $P back to $a0 available / $r0 reserved while payment is frozen"

kill -CONT "$PAYPID"
# Every failed order of these shoppers ends with no live authorization (404, failed or voided).
no_live_auth() {
    local t id st
    for t in "${TOKS[@]}"; do
        call GET "$GW/api/v1/orders?limit=100" "" -H "Authorization: Bearer $t"
        [ "$code" = 200 ] || return 1
        for id in $(jq -r '.items[] | select(.status == "failed") | .id' <<<"$body"); do
            call GET "$PAY/internal/v1/payment/orders/$id" "" -H "X-Internal-Token: $TOKEN"
            [ "$code" = 404 ] && continue
            [ "$code" = 200 ] || return 1
            st=$(jqr .status)
            case "$st" in failed | voided) ;; *) return 1 ;; esac
        done
    done
}
wait_for 180 "every failed order's authorization is voided after recovery" no_live_auth
# The retried checkouts (same keys: a transient failure frees them) go through.
retry_paid() { # i
    checkout "$1" "fault-a-$1-$B"
    read -r c _ <"$WORK/co.$1" || true
    [ "$c" = 201 ] || { [ "$c" = 503 ] || fail "retry of checkout $1: $c $(cat "$WORK/co.$1.body")"; return 1; }
}
for i in $(seq 1 $K); do wait_for 90 "checkout $i goes through after recovery" retry_paid "$i"; done
read -r a1 r1 <<<"$(level "$P")"
[ "$a1" -eq $((a0 - K)) ] && [ "$r1" -eq "$r0" ] || fail "$K units of $P taken exactly once ($a0/$r0 -> $a1/$r1)"
ok "payment back: no failed order keeps an authorization; the $K retried checkouts are paid and took the stock once"

}
[ "${FAULTS_PAYMENT:-1}" = 0 ] || phase_a

# ---- B: PgBouncer restarted while shoppers check out
if [ "${FAULTS_BOUNCER:-1}" = 0 ]; then
    touch "$WORK/stop"
    for p in "${LOADPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    LOADPIDS=()
    load_check >"$WORK/load.n" # fails (exits) here, not in a subshell
    ok "background load: $(cat "$WORK/load.n") requests through the gateway, every answer 200 or 503"
    echo "faults: all $pass checks passed (PgBouncer drill skipped: FAULTS_BOUNCER=0)"
    exit 0
fi
before=$(pids_of_services)
for i in $(seq 1 $K); do
    call POST "$GW/api/v1/cart/items" "{\"product_id\":\"$P\",\"quantity\":1}" -H "Authorization: Bearer ${TOKS[$((i - 1))]}"
    expect 200 "add to cart before the restart (shopper $i)"
done
shopper() { # i: checks out in a loop until told to stop; logs "code id" (b.i), cart refills (cart.i)
    # A client that honours Retry-After: a 503 is asked again with the same Idempotency-Key
    # (whatever the first attempt did, the key answers it once), and the cart is refilled
    # until that answer is 200 — the restart may cut a refill too. The last 5 of its ROUNDS
    # (the product's stock is sized for them) wait for the restart to be done, so every
    # shopper still checks out after it however fast the machine ran the first ones (on a
    # fast one all 30 were paid before PgBouncer was back, and the recovery check waited for
    # a 201 that could not come).
    local i=$1 n=1 paid=0 out c
    while [ ! -f "$WORK/stop-b" ] && [ "$paid" -lt "$ROUNDS" ]; do
        if [ "$paid" -ge $((ROUNDS - 5)) ] && [ ! -f "$WORK/restarted" ]; then
            sleep 0.1
            continue
        fi
        out=$(curl -s --max-time 30 -w '\n%{http_code}' -X POST "$GW/api/v1/orders" \
            -H 'Content-Type: application/json' -H "Authorization: Bearer ${TOKS[$((i - 1))]}" \
            -H "Idempotency-Key: fault-b-$i-$n-$B" -D "$WORK/h.$i" -d "$ORDER") || out=$'\n000'
        c=${out##*$'\n'}
        [ "$c" != 503 ] || grep -qi '^Retry-After:' "$WORK/h.$i" || echo "checkout $n" >>"$WORK/no-retry-after"
        echo "$c $(jq -r '.id // .error.code // "-"' <<<"${out%$'\n'*}" 2>/dev/null)" >>"$WORK/b.$i"
        if [ "$c" != 201 ]; then
            sleep 0.2 # the client's back-off before it asks again (not an assertion)
            continue
        fi
        paid=$((paid + 1))
        n=$((n + 1))
        while [ ! -f "$WORK/stop-b" ]; do # refill the cart for the next round
            c=$(curl -s -o /dev/null --max-time 30 -w '%{http_code}' -X POST "$GW/api/v1/cart/items" \
                -H 'Content-Type: application/json' -H "Authorization: Bearer ${TOKS[$((i - 1))]}" \
                -D "$WORK/h.$i" -d "{\"product_id\":\"$P\",\"quantity\":1}") || c=000
            echo "$c" >>"$WORK/cart.$i"
            [ "$c" != 503 ] || grep -qi '^Retry-After:' "$WORK/h.$i" || echo "cart refill" >>"$WORK/no-retry-after"
            [ "$c" = 200 ] && break
            sleep 0.2
        done
    done
}
rm -f "$WORK/stop-b" "$WORK/restarted"
spids=()
for i in $(seq 1 3); do shopper "$i" & spids+=($!); done
scripts/scaleout.sh restart-bouncer
restarted=$(date +%s)
# Recovered: each shopper has had a 201 after the restart.
marks=()
for i in 1 2 3; do marks+=("$(wc -l <"$WORK/b.$i" 2>/dev/null || echo 0)"); done
touch "$WORK/restarted" # after the marks: what the shoppers send from here on counts
recovered() {
    local i
    for i in 1 2 3; do
        tail -n +"$((${marks[$((i - 1))]} + 1))" "$WORK/b.$i" 2>/dev/null | grep -q '^201 ' || return 1
    done
}
wait_for 120 "checkouts succeed again after the PgBouncer restart" recovered
back=$(date +%s)
touch "$WORK/stop-b"
for p in "${spids[@]}"; do wait "$p"; done
bad=$(cat "$WORK"/b.* | grep -cvE '^(201|503) ' || true)
[ "$bad" = 0 ] || fail "answers other than 201/503 during the restart: $(cat "$WORK"/b.* | cut -d' ' -f1 | sort | uniq -c | tr '\n' ' ')"
[ ! -f "$WORK/no-retry-after" ] || fail "503 answers without Retry-After: $(sort "$WORK/no-retry-after" | uniq -c | tr '\n' ' ')"
bad=$(cat "$WORK"/cart.* 2>/dev/null | grep -cvE '^(200|503)$' || true)
[ "$bad" = 0 ] || fail "cart answers other than 200/503 during the restart: $(cat "$WORK"/cart.* | sort | uniq -c | tr '\n' ' ')"
[ "$(pids_of_services)" = "$before" ] || fail "a service process was restarted"
n_acked=0
asked_again=0
summary=$(cat "$WORK"/b.* | cut -d' ' -f1 | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
# Every acknowledged order, asked by the shopper it was acknowledged to (as that client would:
# a 503 is asked again after a moment); anything but 200 and paid is reported with its body.
order_answer() { # id token -> 0 on a final answer (kept in $code/$body), 1 on a 503
    call GET "$GW/api/v1/orders/$1" "" -H "Authorization: Bearer $2"
    [ "$code" != 503 ] || { asked_again=$((asked_again + 1)); return 1; }
}
for i in 1 2 3; do
    for id in $(awk '$1 == 201 {print $2}' "$WORK/b.$i"); do
        n_acked=$((n_acked + 1))
        wait_for 60 "order $id answers other than 503" order_answer "$id" "${TOKS[$((i - 1))]}"
        [ "$code" = 200 ] || fail "acknowledged order $id (shopper $i) answers $code: $body"
        [ "$(jqr .status)" = paid ] || fail "acknowledged order $id is $(jqr .status)"
    done
done
ok "PgBouncer restarted under load: checkout answers $summary, cart refills $(cat "$WORK"/cart.* | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')(every 503 with Retry-After), back within $((back - restarted)) s of the restart; all $n_acked acknowledged orders paid and present ($asked_again reads answered 503 first), no service restarted"
touch "$WORK/stop"
for p in "${LOADPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
LOADPIDS=()
load_check >"$WORK/load.n"
ok "background load: $(cat "$WORK/load.n") requests through the gateway, every answer 200 or 503"
echo "faults: all $pass checks passed"
