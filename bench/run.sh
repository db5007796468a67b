#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh — `make bench`: a fresh shop, seeded, under wrk, one scenario after another,
# and one table at the end. See bench/README.md for what each row measures.
#
# Builds nothing: `make bench` has already built build/emporium (EMPORIUM_BIN overrides it).
# Settings (environment):
#   BACKEND=sqlite|postgres   embedded SQLite (default) or PostgreSQL via scripts/test-servers.sh
#   BACKEND=scaleout          the same requests through the nginx gateway of the topology in
#                             miniature (scripts/scaleout.sh up, rate limits off, on the ports
#                             from EMP_TEST_SCALEOUT_PORT, default 28500; stopped afterwards):
#                             cpu s/1k and RSS sum every service process and nginx
#   BENCH_SECONDS=15          duration of each scenario
#   BENCH_CONNECTIONS=64      wrk connections (BENCH_THREADS=2 wrk threads)
#   BENCH_PRODUCTS=100000     catalog size (BENCH_CATEGORIES=50)
#   BENCH_USERS=10000         accounts, each with a session token
#   BENCH_SCENARIOS=a,b,…     run only these rows (health always runs: it is the ceiling)
#   BENCH_SMOKE=1             harness smoke run: 2 s, 4 connections, 1,000 products, 100 users;
#                             exits non-zero if a scenario whose endpoints exist gets no
#                             successful request or more than 5 % errors
#   BENCH_KEEP=1              keep the temp dir (data, server log, wrk outputs) afterwards
#   BENCH_SERVER_ARGS="…"     extra arguments for `emporium serve` (e.g. --threads 2)
#   EMPORIUM_DB_PREPARE       postgres: named prepared statements; unset, on when PgBouncer
#                             is in session mode (the servers this script starts are)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$ROOT/bench"
BIN=${EMPORIUM_BIN:-$ROOT/build/emporium}
BACKEND=${BACKEND:-sqlite}
SMOKE=${BENCH_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
    DURATION=${BENCH_SECONDS:-2}
    CONNS=${BENCH_CONNECTIONS:-4}
    PRODUCTS=${BENCH_PRODUCTS:-1000}
    USERS=${BENCH_USERS:-100}
else
    DURATION=${BENCH_SECONDS:-15}
    CONNS=${BENCH_CONNECTIONS:-64}
    PRODUCTS=${BENCH_PRODUCTS:-100000}
    USERS=${BENCH_USERS:-10000}
fi
CATEGORIES=${BENCH_CATEGORIES:-50}
THREADS=${BENCH_THREADS:-2}
[ "$CONNS" -lt "$THREADS" ] && THREADS=$CONNS
HOT=${BENCH_HOT:-1000}
CART_PRODUCTS=${BENCH_CART_PRODUCTS:-100}
SCENARIOS=${BENCH_SCENARIOS:-all}
ALL_SCENARIOS=(health product-get search add-to-cart place-order order-status browse-mix seed-mix)

since() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk; make bench installs it)"
command -v curl >/dev/null || die "curl is not installed"
[ -x "$BIN" ] || die "no emporium binary at $BIN (make build, or set EMPORIUM_BIN)"
case "$BACKEND" in sqlite | postgres | scaleout) ;; *) die "BACKEND must be sqlite, postgres or scaleout, not $BACKEND" ;; esac

TMP=$(mktemp -d /tmp/emporium-bench.XXXXXX)
chmod 755 "$TMP"
DATA="$TMP/data"
WORK="$TMP/work"
mkdir -p "$DATA" "$WORK"
LOG="$DATA/server.log"
SERVER_PID=""
PG_DIR=""
SCALEOUT_UP=0
BOUNCER_PORT=${EMP_TEST_BOUNCER_PORT:-25433}

cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$SCALEOUT_UP" = 1 ]; then
        "$ROOT/scripts/scaleout.sh" down >/dev/null 2>&1 || true
    fi
    if [ -n "$PG_DIR" ]; then
        "$ROOT/scripts/test-servers.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
    elif [ "$BACKEND" != scaleout ] && [ -n "${EMPORIUM_DATABASE_URL:-}" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
        # servers we did not start: drop only the databases of this run
        local prefix=${EMPORIUM_DATABASE_URL##*/} db
        for db in $(psql "${EMPORIUM_DATABASE_URL%/*}/postgres" -Atqc \
            "SELECT datname FROM pg_database WHERE datname LIKE '${prefix}%'" 2>/dev/null); do
            psql "${EMPORIUM_DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
        done
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        say "kept $TMP (data, server.log, wrk outputs)"
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# backend
# ---------------------------------------------------------------------------------------
unset EMPORIUM_DATABASE_URL EMPORIUM_DATA_DIR EMPORIUM_LISTEN
if [ "$BACKEND" = postgres ]; then
    [ -x "$ROOT/scripts/test-servers.sh" ] || die "scripts/test-servers.sh is missing"
    # EMP_TEST_PG_PORT / EMP_TEST_BOUNCER_PORT: the ports scripts/test-servers.sh uses.
    if psql -h 127.0.0.1 -p "${EMP_TEST_BOUNCER_PORT:-25433}" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
        say "postgres: reusing the test servers already running on ${EMP_TEST_PG_PORT:-25432}/${EMP_TEST_BOUNCER_PORT:-25433}"
    else
        PG_DIR="$TMP/pg"
        say "postgres: starting throwaway servers in $PG_DIR (durable: fsync and synchronous_commit on)"
        # (a start that failed half-way is stopped by cleanup: PG_DIR stays set)
        # PgBouncer in session mode: each of the shop's pooled connections keeps its server
        # session, so it can run named prepared statements (EMPORIUM_DB_PREPARE, below).
        # Unix sockets between the shop, PgBouncer and PostgreSQL, as on one machine one
        # would (BENCH_PG_SOCKETS=off: TCP over loopback, as across machines).
        EMP_TEST_PG_DURABLE=on EMP_TEST_BOUNCER_POOL_MODE=session \
            EMP_TEST_PG_SOCKETS=${BENCH_PG_SOCKETS:-on} \
            "$ROOT/scripts/test-servers.sh" start "$PG_DIR" >&2 || die "postgres did not start"
    fi
    # Named prepared statements when PgBouncer keeps sessions (never in transaction mode,
    # where consecutive transactions may run on different server sessions).
    bouncer_config=$(psql -h 127.0.0.1 -p "${EMP_TEST_BOUNCER_PORT:-25433}" -U postgres -d pgbouncer \
        -Atc 'SHOW CONFIG' 2>/dev/null || true)
    pool_mode=$(awk -F'|' '$1 == "pool_mode" { print $2 }' <<<"$bouncer_config")
    bouncer_socket_dir=$(awk -F'|' '$1 == "unix_socket_dir" { print $2 }' <<<"$bouncer_config")
    if [ -z "${EMPORIUM_DB_PREPARE:-}" ]; then
        if [ "$pool_mode" = session ]; then export EMPORIUM_DB_PREPARE=on; else export EMPORIUM_DB_PREPARE=off; fi
    fi
    say "postgres: PgBouncer pool_mode = ${pool_mode:-unknown}, EMPORIUM_DB_PREPARE=$EMPORIUM_DB_PREPARE"
    # The figures mean something only against a durable server: say what this one does.
    durable=$(psql -h 127.0.0.1 -p "${EMP_TEST_PG_PORT:-25432}" -U postgres -d postgres -Atqc \
        "SELECT current_setting('fsync') || '/' || current_setting('synchronous_commit')" 2>/dev/null || echo unknown)
    say "postgres: fsync/synchronous_commit = $durable"
    base=$("$ROOT/scripts/test-servers.sh" env "${PG_DIR:-$TMP/pg}" | sed -n 's/^EMPORIUM_TEST_PG_URL=//p')
    [ -n "$base" ] || die "scripts/test-servers.sh env printed no EMPORIUM_TEST_PG_URL"
    # Servers already running that listen on a Unix socket too (EMP_TEST_PG_SOCKETS=on): that
    # socket, as for the servers the bench starts (BENCH_PG_SOCKETS=off: TCP).
    if [ -z "$PG_DIR" ] && [ -n "$bouncer_socket_dir" ] && [ "${BENCH_PG_SOCKETS:-on}" = on ]; then
        base="postgresql://postgres@${bouncer_socket_dir//\//%2F}:${EMP_TEST_BOUNCER_PORT:-25433}/emp"
    fi
    # The server creates <prefix>_<logical> databases itself; a fresh prefix per run.
    export EMPORIUM_DATABASE_URL="${base%/*}/bench$$_$(date +%s)"
    say "postgres: EMPORIUM_DATABASE_URL=$EMPORIUM_DATABASE_URL"
fi
if [ "$BACKEND" = scaleout ]; then
    # The topology in miniature; the CLI below seeds its databases (PostgreSQL through
    # PgBouncer, sessions in its Redis Cluster) as it seeds an embedded shop's.
    export SCALEOUT_DIR="$TMP/scaleout" SCALEOUT_PORT=${EMP_TEST_SCALEOUT_PORT:-28500} SCALEOUT_BIN="$BIN" SCALEOUT_RATE_LIMITS=off
    SCALEOUT_UP=1
    t0=$(date +%s.%N)
    "$ROOT/scripts/scaleout.sh" up >"$TMP/scaleout.log" 2>&1 || { tail -n 30 "$TMP/scaleout.log" >&2; die "scripts/scaleout.sh up failed"; }
    say "scaleout: up in $(since "$t0") s (gateway $(sed -n 's/^GATEWAY_URL=//p' "$SCALEOUT_DIR/env"))"
    EMPORIUM_DATABASE_URL=$(sed -n 's/^EMPORIUM_DATABASE_URL=//p' "$SCALEOUT_DIR/env")
    EMPORIUM_REDIS_CLUSTER=$(sed -n 's/^EMPORIUM_REDIS_CLUSTER=//p' "$SCALEOUT_DIR/env")
    export EMPORIUM_DATABASE_URL EMPORIUM_REDIS_CLUSTER
    BOUNCER_PORT=$((SCALEOUT_PORT + 41))
fi

emp() { "$BIN" "$@" --data-dir "$DATA"; }

# ---------------------------------------------------------------------------------------
# seed: users (+ tokens), an admin, the catalog
# ---------------------------------------------------------------------------------------
PW="$WORK/password"
echo "bench-password-$$" >"$PW"
t0=$(date +%s.%N)
HAVE_USERS=0
if emp user bulk-create --count "$USERS" --password-file "$PW" --tokens-out "$WORK/tokens.txt" \
    >"$WORK/users.log" 2>&1 && [ -s "$WORK/tokens.txt" ]; then
    HAVE_USERS=1
    say "users: $(wc -l <"$WORK/tokens.txt") accounts with tokens in $(since "$t0") s"
else
    say "users: bulk-create failed (user scenarios will be skipped):"; tail -n 5 "$WORK/users.log" >&2
fi
ADMIN_EMAIL="bench-admin@bench.example"
emp user create --email "$ADMIN_EMAIL" --password-file "$PW" --role admin >"$WORK/admin.log" 2>&1 ||
    { say "admin: user create failed:"; tail -n 5 "$WORK/admin.log" >&2; }

HAVE_CATALOG=0
SEED_SECONDS=""
if "$BIN" --help 2>&1 | grep -qE '^[[:space:]]+seed[[:space:]]'; then
    t0=$(date +%s.%N)
    if emp seed --products "$PRODUCTS" --categories "$CATEGORIES" >"$WORK/seed.log" 2>&1; then
        HAVE_CATALOG=1
        SEED_SECONDS=$(since "$t0")
        say "catalog: $PRODUCTS products in $CATEGORIES categories seeded in $SEED_SECONDS s"
    else
        say "catalog: seed failed:"; tail -n 10 "$WORK/seed.log" >&2
        [ "$SMOKE" = 1 ] && die "seed failed"
    fi
else
    say "catalog: no \`emporium seed\` command yet (product scenarios skipped: no catalog)"
fi

# ---------------------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=""
SERVER_PIDS=() # the processes whose CPU and memory the table counts
if [ "$BACKEND" = scaleout ]; then
    # The product processes index the catalog when they start: restart them on the seeded one.
    t0=$(date +%s.%N)
    for n in product-1 product-2; do
        "$ROOT/scripts/scaleout.sh" stop "$n" >>"$TMP/scaleout.log" 2>&1
        "$ROOT/scripts/scaleout.sh" start "$n" >>"$TMP/scaleout.log" 2>&1 || die "scaleout: $n did not come back"
    done
    BASE=$(sed -n 's/^GATEWAY_URL=//p' "$SCALEOUT_DIR/env")
    for _ in $(seq 1 300); do curl -fs -o /dev/null "$BASE/api/v1/products?limit=1" && break; sleep 0.1; done
    say "scaleout: product processes restarted on the seeded catalog in $(since "$t0") s"
    for f in $(sed -n 's/^PID_\(USER\|PRODUCT_[12]\|ORDER_[12]\|INVENTORY\|PAYMENT\|SHIPPING\|NOTIFICATION\|ANALYTICS\|WORKER\)=//p' "$SCALEOUT_DIR/env"); do
        SERVER_PIDS+=("$(cat "$f")")
    done
    NGINX_PIDS=$(pgrep -P "$(cat "$SCALEOUT_DIR/nginx/logs/nginx.pid")" | tr '\n' ' ')
    SERVER_PIDS+=($NGINX_PIDS)
    SERVER_PID=${SERVER_PIDS[0]}
    LOG="$TMP/scaleout-access.log" # the processes log into $SCALEOUT_DIR/logs
    : >"$LOG"
    say "server: the topology behind $BASE (${#SERVER_PIDS[@]} processes counted: services, worker, nginx workers $NGINX_PIDS)"
fi
for attempt in 1 2 3; do
    [ "$BACKEND" = scaleout ] && break
    for _ in $(seq 1 50); do
        p=$((26000 + RANDOM % 4000))
        if port_free "$p"; then PORT=$p; break; fi
    done
    [ -n "$PORT" ] || die "no free port found"
    echo "==== bench: serve on 127.0.0.1:$PORT ====" >>"$LOG"
    # shellcheck disable=SC2086
    EMPORIUM_RATE_LIMITS=off "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" --no-demo \
        ${BENCH_SERVER_ARGS:-} >>"$LOG" 2>&1 &
    SERVER_PID=$!
    up=0
    for _ in $(seq 1 750); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null; then up=1; break; fi
        sleep 0.02
    done
    [ $up = 1 ] && break
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if grep -qi "in use" "$LOG"; then PORT=""; continue; fi
    tail -n 30 "$LOG" >&2
    die "the server did not come up"
done
[ -n "$SERVER_PID" ] || die "the server did not come up (address in use 3 times)"
if [ "$BACKEND" != scaleout ]; then
    BASE="http://127.0.0.1:$PORT"
    SERVER_PIDS=("$SERVER_PID")
    say "server: pid $SERVER_PID on $BASE, data in $DATA"
fi

# ---------------------------------------------------------------------------------------
# what exists: a route the router does not know answers 404 "no such endpoint" (or 405)
# ---------------------------------------------------------------------------------------
TOKEN1=""
[ $HAVE_USERS = 1 ] && TOKEN1=$(head -n 1 "$WORK/tokens.txt")
# exists METHOD PATH [TOKEN] — 0 if the server routes it
exists() {
    local method=$1 path=$2 tok=${3:-} body='{}' out code
    local args=(-sS -o "$WORK/probe.body" -w '%{http_code}' -X "$method" -H 'Content-Type: application/json')
    [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
    [ "$method" = POST ] || [ "$method" = PUT ] || [ "$method" = PATCH ] && args+=(--data "$body")
    code=$(curl "${args[@]}" "$BASE$path" 2>/dev/null) || return 1
    out=$(cat "$WORK/probe.body")
    if [ "$code" = 405 ]; then return 1; fi
    if [ "$code" = 404 ] && grep -q 'no such endpoint' <<<"$out"; then return 1; fi
    return 0
}

ADMIN_TOKEN=$(curl -sS -X POST -H 'Content-Type: application/json' \
    --data "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$(cat "$PW")\"}" \
    "$BASE/api/v1/auth/login" 2>/dev/null | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p') || true

declare -A EP
probe() { if exists "$2" "$3" "${4:-}"; then EP[$1]=1; else EP[$1]=0; fi; }
probe product_get GET /api/v1/products/1
probe product_list GET '/api/v1/products?limit=1'
probe categories GET /api/v1/categories
probe cart_get GET /api/v1/cart "$TOKEN1"
probe cart_add POST /api/v1/cart/items "$TOKEN1"
probe order_post POST /api/v1/orders "$TOKEN1"
probe order_get GET /api/v1/orders/1 "$TOKEN1"
probe inventory_put PUT /api/v1/inventory/1 "$ADMIN_TOKEN"
say "endpoints: $(for k in "${!EP[@]}"; do printf '%s=%s ' "$k" "${EP[$k]}"; done)"

# ---------------------------------------------------------------------------------------
# catalog sample: ids (shuffled: the first $HOT are the hot set), names, prices, categories
# ---------------------------------------------------------------------------------------
: >"$WORK/ids.txt"
# Fast path: read the catalog straight from the database (seconds for 100,000 rows); the
# public API (GET /products pages) is the fallback when the schema is not what we expect.
catalog_sql() {
    local sql='SELECT id, price, name FROM products'
    if [ "$BACKEND" = sqlite ]; then
        [ -f "$DATA/products.db" ] && command -v sqlite3 >/dev/null || return 1
        sqlite3 -readonly -separator $'\t' "$DATA/products.db" "$sql" 2>/dev/null
    else
        command -v psql >/dev/null || return 1
        local prefix=${EMPORIUM_DATABASE_URL##*/} db
        for db in $(psql "${EMPORIUM_DATABASE_URL%/*}/postgres" -Atqc \
            "SELECT datname FROM pg_database WHERE datname LIKE '${prefix}%' ORDER BY datname" 2>/dev/null); do
            if psql "${EMPORIUM_DATABASE_URL%/*}/$db" -AtqF $'\t' -c "$sql" 2>/dev/null; then return 0; fi
        done
        return 1
    fi
}
if [ $HAVE_CATALOG = 1 ]; then
    t0=$(date +%s.%N)
    how=""
    if catalog_sql >"$WORK/catalog.tsv" && [ -s "$WORK/catalog.tsv" ]; then
        how="from the $BACKEND database"
        cut -f1 "$WORK/catalog.tsv" >"$WORK/ids.raw"
        cut -f2 "$WORK/catalog.tsv" >"$WORK/prices.raw"
        cut -f3- "$WORK/catalog.tsv" >"$WORK/names.raw"
    elif [ "${EP[product_list]}" = 1 ]; then
        cursor=""
        : >"$WORK/ids.raw"
        : >"$WORK/names.raw"
        : >"$WORK/prices.raw"
        pages=0
        while :; do
            url="$BASE/api/v1/products?limit=100"
            [ -n "$cursor" ] && url="$url&cursor=$cursor"
            page=$(curl -sS "$url") || break
            pages=$((pages + 1))
            grep -o '"id" *: *"[0-9]*"' <<<"$page" | grep -o '[0-9][0-9]*' >>"$WORK/ids.raw" || true
            grep -o '"name" *: *"[^"]*"' <<<"$page" | sed 's/.*: *"//; s/"$//' >>"$WORK/names.raw" || true
            grep -o '"amount" *: *[0-9]*' <<<"$page" | grep -o '[0-9][0-9]*$' >>"$WORK/prices.raw" || true
            cursor=$(sed -n 's/.*"next_cursor" *: *"\([^"]*\)".*/\1/p' <<<"$page")
            [ -n "$cursor" ] || break
            [ $pages -ge $(((PRODUCTS + 99) / 100 + 5)) ] && break
        done
        how="from $pages pages of GET /api/v1/products"
    fi
    if [ -n "$how" ]; then
        grep -E '^[0-9]+$' "$WORK/ids.raw" | sort -u | shuf >"$WORK/ids.txt" || true
        shuf -n 5000 "$WORK/names.raw" >"$WORK/names.txt" || true
        if [ -s "$WORK/prices.raw" ]; then
            grep -E '^[0-9]+$' "$WORK/prices.raw" | sort -n |
                awk '{a[NR]=$1} END {if (NR) print a[int(NR*0.1)+1], a[int(NR*0.9)+1]}' >"$WORK/prices.txt"
        fi
        say "catalog sample: $(wc -l <"$WORK/ids.txt") ids $how in $(since "$t0") s"
    fi
fi
if [ "${EP[categories]}" = 1 ]; then
    curl -sS "$BASE/api/v1/categories" | grep -o '"slug" *: *"[^"]*"' | sed 's/.*: *"//; s/"$//' >"$WORK/categories.txt" || true
fi
HAVE_IDS=0
[ -s "$WORK/ids.txt" ] && HAVE_IDS=1

# Stock for cart and order traffic: the first $CART_PRODUCTS hot ids, available = 10^9.
head -n "$CART_PRODUCTS" "$WORK/ids.txt" >"$WORK/cart_ids.txt"
if [ $HAVE_IDS = 1 ] && [ "${EP[inventory_put]}" = 1 ] && [ -n "$ADMIN_TOKEN" ]; then
    cfg="$WORK/stock.curl"
    : >"$cfg"
    first=1
    while read -r id; do
        [ $first = 1 ] || echo "next" >>"$cfg"
        first=0
        cat >>"$cfg" <<EOF
url = "$BASE/api/v1/inventory/$id"
request = "PUT"
header = "Authorization: Bearer $ADMIN_TOKEN"
header = "Content-Type: application/json"
data = "{\"available\":1000000000}"
output = "/dev/null"
write-out = "%{http_code}\n"
EOF
    done <"$WORK/cart_ids.txt"
    codes=$(curl -sS -K "$cfg" | sort | uniq -c | tr '\n' ' ')
    say "stock: PUT /inventory for $(wc -l <"$WORK/cart_ids.txt") products: $codes"
fi

# ---------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of every counted process (all threads)
    local p t=0
    for p in "${SERVER_PIDS[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    echo "$t"
}
# PostgreSQL: transactions and statements this run's databases sent through PgBouncer (its
# SHOW STATS, summed over the databases of this run's prefix): round trips are what the
# PostgreSQL fast path cuts, and unlike req/s they do not depend on the machine's load.
bouncer_counts() {
    [ "$BACKEND" != sqlite ] || { echo "0 0"; return; }
    psql -h 127.0.0.1 -p "$BOUNCER_PORT" -U postgres -d pgbouncer -AtF' ' \
        -c 'SHOW STATS' 2>/dev/null |
        awk -v p="${EMPORIUM_DATABASE_URL##*/}_" 'index($1, p) == 1 { x += $2; q += $3 } END { print x + 0, q + 0 }'
}

# PostgreSQL: CPU ticks (utime + stime) of this run's backends, one "<database> <ticks>"
# line per logical database (the order shards summed as "orders"), and PgBouncer's. With
# round trips, this says where a request's PostgreSQL work goes; unlike req/s it hardly
# depends on the machine's other load. A backend that exits during a row loses its ticks.
pg_cpu() {
    [ "$BACKEND" != sqlite ] || return 0
    local prefix="${EMPORIUM_DATABASE_URL##*/}_" p cmd db t
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        case $cmd in
        "postgres: postgres $prefix"*)
            db=${cmd#"postgres: postgres $prefix"}
            db=${db%% *}
            if [[ $db =~ ^(.*)_[0-9]+$ ]]; then db=${BASH_REMATCH[1]}; fi ;;
        pgbouncer*) db=PgBouncer ;;
        *) continue ;;
        esac
        t=$(awk '{print $14 + $15}' "$p/stat" 2>/dev/null) || continue
        echo "$db ${t:-0}"
    done | awk '{ a[$1] += $2 } END { for (k in a) print k, a[k] }'
}
# The events still waiting when a row ends (outbox rows not relayed, messages not applied by
# a consumer group): work the row caused that its req/s does not include.
backlog() {
    { curl -s --max-time 5 "$BASE/metrics" 2>/dev/null || true; } | awk '
        /^emporium_outbox_pending / { o += $2 }
        /^emporium_consumer_lag\{/ { match($0, /group="[^"]*"/); g = substr($0, RSTART + 7, RLENGTH - 8); l[g] += $NF }
        END { s = sprintf("outbox %d", o); for (g in l) if (l[g] > 0) s = s sprintf(", %s %d", g, l[g]); print s }'
}

# The write counters from /metrics, one "<kind> <db> <value>" line each (kind: commits,
# frames, batches, intents), the order shards as one "orders". SQLite: its commits and the
# group-commit writers; PostgreSQL: db_query_many_shared's combined commits (batches, calls).
write_counts() {
    { curl -s --max-time 5 "$BASE/metrics" 2>/dev/null || true; } | awk '
        /^emporium_db_(commits|wal_frames|write_batches|write_intents)_total\{/ {
            k = $1; sub(/^emporium_db_/, "", k); sub(/_total\{.*/, "", k); sub(/^wal_/, "", k); sub(/^write_/, "", k)
            match($1, /db="[^"]*"/); d = substr($1, RSTART + 4, RLENGTH - 5); sub(/_[0-9]+$/, "", d)
            v[k " " d] += $NF
        }
        END { for (x in v) print x, v[x] }'
}

declare -A R_RPS R_P50 R_P90 R_P99 R_ERR R_CPU R_NOTE R_STATUS R_RETRIED R_PGCPU R_BACKLOG R_SQ
wanted() { [ "$SCENARIOS" = all ] || [ "$1" = health ] || [[ ",$SCENARIOS," == *",$1,"* ]]; }

# why_not NAME — empty if the scenario can run, else the reason for its row
why_not() {
    local need=()
    case $1 in
    health) ;;
    product-get) need=(catalog ids product_get) ;;
    search) need=(catalog ids product_list) ;;
    add-to-cart) need=(catalog ids users cart_add) ;;
    place-order) need=(catalog ids users cart_add order_post) ;;
    order-status) need=(users order_get orders) ;;
    browse-mix) need=(catalog ids users product_get cart_get cart_add product_list order_post) ;;
    seed-mix) need=(catalog ids users product_get product_list cart_get cart_add order_post order_get) ;;
    esac
    local n
    for n in "${need[@]}"; do
        case $n in
        catalog) [ $HAVE_CATALOG = 1 ] || { echo "skipped: no catalog"; return; } ;;
        ids) [ $HAVE_IDS = 1 ] || { echo "skipped: no product ids"; return; } ;;
        users) [ $HAVE_USERS = 1 ] || { echo "skipped: no users"; return; } ;;
        orders) [ -s "$WORK/orders.txt" ] || {
            if [ "${EP[order_get]}" = 1 ]; then echo "skipped: no orders made"; else echo "n/a (endpoint missing)"; fi
            return
        } ;;
        *) [ "${EP[$n]}" = 1 ] || { echo "n/a (endpoint missing)"; return; } ;;
        esac
    done
}

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | head -n 1; }
ms() { awk -v us="$1" 'BEGIN { if (us == "") print "-"; else printf "%.2f", us / 1000 }'; }

run_scenario() {
    local name=$1 out="$TMP/$name.wrk"
    local c0 c1 line reqs dur rps p50 p90 p99 errs okn n
    c0=$(cpu_ticks)
    local b0 b1 g0 g1
    b0=$(bouncer_counts)
    g0=$(pg_cpu)
    local s0 s1
    if [ "$BACKEND" != scaleout ]; then s0=$(write_counts); fi
    local rc=0 try
    for try in 1 2; do
        rc=0
        BENCH_DIR="$BENCH_DIR" BENCH_WORK="$WORK" BENCH_THREADS="$THREADS" BENCH_HOT="$HOT" \
            BENCH_ORDERS_OUT="$WORK/orders.txt" \
            wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency \
            -s "$BENCH_DIR/$name.lua" "$BASE" >"$out" 2>&1 || rc=$?
        # wrk 4.1.0 (Debian's) has died of SIGSEGV once in a smoke run's place-order row,
        # with nothing in its output (not reproduced in a dozen runs since): a crash of the
        # load generator, not an answer of the server. Such a row is run once more, and the
        # table says so; a second crash is a harness error as before.
        if [ "$rc" -lt 128 ] || [ "$try" = 2 ]; then break; fi
        say "$name: wrk died of signal $((rc - 128)) (the load generator crashed); running the row again"
        R_RETRIED[$name]="wrk crashed once (signal $((rc - 128))), row run again"
        c0=$(cpu_ticks)
        b0=$(bouncer_counts)
        g0=$(pg_cpu)
        if [ "$BACKEND" != scaleout ]; then s0=$(write_counts); fi
    done
    c1=$(cpu_ticks)
    b1=$(bouncer_counts)
    g1=$(pg_cpu)
    if [ "$BACKEND" != scaleout ]; then s1=$(write_counts); fi
    line=$(grep '^BENCH_RESULT' "$out" || true)
    if [ -z "$line" ]; then
        R_NOTE[$name]="harness error (see below)"
        say "$name: wrk printed no result:"; tail -n 20 "$out" >&2
        return
    fi
    reqs=$(kv requests "$line")
    dur=$(kv duration_us "$line")
    errs=$(($(kv sock_errors "$line") + $(kv status_errors "$line")))
    p50=$(kv p50_us "$line"); p90=$(kv p90_us "$line"); p99=$(kv p99_us "$line")
    R_STATUS[$name]=$(sed -n 's/^BENCH_STATUS //p' "$out")
    if [ "$name" = place-order ]; then
        # The row is about orders: count and latency of POST /orders alone.
        local k
        k=$(grep '^BENCH_KIND kind=place-order ' "$out" || true)
        local adds
        adds=$(grep '^BENCH_KIND kind=add-to-cart ' "$out" || true)
        okn=$(kv ok "$k"); okn=${okn:-0}
        p50=$(kv p50_us "$k"); p90=$(kv p90_us "$k"); p99=$(kv p99_us "$k")
        R_NOTE[$name]="orders/s; $(kv n "$adds") add-to-cart in between"
        reqs=$okn
    fi
    rps=$(awk -v r="$reqs" -v d="$dur" 'BEGIN { printf "%.0f", (d > 0 ? r / (d / 1e6) : 0) }')
    R_RPS[$name]=$rps
    R_P50[$name]=$(ms "$p50"); R_P90[$name]=$(ms "$p90"); R_P99[$name]=$(ms "$p99")
    R_ERR[$name]=$errs
    R_CPU[$name]=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v r="$reqs" \
        'BEGIN { if (r > 0) printf "%.3f", t / hz / (r / 1000); else print "-" }')
    R_REQS[$name]=$reqs
    # Events the row left behind: the row's req/s does not include their work, so wait for
    # them (at most BENCH_DRAIN_SECONDS, 120) before the next row, and give the rate that
    # includes that wait too: what the shop sustains with its consumers keeping up.
    local bl t0 drain
    bl=$(backlog)
    if [ -n "$bl" ] && [ "$bl" != "outbox 0" ]; then
        t0=$(date +%s.%N)
        while [ "$(backlog)" != "outbox 0" ] && [ "$(since "$t0" | cut -d. -f1)" -lt "${BENCH_DRAIN_SECONDS:-120}" ]; do
            sleep 0.2
        done
        drain=$(since "$t0")
        R_BACKLOG[$name]="$bl; drained in $drain s$( [ "$(backlog)" = "outbox 0" ] || echo " (not all: timed out)"), so $(awk -v r="$reqs" -v d="$dur" -v w="$drain" \
            'BEGIN { printf "%.0f", r / (d / 1e6 + w) }') sustained (requests / (row + drain))"
    elif [ -n "$bl" ]; then
        R_BACKLOG[$name]="none"
    fi
    if [ "$BACKEND" != sqlite ] && [ "$reqs" -gt 0 ]; then
        # ms of CPU per request, biggest first: "orders 0.68, inventory 0.49, …"
        R_PGCPU[$name]=$(printf '%s\n' "$g0" | sed 's/^/0 /' | cat - <(printf '%s\n' "$g1" | sed 's/^/1 /') |
            awk -v r="$reqs" -v hz="$CLK_TCK" 'NF == 3 { v[$2] += ($1 == 1 ? $3 : -$3) }
                END { for (k in v) if (v[k] / hz * 1000 / r >= 0.0005) printf "%.3f %s\n", v[k] / hz * 1000 / r, k }' |
            sort -rn | awk '{ if ($2 != "PgBouncer") { t += $1; s = s (s ? ", " : "") $2 " " $1 } else b = $1 }
                END { if (s != "") printf "%.2f ms: %s; PgBouncer %s ms", t, s, (b == "" ? "0" : b) }')
    fi
    if [ "$BACKEND" = sqlite ] && [ "$reqs" -gt 0 ]; then
        # Per request: commits, the WAL frames (pages) they wrote, by database (the biggest
        # first), and the group-commit writers' intents per batch.
        R_SQ[$name]=$(printf '%s\n' "$s0" | sed 's/^/0 /' | cat - <(printf '%s\n' "$s1" | sed 's/^/1 /') |
            awk -v r="$reqs" 'NF == 4 { v[$2 " " $3] += ($1 == 1 ? $4 : -$4); k[$2] += ($1 == 1 ? $4 : -$4) }
                END {
                    if (k["commits"] / r < 0.01) exit
                    s = ""; n = 0
                    while (1) { best = ""; for (x in v) if (x ~ /^frames / && !(x in done) && (best == "" || v[x] > v[best])) best = x
                        if (best == "" || v[best] / r < 0.05 || n == 6) break
                        done[best] = 1; n++; d = best; sub(/^frames /, "", d); s = s (s ? ", " : "") sprintf("%s %.1f", d, v[best] / r) }
                    printf "%.2f commits, %.1f WAL frames (%s), %.1f intents per group commit", k["commits"] / r, k["frames"] / r, s,
                        (k["batches"] > 0 ? k["intents"] / k["batches"] : 0) }')
    fi
    if [ "$BACKEND" != sqlite ]; then
        R_DB[$name]=$(awk -v a="$b0" -v b="$b1" -v r="$reqs" 'BEGIN { split(a, x, " "); split(b, y, " ");
            if (r > 0) printf "%.2f transactions, %.2f statements", (y[1] - x[1]) / r, (y[2] - x[2]) / r; else print "-" }')
        # Shared commits (db_query_many_shared): calls per request and per commit.
        R_DB[$name]+=$(printf '%s\n' "$s0" | sed 's/^/0 /' | cat - <(printf '%s\n' "$s1" | sed 's/^/1 /') |
            awk -v r="$reqs" 'NF == 4 { k[$2] += ($1 == 1 ? $4 : -$4) }
                END { if (r > 0 && k["intents"] / r >= 0.005) printf "; %.2f shared-commit calls in %.2f commits (%.1f a commit)",
                    k["intents"] / r, k["batches"] / r, k["intents"] / k["batches"] }')
    fi
    say "$name: $rps req/s, p99 $(ms "$p99") ms, $errs errors (${R_STATUS[$name]})"
    # The access log grows by ~300 bytes a request: keep the disk free between scenarios.
    if [ "${BENCH_KEEP_LOG:-0}" != 1 ]; then
        LOG_BYTES=$((LOG_BYTES + $(stat -c %s "$LOG")))
        # Keep what matters before emptying it: every warning or error and every 5xx (info
        # lines are domain events now: one per order placed and paid).
        grep -E '"level":"(warn|error)"' "$LOG" | sed "s/^/[$name] /" >>"$WORK/server-events.log" || true
        grep '"status":5[0-9][0-9]' "$LOG" | sed "s/^/[$name] /" >>"$WORK/server-events.log" || true
        : >"$LOG"
    fi
}
declare -A R_REQS R_HADJ R_DB
LOG_BYTES=0

# The machine is shared and its background load drifts during a run, so each scenario is
# also compared with a short /health run made just before it (BENCH_HEALTH_SECONDS, 3 s;
# 0 compares every row with the health row instead).
HEALTH_SECONDS=${BENCH_HEALTH_SECONDS:-3}
[ "$SMOKE" = 1 ] && HEALTH_SECONDS=${BENCH_HEALTH_SECONDS:-0}
health_rps() {
    local line
    line=$(wrk -t"$THREADS" -c"$CONNS" -d"${1}s" --timeout 10s -s "$BENCH_DIR/health.lua" "$BASE" 2>&1 |
        grep '^BENCH_RESULT' || true)
    [ -n "$line" ] || return 0
    awk -v r="$(kv requests "$line")" -v d="$(kv duration_us "$line")" \
        'BEGIN { if (d > 0) printf "%.0f", r / (d / 1e6) }'
}

for name in "${ALL_SCENARIOS[@]}"; do
    wanted "$name" || { R_NOTE[$name]="not selected"; continue; }
    reason=$(why_not "$name")
    if [ -n "$reason" ]; then
        R_NOTE[$name]=$reason
        say "$name: $reason"
        continue
    fi
    if [ "$name" != health ] && [ "$HEALTH_SECONDS" != 0 ]; then
        R_HADJ[$name]=$(health_rps "$HEALTH_SECONDS")
        : >"$LOG"
    fi
    say "$name: ${DURATION} s, $CONNS connections…"
    run_scenario "$name"
done

status_files=()
for p in "${SERVER_PIDS[@]}"; do [ -r "/proc/$p/status" ] && status_files+=("/proc/$p/status"); done
HWM_KB=$(awk '/^VmHWM/ {s += $2} END {print s + 0}' "${status_files[@]}")
RSS_KB=$(awk '/^VmRSS/ {s += $2} END {print s + 0}' "${status_files[@]}")
# File-backed pages (SQLite's mmap of the databases) count in RSS but are reclaimable cache.
RSS_PARTS=$(awk '/^Rss(Anon|File|Shmem):/ {k = tolower(substr($1, 4, length($1) - 4)); if (!(k in v)) o[++n] = k; v[k] += $2}
    END {for (i = 1; i <= n; i++) printf "%s%s %.1f", (i > 1 ? ", " : ""), o[i], v[o[i]] / 1024}' "${status_files[@]}")
DATA_MB=$(du -sm "$DATA" | cut -f1)

# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------
target() {
    case $1 in
    health) echo "ceiling (HTTP stack)" ;;
    product-get) echo ">= 50 % of health" ;;
    search) echo "p99 < 10 ms (seed < 80 ms)" ;;
    add-to-cart) echo "p99 < 5 ms (seed < 40 ms)" ;;
    place-order) echo ">= 5,000/s, p99 < 50 ms (seed 250-500/s, < 800 ms)" ;;
    order-status) echo "p99 < 150 ms (seed)" ;;
    browse-mix) echo ">= 50,000 req/s" ;;
    seed-mix) echo ">= 5,000 req/s (seed 2,500-5,000)" ;;
    esac
}
# verdict NAME — met / MISSED / - (no target), and "errors" when more than 1 % failed
verdict() {
    local n=$1 rps=${R_RPS[$1]} p99=${R_P99[$1]} h=${R_HADJ[$1]:-${R_RPS[health]:-0}} v
    v=$(awk -v n="$n" -v rps="$rps" -v p99="$p99" -v h="$h" 'BEGIN {
        ok = -1
        if (n == "product-get" && h > 0) ok = (rps >= 0.5 * h)
        if (n == "search") ok = (p99 < 10)
        if (n == "add-to-cart") ok = (p99 < 5)
        if (n == "place-order") ok = (rps >= 5000 && p99 < 50)
        if (n == "order-status") ok = (p99 < 150)
        if (n == "browse-mix") ok = (rps >= 50000)
        if (n == "seed-mix") ok = (rps >= 5000)
        print (ok < 0 ? "-" : (ok ? "met" : "MISSED")) }')
    local reqs=${R_REQS[$1]:-0} errs=${R_ERR[$1]:-0}
    if [ "$errs" -gt 0 ] && [ $((errs * 100)) -gt "$reqs" ]; then v="$v, errors"; fi
    echo "$v"
}

{
    echo
    echo "Emporium bench — backend $BACKEND, $PRODUCTS products, $USERS users, wrk -t$THREADS -c$CONNS -d${DURATION}s, $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "binary $BIN ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    printf '%-13s %9s %8s %8s %8s %7s  %-50s %9s %11s  %s\n' \
        scenario "req/s" "p50 ms" "p90 ms" "p99 ms" errors "seed target" "vs health" "cpu s/1k" verdict
    printf '%s\n' "$(printf '%.0s-' $(seq 1 140))"
    for name in "${ALL_SCENARIOS[@]}"; do
        if [ -z "${R_RPS[$name]:-}" ]; then
            printf '%-13s %s\n' "$name" "${R_NOTE[$name]:-not run}"
            continue
        fi
        frac=$(awk -v r="${R_RPS[$name]}" -v h="${R_HADJ[$name]:-${R_RPS[health]:-0}}" 'BEGIN { if (h > 0) printf "%.2f", r / h; else print "-" }')
        printf '%-13s %9s %8s %8s %8s %7s  %-50s %9s %11s  %s\n' "$name" "${R_RPS[$name]}" \
            "${R_P50[$name]}" "${R_P90[$name]}" "${R_P99[$name]}" "${R_ERR[$name]}" \
            "$(target "$name")" "$frac" "${R_CPU[$name]}" "$(verdict "$name")"
    done
    echo
    hwm_mb=$(awk -v k="${HWM_KB:-0}" 'BEGIN { printf "%.1f", k / 1024 }')
    [ "$BACKEND" != scaleout ] || echo "scale-out: cpu s/1k and RSS are the sums over ${#SERVER_PIDS[@]} processes (10 service processes, the worker, nginx's workers); requests through the gateway $BASE"
    printf 'server peak RSS (VmHWM): %s MB (target <= 256 MB: %s); RSS at the end %s MB (%s MB); data dir %s MB\n' \
        "$hwm_mb" "$(awk -v k="${HWM_KB:-0}" 'BEGIN { print (k <= 262144 ? "met" : "MISSED") }')" \
        "$(awk -v k="${RSS_KB:-0}" 'BEGIN { printf "%.1f", k / 1024 }')" "$RSS_PARTS" "$DATA_MB"
    if [ -n "$SEED_SECONDS" ]; then echo "seed: $PRODUCTS products in $SEED_SECONDS s"; fi
    if [ "$HEALTH_SECONDS" != 0 ]; then
        hs=""
        for name in "${ALL_SCENARIOS[@]}"; do
            if [ -n "${R_HADJ[$name]:-}" ]; then hs="$hs ${R_HADJ[$name]}"; fi
        done
        echo "vs health = req/s / the req/s of a ${HEALTH_SECONDS} s GET /health run made just before the scenario (those runs:${hs:- none})"
    fi
    echo "cpu s/1k = server utime+stime (all threads) per 1,000 requests (place-order: per 1,000 orders, with their add-to-cart)"
    for name in "${ALL_SCENARIOS[@]}"; do
        if [ -n "${R_RETRIED[$name]:-}" ]; then echo "$name: ${R_RETRIED[$name]}"; fi
    done
    if [ "$BACKEND" = sqlite ]; then
        echo "SQLite writes per request (place-order: per order, with its add-to-cart), from /metrics (the order shards summed):"
        for name in "${ALL_SCENARIOS[@]}"; do
            if [ -n "${R_SQ[$name]:-}" ]; then printf '  %-13s %s\n' "$name" "${R_SQ[$name]}"; fi
        done
    fi
    if [ "$BACKEND" != sqlite ]; then
        echo "PostgreSQL work per request (place-order: per order, with its add-to-cart), counted by PgBouncer:"
        [ "$BACKEND" != scaleout ] || echo "  (scale-out: every process's background work too — outbox relays, sweeps — so light rows are inflated)"
        for name in "${ALL_SCENARIOS[@]}"; do
            if [ -n "${R_DB[$name]:-}" ]; then printf '  %-13s %s\n' "$name" "${R_DB[$name]}"; fi
        done
        echo "PostgreSQL backends' CPU per request, by logical database (the order shards summed):"
        for name in "${ALL_SCENARIOS[@]}"; do
            if [ -n "${R_PGCPU[$name]:-}" ]; then printf '  %-13s %s\n' "$name" "${R_PGCPU[$name]}"; fi
        done
    fi
    echo "events not yet processed when the row ended (outbox rows; messages per consumer group):"
    for name in "${ALL_SCENARIOS[@]}"; do
        if [ -n "${R_BACKLOG[$name]:-}" ]; then printf '  %-13s %s\n' "$name" "${R_BACKLOG[$name]}"; fi
    done
    echo "access log: $LOG_BYTES bytes written during the scenarios"
    if [ -s "$WORK/server-events.log" ]; then
        echo "server warnings/errors and 5xx during the scenarios: $(wc -l <"$WORK/server-events.log") lines (first 5):"
        head -n 5 "$WORK/server-events.log" | cut -c1-300 | sed 's/^/  /'
    fi
    for name in "${ALL_SCENARIOS[@]}"; do
        if [ -n "${R_RPS[$name]:-}" ]; then
            note=${R_NOTE[$name]:-}
            if [ -n "${R_STATUS[$name]:-}" ]; then echo "  $name: status ${R_STATUS[$name]}${note:+; $note}"; fi
        fi
    done
} | tee "$TMP/table.txt"
if [ -n "${BENCH_TABLE_OUT:-}" ]; then cp "$TMP/table.txt" "$BENCH_TABLE_OUT"; fi

# ---------------------------------------------------------------------------------------
# smoke mode: the harness works end to end
# ---------------------------------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
    fail=0
    for name in "${ALL_SCENARIOS[@]}"; do
        note=${R_NOTE[$name]:-}
        case $note in "harness error"*) say "smoke: $name: harness error"; fail=1; continue ;; esac
        [ -n "${R_RPS[$name]:-}" ] || continue
        reqs=${R_REQS[$name]:-0}
        errs=${R_ERR[$name]:-0}
        if [ "$reqs" -le 0 ]; then say "smoke: $name: no successful request"; fail=1; fi
        if [ "$errs" -gt 0 ] && [ $((errs * 20)) -gt "$reqs" ]; then
            say "smoke: $name: $errs errors in $reqs requests (${R_STATUS[$name]})"; fail=1
        fi
    done
    kill -0 "$SERVER_PID" 2>/dev/null || { say "smoke: the server died"; fail=1; }
    [ $fail = 0 ] || { tail -n 30 "$LOG" >&2; exit 1; }
    say "smoke: ok"
fi
