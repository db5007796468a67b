#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-servers.sh — throwaway PostgreSQL 15 + PgBouncer + Redis for the test suite.
#   scripts/test-servers.sh start DIR   start (or keep running) the servers whose state lives in DIR
#   scripts/test-servers.sh stop DIR    stop them all and remove DIR
#   scripts/test-servers.sh env DIR     print EMPORIUM_TEST_PG_URL=… (through PgBouncer),
#                                       EMPORIUM_TEST_PG_ADMIN_URL=… (the server itself), the
#                                       EMPORIUM_TEST_REPLICA_URL=… (a streaming replica, port
#                                       EMP_TEST_REPLICA_PORT, default PG port + 2) and the
#                                       EMPORIUM_TEST_REDIS_* lines, one VAR=value per line
#
# PostgreSQL listens on 127.0.0.1:25432, PgBouncer (transaction pooling, like production) on
# 127.0.0.1:25433 (EMP_TEST_PG_PORT / EMP_TEST_BOUNCER_PORT override both, e.g. to run two
# suites side by side); tests connect through PgBouncer so that anything that breaks under
# transaction pooling (named prepares, SET, session state) breaks in the tests too.
# Redis 7: one standalone server on EMP_TEST_REDIS_PORT (25379) and a Redis Cluster of 3 masters
# with 1 replica each on the next six ports (cluster bus ports 10 above those); the env
# command also names a spare port (+20) that a test may start and kill its own server on.
# EMP_TEST_REDIS=0 leaves Redis out (the benchmark's PostgreSQL runs).
# EMP_TEST_PG_AUTOVACUUM=off starts PostgreSQL without autovacuum (make test does).
# EMP_TEST_PG_DURABLE=on starts it durable (fsync, synchronous_commit and full_page_writes
# on, as in production) instead of the tests' throwaway settings (the benchmark does).
# EMP_TEST_BOUNCER_POOL_MODE=session starts PgBouncer in session mode (transaction by
# default): one server session per client connection, so the shop can use named prepared
# statements through it (EMPORIUM_DB_PREPARE; the PostgreSQL benchmark does).
# EMP_TEST_PG_SOCKETS=on has PgBouncer reach PostgreSQL over its Unix socket and listen on one
# too (DIR/pgbouncer/.s.PGSQL.<port>, besides 127.0.0.1), and `env` name that socket in
# EMPORIUM_TEST_PG_URL (the PostgreSQL benchmark does: cheaper than TCP on one machine).
# postgres and pgbouncer refuse to run as root, so
# when started as root (the CI) they run as the "postgres" user via runuser, from /tmp, with
# every file they write created and chowned before their first start.
set -euo pipefail

PG_PORT=${EMP_TEST_PG_PORT:-25432}
BOUNCER_PORT=${EMP_TEST_BOUNCER_PORT:-25433}
REDIS_PORT=${EMP_TEST_REDIS_PORT:-25379}
WITH_REDIS=${EMP_TEST_REDIS:-1}
# A streaming replica of the PostgreSQL server (pg_basebackup -R) for the read-replica tests;
# EMP_TEST_REPLICA=0 leaves it out.
REPLICA_PORT=${EMP_TEST_REPLICA_PORT:-$((PG_PORT + 2))}
WITH_REPLICA=${EMP_TEST_REPLICA:-1}
PGBIN=/usr/lib/postgresql/15/bin

usage() {
    echo "usage: $0 start|stop|env DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
DIR=$2
case "$DIR" in
/*) ;;
*) DIR="$(pwd)/$DIR" ;;
esac

PGDATA="$DIR/pg"
PGLOG="$DIR/pg.log"
BDIR="$DIR/pgbouncer"
BINI="$BDIR/pgbouncer.ini"
BPID="$BDIR/pgbouncer.pid"

# Runs a command as the postgres user when we are root, as ourselves otherwise. cd /tmp
# first: runuser keeps the cwd, and postgres tools complain about an unreadable one.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd /tmp && runuser -u postgres -- "$@")
    else
        (cd /tmp && "$@")
    fi
}

own() {
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$@"; fi
}

# True when something (e.g. another DIR's servers) already listens on the port.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_running() {
    [ -f "$PGDATA/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

bouncer_running() {
    [ -f "$BPID" ] && kill -0 "$(cat "$BPID")" 2>/dev/null
}

# Waits until a query through $1 (port) succeeds; PgBouncer daemonises before it listens.
wait_port() {
    local port=$1 i
    for i in $(seq 1 100); do
        if psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "test-servers: nothing answers on port $port" >&2
    return 1
}

start_pg() {
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        mkdir -p "$PGDATA"
        own "$DIR"
        chmod 700 "$PGDATA"
        as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
            --no-sync >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; return 1; }
        mkdir -p "$PGDATA/sock"
        own "$PGDATA/sock"
        # Throwaway cluster: durability off for speed (never do this outside tests).
        cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDATA/sock'
max_connections = 1000
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
    if pg_running; then
        return 0
    fi
    if port_busy "$PG_PORT"; then
        echo "test-servers: port $PG_PORT is taken by another server (stop it, or set EMP_TEST_PG_PORT)" >&2
        return 1
    fi
    touch "$PGLOG"
    own "$PGLOG"
    # The port goes on the command line, not in postgresql.conf (a base backup for a
    # replica copies that file).
    # EMP_TEST_PG_AUTOVACUUM=off (make test): the suites create thousands of short-lived
    # databases, and autovacuum visits each of them in turn, a new server process every
    # 0.1 s for the whole run; nothing in a test lives long enough to need it.
    local opts="-p $PG_PORT"
    if [ "${EMP_TEST_PG_AUTOVACUUM:-on}" = off ]; then opts="$opts -c autovacuum=off"; fi
    if [ "${EMP_TEST_PG_DURABLE:-off}" = on ]; then
        opts="$opts -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    fi
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -o "$opts" start >/dev/null ||
        { tail -n 30 "$PGLOG" >&2; return 1; }
}

RDATA="$DIR/replica"
RLOG="$DIR/replica.log"

replica_running() {
    [ -f "$RDATA/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$RDATA" status >/dev/null 2>&1
}

# A hot standby streaming from the server above through replication slot "replica1".
start_replica() {
    if [ ! -f "$RDATA/PG_VERSION" ]; then
        as_pg "$PGBIN/pg_basebackup" -h "$PGDATA/sock" -p "$PG_PORT" -U postgres -D "$RDATA" \
            -R -X stream -c fast -C -S replica1 --no-sync >"$DIR/basebackup.log" 2>&1 ||
            { cat "$DIR/basebackup.log" >&2; return 1; }
    fi
    if replica_running; then
        return 0
    fi
    if port_busy "$REPLICA_PORT"; then
        echo "test-servers: port $REPLICA_PORT is taken by another server (stop it, or set EMP_TEST_REPLICA_PORT)" >&2
        return 1
    fi
    touch "$RLOG"
    own "$RLOG"
    as_pg "$PGBIN/pg_ctl" -D "$RDATA" -l "$RLOG" -w -o "-p $REPLICA_PORT" start >/dev/null ||
        { tail -n 30 "$RLOG" >&2; return 1; }
}

start_bouncer() {
    if bouncer_running; then
        return 0
    fi
    if port_busy "$BOUNCER_PORT"; then
        echo "test-servers: port $BOUNCER_PORT is taken by another server (stop it, or set EMP_TEST_BOUNCER_PORT)" >&2
        return 1
    fi
    mkdir -p "$BDIR"
    # EMP_TEST_PG_SOCKETS (see the top); the marker file tells `env` to name the socket.
    local pg_host=127.0.0.1 sock_dir=
    if [ "${EMP_TEST_PG_SOCKETS:-off}" = on ]; then
        pg_host=$PGDATA/sock sock_dir=$BDIR
        touch "$DIR/sockets"
    else
        rm -f "$DIR/sockets"
    fi
    cat >"$BINI" <<EOF
[databases]
* = host=$pg_host port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir = $sock_dir
auth_type = trust
auth_file = $BDIR/userlist.txt
admin_users = postgres
pool_mode = ${EMP_TEST_BOUNCER_POOL_MODE:-transaction}
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
; Tests create a fresh database per run (often per test), and PgBouncer keeps a pool of
; server connections per database: close idle ones soon, and cap the total well below the
; server's max_connections (1000; the rest is for the suites that connect directly, with
; prepared statements) so a busy suite waits for a connection, or has PgBouncer evict an
; idle one of another database, instead of failing with "too many clients".
server_idle_timeout = 5
; and forget the pool of a database nobody has used for a while (most are dropped by then)
autodb_idle_timeout = 30
max_user_connections = $([ "${EMP_TEST_BOUNCER_POOL_MODE:-transaction}" = session ] && echo 350 || echo 150)
; do not lock a new database's pool out for 15 s after one failed login
server_login_retry = 1
logfile = $BDIR/pgbouncer.log
pidfile = $BPID
EOF
    printf '"postgres" ""\n' >"$BDIR/userlist.txt"
    # Every file PgBouncer touches must exist and be owned by postgres before the first
    # start: a root-owned log makes a daemonised start "succeed" while listening on nothing.
    touch "$BDIR/pgbouncer.log"
    rm -f "$BPID"
    own "$BDIR"
    (
        ulimit -n 4096 2>/dev/null || true
        as_pg pgbouncer -d -q "$BINI"
    ) || { tail -n 20 "$BDIR/pgbouncer.log" >&2; return 1; }
}

# ---- Redis: a standalone server and a 3 x (master + replica) cluster, all as ourselves.
RDIR="$DIR/redis"

redis_up() { # port: answers PING
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]
}

redis_start_one() { # port extra-args...
    local port=$1 d="$RDIR/$1"
    shift
    redis_up "$port" && [ -f "$d/redis.pid" ] && return 0
    if port_busy "$port"; then
        echo "test-servers: port $port is taken by another server (stop it, or set EMP_TEST_REDIS_PORT)" >&2
        return 1
    fi
    mkdir -p "$d"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
        --dir "$d" --pidfile "$d/redis.pid" --logfile "$d/redis.log" "$@" >/dev/null
    for _ in $(seq 1 100); do
        redis_up "$port" && return 0
        sleep 0.1
    done
    echo "test-servers: redis on port $port did not start" >&2
    tail -n 20 "$d/redis.log" >&2
    return 1
}

# Waits until every cluster node says cluster_state:ok and sees 3 masters with a replica each,
# and every replica has its first copy of its master (a replica still syncing cannot take over).
redis_cluster_wait() {
    local p i ok
    for i in $(seq 1 600); do
        ok=1
        for p in $(seq $((REDIS_PORT + 1)) $((REDIS_PORT + 6))); do
            redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
            [ "$(redis-cli -p "$p" cluster nodes 2>/dev/null | grep -v fail | grep -c slave)" = 3 ] || ok=0
            redis-cli -p "$p" info replication 2>/dev/null | tr -d '\r' |
                grep -q -E '^(role:master|master_link_status:up)$' || ok=0
        done
        [ $ok -eq 1 ] && return 0
        sleep 0.1
    done
    echo "test-servers: the redis cluster did not reach cluster_state:ok" >&2
    return 1
}

start_redis() {
    redis_start_one "$REDIS_PORT"
    local p nodes=()
    for p in $(seq $((REDIS_PORT + 1)) $((REDIS_PORT + 6))); do
        redis_start_one "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 5000 --cluster-port $((p + 10))
        nodes+=("127.0.0.1:$p")
    done
    if ! redis-cli -p $((REDIS_PORT + 1)) cluster info | grep -q '^cluster_state:ok'; then
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
            >"$RDIR/cluster-create.log" 2>&1 || { cat "$RDIR/cluster-create.log" >&2; return 1; }
    fi
    redis_cluster_wait
}

stop_redis() {
    local f pid
    [ -d "$RDIR" ] || return 0
    for f in "$RDIR"/*/redis.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
}

# The ports a DIR was started with win over the environment, so `env DIR` is always right.
if [ -f "$DIR/ports" ]; then
    read -r PG_PORT BOUNCER_PORT rport rwith repport repwith <"$DIR/ports"
    REDIS_PORT=${rport:-$REDIS_PORT}
    WITH_REDIS=${rwith:-$WITH_REDIS}
    REPLICA_PORT=${repport:-$REPLICA_PORT}
    WITH_REPLICA=${repwith:-0}
fi

case "$cmd" in
start)
    mkdir -p "$DIR"
    echo "$PG_PORT $BOUNCER_PORT $REDIS_PORT $WITH_REDIS $REPLICA_PORT $WITH_REPLICA" >"$DIR/ports"
    own "$DIR"
    start_pg
    [ "$WITH_REPLICA" = 0 ] || start_replica
    start_bouncer
    [ "$WITH_REDIS" = 0 ] || start_redis
    wait_port "$PG_PORT"
    wait_port "$BOUNCER_PORT" || { tail -n 20 "$BDIR/pgbouncer.log" >&2; exit 1; }
    ;;
stop)
    if bouncer_running; then
        pid=$(cat "$BPID")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if replica_running; then
        as_pg "$PGBIN/pg_ctl" -D "$RDATA" -m fast -w stop >/dev/null || true
    fi
    if pg_running; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || true
    fi
    stop_redis
    rm -rf "$DIR"
    ;;
env)
    if [ -f "$DIR/sockets" ]; then # PgBouncer's Unix socket (the host, percent-encoded)
        echo "EMPORIUM_TEST_PG_URL=postgresql://postgres@${BDIR//\//%2F}:$BOUNCER_PORT/emp"
    else
        echo "EMPORIUM_TEST_PG_URL=postgresql://postgres@127.0.0.1:$BOUNCER_PORT/emp"
    fi
    # The server itself, not through PgBouncer: the test harness creates and drops the
    # tests' databases there (tests/support/harness.c).
    echo "EMPORIUM_TEST_PG_ADMIN_URL=postgresql://postgres@127.0.0.1:$PG_PORT/emp"
    if [ "$WITH_REPLICA" != 0 ]; then
        echo "EMPORIUM_TEST_REPLICA_URL=postgresql://postgres@127.0.0.1:$REPLICA_PORT/emp"
    fi
    if [ "$WITH_REDIS" != 0 ]; then
        echo "EMPORIUM_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
        echo "EMPORIUM_TEST_REDIS_CLUSTER=127.0.0.1:$((REDIS_PORT + 1)),127.0.0.1:$((REDIS_PORT + 2)),127.0.0.1:$((REDIS_PORT + 3))"
        echo "EMPORIUM_TEST_REDIS_SPARE_PORT=$((REDIS_PORT + 20))"
    fi
    ;;
*)
    usage
    ;;
esac
