#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# trace.sh — distributed tracing through the gateway against a running `make scaleout`
# (docs/tracing.md): one checkout is ONE trace whose spans cover order → inventory → payment
# → shipping across the service processes.
#
# No Jaeger or OpenTelemetry Collector can be installed on the test machines, so the OTLP/HTTP
# receiver is a few lines of python3 (http.server) here that appends every POST /v1/traces
# body to a file. The order, inventory, payment and shipping processes are restarted with
# EMPORIUM_OTLP_ENDPOINT pointing at it (scripts/scaleout.sh passes the variable on), all at
# once, each waited for until ready. Then a checkout through nginx with a traceparent of
# ours, and the spans are read back:
#   - the order process's server span continues our traceparent (nginx passed it through, and
#     the answer's traceparent carries the same trace id back);
#   - the order process has a client span to each of inventory, payment and shipping, every
#     one a child of that server span;
#   - the inventory, payment and shipping processes each have a server span whose parent is
#     one of those client spans — the same trace, across four processes;
#   - the checkout's bearer token is a fresh session no order process has cached, so the
#     order process asks the user process (remote authenticator): that call is a client span
#     under the same server span, and the user process's span is its child — the request's
#     own trace, not the one the thread served before;
#   - every span of the trace hangs off our span or another span of the trace (one tree);
#   - no card number or token was exported.
# Waits are for conditions with generous deadlines, never fixed sleeps.
# Usage: tests/scaleout/trace.sh [ENV_FILE]  (default build/scaleout/env)
set -euo pipefail
cd "$(dirname "$0")/../.."
ENVF=${1:-build/scaleout/env}
[ -f "$ENVF" ] || { echo "trace: no $ENVF (run make scaleout first)" >&2; exit 2; }
GW=$(grep '^GATEWAY_URL=' "$ENVF" | cut -d= -f2-)
DIR=$(grep '^SCALEOUT_DIR=' "$ENVF" | cut -d= -f2-)
B=${GW##*:}
export SCALEOUT_DIR=$DIR SCALEOUT_PORT=$B
RPORT=$((B + 90))
OUT="$DIR/otlp"
SPANS="$OUT/bodies.jsonl"

fail() { echo "trace: FAIL: $*" >&2; exit 1; }
ok() { echo "trace: ok - $*"; }

# ---- the receiver
mkdir -p "$OUT"
: >"$SPANS"
python3 - "$RPORT" "$SPANS" >"$OUT/receiver.log" 2>&1 <<'EOF' &
import http.server, sys, threading
port, path = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, code, body=b"{}"):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer(200)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/json":
            return self.answer(400)
        with lock, open(path, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.answer(200)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
RPID=$!
trap 'kill $RPID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$RPORT/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$RPORT/" >/dev/null || fail "the OTLP receiver did not start ($(cat "$OUT/receiver.log"))"
export EMPORIUM_OTLP_ENDPOINT=http://127.0.0.1:$RPORT

# ---- the processes of the checkout, with tracing on
# (all at once: each `start` waits, with a generous deadline, until its process is ready)
restart() { scripts/scaleout.sh stop "$1" >/dev/null 2>&1 && scripts/scaleout.sh start "$1" >/dev/null 2>&1; }
rpids=()
for n in user inventory payment shipping order-1 order-2; do restart "$n" & rpids+=("$!:$n"); done
for p in "${rpids[@]}"; do wait "${p%%:*}" || fail "${p#*:} did not come back"; done
# the gateway may have marked a restarted process failed: wait until it routes again
for _ in $(seq 1 300); do curl -fs "$GW/api/v1/products?limit=1" >/dev/null 2>&1 && break; sleep 0.1; done
ok "receiver on :$RPORT; user, order, inventory, payment and shipping restarted with tracing on"

# ---- one checkout through the gateway, in a trace of ours
call() { # METHOD URL BODY [curl args…]: sets $code, $body, $headers
    local m=$1 u=$2 d=$3
    shift 3
    local h
    h=$(mktemp)
    body=$(curl -s --max-time 30 -X "$m" "$u" -H 'Content-Type: application/json' ${d:+-d "$d"} -D "$h" "$@" -w '\n%{http_code}')
    code=${body##*$'\n'}
    body=${body%$'\n'*}
    headers=$(tr -d '\r' <"$h")
    rm -f "$h"
}
jqr() { jq -r "$1" <<<"$body"; }
email="tracer-$(date +%s%N)@example.com"
call POST "$GW/api/v1/auth/register" "{\"email\":\"$email\",\"password\":\"a good password 1\",\"name\":\"Tracer\"}"
[ "$code" = 201 ] || fail "register: $code $body"
TOK=$(jqr .token)
call GET "$GW/api/v1/products?limit=1" ""
P=$(jqr '.items[0].id')
[ -n "$P" ] && [ "$P" != null ] || fail "no product: $body"
call POST "$GW/api/v1/cart/items" "{\"product_id\":\"$P\",\"quantity\":1}" -H "Authorization: Bearer $TOK"
[ "$code" = 200 ] || fail "add to cart: $code $body"
# a fresh session for the checkout: no order process has its token cached yet
call POST "$GW/api/v1/auth/login" "{\"email\":\"$email\",\"password\":\"a good password 1\"}"
[ "$code" = 200 ] || fail "login: $code $body"
TOK=$(jqr .token)
TRACE=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
PARENT=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
ORDER='{"shipping_address":{"name":"Tracer","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"},"payment":{"card_number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"},"shipping_method":"standard"}'
call POST "$GW/api/v1/orders" "$ORDER" -H "Authorization: Bearer $TOK" \
    -H "Idempotency-Key: trace-$(date +%s%N)" -H "traceparent: 00-$TRACE-$PARENT-01"
[ "$code" = 201 ] || fail "checkout: $code $body"
answer=$(grep -i '^traceparent:' <<<"$headers" | head -1 | cut -d' ' -f2)
[ "${answer:3:32}" = "$TRACE" ] || fail "the answer's traceparent ($answer) is not in our trace $TRACE"
ok "checkout through the gateway (201) in trace $TRACE; the answer's traceparent continues it"

# ---- the spans: wait until the whole checkout is in, then check it is one tree
check() { # prints what is missing, exit 0 when complete
    python3 - "$SPANS" "$TRACE" "$PARENT" "$TOK" <<'EOF'
import json, sys
path, trace, parent, token = sys.argv[1:5]
spans = []
raw = open(path, encoding="utf-8").read()
for line in raw.splitlines():
    if not line.strip():
        continue
    doc = json.loads(line)
    for rs in doc["resourceSpans"]:
        svc = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"] if a["key"] == "service.name")
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                if s["traceId"] == trace:
                    s["service"] = svc
                    s["attrs"] = {a["key"]: list(a["value"].values())[0] for a in s.get("attributes", [])}
                    spans.append(s)
if "4242424242424242" in raw or token in raw or "Bearer" in raw:
    print("a card number or token was exported"); sys.exit(2)
def find(pred):
    return [s for s in spans if pred(s)]
root = find(lambda s: s["service"] == "emporium-order" and s["kind"] == 2 and s["name"] == "POST /api/v1/orders" and s.get("parentSpanId") == parent)
if not root:
    print("no order server span under our traceparent yet"); sys.exit(1)
root = root[0]
missing = []
for callee in ("user", "inventory", "payment", "shipping"):
    clients = find(lambda s: s["service"] == "emporium-order" and s["kind"] == 3 and s["attrs"].get("peer.service") == callee and s.get("parentSpanId") == root["spanId"])
    if not clients:
        missing.append(f"order's client span to {callee}"); continue
    ids = {c["spanId"] for c in clients}
    servers = find(lambda s: s["service"] == f"emporium-{callee}" and s["kind"] == 2 and s.get("parentSpanId") in ids)
    if not servers:
        missing.append(f"{callee}'s server span under the order's call")
if missing:
    print("missing: " + ", ".join(missing)); sys.exit(1)
ids = {s["spanId"] for s in spans} | {parent}
orphans = [s["name"] + "@" + s["service"] for s in spans if s.get("parentSpanId") not in ids]
if orphans:
    print("spans whose parent is not in the trace: " + ", ".join(orphans)); sys.exit(2)
services = sorted({s["service"] for s in spans})
print(f"{len(spans)} spans in {len(services)} processes: {', '.join(services)}")
EOF
}
deadline=$(($(date +%s) + 90))
while :; do
    set +e
    what=$(check 2>&1)
    rc=$?
    set -e
    [ $rc = 0 ] && break
    [ $rc = 1 ] && [ "$(date +%s)" -lt "$deadline" ] || fail "$what"
    sleep 0.2
done
ok "one trace covers order → user (authentication), inventory, payment, shipping: $what"
# the metrics agree: the order processes exported spans and dropped none
exported=0
for port in $((B + 3)) $((B + 13)); do
    m=$(curl -fs "http://127.0.0.1:$port/metrics")
    grep -q '^emporium_trace_spans_dropped_total{reason="queue_full"} 0$' <<<"$m" || fail "the order process on :$port dropped spans"
    exported=$((exported + $(grep '^emporium_trace_spans_exported_total ' <<<"$m" | cut -d' ' -f2)))
done
[ "$exported" -gt 0 ] || fail "the order processes exported no span"
ok "the order processes' /metrics count $exported exported spans and no drops"
