/* SPDX-License-Identifier: MIT */
/* db_sqlite.c — the embedded storage backend: one SQLite file per logical database.
 *
 * The file is DATA_DIR/<name>.db in WAL mode, so readers never block the (single) writer.
 * SQLite connections are cheap but their prepared statements are not free, so each thread
 * keeps an affinity to "its" connection: a small _Thread_local table maps a db to the
 * connection this thread used last, and taking it is one atomic compare-and-swap. All
 * connections of a db also sit on a list under the db's mutex, which is how db_close() finds
 * them and how a thread whose connection is leased elsewhere (or who has none yet) finds an
 * idle one before opening another. A lease flag guarantees a connection is never used by two
 * threads at once, so connections are opened with SQLITE_OPEN_NOMUTEX; the number of
 * connections is bounded by the peak number of concurrent leases, not by thread churn.
 *
 * Each connection caches its prepared statements in an open-addressing hash table keyed by
 * the SQL text (services use a fixed set of statements); when it fills up it is simply
 * flushed. $1-style parameters are named parameters to SQLite, so one $n may appear several
 * times in a statement, as on PostgreSQL; which SQLite index each $n has is worked out once
 * when the statement is prepared and kept with it, so binding is positional. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "adapters/db_internal.h"
#include "emporium/err.h"
#include "emporium/log.h"

#define SQ_CACHE_SLOTS 512 /* hash slots; power of two */
#define SQ_CACHE_MAX 256   /* statements kept before the cache is flushed */
#define SQ_TLS_SLOTS 16    /* dbs a thread remembers its connection for */
#define SQ_BUSY_MS 5000
/* Checkpoints run on a background thread per database, never on a request: one when a
 * commit leaves the WAL at SQ_CKPT_PAGES frames or more, else every SQ_CKPT_MS while
 * something was committed. Each completed checkpoint lets the next writer restart the WAL,
 * and SQLite fsyncs the new WAL header then, on the request path under the writer lock:
 * a long WAL (16 MB at 4 KB pages) keeps those rare. */
#define SQ_CKPT_PAGES 4000
#define SQ_CKPT_MS 1000

#define SQ_PARAMS_INLINE 16

struct sq_stmt {
    char *sql; /* NULL: free slot */
    uint64_t hash;
    sqlite3_stmt *st;
    int nparams;    /* sqlite3_bind_parameter_count */
    bool params_ok; /* the parameters are exactly $1..$nparams */
    bool identity;  /* … and $k is SQLite's index k (the usual order of first appearance) */
    int *map;       /* !identity: map[k] is the index of $(k+1); inline or malloc'ed */
    int map_inline[SQ_PARAMS_INLINE];
};

struct sq_conn {
    struct db_conn base;
    sqlite3 *h;
    atomic_bool leased;
    struct sq_conn *next;  /* on the db's list */
    struct sq_stmt *cache; /* SQ_CACHE_SLOTS entries */
    int ncached;
    bool holds_wlock; /* this connection holds its db's in-process writer lock */
};

struct sq_db {
    struct db base;
    uint64_t uid; /* never reused, unlike the address: tells stale TLS entries apart */
    char *path;
    pthread_mutex_t mu;
    /* Writers of one process queue here instead of in SQLite's busy handler, which sleeps
     * 1, 2, 5, 10 … ms between tries and so turns a 20 µs wait into milliseconds. SQLite's
     * own lock (and busy_timeout) still guards against other processes (a CLI seed).
     * A binary semaphore, not a mutex: a lease may be given back (and an abandoned
     * transaction's lock released) by another thread than the one that took it. */
    sem_t wmu;
    struct sq_conn *conns;
    int nconns;
    atomic_int leased;
    /* The checkpointer: its own connection and thread, woken by sq_wal_hook. */
    pthread_t ckpt_thread;
    bool ckpt_running;
    struct sq_conn *ckpt_conn; /* the checkpointer's own connection */
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    bool ckpt_stop;          /* under ckpt_mu */
    atomic_bool ckpt_wanted; /* the WAL passed SQ_CKPT_PAGES */
    /* Commits and WAL frames written since the database was opened (the checkpointer
     * compares commits with what it saw last; /metrics shows both), and the WAL's length
     * after the last commit (a shorter one means it was restarted). */
    _Atomic uint64_t commits_total, frames_total;
    atomic_int wal_last;
};

static atomic_uint_fast64_t sq_next_uid = 1;

static _Thread_local struct {
    uint64_t uid;
    struct sq_conn *c;
} sq_tls[SQ_TLS_SLOTS];
static _Thread_local unsigned sq_tls_victim;

/* sem_timedwait() that is not cut short by a signal; 0 when the semaphore was taken. */
static int sq_sem_timedwait(sem_t *s, const struct timespec *until)
{
    int rc;
    while ((rc = sem_timedwait(s, until)) != 0 && errno == EINTR)
        ;
    return rc;
}

static struct sq_db *sq_db_of(const struct db *db) { return (struct sq_db *)db; }
static struct sq_conn *sq_conn_of(struct db_conn *c) { return (struct sq_conn *)c; }
static void sq_wunlock(struct sq_conn *c);

/* ---- errors -------------------------------------------------------------------------- */

static int sq_map(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_CHECK:
        return ERR_CONFLICT;
    case SQLITE_NOMEM:
        return ERR_NOMEM;
    }
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    /* WAL readers give up with PROTOCOL when the wal-index keeps changing under them (a
     * checkpoint restarting the WAL under heavy load): transient, so retryable, not a 500. */
    case SQLITE_PROTOCOL:
        return ERR_BUSY;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
        return ERR_UNAVAILABLE;
    }
    return ERR_INTERNAL;
}

/* Maps and logs; a conflict is an expected outcome for the caller, so it only gets debug. */
static int sq_fail(struct sq_conn *c, int rc, const char *sql)
{
    int e = sq_map(rc);
    const char *msg = c->h ? sqlite3_errmsg(c->h) : sqlite3_errstr(rc);
    if (e == ERR_CONFLICT)
        log_debug("db %s: %s", c->base.db->name, msg);
    else if (e == ERR_BUSY)
        log_warn("db %s: busy: %s", c->base.db->name, msg);
    else
        log_error("db %s: sqlite error %d: %s (sql: %.120s)", c->base.db->name, rc, msg, sql);
    return e;
}

/* ---- statement cache ----------------------------------------------------------------- */

static uint64_t sq_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void sq_cache_flush(struct sq_conn *c)
{
    for (int i = 0; i < SQ_CACHE_SLOTS; i++) {
        if (c->cache[i].sql) {
            sqlite3_finalize(c->cache[i].st);
            free(c->cache[i].sql);
            if (c->cache[i].map != c->cache[i].map_inline)
                free(c->cache[i].map);
            c->cache[i].sql = NULL;
            c->cache[i].map = NULL;
        }
    }
    c->ncached = 0;
}

static bool sq_only_space(const char *s)
{
    for (; *s; s++)
        if (!(*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == ';'))
            return false;
    return true;
}

/* Works out once per statement how $1..$n map to SQLite's parameter indexes. PostgreSQL
 * rejects a statement whose parameters are not exactly $1..$n; so does sq_bind, or a missing
 * or extra argument would only show up in a PostgreSQL deployment. */
static int sq_param_map(struct sq_stmt *e)
{
    int n = sqlite3_bind_parameter_count(e->st);
    e->nparams = n;
    e->identity = true;
    e->params_ok = true;
    e->map = n <= SQ_PARAMS_INLINE ? e->map_inline : malloc((size_t)n * sizeof *e->map);
    if (!e->map)
        return ERR_NOMEM;
    char name[16];
    for (int k = 0; k < n; k++) {
        snprintf(name, sizeof name, "$%d", k + 1);
        int idx = sqlite3_bind_parameter_index(e->st, name);
        if (idx == 0)
            e->params_ok = false;
        e->map[k] = idx;
        if (idx != k + 1)
            e->identity = false;
    }
    return 0;
}

/* Returns the cached statement for sql, preparing it on a miss. The entry stays valid until
 * the next sq_prepare on this connection. */
static int sq_prepare(struct sq_conn *c, const char *sql, struct sq_stmt **out)
{
    uint64_t h = sq_hash(sql);
    unsigned i = (unsigned)h & (SQ_CACHE_SLOTS - 1);
    for (; c->cache[i].sql; i = (i + 1) & (SQ_CACHE_SLOTS - 1)) {
        if (c->cache[i].hash == h && strcmp(c->cache[i].sql, sql) == 0) {
            *out = &c->cache[i];
            return 0;
        }
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(c->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK)
        return sq_fail(c, rc, sql);
    if (!st || (tail && !sq_only_space(tail))) {
        /* db_query runs exactly one statement: silently ignoring the rest would be worse. */
        sqlite3_finalize(st);
        log_error("db %s: db_query wants exactly one statement (sql: %.120s)", c->base.db->name,
                  sql);
        return ERR_INTERNAL;
    }
    char *key = strdup(sql);
    if (!key) {
        sqlite3_finalize(st);
        return ERR_NOMEM;
    }
    if (c->ncached >= SQ_CACHE_MAX) {
        sq_cache_flush(c);
        i = (unsigned)h & (SQ_CACHE_SLOTS - 1);
    }
    /* Flushing may have emptied an earlier slot of the probe chain: probe again. */
    while (c->cache[i].sql)
        i = (i + 1) & (SQ_CACHE_SLOTS - 1);
    struct sq_stmt *e = &c->cache[i];
    *e = (struct sq_stmt){.sql = key, .hash = h, .st = st};
    if (sq_param_map(e) < 0) {
        sqlite3_finalize(st);
        free(key);
        e->sql = NULL;
        return ERR_NOMEM;
    }
    c->ncached++;
    *out = e;
    return 0;
}

/* ---- connections --------------------------------------------------------------------- */

static void sq_conn_free(struct sq_conn *c)
{
    if (!c)
        return;
    if (c->cache) {
        sq_cache_flush(c);
        free(c->cache);
    }
    if (c->h && sqlite3_close(c->h) != SQLITE_OK)
        sqlite3_close_v2(c->h);
    free(c);
}

/* Once per process, before SQLite initialises itself (its first open): no memory statistics.
 * With them on (SQLite's default) every allocation and free of every connection takes one
 * process-wide mutex, which the shop's ~20 SQLite threads (request threads, group-commit
 * writers, consumers, the relay) then queue on. Nothing here reads the statistics. A
 * process that initialised SQLite before (a test opening a file itself) keeps them. */
static pthread_once_t sq_once = PTHREAD_ONCE_INIT;
static void sq_global_init(void) { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

static int sq_conn_open(struct sq_db *db, struct sq_conn **out)
{
    pthread_once(&sq_once, sq_global_init);
    struct sq_conn *c = calloc(1, sizeof *c);
    if (!c)
        return ERR_NOMEM;
    c->base.db = &db->base;
    c->cache = calloc(SQ_CACHE_SLOTS, sizeof *c->cache);
    if (!c->cache) {
        free(c);
        return ERR_NOMEM;
    }
    int rc = sqlite3_open_v2(
        db->path, &c->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_error("db %s: cannot open %s: %s", db->base.name, db->path,
                  c->h ? sqlite3_errmsg(c->h) : sqlite3_errstr(rc));
        sq_conn_free(c);
        return ERR_UNAVAILABLE;
    }
    sqlite3_extended_result_codes(c->h, 1);
    /* busy_timeout first: switching to WAL needs a lock another connection may hold.
     * synchronous=NORMAL is durable against crashes of the process in WAL mode (only an OS
     * crash can lose the last transactions). No mmap: every connection maps the file
     * separately, and with a 100k-product catalog the mappings alone took the resident size
     * from 124 MB to 252 MB (make bench, product-get + search) for 4 % less CPU on search;
     * reads go through the OS page cache and a 2 MB page cache per connection instead. */
    static const char pragmas[] = "PRAGMA busy_timeout = 5000;"
                                  "PRAGMA journal_mode = WAL;"
                                  "PRAGMA synchronous = NORMAL;"
                                  "PRAGMA foreign_keys = ON;"
                                  "PRAGMA mmap_size = 0;"
                                  "PRAGMA cache_size = -2000;"
                                  "PRAGMA temp_store = MEMORY;";
    char *err = NULL;
    rc = sqlite3_exec(c->h, pragmas, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        log_error("db %s: cannot configure %s: %s", db->base.name, db->path,
                  err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        sq_conn_free(c);
        return sq_map(rc) == ERR_BUSY ? ERR_BUSY : ERR_UNAVAILABLE;
    }
    *out = c;
    return 0;
}

/* Runs on the committing thread after every commit (wal_autocheckpoint is off): counts the
 * commit and wakes the checkpointer once the WAL is long. */
static int sq_wal_hook(void *arg, sqlite3 *h, const char *schema, int pages)
{
    (void)h;
    (void)schema;
    struct sq_db *db = arg;
    atomic_fetch_add_explicit(&db->commits_total, 1, memory_order_relaxed);
    int last = atomic_exchange_explicit(&db->wal_last, pages, memory_order_relaxed);
    atomic_fetch_add_explicit(&db->frames_total, (uint64_t)(pages > last ? pages - last : pages),
                              memory_order_relaxed);
    if (pages >= SQ_CKPT_PAGES && !atomic_exchange(&db->ckpt_wanted, true)) {
        pthread_mutex_lock(&db->ckpt_mu);
        pthread_cond_signal(&db->ckpt_cv);
        pthread_mutex_unlock(&db->ckpt_mu);
    }
    return SQLITE_OK;
}

/* PASSIVE checkpoints never wait for readers or writers, so the request connections' writer
 * lock is never held while the WAL and the database are synced. Durability is unchanged:
 * a commit is in the WAL (synchronous=NORMAL) before it is acknowledged. */
static void *sq_ckpt_main(void *arg)
{
    struct sq_db *db = arg;
    log_thread_name("ckpt-", db->base.name);
    struct sq_conn *c = db->ckpt_conn; /* opened before the thread started: ours now */
    sqlite3_exec(c->h, "PRAGMA cache_size = -64", NULL, NULL, NULL);
    uint64_t seen = 0; /* commits_total when it last looked */
    pthread_mutex_lock(&db->ckpt_mu);
    while (!db->ckpt_stop) {
        if (!atomic_load(&db->ckpt_wanted)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += SQ_CKPT_MS / 1000;
            until.tv_nsec += (SQ_CKPT_MS % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&db->ckpt_cv, &db->ckpt_mu, &until);
            if (db->ckpt_stop)
                break;
        }
        bool wanted = atomic_exchange(&db->ckpt_wanted, false);
        uint64_t commits = atomic_load_explicit(&db->commits_total, memory_order_relaxed);
        if (!wanted && commits == seen)
            continue;
        seen = commits;
        pthread_mutex_unlock(&db->ckpt_mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->h, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        /* Writers kept appending meanwhile, so the WAL is not fully copied and no writer
         * may start it over: it would grow for as long as the load lasts. Copy the short
         * tail with the writers held off, so the next writer restarts the WAL. That pass
         * syncs too, but once per SQ_CKPT_PAGES frames instead of SQLite's once per 1,000
         * under the lock, and it only copies what the first pass could not. */
        if (rc == SQLITE_OK && done < log && log >= SQ_CKPT_PAGES) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            if (sq_sem_timedwait(&db->wmu, &until) == 0) {
                rc = sqlite3_wal_checkpoint_v2(c->h, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
                sem_post(&db->wmu);
            }
        }
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
            log_warn("db %s: checkpoint: %s", db->base.name, sqlite3_errmsg(c->h));
        pthread_mutex_lock(&db->ckpt_mu);
    }
    pthread_mutex_unlock(&db->ckpt_mu);
    sq_conn_free(c);
    return NULL;
}

static void sq_ckpt_stop(struct sq_db *db)
{
    if (!db->ckpt_running)
        return;
    pthread_mutex_lock(&db->ckpt_mu);
    db->ckpt_stop = true;
    pthread_cond_signal(&db->ckpt_cv);
    pthread_mutex_unlock(&db->ckpt_mu);
    pthread_join(db->ckpt_thread, NULL);
    db->ckpt_running = false;
}

static void sq_tls_remember(struct sq_db *db, struct sq_conn *c)
{
    unsigned slot = SQ_TLS_SLOTS;
    for (unsigned i = 0; i < SQ_TLS_SLOTS; i++) {
        if (sq_tls[i].uid == db->uid) {
            slot = i;
            break;
        }
        if (slot == SQ_TLS_SLOTS && sq_tls[i].uid == 0)
            slot = i;
    }
    if (slot == SQ_TLS_SLOTS) /* full: forgetting only costs a list scan later */
        slot = sq_tls_victim++ % SQ_TLS_SLOTS;
    sq_tls[slot].uid = db->uid;
    sq_tls[slot].c = c;
}

static int sq_take(struct db *base, struct db_conn **out)
{
    struct sq_db *db = sq_db_of(base);
    struct sq_conn *c = NULL;
    /* Fast path: the connection this thread used last, unless someone adopted it. A
     * matching uid means the db is the caller's live one, so the pointer is valid. */
    for (unsigned i = 0; i < SQ_TLS_SLOTS; i++) {
        if (sq_tls[i].uid == db->uid) {
            bool no = false;
            if (atomic_compare_exchange_strong(&sq_tls[i].c->leased, &no, true))
                c = sq_tls[i].c;
            break;
        }
    }
    if (!c) {
        pthread_mutex_lock(&db->mu);
        for (struct sq_conn *p = db->conns; p && !c; p = p->next) {
            bool no = false;
            if (atomic_compare_exchange_strong(&p->leased, &no, true))
                c = p;
        }
        pthread_mutex_unlock(&db->mu);
    }
    if (!c) {
        int rc = sq_conn_open(db, &c);
        if (rc < 0)
            return rc;
        /* Request connections never checkpoint (sqlite3_wal_hook replaces the automatic
         * checkpoint): the checkpointer thread does, when it runs. */
        if (db->ckpt_running)
            sqlite3_wal_hook(c->h, sq_wal_hook, db);
        atomic_store(&c->leased, true);
        pthread_mutex_lock(&db->mu);
        c->next = db->conns;
        db->conns = c;
        db->nconns++;
        pthread_mutex_unlock(&db->mu);
    }
    sq_tls_remember(db, c);
    atomic_fetch_add(&db->leased, 1);
    *out = &c->base;
    return 0;
}

static int sq_exec_simple(struct sq_conn *c, const char *sql);

static void sq_give(struct db_conn *base)
{
    struct sq_conn *c = sq_conn_of(base);
    struct sq_db *db = sq_db_of(base->db);
    if (!sqlite3_get_autocommit(c->h)) {
        log_warn("db %s: connection given back inside a transaction; rolling back", db->base.name);
        sq_exec_simple(c, "ROLLBACK");
    }
    sq_wunlock(c);
    atomic_fetch_sub(&db->leased, 1);
    atomic_store(&c->leased, false); /* release: our writes are visible to the next taker */
}

/* ---- statements ---------------------------------------------------------------------- */

static int sq_bind(struct sq_conn *c, const struct sq_stmt *e, int n, const struct db_val *args,
                   const char *sql)
{
    if (!e->params_ok || e->nparams != n) {
        log_error("db %s: statement parameters are not exactly $1..$%d (sql: %.120s)",
                  c->base.db->name, n, sql);
        return ERR_INTERNAL;
    }
    sqlite3_stmt *st = e->st;
    for (int k = 0; k < n; k++) {
        int idx = e->identity ? k + 1 : e->map[k];
        int rc;
        switch (args[k].t) {
        case DB_T_INT:
            rc = sqlite3_bind_int64(st, idx, args[k].i);
            break;
        case DB_T_TEXT:
            /* The text outlives the statement's use: sq_query resets and clears the
             * bindings before it returns, so SQLite need not copy it. */
            rc = args[k].s ? sqlite3_bind_text(st, idx, args[k].s, -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, idx);
            break;
        default:
            rc = sqlite3_bind_null(st, idx);
            break;
        }
        if (rc != SQLITE_OK)
            return sq_fail(c, rc, sql);
    }
    return 0;
}

/* Decimal text of v into buf (at least 21 bytes), no NUL; returns the length. */
static size_t sq_fmt_i64(int64_t v, char *buf)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    return len;
}

static int sq_copy_row(sqlite3_stmt *st, struct db_rows *r)
{
    int rc = db__rows_add_row(r);
    char num[32];
    for (int col = 0; rc == 0 && col < db_rows_cols(r); col++) {
        switch (sqlite3_column_type(st, col)) {
        case SQLITE_NULL:
            break;
        case SQLITE_INTEGER: {
            size_t len = sq_fmt_i64((int64_t)sqlite3_column_int64(st, col), num);
            rc = db__rows_set(r, col, num, len);
            break;
        }
        case SQLITE_FLOAT: {
            int len = snprintf(num, sizeof num, "%.17g", sqlite3_column_double(st, col));
            rc = db__rows_set(r, col, num, (size_t)len);
            break;
        }
        default: {
            const char *s = (const char *)sqlite3_column_text(st, col);
            int len = sqlite3_column_bytes(st, col);
            rc = s ? db__rows_set(r, col, s, (size_t)len) : ERR_NOMEM;
            break;
        }
        }
    }
    return rc;
}

/* Takes the db's writer lock, waiting at most as long as busy_timeout would. */
static int sq_wlock(struct sq_conn *c)
{
    if (c->holds_wlock)
        return 0;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    if (sq_sem_timedwait(&sq_db_of(c->base.db)->wmu, &until) != 0)
        return ERR_BUSY;
    c->holds_wlock = true;
    return 0;
}

static void sq_wunlock(struct sq_conn *c)
{
    if (!c->holds_wlock)
        return;
    c->holds_wlock = false;
    sem_post(&sq_db_of(c->base.db)->wmu);
}

static int sq_query(struct db_conn *base, const char *sql, int n, const struct db_val *args,
                    struct db_rows **out)
{
    struct sq_conn *c = sq_conn_of(base);
    struct sq_stmt *e = NULL;
    int rc = sq_prepare(c, sql, &e);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = e->st;
    rc = sq_bind(c, e, n, args, sql);
    /* The rows are made once the first step has run: a statement SQLite recompiled after a
     * schema change (SELECT * of a table that gained a column) has its new column count
     * only then. */
    struct db_rows *rows = NULL;
    /* A write outside a transaction takes the writer lock for its own duration. */
    bool own_lock = false;
    if (rc == 0 && !c->holds_wlock && !sqlite3_stmt_readonly(st) && sqlite3_get_autocommit(c->h)) {
        rc = sq_wlock(c);
        own_lock = rc == 0;
    }
    sqlite3_int64 before = sqlite3_total_changes64(c->h);
    while (rc == 0) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            break;
        if (s == SQLITE_ROW) {
            if (out && !rows && !(rows = db__rows_new(sqlite3_column_count(st))))
                rc = ERR_NOMEM;
            if (rows)
                rc = sq_copy_row(st, rows);
            continue;
        }
        rc = sq_fail(c, s, sql);
    }
    if (rc == 0 && out && !rows && !(rows = db__rows_new(sqlite3_column_count(st))))
        rc = ERR_NOMEM;
    /* sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE, so it is only
     * this statement's when the statement wrote and the running total moved. */
    int affected = 0;
    if (rc == 0 && !sqlite3_stmt_readonly(st) && sqlite3_total_changes64(c->h) != before)
        affected = (int)sqlite3_changes64(c->h);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (own_lock)
        sq_wunlock(c);
    if (rc < 0) {
        db_rows_free(rows);
        return rc;
    }
    if (out)
        *out = rows;
    return affected;
}

static int sq_exec_simple(struct sq_conn *c, const char *sql)
{
    int rc = sq_query(&c->base, sql, 0, NULL, NULL);
    return rc < 0 ? rc : 0;
}

static int sq_exec_script(struct db_conn *base, const char *sql)
{
    struct sq_conn *c = sq_conn_of(base);
    char *err = NULL;
    int rc = sqlite3_exec(c->h, sql, NULL, NULL, &err);
    sqlite3_free(err); /* the same text is still in sqlite3_errmsg() */
    return rc == SQLITE_OK ? 0 : sq_fail(c, rc, sql); /* extended codes are on */
}

/* IMMEDIATE takes the write lock now (waiting up to busy_timeout), so a transaction never
 * fails half-way with SQLITE_BUSY when it first writes after reading. */
static int sq_begin(struct db_conn *base)
{
    struct sq_conn *c = sq_conn_of(base);
    int rc = sq_wlock(c);
    if (rc < 0)
        return rc;
    rc = sq_exec_simple(c, "BEGIN IMMEDIATE");
    if (rc < 0)
        sq_wunlock(c);
    return rc;
}

static int sq_commit(struct db_conn *base)
{
    struct sq_conn *c = sq_conn_of(base);
    int rc = sq_exec_simple(c, "COMMIT");
    if (sqlite3_get_autocommit(c->h)) /* committed, or SQLite rolled back on its own */
        sq_wunlock(c);
    return rc;
}

static int sq_rollback(struct db_conn *base)
{
    struct sq_conn *c = sq_conn_of(base);
    int rc = 0;
    /* Nothing open when SQLite already rolled back after an error. */
    if (!sqlite3_get_autocommit(c->h))
        rc = sq_exec_simple(c, "ROLLBACK");
    if (sqlite3_get_autocommit(c->h))
        sq_wunlock(c);
    return rc;
}

static bool sq_in_tx(struct db_conn *base) { return !sqlite3_get_autocommit(sq_conn_of(base)->h); }

/* ---- db ------------------------------------------------------------------------------ */

static void sq_pool_stats(const struct db *base, int *in_use, int *idle)
{
    struct sq_db *db = sq_db_of(base);
    pthread_mutex_lock(&db->mu);
    int n = db->nconns;
    pthread_mutex_unlock(&db->mu);
    int u = atomic_load(&db->leased);
    *in_use = u;
    *idle = n > u ? n - u : 0;
}

static void sq_close(struct db *base)
{
    struct sq_db *db = sq_db_of(base);
    sq_ckpt_stop(db);
    if (atomic_load(&db->leased) > 0)
        log_error("db %s: closed with %d connection(s) still taken", base->name,
                  atomic_load(&db->leased));
    struct sq_conn *c = db->conns;
    while (c) {
        struct sq_conn *next = c->next;
        sq_conn_free(c);
        c = next;
    }
    pthread_mutex_destroy(&db->mu);
    sem_destroy(&db->wmu);
    pthread_mutex_destroy(&db->ckpt_mu);
    pthread_cond_destroy(&db->ckpt_cv);
    free(db->path);
    free(db);
}

static void sq_wal_stats(const struct db *base, uint64_t *commits, uint64_t *frames)
{
    struct sq_db *db = (struct sq_db *)base;
    *commits = atomic_load_explicit(&db->commits_total, memory_order_relaxed);
    *frames = atomic_load_explicit(&db->frames_total, memory_order_relaxed);
}

static const struct db__ops sq_ops = {
    .close = sq_close,
    .wal_stats = sq_wal_stats,
    .pool_stats = sq_pool_stats,
    .take = sq_take,
    .give = sq_give,
    .query = sq_query,
    .exec_script = sq_exec_script,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .in_tx = sq_in_tx,
};

/* mkdir -p: the data directory of a fresh install does not exist yet. What it creates is
 * 0700 (whatever the umask): the files hold password hashes, addresses and secrets. An
 * existing directory is left as the operator made it. */
static int sq_mkdirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return ERR_NOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char saved = *s;
            *s = '\0';
            if (mkdir(p, 0700) == 0) {
                if (chmod(p, 0700) != 0)
                    log_warn("db: cannot set the mode of %s: %s", p, strerror(errno));
            } else if (errno != EEXIST) {
                log_error("db: cannot create directory %s: %s", p, strerror(errno));
                rc = ERR_UNAVAILABLE;
                break;
            }
            *s = saved;
            if (saved == '\0')
                break;
        }
    }
    free(p);
    return rc;
}

/* The database file is created 0600 before SQLite opens it, and SQLite gives the -wal and
 * -shm files it creates the database file's mode, so all three are the owner's only. Files
 * of an older install that other users can read are narrowed to the owner (0600 at most). */
static int sq_file_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("db: cannot open %s: %s", path, strerror(errno));
        return ERR_UNAVAILABLE;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077) && fchmod(fd, st.st_mode & 0700) != 0)
        log_warn("db: %s is readable by other users and its mode cannot be changed: %s", path,
                 strerror(errno));
    close(fd);
    static const char *const side[] = {"-wal", "-shm"};
    for (int i = 0; i < 2; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s%s", path, side[i]);
        if (stat(p, &st) == 0 && (st.st_mode & 077))
            chmod(p, st.st_mode & 0700);
    }
    return 0;
}

int db__sqlite_open(struct db **out, const char *name, const struct db_options *opt)
{
    const char *dir = opt->data_dir && *opt->data_dir ? opt->data_dir : "data";
    int rc = sq_mkdirs(dir);
    if (rc < 0)
        return rc;
    struct sq_db *db = calloc(1, sizeof *db);
    if (!db)
        return ERR_NOMEM;
    size_t len = strlen(dir) + strlen(name) + 8;
    db->path = malloc(len);
    if (!db->path) {
        free(db);
        return ERR_NOMEM;
    }
    snprintf(db->path, len, "%s/%s.db", dir, name);
    db->base.ops = &sq_ops;
    db->base.dialect = DB_SQLITE;
    snprintf(db->base.name, sizeof db->base.name, "%s", name);
    db->uid = atomic_fetch_add(&sq_next_uid, 1);
    pthread_mutex_init(&db->mu, NULL);
    sem_init(&db->wmu, 0, 1);
    pthread_mutex_init(&db->ckpt_mu, NULL);
    pthread_cond_init(&db->ckpt_cv, NULL);
    atomic_init(&db->leased, 0);
    atomic_init(&db->ckpt_wanted, false);
    atomic_init(&db->commits_total, 0);
    atomic_init(&db->frames_total, 0);
    atomic_init(&db->wal_last, 0);

    /* Open one connection now so a bad path fails here, at startup, not on a request. */
    struct db_conn *c;
    rc = sq_file_private(db->path);
    if (rc == 0)
        rc = sq_take(&db->base, &c);
    if (rc < 0) {
        sq_close(&db->base);
        return rc;
    }
    sq_give(c);
    /* Without its checkpointer a database still works: the WAL just grows until close. */
    /* Its connection is opened here, so request connections only give up automatic
     * checkpoints once a checkpointer that can really run exists. */
    if (sq_conn_open(db, &db->ckpt_conn) == 0 &&
        pthread_create(&db->ckpt_thread, NULL, sq_ckpt_main, db) == 0) {
        db->ckpt_running = true;
        for (struct sq_conn *p = db->conns; p; p = p->next) /* idle: nobody else has db yet */
            sqlite3_wal_hook(p->h, sq_wal_hook, db);
    } else {
        sq_conn_free(db->ckpt_conn); /* NULL-safe */
        db->ckpt_conn = NULL;
        log_warn("db %s: cannot start the checkpointer; SQLite checkpoints on commit", name);
    }
    *out = &db->base;
    return 0;
}

/* ---- the FTS5 tokenizer -------------------------------------------------------------- */

struct db_tokenizer {
    struct sq_conn *conn; /* owns the fts5_api the tokenizer belongs to */
    fts5_tokenizer api;
    Fts5Tokenizer *tok;
};

static fts5_api *sq_fts5_api(sqlite3 *h)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(h, "SELECT fts5(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return api;
}

void db_tokenizer_free(struct db_tokenizer *t)
{
    if (!t)
        return;
    if (t->tok)
        t->api.xDelete(t->tok);
    sq_conn_free(t->conn);
    free(t);
}

int db_tokenizer_new(struct db *base, const char *spec, struct db_tokenizer **out)
{
    *out = NULL;
    if (!base || base->dialect != DB_SQLITE)
        return ERR_UNSUPPORTED;
    /* "porter unicode61": the first word names the tokenizer, the rest are its arguments */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", spec);
    const char *argv[8];
    int argc = 0;
    for (char *p = strtok(buf, " "); p && argc < 8; p = strtok(NULL, " "))
        argv[argc++] = p;
    if (argc == 0)
        return ERR_INVALID;
    struct db_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return ERR_NOMEM;
    int rc = sq_conn_open(sq_db_of(base), &t->conn);
    fts5_api *api = rc == 0 ? sq_fts5_api(t->conn->h) : NULL;
    void *ud = NULL;
    if (rc == 0 && (!api || api->xFindTokenizer(api, argv[0], &ud, &t->api) != SQLITE_OK ||
                    t->api.xCreate(ud, argv + 1, argc - 1, &t->tok) != SQLITE_OK)) {
        log_error("db %s: no FTS5 tokenizer \"%s\"", base->name, spec);
        t->tok = NULL;
        rc = ERR_UNSUPPORTED;
    }
    if (rc < 0) {
        db_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

struct sq_tok_call {
    db_token_fn fn;
    void *ctx;
    int stopped;
};

static int sq_tok_cb(void *p, int flags, const char *tok, int len, int start, int end)
{
    (void)flags;
    (void)start;
    (void)end;
    struct sq_tok_call *c = p;
    int rc = c->fn(c->ctx, tok, len);
    if (rc) {
        c->stopped = rc;
        return SQLITE_DONE; /* any non-OK code ends the tokenization */
    }
    return SQLITE_OK;
}

int db_tokenize(struct db_tokenizer *t, const char *text, int len, bool query, bool prefix,
                db_token_fn fn, void *ctx)
{
    struct sq_tok_call c = {fn, ctx, 0};
    int flags =
        query ? FTS5_TOKENIZE_QUERY | (prefix ? FTS5_TOKENIZE_PREFIX : 0) : FTS5_TOKENIZE_DOCUMENT;
    int rc = t->api.xTokenize(t->tok, &c, flags, text, len, sq_tok_cb);
    if (c.stopped)
        return c.stopped;
    return rc == SQLITE_OK ? 0 : sq_map(rc);
}
