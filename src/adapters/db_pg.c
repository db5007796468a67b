/* SPDX-License-Identifier: MIT */
/* db_pg.c — the PostgreSQL storage backend (libpq), built to run behind PgBouncer.
 *
 * Logical database `name` is the PostgreSQL database "<base>_<name>", base being the URL's
 * dbname; db_open() creates it when missing (through the "postgres" database). Each db has a
 * bounded pool of blocking libpq connections: a mutex, a stack of idle connections and a
 * condition variable to wait on (with a deadline) when all are leased. Connections are made
 * lazily, outside the lock, and a broken one is reset when taken or dropped when given back.
 *
 * Everything goes through unnamed statements (text parameters) or PQexec for scripts, and
 * nothing touches session state (no SET, LISTEN, named prepares), because in PgBouncer's
 * transaction mode consecutive transactions of one client connection may run on different
 * server connections. The one exception is opt-in: db_options.prepare names each
 * connection's statements (see "prepared statements" below), for a connection that keeps
 * its server session (PostgreSQL directly, PgBouncer in session mode). Integer parameters
 * are typed int8 so a $n used twice always has one type; text parameters are left untyped
 * so the server coerces them to the column's type, which is what lets the same SQL text run
 * on SQLite. */
#include <inttypes.h>
#include <stdatomic.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/db_internal.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/metrics.h"

#define PG_INT8OID 20
#define PG_IDENT_MAX 63 /* NAMEDATALEN - 1 */
#define PG_SMALL_ARGS 16
/* Named prepared statements per connection (db_options.prepare), at most this many; a
 * statement beyond them goes unnamed. */
#define PG_STMT_CACHE 256

struct pg_stmt {
    uint64_t hash; /* 0: free slot */
    char *sql;
    Oid *types;
    int n;
    int id; /* the server-side name is "e<id>" */
};

struct pg_conn {
    struct db_conn base;
    PGconn *h;
    bool fresh; /* no statement run yet in this lease: safe to reconnect and retry */
    /* db_begin() was called and BEGIN not sent yet: it goes out with the next statement,
     * in the same round trip (a transaction costs one round trip less). */
    bool begin_pending;
    bool broken; /* a pipeline left the connection in an unknown state: drop it */
    /* A read lease on a replica that was found down: everything goes to this primary
     * connection instead (given back with the lease). */
    struct pg_conn *redirect;
    struct pg_conn *next_idle;
    struct pg_stmt *stmts; /* PG_STMT_CACHE slots (open addressing), NULL until first use */
    int nstmts, next_id;
};

struct pg_repl;

struct pg_db {
    struct db base;
    char *url;
    char target[PG_IDENT_MAX + DB__NAME_MAX + 2]; /* checked to be <= PG_IDENT_MAX */
    int size, timeout_ms;
    bool prepare; /* db_options.prepare: named prepared statements */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;   /* connections that exist or are being made, <= size */
    int leased; /* of which taken */
    struct pg_conn *idle;
    int nidle;
    /* Read replicas (db_conn_take_read): a pool per replica, same database name. */
    int nro;
    struct pg_db *ro[4];
    int replica_index;             /* on a replica's pool: which one (else -1) */
    struct pg_db *primary;         /* on a replica's pool: the primary's */
    _Atomic int64_t last_write_us; /* this process's last commit on the primary, wall µs */
    struct pg_repl *repl;          /* on a primary's pool with replicas: the monitor */
};

static struct pg_db *pg_db_of(const struct db *db) { return (struct pg_db *)db; }
static struct pg_conn *pg_conn_of(struct db_conn *c) { return (struct pg_conn *)c; }

/* libpq messages end with a newline; log lines should not. */
static int pg_msglen(const char *m)
{
    size_t n = m ? strlen(m) : 0;
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == '\r'))
        n--;
    return (int)n;
}

/* ---- connections --------------------------------------------------------------------- */

/* Connects to `dbname` with everything else from the URL. Parameters before "dbname" are
 * defaults the URL may override; the second "dbname" overrides the URL's. */
static PGconn *pg_connect_to(const char *url, const char *dbname)
{
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", "dbname",
                                NULL};
    const char *const vals[] = {"5", "emporium", url, dbname, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

/* Server notices (e.g. "already exists, skipping") would go to stderr unformatted. */
static void pg_notice(void *arg, const char *msg)
{
    log_debug("db %s: %.*s", (const char *)arg, pg_msglen(msg), msg);
}

static int pg_connect(struct pg_db *db, struct pg_conn **out)
{
    struct pg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return ERR_NOMEM;
    c->base.db = &db->base;
    c->h = pg_connect_to(db->url, db->target);
    if (!c->h || PQstatus(c->h) != CONNECTION_OK) {
        const char *m = c->h ? PQerrorMessage(c->h) : "out of memory";
        log_error("db %s: cannot connect to database %s: %.*s", db->base.name, db->target,
                  pg_msglen(m), m);
        PQfinish(c->h);
        free(c);
        return ERR_UNAVAILABLE;
    }
    PQsetNoticeProcessor(c->h, pg_notice, db->base.name);
    *out = c;
    return 0;
}

/* Forgets the connection's prepared statements (the server session they lived in is gone,
 * or is about to be). */
static void pg_stmts_clear(struct pg_conn *c)
{
    if (!c->stmts)
        return;
    for (int i = 0; i < PG_STMT_CACHE; i++) {
        free(c->stmts[i].sql);
        free(c->stmts[i].types);
    }
    free(c->stmts);
    c->stmts = NULL;
    c->nstmts = 0;
    c->next_id = 0;
}

static void pg_conn_free(struct pg_conn *c)
{
    if (c) {
        pg_stmts_clear(c);
        PQfinish(c->h);
        free(c);
    }
}

/* A new server session: the prepared statements of the old one are gone. */
static void pg_reset(struct pg_conn *c)
{
    pg_stmts_clear(c);
    PQreset(c->h);
}

/* ---- replication monitor ---------------------------------------------------------------
 *
 * One per process (one primary cluster): a thread that every PG_REPL_POLL_MS samples the
 * primary's WAL insert position (pg_current_wal_insert_lsn: with synchronous_commit off a
 * commit returns before its record is written, so the write position can be behind it) with
 * the wall time taken just before asking,
 * and each replica's replayed position (pg_last_wal_replay_lsn). A replica that has replayed
 * past the sample taken at time T holds every commit that finished before T: T is its
 * "safe" time. A read of database d may go to a replica whose safe time is after this
 * process's last commit on d (read-your-writes) and whose lag is within the limit. */
#define PG_REPL_POLL_MS 50
#define PG_REPL_SAMPLES 128
#define PG_REPL_MAX 4

struct pg_replica {
    char *url;
    PGconn *mon;
    _Atomic int64_t safe_us; /* commits on the primary before this are replayed */
    _Atomic int64_t lag_ms;  /* -1: down or not a replica */
    _Atomic bool up;
    bool warned;
};

struct pg_repl {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    pthread_t th;
    int refs;
    char *primary_url;
    PGconn *pmon;
    int n;
    struct pg_replica r[PG_REPL_MAX];
    int max_lag_ms;
    struct {
        int64_t us;
        uint64_t lsn;
    } samples[PG_REPL_SAMPLES];
    int nsamples, next;
    _Atomic unsigned rr;
};

static pthread_mutex_t repl_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pg_repl *repl;
static _Atomic uint64_t reads_replica, reads_primary;

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* "X/Y" (hex) as one number; 0 when not an LSN. */
static uint64_t lsn_parse(const char *s)
{
    unsigned hi = 0, lo = 0;
    if (!s || sscanf(s, "%X/%X", &hi, &lo) != 2)
        return 0;
    return ((uint64_t)hi << 32) | lo;
}

static PGconn *pg_connect_to(const char *url, const char *dbname);

/* One-row, one-column query on a monitor connection, (re)connected as needed. */
static uint64_t repl_lsn(PGconn **h, const char *url, const char *sql, bool *ok)
{
    *ok = false;
    if (*h && PQstatus(*h) != CONNECTION_OK) {
        PQfinish(*h);
        *h = NULL;
    }
    if (!*h) {
        *h = pg_connect_to(url, "postgres");
        if (!*h || PQstatus(*h) != CONNECTION_OK) {
            PQfinish(*h);
            *h = NULL;
            return 0;
        }
    }
    PGresult *res = PQexec(*h, sql);
    uint64_t v = 0;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        *ok = true;
        if (!PQgetisnull(res, 0, 0))
            v = lsn_parse(PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return v;
}

static void repl_poll(struct pg_repl *m)
{
    bool ok;
    int64_t t = wall_us();
    uint64_t lsn =
        repl_lsn(&m->pmon, m->primary_url, "SELECT pg_current_wal_insert_lsn()::text", &ok);
    if (ok && lsn) {
        m->samples[m->next].us = t;
        m->samples[m->next].lsn = lsn;
        m->next = (m->next + 1) % PG_REPL_SAMPLES;
        if (m->nsamples < PG_REPL_SAMPLES)
            m->nsamples++;
    }
    int64_t now = wall_us();
    for (int i = 0; i < m->n; i++) {
        struct pg_replica *r = &m->r[i];
        uint64_t rep = repl_lsn(&r->mon, r->url, "SELECT pg_last_wal_replay_lsn()::text", &ok);
        if (!ok || !rep) {
            if (ok && !rep && !r->warned) { /* answers, but is not a standby */
                log_warn("db: replica %d is not in recovery (not a streaming replica): unused", i);
                r->warned = true;
            }
            atomic_store(&r->up, false);
            atomic_store(&r->lag_ms, -1);
            continue;
        }
        /* The newest sample it has replayed past. */
        int64_t safe = atomic_load(&r->safe_us);
        bool latest = false;
        for (int k = 0; k < m->nsamples; k++) {
            int at = (m->next - 1 - k + 2 * PG_REPL_SAMPLES) % PG_REPL_SAMPLES;
            if (m->samples[at].lsn <= rep) {
                if (m->samples[at].us > safe)
                    safe = m->samples[at].us;
                latest = k == 0;
                break;
            }
        }
        atomic_store(&r->safe_us, safe);
        atomic_store(&r->lag_ms, latest ? 0 : (safe ? (now - safe) / 1000 : -1));
        atomic_store(&r->up, true);
    }
}

static void *repl_main(void *arg)
{
    struct pg_repl *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->mu);
        repl_poll(m);
        pthread_mutex_lock(&m->mu);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += PG_REPL_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!m->stop)
            pthread_cond_timedwait(&m->cv, &m->mu, &ts);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static void repl_metrics(struct buf *out, void *ctx);

static void repl_free(struct pg_repl *m)
{
    PQfinish(m->pmon);
    for (int i = 0; i < m->n; i++) {
        PQfinish(m->r[i].mon);
        free(m->r[i].url);
    }
    free(m->primary_url);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* Takes a reference on the process's monitor, starting it for these URLs. */
static struct pg_repl *repl_get(const char *primary_url, const char *urls, int max_lag_ms)
{
    pthread_mutex_lock(&repl_mu);
    if (repl) {
        repl->refs++;
        pthread_mutex_unlock(&repl_mu);
        return repl;
    }
    struct pg_repl *m = calloc(1, sizeof *m);
    if (!m || !(m->primary_url = strdup(primary_url))) {
        free(m);
        pthread_mutex_unlock(&repl_mu);
        return NULL;
    }
    m->max_lag_ms = max_lag_ms > 0 ? max_lag_ms : 1000;
    const char *p = urls;
    while (*p && m->n < PG_REPL_MAX) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0) {
            struct pg_replica *r = &m->r[m->n];
            r->url = strndup(p, len);
            atomic_store(&r->lag_ms, -1);
            if (r->url)
                m->n++;
        }
        p += len + (e ? 1 : 0);
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    m->refs = 1;
    if (m->n == 0 || pthread_create(&m->th, NULL, repl_main, m) != 0) {
        repl_free(m);
        pthread_mutex_unlock(&repl_mu);
        return NULL;
    }
    metrics_add_writer(repl_metrics, NULL);
    repl = m;
    pthread_mutex_unlock(&repl_mu);
    log_info("db: %d read replica(s), at most %d ms behind", m->n, m->max_lag_ms);
    return m;
}

static void repl_put(void)
{
    pthread_mutex_lock(&repl_mu);
    struct pg_repl *m = repl;
    if (!m || --m->refs > 0) {
        pthread_mutex_unlock(&repl_mu);
        return;
    }
    repl = NULL;
    pthread_mutex_unlock(&repl_mu);
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->th, NULL);
    repl_free(m);
}

void db_replica_stats(struct db_replica_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&repl_mu);
    if (repl) {
        out->n = repl->n;
        for (int i = 0; i < repl->n; i++) {
            out->up[i] = atomic_load(&repl->r[i].up);
            out->lag_ms[i] = atomic_load(&repl->r[i].lag_ms);
        }
    }
    pthread_mutex_unlock(&repl_mu);
    out->reads_replica = atomic_load(&reads_replica);
    out->reads_primary = atomic_load(&reads_primary);
}

static void repl_metrics(struct buf *out, void *ctx)
{
    (void)ctx;
    struct db_replica_stats st;
    db_replica_stats(&st);
    if (st.n == 0)
        return;
    buf_puts(out, "# HELP emporium_db_replica_lag_seconds How far a read replica is behind "
                  "the primary (-1: down or not a standby).\n"
                  "# TYPE emporium_db_replica_lag_seconds gauge\n");
    for (int i = 0; i < st.n; i++)
        buf_printf(out, "emporium_db_replica_lag_seconds{replica=\"%d\"} %.3f\n", i,
                   st.lag_ms[i] < 0 ? -1.0 : (double)st.lag_ms[i] / 1000.0);
    buf_puts(out, "# HELP emporium_db_replica_up Whether a read replica answers as a "
                  "standby.\n# TYPE emporium_db_replica_up gauge\n");
    for (int i = 0; i < st.n; i++)
        buf_printf(out, "emporium_db_replica_up{replica=\"%d\"} %d\n", i, st.up[i]);
    buf_printf(out,
               "# HELP emporium_db_reads_total Read leases (db_conn_take_read) by where they "
               "went.\n# TYPE emporium_db_reads_total counter\n"
               "emporium_db_reads_total{target=\"replica\"} %llu\n"
               "emporium_db_reads_total{target=\"primary\"} %llu\n",
               (unsigned long long)st.reads_replica, (unsigned long long)st.reads_primary);
}

/* ---- results ------------------------------------------------------------------------- */

static int pg_fail(struct pg_conn *c, const PGresult *res, const char *sql)
{
    const char *name = c->base.db->name;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* The primary message only: the full one repeats the SQL with a caret over lines. */
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!m || !*m)
        m = PQerrorMessage(c->h);
    /* 08P01 (protocol violation) on a live connection is a bug such as a wrong parameter
     * count, not an outage. */
    if (PQstatus(c->h) != CONNECTION_OK ||
        (state && strncmp(state, "08", 2) == 0 && strcmp(state, "08P01") != 0) ||
        (state && (strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
                   strcmp(state, "57P03") == 0 || strcmp(state, "53300") == 0))) {
        log_warn("db %s: connection lost: %.*s", name, pg_msglen(m), m);
        return ERR_UNAVAILABLE;
    }
    /* A unique key or a CHECK constraint refused the row: the data says no. */
    if (state && (strcmp(state, "23505") == 0 || strcmp(state, "23514") == 0)) {
        log_debug("db %s: %.*s", name, pg_msglen(m), m);
        return ERR_CONFLICT;
    }
    if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
                  strcmp(state, "55P03") == 0)) {
        log_warn("db %s: busy (%s): %.*s", name, state, pg_msglen(m), m);
        return ERR_BUSY;
    }
    log_error("db %s: postgres error %s: %.*s (sql: %.120s)", name, state ? state : "?",
              pg_msglen(m), m, sql);
    return ERR_INTERNAL;
}

static bool pg_is_dml(const PGresult *res)
{
    const char *tag = PQcmdStatus((PGresult *)res);
    return tag && (strncmp(tag, "INSERT ", 7) == 0 || strncmp(tag, "UPDATE ", 7) == 0 ||
                   strncmp(tag, "DELETE ", 7) == 0 || strncmp(tag, "MERGE ", 6) == 0);
}

static int pg_copy_rows(const PGresult *res, struct db_rows **out)
{
    int nr = PQntuples(res), nc = PQnfields(res);
    struct db_rows *r = db__rows_new(nc);
    if (!r)
        return ERR_NOMEM;
    for (int i = 0; i < nr; i++) {
        int rc = db__rows_add_row(r);
        for (int j = 0; rc == 0 && j < nc; j++) {
            if (!PQgetisnull(res, i, j))
                rc = db__rows_set(r, j, PQgetvalue(res, i, j), (size_t)PQgetlength(res, i, j));
        }
        if (rc < 0) {
            db_rows_free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

/* Consumes res: rows into *out (when wanted), affected rows as the return value. */
static int pg_result(struct pg_conn *c, PGresult *res, const char *sql, struct db_rows **out)
{
    int rc;
    switch (res ? PQresultStatus(res) : PGRES_FATAL_ERROR) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
        rc = pg_is_dml(res) ? atoi(PQcmdTuples(res)) : 0;
        if (out) {
            int e = pg_copy_rows(res, out);
            if (e < 0)
                rc = e;
        }
        break;
    default:
        rc = pg_fail(c, res, sql);
        break;
    }
    PQclear(res);
    return rc;
}

/* One round trip. A pooled connection can be dead without libpq knowing (server or
 * PgBouncer restarted while it sat idle); when that shows on the first statement of a lease
 * there is no transaction to lose, so reconnect and send it once more. */
static int pg_run(struct pg_conn *c, const char *sql, int n, const Oid *types,
                  const char *const *vals, struct db_rows **out, bool script)
{
    for (int attempt = 0;; attempt++) {
        bool fresh = c->fresh;
        c->fresh = false;
        PGresult *res =
            script ? PQexec(c->h, sql) : PQexecParams(c->h, sql, n, types, vals, NULL, NULL, 0);
        if (fresh && attempt == 0 && PQstatus(c->h) == CONNECTION_BAD) {
            PQclear(res);
            pg_reset(c);
            if (PQstatus(c->h) == CONNECTION_OK) {
                log_warn("db %s: reconnected a stale connection", c->base.db->name);
                continue;
            }
            return pg_fail(c, NULL, sql);
        }
        return pg_result(c, res, sql, out);
    }
}

/* Parameters in libpq's text form: integers typed int8, text untyped (see the top). */
struct pg_args {
    const char *vals_small[PG_SMALL_ARGS];
    Oid types_small[PG_SMALL_ARGS];
    char nums_small[PG_SMALL_ARGS][24];
    const char **vals;
    Oid *types;
    char (*nums)[24];
    int n;
};

static int pg_args_init(struct pg_args *a, int n, const struct db_val *args)
{
    a->n = n;
    a->vals = a->vals_small;
    a->types = a->types_small;
    a->nums = a->nums_small;
    if (n > PG_SMALL_ARGS) {
        a->vals = malloc((size_t)n * sizeof *a->vals);
        a->types = malloc((size_t)n * sizeof *a->types);
        a->nums = malloc((size_t)n * sizeof *a->nums);
        if (!a->vals || !a->types || !a->nums) {
            free(a->vals);
            free(a->types);
            free(a->nums);
            return ERR_NOMEM;
        }
    }
    for (int k = 0; k < n; k++) {
        a->types[k] = 0;
        a->vals[k] = NULL;
        if (args[k].t == DB_T_INT) {
            snprintf(a->nums[k], sizeof a->nums[k], "%" PRId64, args[k].i);
            a->vals[k] = a->nums[k];
            a->types[k] = PG_INT8OID;
        } else if (args[k].t == DB_T_TEXT) {
            a->vals[k] = args[k].s;
        }
    }
    return 0;
}

static void pg_args_free(struct pg_args *a)
{
    if (a->n > PG_SMALL_ARGS) {
        free(a->vals);
        free(a->types);
        free(a->nums);
    }
}

/* ---- prepared statements -------------------------------------------------------------
 *
 * With db_options.prepare, each connection names the statements it runs: the first use of a
 * statement text (with its parameter types) sends a Parse of "e<id>" ahead of the execution
 * in the same round trip, and later uses execute it by name, so the server neither parses nor
 * (once it settles on a generic plan) plans it again. Only safe when one client connection
 * keeps one server session: PostgreSQL directly, or PgBouncer in session mode. Slots are never
 * deleted (linear probing stays valid); a statement whose Parse did not happen, or whose plan
 * the server refused to reuse after a schema change, gets a fresh id on its next use. */

static uint64_t pg_stmt_hash(const char *sql, int n, const Oid *types)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    for (int k = 0; k < n; k++)
        h = (h ^ types[k]) * 1099511628211ULL;
    return h | 1;
}

/* The statement's slot, and *parse when its Parse must go first; NULL: send it unnamed. */
static struct pg_stmt *pg_stmt_get(struct pg_conn *c, const char *sql, int n, const Oid *types,
                                   bool *parse)
{
    *parse = false;
    if (!c->stmts && !(c->stmts = calloc(PG_STMT_CACHE, sizeof *c->stmts)))
        return NULL;
    uint64_t h = pg_stmt_hash(sql, n, types);
    size_t tl = (size_t)n * sizeof *types;
    for (unsigned k = 0; k < PG_STMT_CACHE; k++) {
        struct pg_stmt *s = &c->stmts[(h + k) % PG_STMT_CACHE];
        if (!s->hash) {
            if (c->nstmts >= PG_STMT_CACHE * 3 / 4)
                return NULL;
            s->sql = strdup(sql);
            s->types = n ? malloc(tl) : NULL;
            if (!s->sql || (n && !s->types)) {
                free(s->sql);
                free(s->types);
                s->sql = NULL;
                s->types = NULL;
                return NULL;
            }
            if (n)
                memcpy(s->types, types, tl);
            s->n = n;
            s->hash = h;
            s->id = 0;
            c->nstmts++;
        } else if (s->hash != h || s->n != n || strcmp(s->sql, sql) != 0 ||
                   (n && memcmp(s->types, types, tl) != 0)) {
            continue;
        }
        if (s->id == 0) {
            s->id = ++c->next_id;
            *parse = true;
        }
        return s;
    }
    return NULL;
}

/* Queues one statement: by name when the connection prepares (its Parse first when new). */
static bool pg_send(struct pg_conn *c, const struct db_stmt *st, const struct pg_args *a,
                    struct pg_stmt **slot, bool *parse)
{
    *slot = NULL;
    *parse = false;
    if (pg_db_of(c->base.db)->prepare)
        *slot = pg_stmt_get(c, st->sql, st->n, a->types, parse);
    if (!*slot)
        return PQsendQueryParams(c->h, st->sql, st->n, a->types, a->vals, NULL, NULL, 0);
    char name[16];
    snprintf(name, sizeof name, "e%d", (*slot)->id);
    if (*parse && !PQsendPrepare(c->h, name, st->sql, st->n, a->types))
        return false;
    return PQsendQueryPrepared(c->h, name, st->n, a->vals, NULL, NULL, 0);
}

/* ---- pipeline ------------------------------------------------------------------------ */

/* Leaves pipeline mode; when results are still queued (an error cut the reading short) they
 * are drained first. A connection that cannot leave it is marked broken (dropped on give). */
static void pg_pipe_exit(struct pg_conn *c)
{
    for (int i = 0; i < 64 && !PQexitPipelineMode(c->h); i++) {
        PGresult *res = PQgetResult(c->h);
        if (!res && PQstatus(c->h) != CONNECTION_OK)
            break;
        PQclear(res);
    }
    if (PQpipelineStatus(c->h) != PQ_PIPELINE_OFF)
        c->broken = true;
}

/* The next result of the current statement, and the NULL that ends it. */
static PGresult *pg_pipe_result(struct pg_conn *c)
{
    PGresult *res = PQgetResult(c->h);
    if (res) {
        PGresult *end = PQgetResult(c->h);
        if (end) { /* more than one result for a statement: not ours to send */
            PQclear(end);
            c->broken = true;
        }
    }
    return res;
}

/* One round trip: [BEGIN,] st[0..n), Sync. Returns 0 or the first error; ERR_UNAVAILABLE
 * with *unsent when nothing reached the server (the caller may reconnect and retry). */
static int pg_pipe_once(struct pg_conn *c, bool lead_begin, struct db_stmt *st, int n, bool *unsent,
                        bool *replan)
{
    *unsent = false;
    *replan = false;
    if (!PQenterPipelineMode(c->h)) {
        *unsent = PQstatus(c->h) != CONNECTION_OK;
        return pg_fail(c, NULL, "(pipeline)");
    }
    /* Each statement's prepared slot, and whether its Parse went out in this round trip
     * (db.c allows at most DB_STMT_MAX statements per call). */
    struct pg_stmt *slots[DB_STMT_MAX] = {0};
    bool parse[DB_STMT_MAX] = {0};
    bool ok = !lead_begin || PQsendQueryParams(c->h, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    for (int i = 0; ok && i < n; i++) {
        struct pg_args a;
        if (pg_args_init(&a, st[i].n, st[i].args) < 0) {
            pg_pipe_exit(c);
            c->broken = true; /* statements queued but not sent: do not reuse it */
            return ERR_NOMEM;
        }
        ok = pg_send(c, &st[i], &a, &slots[i], &parse[i]);
        pg_args_free(&a);
    }
    if (ok)
        ok = PQpipelineSync(c->h);
    if (!ok) {
        *unsent = PQstatus(c->h) != CONNECTION_OK;
        int rc = pg_fail(c, NULL, n ? st[0].sql : "(pipeline)");
        pg_pipe_exit(c);
        c->broken = true;
        return rc;
    }
    int first = 0;
    if (lead_begin) {
        PGresult *res = pg_pipe_result(c);
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
            *unsent = !res && PQstatus(c->h) != CONNECTION_OK; /* a dead idle connection */
            first = pg_fail(c, res, "BEGIN");
        }
        PQclear(res);
    }
    for (int i = 0; i < n; i++) {
        if (first == ERR_UNAVAILABLE && PQstatus(c->h) != CONNECTION_OK) {
            st[i].rc = first;
            continue;
        }
        if (parse[i]) { /* the Parse's own result first */
            PGresult *pr = pg_pipe_result(c);
            ExecStatusType ps = pr ? PQresultStatus(pr) : PGRES_FATAL_ERROR;
            if (ps != PGRES_COMMAND_OK)
                slots[i]->id = 0; /* not prepared: again next time */
            if (ps != PGRES_COMMAND_OK && ps != PGRES_PIPELINE_ABORTED && !first) {
                first = pg_fail(c, pr, st[i].sql);
                *unsent = i == 0 && !lead_begin && first == ERR_UNAVAILABLE;
            }
            PQclear(pr);
            if (!pr && PQstatus(c->h) != CONNECTION_OK) {
                st[i].rc = first;
                continue;
            }
        }
        PGresult *res = pg_pipe_result(c);
        if (!res) {
            if (!first) {
                *unsent = i == 0 && !lead_begin && PQstatus(c->h) != CONNECTION_OK;
                first = pg_fail(c, NULL, st[i].sql);
            }
            st[i].rc = first;
            continue;
        }
        if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
            PQclear(res);
            st[i].rc = first ? first : ERR_INTERNAL;
            continue;
        }
        if (slots[i] && PQresultStatus(res) == PGRES_FATAL_ERROR) {
            /* 0A000 "cached plan must not change result type": a table changed under the
             * statement; it is prepared afresh next time. */
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (state && strcmp(state, "0A000") == 0) {
                slots[i]->id = 0;
                *replan = !first;
            }
        }
        st[i].rc = pg_result(c, res, st[i].sql, st[i].out);
        /* The first statement failed for want of a connection (a backend terminated while
         * the connection sat idle answers so): the implicit transaction committed nothing. */
        if (st[i].rc == ERR_UNAVAILABLE && i == 0 && !lead_begin)
            *unsent = true;
        if (st[i].rc < 0 && !first)
            first = st[i].rc;
    }
    if (PQstatus(c->h) == CONNECTION_OK) {
        PGresult *res = PQgetResult(c->h); /* the Sync's */
        if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
            c->broken = true;
        PQclear(res);
    }
    pg_pipe_exit(c);
    return first;
}

static int pg_pipeline(struct pg_conn *c, struct db_stmt *st, int n)
{
    for (int attempt = 0;; attempt++) {
        bool fresh = c->fresh, lead_begin = c->begin_pending, unsent, replan;
        c->fresh = false;
        c->begin_pending = false;
        int rc = pg_pipe_once(c, lead_begin, st, n, &unsent, &replan);
        if (rc < 0 && replan) {
            /* A prepared statement's table changed shape under it. Outside a transaction
             * nothing was kept: prepare it afresh and send again. Inside one, the caller's
             * transaction is lost: busy, which db_transact() runs again. */
            if (!lead_begin && attempt == 0 && PQtransactionStatus(c->h) == PQTRANS_IDLE) {
                for (int i = 0; i < n; i++)
                    if (st[i].out) {
                        db_rows_free(*st[i].out);
                        *st[i].out = NULL;
                    }
                log_warn("db %s: a table changed under a prepared statement: preparing it again",
                         c->base.db->name);
                continue;
            }
            rc = ERR_BUSY;
        }
        if (rc < 0 && fresh && unsent && attempt == 0) {
            /* A stale pooled connection, and no transaction to lose: reconnect, send again. */
            for (int i = 0; i < n; i++)
                if (st[i].out) {
                    db_rows_free(*st[i].out);
                    *st[i].out = NULL;
                }
            c->broken = false;
            pg_reset(c);
            if (PQstatus(c->h) == CONNECTION_OK) {
                log_warn("db %s: reconnected a stale connection", c->base.db->name);
                c->fresh = true;
                c->begin_pending = lead_begin;
                continue;
            }
        }
        if (rc < 0)
            for (int i = 0; i < n; i++)
                if (st[i].out && st[i].rc < 0) {
                    db_rows_free(*st[i].out);
                    *st[i].out = NULL;
                }
        return rc;
    }
}

/* Read-your-writes: the time of this process's last commit on a primary with replicas. */
static void pg_note_write(struct pg_conn *c)
{
    struct pg_db *db = pg_db_of(c->base.db);
    if (db->nro > 0)
        atomic_store(&db->last_write_us, wall_us());
}

static int pg_take(struct db *base, struct db_conn **out);

/* A read lease on a replica whose first statement found it down: mark it down (the monitor
 * confirms or revives it) and carry on with a primary connection. */
static bool pg_redirect(struct pg_conn *c, bool first, int rc)
{
    struct pg_db *db = pg_db_of(c->base.db);
    if (rc != ERR_UNAVAILABLE || !first || !db->primary || c->redirect)
        return false;
    pthread_mutex_lock(&repl_mu);
    if (repl && db->replica_index < repl->n) {
        atomic_store(&repl->r[db->replica_index].up, false);
        atomic_store(&repl->r[db->replica_index].lag_ms, -1);
    }
    pthread_mutex_unlock(&repl_mu);
    struct db_conn *p;
    if (pg_take(&db->primary->base, &p) < 0)
        return false;
    log_warn("db %s: replica %d is down: reading from the primary", db->base.name,
             db->replica_index);
    c->redirect = pg_conn_of(p);
    atomic_fetch_add(&reads_primary, 1);
    return true;
}

static int pg_query_many(struct db_conn *base, struct db_stmt *st, int n, bool atomic)
{
    struct pg_conn *c = pg_conn_of(base);
    if (c->redirect)
        return pg_query_many(&c->redirect->base, st, n, atomic);
    bool first = c->fresh, outside = !c->begin_pending && PQtransactionStatus(c->h) == PQTRANS_IDLE;
    /* Outside a transaction the pipeline's statements run as one implicit transaction (they
     * are all before one Sync): atomic either way. */
    (void)atomic;
    int rc = pg_pipeline(c, st, n);
    if (pg_redirect(c, first, rc))
        return pg_query_many(&c->redirect->base, st, n, atomic);
    if (rc == 0 && outside)
        pg_note_write(c);
    if (rc < 0 && PQtransactionStatus(c->h) == PQTRANS_IDLE)
        for (int i = 0; i < n; i++) /* the implicit transaction rolled back: nothing kept */
            if (st[i].rc >= 0) {
                st[i].rc = rc;
                if (st[i].out) {
                    db_rows_free(*st[i].out);
                    *st[i].out = NULL;
                }
            }
    return rc;
}

static int pg_query(struct db_conn *base, const char *sql, int n, const struct db_val *args,
                    struct db_rows **out)
{
    struct pg_conn *c = pg_conn_of(base);
    if (c->redirect)
        return pg_query(&c->redirect->base, sql, n, args, out);
    if (c->begin_pending) {
        struct db_stmt st = {.sql = sql, .n = n, .args = args, .out = out};
        int rc = pg_pipeline(c, &st, 1);
        return rc < 0 ? rc : st.rc;
    }
    bool first = c->fresh;
    int rc;
    if (pg_db_of(base->db)->prepare) { /* named statements go through the pipeline code */
        struct db_stmt st = {.sql = sql, .n = n, .args = args, .out = out};
        rc = pg_pipeline(c, &st, 1);
        if (rc == 0)
            rc = st.rc;
    } else {
        struct pg_args a;
        if ((rc = pg_args_init(&a, n, args)) < 0)
            return rc;
        rc = pg_run(c, sql, n, a.types, a.vals, out, false);
        pg_args_free(&a);
    }
    if (pg_redirect(c, first, rc))
        return pg_query(&c->redirect->base, sql, n, args, out);
    if (rc > 0 && PQtransactionStatus(c->h) == PQTRANS_IDLE)
        pg_note_write(c); /* a write outside a transaction: committed */
    return rc;
}

static int pg_simple(struct pg_conn *c, const char *sql);

static int pg_exec_script(struct db_conn *base, const char *sql)
{
    struct pg_conn *c = pg_conn_of(base);
    if (c->redirect)
        return pg_exec_script(&c->redirect->base, sql);
    if (c->begin_pending) {
        c->begin_pending = false;
        int rc = pg_simple(c, "BEGIN");
        if (rc < 0)
            return rc;
    }
    int rc = pg_run(c, sql, 0, NULL, NULL, NULL, true);
    return rc < 0 ? rc : 0;
}

static int pg_simple(struct pg_conn *c, const char *sql)
{
    int rc = pg_run(c, sql, 0, NULL, NULL, NULL, false);
    return rc < 0 ? rc : 0;
}

/* BEGIN is not sent on its own: it goes with the transaction's first statement. */
static int pg_begin(struct db_conn *base)
{
    struct pg_conn *c = pg_conn_of(base);
    if (c->redirect)
        return pg_begin(&c->redirect->base);
    if (c->begin_pending || PQtransactionStatus(c->h) != PQTRANS_IDLE) {
        log_error("db %s: begin inside a transaction", base->db->name);
        return ERR_INTERNAL;
    }
    c->begin_pending = true;
    return 0;
}

static bool pg_in_tx(struct db_conn *base)
{
    struct pg_conn *c = pg_conn_of(base);
    if (c->redirect)
        return pg_in_tx(&c->redirect->base);
    PGTransactionStatusType ts = PQtransactionStatus(c->h);
    return c->begin_pending || ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
}

static int pg_commit(struct db_conn *base)
{
    struct pg_conn *c = pg_conn_of(base);
    if (c->redirect)
        return pg_commit(&c->redirect->base);
    if (c->begin_pending) { /* nothing was run in it */
        c->begin_pending = false;
        return 0;
    }
    switch (PQtransactionStatus(c->h)) {
    case PQTRANS_INTRANS: {
        int rc = pg_simple(c, "COMMIT");
        if (rc == 0)
            pg_note_write(c);
        return rc;
    }
    case PQTRANS_INERROR:
        /* COMMIT of a failed transaction "succeeds" as a ROLLBACK: say it did not commit. */
        pg_simple(c, "ROLLBACK");
        log_error("db %s: commit of a failed transaction; rolled back", base->db->name);
        return ERR_INTERNAL;
    case PQTRANS_IDLE:
        log_error("db %s: commit without a transaction", base->db->name);
        return ERR_INTERNAL;
    default:
        return ERR_UNAVAILABLE;
    }
}

static int pg_rollback(struct db_conn *base)
{
    struct pg_conn *c = pg_conn_of(base);
    if (c->redirect)
        return pg_rollback(&c->redirect->base);
    c->begin_pending = false;
    PGTransactionStatusType ts = PQtransactionStatus(c->h);
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return 0; /* nothing open, or the connection is gone and the server rolled back */
    return pg_simple(c, "ROLLBACK");
}

/* ---- pool ---------------------------------------------------------------------------- */

static int pg_take(struct db *base, struct db_conn **out)
{
    struct pg_db *db = pg_db_of(base);
    struct pg_conn *c = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += db->timeout_ms / 1000;
    deadline.tv_nsec += (long)(db->timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&db->mu);
    for (;;) {
        if (db->idle) {
            c = db->idle;
            db->idle = c->next_idle;
            db->nidle--;
            break;
        }
        if (db->open < db->size) {
            db->open++; /* reserve the slot; connect outside the lock */
            break;
        }
        if (pthread_cond_timedwait(&db->cv, &db->mu, &deadline) != 0 && !db->idle &&
            db->open >= db->size) {
            pthread_mutex_unlock(&db->mu);
            log_warn("db %s: no free connection within %d ms", base->name, db->timeout_ms);
            return ERR_UNAVAILABLE;
        }
    }
    db->leased++;
    pthread_mutex_unlock(&db->mu);

    int rc = 0;
    if (!c) {
        rc = pg_connect(db, &c);
    } else if (PQstatus(c->h) != CONNECTION_OK) {
        pg_reset(c);
        if (PQstatus(c->h) != CONNECTION_OK) {
            const char *m = PQerrorMessage(c->h);
            log_error("db %s: reconnect failed: %.*s", base->name, pg_msglen(m), m);
            pg_conn_free(c);
            rc = ERR_UNAVAILABLE;
        }
    }
    if (rc < 0) {
        pthread_mutex_lock(&db->mu);
        db->open--;
        db->leased--;
        pthread_cond_signal(&db->cv);
        pthread_mutex_unlock(&db->mu);
        return rc;
    }
    c->fresh = true;
    c->begin_pending = false;
    *out = &c->base;
    return 0;
}

static void pg_give(struct db_conn *base)
{
    struct pg_conn *c = pg_conn_of(base);
    if (c->redirect) {
        pg_give(&c->redirect->base);
        c->redirect = NULL;
    }
    struct pg_db *db = pg_db_of(base->db);
    bool keep = PQstatus(c->h) == CONNECTION_OK && !c->broken;
    c->begin_pending = false;
    switch (PQtransactionStatus(c->h)) {
    case PQTRANS_IDLE:
        break;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
        log_warn("db %s: connection given back inside a transaction; rolling back", base->db->name);
        if (pg_simple(c, "ROLLBACK") < 0)
            keep = false;
        break;
    default: /* a query still running, or unknown: the connection is unusable */
        keep = false;
        break;
    }
    if (!keep) {
        pg_conn_free(c);
        c = NULL;
    }
    pthread_mutex_lock(&db->mu);
    db->leased--;
    if (c) {
        c->next_idle = db->idle;
        db->idle = c;
        db->nidle++;
    } else {
        db->open--;
    }
    pthread_cond_signal(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

static int pg_take_read(struct db *base, struct db_conn **out)
{
    struct pg_db *db = pg_db_of(base);
    struct pg_repl *m = db->repl;
    if (db->nro > 0 && m) {
        int64_t wrote = atomic_load(&db->last_write_us);
        unsigned start = atomic_fetch_add(&m->rr, 1);
        for (int k = 0; k < db->nro; k++) {
            int i = (int)((start + (unsigned)k) % (unsigned)db->nro);
            struct pg_replica *r = &m->r[i];
            int64_t lag = atomic_load(&r->lag_ms);
            if (!atomic_load(&r->up) || lag < 0 || lag > m->max_lag_ms ||
                atomic_load(&r->safe_us) <= wrote)
                continue;
            if (pg_take(&db->ro[i]->base, out) == 0) {
                atomic_fetch_add(&reads_replica, 1);
                return 0;
            }
        }
    }
    atomic_fetch_add(&reads_primary, 1);
    return pg_take(base, out);
}

static void pg_pool_stats(const struct db *base, int *in_use, int *idle)
{
    struct pg_db *db = pg_db_of(base);
    pthread_mutex_lock(&db->mu);
    *in_use = db->leased;
    *idle = db->nidle;
    pthread_mutex_unlock(&db->mu);
}

static void pg_close(struct db *base)
{
    struct pg_db *db = pg_db_of(base);
    if (db->leased > 0)
        log_error("db %s: closed with %d connection(s) still taken", base->name, db->leased);
    while (db->idle) {
        struct pg_conn *c = db->idle;
        db->idle = c->next_idle;
        pg_conn_free(c);
    }
    pthread_cond_destroy(&db->cv);
    pthread_mutex_destroy(&db->mu);
    for (int i = 0; i < db->nro; i++)
        pg_close(&db->ro[i]->base);
    if (db->repl)
        repl_put();
    free(db->url);
    free(db);
}

static const struct db__ops pg_ops = {
    .close = pg_close,
    .pool_stats = pg_pool_stats,
    .take = pg_take,
    .give = pg_give,
    .query = pg_query,
    .exec_script = pg_exec_script,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .query_many = pg_query_many,
    .in_tx = pg_in_tx,
    .take_read = pg_take_read,
};

/* ---- open ---------------------------------------------------------------------------- */

/* The URL's dbname, "emporium" when it names none. */
static int pg_base_dbname(const char *url, char *buf, size_t cap)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &err);
    if (!opts) {
        log_error("db: invalid PostgreSQL URL: %.*s", pg_msglen(err), err ? err : "");
        PQfreemem(err);
        return ERR_INVALID;
    }
    const char *base = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "dbname") == 0 && o->val && *o->val)
            base = o->val;
    snprintf(buf, cap, "%s", base ? base : "emporium");
    PQconninfoFree(opts);
    return 0;
}

/* The databases this process has seen on its server: an app opens some 18 of them, and
 * asking "postgres" about each one costs a connection and a round trip apiece. The first
 * miss lists every database whose name starts with the URL's base (one query), later opens
 * of those skip "postgres" altogether. Only names seen to exist (or created here) are kept;
 * one dropped behind our back fails the connection below, as a missing one always did. */
static pthread_mutex_t known_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char *url; /* the server (base URL) the names belong to */
    char **names;
    int n, cap;
} known;

static bool known_has(const char *url, const char *name)
{
    if (!known.url || strcmp(known.url, url) != 0)
        return false;
    for (int i = 0; i < known.n; i++)
        if (!strcmp(known.names[i], name))
            return true;
    return false;
}

static void known_add(const char *url, const char *name)
{
    if (!known.url || strcmp(known.url, url) != 0) {
        for (int i = 0; i < known.n; i++)
            free(known.names[i]);
        free(known.url);
        known.url = strdup(url);
        known.n = 0;
        if (!known.url)
            return;
    }
    if (known_has(url, name))
        return;
    if (known.n == known.cap) {
        int cap = known.cap ? known.cap * 2 : 32;
        char **names = realloc(known.names, (size_t)cap * sizeof *names);
        if (!names)
            return; /* only a cache: the next open asks again */
        known.names = names;
        known.cap = cap;
    }
    char *copy = strdup(name);
    if (copy)
        known.names[known.n++] = copy;
}

/* Lists the databases named "<base>…" into the cache (a failure leaves it as it was). */
static void known_list(PGconn *h, const char *url, const char *base)
{
    const char *vals[] = {base};
    PGresult *res = PQexecParams(h,
                                 "SELECT datname FROM pg_catalog.pg_database WHERE "
                                 "substr(datname, 1, length($1)) = $1",
                                 1, NULL, vals, NULL, NULL, 0);
    for (int i = 0; PQresultStatus(res) == PGRES_TUPLES_OK && i < PQntuples(res); i++)
        known_add(url, PQgetvalue(res, i, 0));
    PQclear(res);
}

/* Creates db->target unless it exists. Tolerates a concurrent creator (42P04, or 23505 on
 * pg_database's name index when both got past the existence check). */
static int pg_ensure_database(struct pg_db *db, const char *base)
{
    PGconn *h = NULL;
    pthread_mutex_lock(&known_mu);
    bool exists = known_has(db->url, db->target);
    pthread_mutex_unlock(&known_mu);
    if (!exists)
        h = pg_connect_to(db->url, "postgres");
    /* Opens running at the same time all miss at first: the first to get here lists, the
     * others then find their name (connecting happens outside the lock: a server that does
     * not answer costs each its own timeout, not one after the other). */
    if (!exists && h && PQstatus(h) == CONNECTION_OK) {
        pthread_mutex_lock(&known_mu);
        exists = known_has(db->url, db->target);
        if (!exists) {
            known_list(h, db->url, base);
            exists = known_has(db->url, db->target);
        }
        pthread_mutex_unlock(&known_mu);
    }
    if (exists) {
        PQfinish(h);
        return 0;
    }
    if (!h || PQstatus(h) != CONNECTION_OK) {
        const char *m = h ? PQerrorMessage(h) : "out of memory";
        log_warn("db %s: cannot reach the postgres database to create %s: %.*s", db->base.name,
                 db->target, pg_msglen(m), m);
        PQfinish(h);
        return ERR_UNAVAILABLE;
    }
    PQsetNoticeProcessor(h, pg_notice, db->base.name);
    int rc = 0;
    if (!exists) {
        char sql[sizeof db->target + 32];
        /* The name is [A-Za-z0-9_] (db__name_ok and the URL's dbname): quoting keeps case. */
        snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", db->target);
        PGresult *res = PQexec(h, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            log_info("db %s: created database %s", db->base.name, db->target);
        } else {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (!state || (strcmp(state, "42P04") != 0 && strcmp(state, "23505") != 0)) {
                const char *m = PQresultErrorMessage(res);
                log_error("db %s: cannot create database %s: %.*s", db->base.name, db->target,
                          pg_msglen(m), m);
                rc = ERR_UNAVAILABLE;
            }
        }
        PQclear(res);
        if (rc == 0) {
            pthread_mutex_lock(&known_mu);
            known_add(db->url, db->target);
            pthread_mutex_unlock(&known_mu);
        }
    }
    PQfinish(h);
    return rc;
}

static bool pg_ident_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static struct pg_db *pg_pool_new(const char *url, const char *name, const struct db_options *opt)
{
    struct pg_db *db = calloc(1, sizeof *db);
    if (!db)
        return NULL;
    db->url = strdup(url);
    if (!db->url) {
        free(db);
        return NULL;
    }
    db->base.ops = &pg_ops;
    db->base.dialect = DB_POSTGRES;
    snprintf(db->base.name, sizeof db->base.name, "%s", name);
    db->size = opt->pool_size > 0 ? opt->pool_size : 8;
    db->timeout_ms = opt->acquire_timeout_ms > 0 ? opt->acquire_timeout_ms : 5000;
    db->prepare = opt->prepare;
    db->replica_index = -1;
    pthread_mutex_init(&db->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines immune to clock steps */
    pthread_cond_init(&db->cv, &ca);
    pthread_condattr_destroy(&ca);
    return db;
}

int db__pg_open(struct db **out, const char *name, const struct db_options *opt)
{
    char base[PG_IDENT_MAX + 1];
    int rc = pg_base_dbname(opt->url, base, sizeof base);
    if (rc < 0)
        return rc;
    if (!pg_ident_ok(base) || strlen(base) + 1 + strlen(name) > PG_IDENT_MAX) {
        log_error("db %s: the URL's database name must be [A-Za-z0-9_] and short enough for "
                  "\"<base>_%s\" to fit %d bytes",
                  name, name, PG_IDENT_MAX);
        return ERR_INVALID;
    }
    struct pg_db *db = pg_pool_new(opt->url, name, opt);
    if (!db)
        return ERR_NOMEM;
    snprintf(db->target, sizeof db->target, "%s_%s", base, name);
    if (opt->replica_urls && *opt->replica_urls) {
        db->repl = repl_get(opt->url, opt->replica_urls, opt->replica_max_lag_ms);
        for (int i = 0; db->repl && i < db->repl->n; i++) {
            struct pg_db *ro = pg_pool_new(db->repl->r[i].url, name, opt);
            if (!ro)
                break;
            snprintf(ro->target, sizeof ro->target, "%s", db->target);
            ro->replica_index = i;
            ro->primary = db;
            db->ro[db->nro++] = ro;
        }
    }

    /* When "postgres" is out of reach (a managed server may not allow it) the target may
     * still exist: the connection below decides. */
    pg_ensure_database(db, base);

    struct db_conn *c;
    rc = pg_take(&db->base, &c);
    if (rc < 0) {
        pg_close(&db->base);
        return rc;
    }
    pg_give(c);
    *out = &db->base;
    return 0;
}
