#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scaleout.sh — the seed's topology in miniature on this machine: every service group as its
# own `emporium serve --services …` process behind nginx, calling each other over HTTP
# (docs/topology.md), on PostgreSQL through PgBouncer, a Redis Cluster and the Kafka mock.
#
#   scripts/scaleout.sh up            start everything (idempotent: a second `up` stops the
#                                     old run first), print where it is, write build/scaleout/env
#   scripts/scaleout.sh down          stop everything `up` started (by the PIDs it recorded)
#   scripts/scaleout.sh stop NAME     stop one process (e.g. inventory) — fault tests
#   scripts/scaleout.sh start NAME    start it again and wait until it is ready
#   scripts/scaleout.sh restart-bouncer  stop PgBouncer and start it again (fault drills)
#   scripts/scaleout.sh status        print the env file and which processes are alive
#
# Ports (SCALEOUT_PORT, default 28500, is the gateway; everything else is above it):
#   +0 nginx gateway   +1 user (with the cart service, for the guest-cart merge at login)   +2/+12 product (2)   +3/+13 order (2)   +4 inventory
#   +5 payment   +6 shipping   +7 notification   +8 analytics   +19 the one-shot seeding run
#   +40 PostgreSQL   +41 PgBouncer   +42 its streaming replica (unused yet)   +60 Redis standalone, +61..+66 Redis Cluster (3 masters
#   + 3 replicas; bus ports +71..+76)   Kafka mock: kernel-chosen ports (in the env file)
# Environment: SCALEOUT_BIN (default build/emporium), SCALEOUT_DIR (default build/scaleout),
# SCALEOUT_RATE_LIMITS (on/off, default on: the services' per-client limits behind the
# gateway and the gateway's per-address limits; off for benchmarks from one address), SCALEOUT_DRAIN_SECONDS (default 2), SCALEOUT_ORDER_SWEEP_SECONDS (default 30: how often
# the order processes' recovery sweep runs), SCALEOUT_PORT. Needs: postgres 15, pgbouncer, redis, nginx, curl (bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=$(realpath "${SCALEOUT_BIN:-build/emporium}")
DIR=${SCALEOUT_DIR:-$ROOT/build/scaleout}
case "$DIR" in /*) ;; *) DIR="$ROOT/$DIR" ;; esac
B=${SCALEOUT_PORT:-28500}
KAFKA_MOCK="$(dirname "$BIN")/emporium-kafka-mock"
ENVF="$DIR/env"
TOKEN_FILE="$DIR/internal-token"

# name -> "port services"
declare -A PROC=(
    [user]="$((B + 1)) user,cart,worker"
    [product-1]="$((B + 2)) product,web,recommendation,worker"
    [product-2]="$((B + 12)) product,web,recommendation,worker"
    [order-1]="$((B + 3)) order,cart,worker"
    [order-2]="$((B + 13)) order,cart,worker"
    [inventory]="$((B + 4)) inventory,worker"
    [payment]="$((B + 5)) payment,worker"
    [shipping]="$((B + 6)) shipping,worker"
    [notification]="$((B + 7)) notification,worker"
    [analytics]="$((B + 8)) analytics,worker"
)
ORDER=(user product-1 product-2 inventory payment shipping notification analytics order-1 order-2)

servers_env() {
    EMP_TEST_PG_PORT=$((B + 40)) EMP_TEST_BOUNCER_PORT=$((B + 41)) EMP_TEST_REPLICA_PORT=$((B + 42)) EMP_TEST_REDIS_PORT=$((B + 60)) \
        scripts/test-servers.sh "$@" "$DIR/servers"
}

say() { printf 'scaleout: %s\n' "$*" >&2; }

wait_http() { # url seconds what
    local i
    for i in $(seq 1 $(($2 * 10))); do
        curl -fs -o /dev/null --max-time 2 "$1" && return 0
        sleep 0.1
    done
    say "$3 did not answer $1 within $2 s"
    return 1
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() { # pidfile: SIGTERM, wait for the exit (generous), then SIGKILL
    local f=$1 pid i
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

# The environment every emporium process of the topology shares.
common_env() {
    local url cluster brokers token
    url=$(grep '^EMPORIUM_DATABASE_URL=' "$ENVF" | cut -d= -f2-)
    cluster=$(grep '^EMPORIUM_REDIS_CLUSTER=' "$ENVF" | cut -d= -f2-)
    brokers=$(grep '^EMPORIUM_KAFKA_BROKERS=' "$ENVF" | cut -d= -f2-)
    token=$(cat "$TOKEN_FILE")
    echo "EMPORIUM_DATABASE_URL=$url EMPORIUM_REDIS_CLUSTER=$cluster EMPORIUM_KAFKA_BROKERS=$brokers"
    echo "EMPORIUM_INTERNAL_TOKEN=$token EMPORIUM_TRUSTED_PROXIES=127.0.0.1"
    echo "EMPORIUM_RATE_LIMITS=${SCALEOUT_RATE_LIMITS:-on} EMPORIUM_CONSUMERS=none"
    echo "EMPORIUM_DB_POOL_SIZE=4 EMPORIUM_THREADS=8 EMPORIUM_OFFLOAD_THREADS=8"
    echo "EMPORIUM_DRAIN_SECONDS=${SCALEOUT_DRAIN_SECONDS:-2} EMPORIUM_ORDER_SWEEP_SECONDS=${SCALEOUT_ORDER_SWEEP_SECONDS:-30}"
    echo "EMPORIUM_INVENTORY_URL=http://127.0.0.1:$((B + 4)) EMPORIUM_PAYMENT_URL=http://127.0.0.1:$((B + 5))"
    echo "EMPORIUM_SHIPPING_URL=http://127.0.0.1:$((B + 6)) EMPORIUM_PRODUCT_URL=http://127.0.0.1:$((B + 2))"
    # distributed tracing (docs/tracing.md): every process exports its spans there when set
    if [ -n "${EMPORIUM_OTLP_ENDPOINT:-}" ]; then echo "EMPORIUM_OTLP_ENDPOINT=$EMPORIUM_OTLP_ENDPOINT"; fi
    # Every process without the user service checks bearer tokens at the user process.
    echo "EMPORIUM_USER_URL=http://127.0.0.1:$((B + 1))"
}

start_proc() { # name
    local name=$1 port services
    read -r port services <<<"${PROC[$name]}"
    local pidf="$DIR/$name.pid" log="$DIR/logs/$name.log"
    alive "$pidf" && return 0
    # shellcheck disable=SC2046
    env $(common_env) EMPORIUM_DEMO=off EMPORIUM_DATA_DIR="$DIR/data/$name" \
        setsid "$BIN" serve --listen "127.0.0.1:$port" --services "$services" \
        >>"$log" 2>&1 </dev/null &
    echo $! >"$pidf"
}

wait_proc() { # name
    local port
    read -r port _ <<<"${PROC[$1]}"
    wait_http "http://127.0.0.1:$port/ready" 90 "$1" || { tail -n 20 "$DIR/logs/$1.log" >&2; return 1; }
}

gateway_conf() {
    # upstream NAME_service { server …; … keepalive 32; }: several instances, passive checks
    servers() {
        local s="" p
        for p in "$@"; do s+="server 127.0.0.1:$p max_fails=1 fail_timeout=2s; "; done
        echo "$s"
    }
    sed -e "s|listen 127.0.0.1:28500;|listen 127.0.0.1:$B;|" \
        -e "s|upstream user_service *{ server [^;]*;|upstream user_service { $(servers $((B + 1)))|" \
        -e "s|upstream product_service *{ server [^;]*;|upstream product_service { $(servers $((B + 2)) $((B + 12)))|" \
        -e "s|upstream order_service *{ server [^;]*;|upstream order_service { $(servers $((B + 3)) $((B + 13)))|" \
        -e "s|upstream inventory_service *{ server [^;]*;|upstream inventory_service { $(servers $((B + 4)))|" \
        -e "s|upstream payment_service *{ server [^;]*;|upstream payment_service { $(servers $((B + 5)))|" \
        -e "s|upstream shipping_service *{ server [^;]*;|upstream shipping_service { $(servers $((B + 6)))|" \
        -e "s|upstream notification_service *{ server [^;]*;|upstream notification_service { $(servers $((B + 7)))|" \
        -e "s|upstream analytics_service *{ server [^;]*;|upstream analytics_service { $(servers $((B + 8)))|" \
        -e "s|^worker_processes auto;|worker_processes 2;|" \
        deploy/nginx/gateway.conf |
        if [ "${SCALEOUT_RATE_LIMITS:-on}" = off ]; then
            # benchmarks from one address: no edge limits either
            sed -e 's|^ *limit_req zone=per_ip.*;||' -e 's|^ *limit_conn conn_ip.*;||'
        else
            cat
        fi
    echo "# generated by scripts/scaleout.sh from deploy/nginx/gateway.conf"
}

down() {
    local n pids=()
    [ -d "$DIR" ] || { say "nothing to stop"; return 0; }
    # SIGTERM to every process at once (each drains on its own), then wait for them all
    for n in "${ORDER[@]}" worker seed; do
        if alive "$DIR/$n.pid"; then kill -TERM "$(cat "$DIR/$n.pid")" 2>/dev/null || true; pids+=("$DIR/$n.pid"); fi
    done
    for n in "${pids[@]}"; do stop_pidfile "$n"; done
    if [ -f "$DIR/nginx/logs/nginx.pid" ]; then
        nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -e "$DIR/nginx/logs/error.log" -s quit 2>/dev/null || true
        for _ in $(seq 1 100); do [ -f "$DIR/nginx/logs/nginx.pid" ] || break; sleep 0.1; done
    fi
    stop_pidfile "$DIR/kafka.pid"
    [ -d "$DIR/servers" ] && servers_env stop || true
    rm -rf "$DIR"
    say "stopped"
}

up() {
    [ -x "$BIN" ] || { say "no binary at $BIN (cmake --build build --target emporium)"; exit 1; }
    [ -x "$KAFKA_MOCK" ] || { say "no Kafka mock at $KAFKA_MOCK (cmake --build build --target emporium-kafka-mock)"; exit 1; }
    [ -d "$DIR" ] && down
    mkdir -p "$DIR/logs" "$DIR/data" "$DIR/nginx/logs" "$DIR/nginx/temp"
    umask 077
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TOKEN_FILE"
    umask 022

    say "PostgreSQL + PgBouncer + Redis (standalone and cluster) …"
    servers_env start >"$DIR/logs/servers.log" 2>&1 || { cat "$DIR/logs/servers.log" >&2; exit 1; }
    local senv pg cluster
    senv=$(servers_env env)
    pg=$(grep '^EMPORIUM_TEST_PG_URL=' <<<"$senv" | cut -d= -f2- | sed 's|/emp$|/scaleout|')
    cluster=$(grep '^EMPORIUM_TEST_REDIS_CLUSTER=' <<<"$senv" | cut -d= -f2-)

    say "Kafka mock cluster …"
    rm -f "$DIR/kafka.bootstrap"
    setsid "$KAFKA_MOCK" --bootstrap-file "$DIR/kafka.bootstrap" --brokers 3 \
        >"$DIR/logs/kafka.log" 2>&1 </dev/null &
    echo $! >"$DIR/kafka.pid"
    for _ in $(seq 1 300); do [ -s "$DIR/kafka.bootstrap" ] && break; sleep 0.1; done
    [ -s "$DIR/kafka.bootstrap" ] || { say "the Kafka mock did not start"; cat "$DIR/logs/kafka.log" >&2; exit 1; }

    {
        echo "GATEWAY_URL=http://127.0.0.1:$B"
        echo "EMPORIUM_DATABASE_URL=$pg"
        echo "EMPORIUM_REDIS_CLUSTER=$cluster"
        echo "EMPORIUM_KAFKA_BROKERS=$(cat "$DIR/kafka.bootstrap")"
        echo "SCALEOUT_INTERNAL_TOKEN_FILE=$TOKEN_FILE"
        echo "SCALEOUT_DIR=$DIR"
        echo "PID_KAFKA=$DIR/kafka.pid"
        echo "PID_NGINX=$DIR/nginx/logs/nginx.pid"
    } >"$ENVF"

    # One all-in-one run creates every database, applies the migrations and seeds the demo
    # catalog with its stock (the catalog hands stock to the inventory in-process), then stops.
    say "creating and seeding the databases (one all-services run) …"
    # shellcheck disable=SC2046
    env $(common_env) EMPORIUM_DATA_DIR="$DIR/data/seed" EMPORIUM_RATE_LIMITS=off \
        EMPORIUM_INVENTORY_URL= EMPORIUM_PAYMENT_URL= EMPORIUM_SHIPPING_URL= EMPORIUM_PRODUCT_URL= EMPORIUM_USER_URL= \
        setsid "$BIN" serve --listen "127.0.0.1:$((B + 19))" >"$DIR/logs/seed.log" 2>&1 </dev/null &
    echo $! >"$DIR/seed.pid"
    wait_http "http://127.0.0.1:$((B + 19))/ready" 120 "the seeding run" || { tail -n 30 "$DIR/logs/seed.log" >&2; exit 1; }
    local n=0
    for _ in $(seq 1 600); do
        n=$(curl -fs "http://127.0.0.1:$((B + 19))/api/v1/products?limit=1" | grep -c '"id"' || true)
        [ "$n" -gt 0 ] && break
        sleep 0.1
    done
    [ "$n" -gt 0 ] || { say "the demo catalog was not seeded"; exit 1; }
    stop_pidfile "$DIR/seed.pid"

    say "service processes …"
    local name
    for name in "${ORDER[@]}"; do start_proc "$name"; done
    # the workers: every event consumer, in a process of their own
    # shellcheck disable=SC2046
    env $(common_env) EMPORIUM_DEMO=off EMPORIUM_DATA_DIR="$DIR/data/worker" \
        EMPORIUM_INVENTORY_URL= EMPORIUM_PAYMENT_URL= EMPORIUM_SHIPPING_URL= EMPORIUM_PRODUCT_URL= EMPORIUM_USER_URL= \
        setsid "$BIN" worker --consumers all >"$DIR/logs/worker.log" 2>&1 </dev/null &
    echo $! >"$DIR/worker.pid"
    for name in "${ORDER[@]}"; do wait_proc "$name"; done
    kill -0 "$(cat "$DIR/worker.pid")" 2>/dev/null || { say "the worker exited"; tail -n 20 "$DIR/logs/worker.log" >&2; exit 1; }

    say "nginx gateway …"
    gateway_conf >"$DIR/nginx/nginx.conf"
    nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -e "$DIR/nginx/logs/error.log" -t -q
    nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -e "$DIR/nginx/logs/error.log"
    wait_http "http://127.0.0.1:$B/health" 30 "the gateway"
    wait_http "http://127.0.0.1:$B/api/v1/products?limit=1" 30 "the catalog through the gateway"

    for name in "${ORDER[@]}" worker; do
        echo "PID_$(tr 'a-z-' 'A-Z_' <<<"$name")=$DIR/$name.pid" >>"$ENVF"
    done
    print_where
}

print_where() {
    local name port services
    echo "scaleout: up. Gateway: http://127.0.0.1:$B (env: $ENVF)"
    for name in "${ORDER[@]}"; do
        read -r port services <<<"${PROC[$name]}"
        printf '  %-13s http://127.0.0.1:%-6s --services %-34s log %s\n' "$name" "$port" "$services" "$DIR/logs/$name.log"
    done
    printf '  %-13s %s\n' worker "emporium worker --consumers all (log $DIR/logs/worker.log)"
    printf '  %-13s %s\n' postgres "127.0.0.1:$((B + 40)), PgBouncer 127.0.0.1:$((B + 41)) (transaction pooling)"
    printf '  %-13s %s\n' redis "cluster 127.0.0.1:$((B + 61))-$((B + 66)) (3 masters + 3 replicas)"
    printf '  %-13s %s\n' kafka "mock cluster of 3 brokers: $(grep '^EMPORIUM_KAFKA_BROKERS=' "$ENVF" | cut -d= -f2-)"
    printf '  %-13s %s\n' nginx "$DIR/nginx/nginx.conf (generated from deploy/nginx/gateway.conf)"
    cat <<EOF
Left out (not built yet or not available here):
  - PostgreSQL streaming replica and read pools (the services read from the primary)
  - order shards on separate servers (the 6 shard databases share one PostgreSQL)
  - the catalog's stock figure in the product processes follows the inventory's in-process
    broadcast only, so it is not refreshed by sales made in the inventory process
  - span export (OTLP) only when EMPORIUM_OTLP_ENDPOINT is exported before "up" (docs/tracing.md)
Stop everything: make scaleout-down
EOF
}

case "${1:-}" in
up) up ;;
down) down ;;
stop)
    [ -n "${PROC[${2:-}]:-}" ] || { say "usage: $0 stop NAME (${ORDER[*]})"; exit 2; }
    stop_pidfile "$DIR/$2.pid"
    ;;
start)
    [ -n "${PROC[${2:-}]:-}" ] || { say "usage: $0 start NAME (${ORDER[*]})"; exit 2; }
    start_proc "$2"
    wait_proc "$2"
    ;;
restart-bouncer)
    # PgBouncer stopped (its clients' connections cut) and started again on the same port
    # with the same configuration: the services keep running and must reconnect on their
    # own (fault drills). Only PgBouncer: PostgreSQL and Redis are not touched.
    bdir="$DIR/servers/pgbouncer"
    bpid="$bdir/pgbouncer.pid"
    [ -f "$bpid" ] || { say "no PgBouncer pid file at $bpid"; exit 1; }
    pid=$(cat "$bpid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$pid" 2>/dev/null || { say "PgBouncer $pid did not stop"; exit 1; }
    rm -f "$bpid"
    (
        cd /tmp
        ulimit -n 4096 2>/dev/null || true
        if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- pgbouncer -d -q "$bdir/pgbouncer.ini"; else pgbouncer -d -q "$bdir/pgbouncer.ini"; fi
    ) || { tail -n 20 "$bdir/pgbouncer.log" >&2; exit 1; }
    for _ in $(seq 1 300); do
        psql -h 127.0.0.1 -p $((B + 41)) -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1 && exit 0
        sleep 0.1
    done
    say "PgBouncer did not answer on port $((B + 41)) within 30 s"
    tail -n 20 "$bdir/pgbouncer.log" >&2
    exit 1
    ;;
status)
    cat "$ENVF"
    for n in "${ORDER[@]}" worker; do
        alive "$DIR/$n.pid" && echo "$n: running" || echo "$n: stopped"
    done
    ;;
*)
    echo "usage: $0 up|down|stop NAME|start NAME|restart-bouncer|status" >&2
    exit 2
    ;;
esac
