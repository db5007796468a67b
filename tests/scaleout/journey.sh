#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# journey.sh — the shopper journey through the gateway against a running `make scaleout`
# (every service group its own process; checkout crosses order → product, inventory,
# payment, shipping over HTTP), then one fault: the inventory process stopped.
#
#   1. the gateway never routes /internal/; the internal routes want the token (401/403);
#   2. register, browse, cart, checkout (201 paid, with its shipment and captured payment),
#      the same Idempotency-Key again (the same order), order status;
#   3. inventory stopped: checkout answers 503 at once (within the upstream deadline, no
#      hang), the order is failed with inventory_unavailable, no payment exists for it, the
#      cart keeps its lines and the stock level is unchanged;
#   4. inventory back: the retried checkout succeeds and takes the stock exactly once;
#   5. one of the two order processes stopped: the gateway's passive health check sends
#      every request to the other; every acknowledged order is still there.
# Waits are for conditions with generous deadlines, never fixed sleeps.
# Usage: tests/scaleout/journey.sh [ENV_FILE]  (default build/scaleout/env)
set -euo pipefail
cd "$(dirname "$0")/../.."
ENVF=${1:-build/scaleout/env}
[ -f "$ENVF" ] || { echo "journey: no $ENVF (run make scaleout first)" >&2; exit 2; }
GW=$(grep '^GATEWAY_URL=' "$ENVF" | cut -d= -f2-)
DIR=$(grep '^SCALEOUT_DIR=' "$ENVF" | cut -d= -f2-)
TOKEN=$(cat "$(grep '^SCALEOUT_INTERNAL_TOKEN_FILE=' "$ENVF" | cut -d= -f2-)")
INV=http://127.0.0.1:$(($(echo "$GW" | sed 's/.*://') + 4))
PAY=http://127.0.0.1:$(($(echo "$GW" | sed 's/.*://') + 5))

pass=0
fail() { echo "journey: FAIL: $*" >&2; exit 1; }
ok() { pass=$((pass + 1)); echo "journey: ok - $*"; }

# call METHOD URL [BODY] [extra curl args…]: sets $code and $body
call() {
    local m=$1 u=$2 d=${3:-}
    shift 3 || shift $#
    local out
    if [ -n "$d" ]; then
        out=$(curl -s --max-time 15 -X "$m" "$u" -H 'Content-Type: application/json' -d "$d" "$@" -w '\n%{http_code}')
    else
        out=$(curl -s --max-time 15 -X "$m" "$u" "$@" -w '\n%{http_code}')
    fi
    code=${out##*$'\n'}
    body=${out%$'\n'*}
}
expect() { # status what
    [ "$code" = "$1" ] || fail "$2: expected $1, got $code: $body"
}
jqr() { jq -r "$1" <<<"$body"; }

# ---- 1: internal routes
call GET "$GW/internal/v1/inventory/levels/1" ""
expect 404 "the gateway must not route /internal/"
call GET "$INV/internal/v1/inventory/levels/1" ""
expect 401 "an internal route without the token"
[ "$(jqr .error.field)" = "X-Internal-Token" ] || fail "401 names the header: $body"
call GET "$INV/internal/v1/inventory/levels/1" "" -H "X-Internal-Token: not-the-token-at-all"
expect 403 "an internal route with a wrong token"
ok "internal routes: 404 through the gateway, 401 without and 403 with a wrong token"

# ---- 2: the journey
email="shopper-$(date +%s%N)@example.com"
call POST "$GW/api/v1/auth/register" "{\"email\":\"$email\",\"password\":\"a good password 1\",\"name\":\"Scale Out\"}"
expect 201 "register"
TOK=$(jqr .token)
AUTH=(-H "Authorization: Bearer $TOK")
call GET "$GW/api/v1/products?limit=5" ""
expect 200 "browse"
P1=$(jqr '.items[0].id')
P2=$(jqr '.items[1].id')
[ -n "$P1" ] && [ "$P1" != null ] && [ -n "$P2" ] && [ "$P2" != null ] || fail "the catalog is empty: $body"
call GET "$GW/api/v1/products/$P1" ""
expect 200 "a product page"
ok "registered and browsed ($P1, $P2)"

level() { # product -> "available reserved"
    call GET "$INV/internal/v1/inventory/levels/$1" "" -H "X-Internal-Token: $TOKEN"
    expect 200 "the stock level of $1"
    echo "$(jqr .available) $(jqr .reserved)"
}
read -r a1 _ <<<"$(level "$P1")"

call POST "$GW/api/v1/cart/items" "{\"product_id\":\"$P1\",\"quantity\":1}" "${AUTH[@]}"
expect 200 "add to cart"
[ "$(jqr .item_count)" = 1 ] || fail "the cart holds one item: $body"
ADDR='"shipping_address":{"name":"Scale Out","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}'
CARD='"payment":{"card_number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"}'
ORDER="{$ADDR,$CARD,\"shipping_method\":\"standard\"}"
key1="journey-$(date +%s%N)"
call POST "$GW/api/v1/orders" "$ORDER" "${AUTH[@]}" -H "Idempotency-Key: $key1"
expect 201 "checkout"
O1=$(jqr .id)
[ "$(jqr .status)" = paid ] || fail "the order is paid: $body"
call POST "$GW/api/v1/orders" "$ORDER" "${AUTH[@]}" -H "Idempotency-Key: $key1"
expect 201 "the same checkout again"
[ "$(jqr .id)" = "$O1" ] || fail "the same key answers the same order: $body"
call GET "$GW/api/v1/orders/$O1" "" "${AUTH[@]}"
expect 200 "order status"
[ "$(jqr .status)" = paid ] || fail "order status paid: $body"
[ "$(jqr .shipment.status)" = label_created ] || fail "the shipment was created by the shipping process: $body"
[ "$(jqr .payment.status)" = captured ] || fail "the payment was captured by the payment process: $body"
call GET "$GW/api/v1/cart" "" "${AUTH[@]}"
[ "$(jqr .item_count)" = 0 ] || fail "the cart is empty after the order: $body"
read -r a1b _ <<<"$(level "$P1")"
[ "$a1b" -eq $((a1 - 1)) ] || fail "the inventory process took 1 of $P1 exactly once ($a1 -> $a1b)"
ok "cart, checkout ($O1: paid, shipment label_created, payment captured), idempotent replay"

# ---- 3: the inventory process stopped
call POST "$GW/api/v1/cart/items" "{\"product_id\":\"$P2\",\"quantity\":2}" "${AUTH[@]}"
expect 200 "add to cart"
read -r a2 r2 <<<"$(level "$P2")"
scripts/scaleout.sh stop inventory
key2="journey-$(date +%s%N)"
call POST "$GW/api/v1/orders" "$ORDER" "${AUTH[@]}" -H "Idempotency-Key: $key2"
expect 503 "checkout with the inventory down"
[ "$(jqr .error.code)" = unavailable ] || fail "a clear unavailable error: $body"
call GET "$GW/api/v1/orders?limit=10" "" "${AUTH[@]}"
expect 200 "the order list"
failed=$(jq -r '[.items[] | select(.status == "failed")] | .[0].id' <<<"$body")
reason=$(jq -r '[.items[] | select(.status == "failed")] | .[0].failure_reason' <<<"$body")
[ "$failed" != null ] && [ "$reason" = inventory_unavailable ] || fail "the attempt is a failed order (inventory_unavailable): $body"
[ "$(jq '[.items[] | select(.status == "paid")] | length' <<<"$body")" = 1 ] || fail "still one paid order: $body"
call GET "$PAY/internal/v1/payment/orders/$failed" "" -H "X-Internal-Token: $TOKEN"
expect 404 "no payment for the failed order"
call GET "$GW/api/v1/cart" "" "${AUTH[@]}"
[ "$(jqr .item_count)" = 2 ] || fail "the cart keeps its lines: $body"
ok "inventory down: 503 unavailable, order $failed failed (inventory_unavailable), no payment, cart kept"

# ---- 4: back
scripts/scaleout.sh start inventory
read -r a2b r2b <<<"$(level "$P2")"
[ "$a2b $r2b" = "$a2 $r2" ] || fail "nothing was reserved by the failed attempt ($a2/$r2 -> $a2b/$r2b)"
# The breaker of an order process may still be open for a moment: retry with the same key
# (a transient failure leaves the key free) until it goes through, 60 s at most.
for _ in $(seq 1 120); do
    call POST "$GW/api/v1/orders" "$ORDER" "${AUTH[@]}" -H "Idempotency-Key: $key2"
    [ "$code" = 201 ] && break
    [ "$code" = 503 ] || fail "checkout after recovery: $code $body"
    sleep 0.5
done
expect 201 "checkout with the inventory back"
[ "$(jqr .status)" = paid ] || fail "paid after recovery: $body"
read -r a2c r2c <<<"$(level "$P2")"
[ "$a2c" -eq $((a2 - 2)) ] && [ "$r2c" -eq "$r2" ] || fail "2 of $P2 taken exactly once ($a2/$r2 -> $a2c/$r2c)"
ok "inventory back: checkout paid, stock taken once"

# ---- 5: one of the two order processes stopped: the gateway sends everything to the other
scripts/scaleout.sh stop order-1
for i in $(seq 1 10); do
    call GET "$GW/api/v1/orders/$O1" "" "${AUTH[@]}"
    expect 200 "order status with order-1 down (request $i)"
done
call POST "$GW/api/v1/cart/items" "{\"product_id\":\"$P1\",\"quantity\":1}" "${AUTH[@]}"
expect 200 "add to cart with order-1 down"
call POST "$GW/api/v1/orders" "$ORDER" "${AUTH[@]}" -H "Idempotency-Key: journey-$(date +%s%N)"
expect 201 "checkout with order-1 down"
call GET "$GW/api/v1/orders?limit=10" "" "${AUTH[@]}"
[ "$(jq '[.items[] | select(.status == "paid")] | length' <<<"$body")" = 3 ] || fail "every acknowledged order is there: $body"
scripts/scaleout.sh start order-1
ok "order-1 down: order-2 served every request through the gateway, every paid order kept"
# ---- 6: the order processes run no user service: they ask the user process (remote
# authenticator, a short cache); a logout at the user process reaches them within its TTL
call GET "$GW/api/v1/orders?limit=1" "" -H "Authorization: Bearer not-a-session-token-at-all-0123456789"
expect 401 "an unknown token at the order service"
call POST "$GW/api/v1/auth/login" "{\"email\":\"$email\",\"password\":\"a good password 1\"}"
expect 200 "login"
TOK2=$(jqr .token)
call GET "$GW/api/v1/orders?limit=10" "" -H "Authorization: Bearer $TOK2"
expect 200 "the orders with a second session"
[ "$(jq '[.items[] | select(.status == "paid")] | length' <<<"$body")" = 3 ] || fail "the same account through the remote authenticator: $body"
call POST "$GW/api/v1/auth/logout" "" -H "Authorization: Bearer $TOK2"
expect 204 "logout"
for _ in $(seq 1 120); do
    call GET "$GW/api/v1/orders?limit=1" "" -H "Authorization: Bearer $TOK2"
    [ "$code" = 401 ] && break
    [ "$code" = 200 ] || fail "a logged-out token: $code $body"
    sleep 0.5
done
expect 401 "the logged-out token at the order service"
ok "remote authenticator: the order processes know the account, refuse unknown and logged-out tokens"
echo "journey: all $pass checks passed"
