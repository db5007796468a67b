#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-servers.sh — throwaway PostgreSQL 15 + PgBouncer for the test suite.
#   scripts/test-servers.sh start DIR   start (or keep running) the servers whose state lives in DIR
#   scripts/test-servers.sh stop DIR    stop both and remove DIR
#   scripts/test-servers.sh env DIR     print EMPORIUM_TEST_PG_URL=… (through PgBouncer)
#
# PostgreSQL listens on 127.0.0.1:25432, PgBouncer (transaction pooling, like production) on
# 127.0.0.1:25433 (EMP_TEST_PG_PORT / EMP_TEST_BOUNCER_PORT override both, e.g. to run two
# suites side by side); tests connect through PgBouncer so that anything that breaks under
# transaction pooling (named prepares, SET, session state) breaks in the tests too.
# postgres and pgbouncer refuse to run as root, so
# when started as root (the CI) they run as the "postgres" user via runuser, from /tmp, with
# every file they write created and chowned before their first start.
set -euo pipefail

PG_PORT=${EMP_TEST_PG_PORT:-25432}
BOUNCER_PORT=${EMP_TEST_BOUNCER_PORT:-25433}
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
max_connections = 200
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
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -o "-p $PG_PORT" start >/dev/null ||
        { tail -n 30 "$PGLOG" >&2; return 1; }
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
    cat >"$BINI" <<EOF
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $BDIR/userlist.txt
admin_users = postgres
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
; Tests create a fresh database per run (often per test), and PgBouncer keeps a pool of
; server connections per database: close idle ones soon, and cap the total below the
; server's max_connections (200) so a busy suite waits for a connection, or has PgBouncer
; evict an idle one of another database, instead of failing with "too many clients".
server_idle_timeout = 5
; and forget the pool of a database nobody has used for a while (most are dropped by then)
autodb_idle_timeout = 30
max_user_connections = 150
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

# The ports a DIR was started with win over the environment, so `env DIR` is always right.
if [ -f "$DIR/ports" ]; then
    read -r PG_PORT BOUNCER_PORT <"$DIR/ports"
fi

case "$cmd" in
start)
    mkdir -p "$DIR"
    echo "$PG_PORT $BOUNCER_PORT" >"$DIR/ports"
    own "$DIR"
    start_pg
    start_bouncer
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
    if pg_running; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$DIR"
    ;;
env)
    echo "EMPORIUM_TEST_PG_URL=postgresql://postgres@127.0.0.1:$BOUNCER_PORT/emp"
    ;;
*)
    usage
    ;;
esac
