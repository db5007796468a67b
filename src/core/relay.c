/* SPDX-License-Identifier: MIT */
/* relay.c — the outbox relay: moves every service's outbox rows onto the bus (outbox.h).
 *
 * One thread visits every outbox database of the services running in this process (those whose
 * migrations create the outbox table: each orders shard, payments, inventory, shipping, fraud,
 * users, products). In each it reads the oldest unsent rows in id order (ids are time-ordered
 * and an aggregate's events are written by successive transactions, so id order is the
 * aggregate's order), produces them as one batch keyed by the aggregate id, and marks exactly
 * those rows sent (or deletes them, in an outbox kept as a queue: OUTBOX_QUEUE_MIGRATION), by
 * id, only after the bus acknowledged the whole batch. A failed produce marks nothing: the same
 * rows go again after a backoff (200 ms doubling to 10 s), so nothing is lost and an aggregate
 * never overtakes itself; a crash between the acknowledgement and the marking sends the batch
 * again (the log adapter drops the duplicates by event id; consumers are idempotent either
 * way). Checkouts never wait for the relay: they only insert rows.
 *
 * The unsent rows and the age of the oldest one are counted at every /metrics scrape
 * (emporium_outbox_pending, emporium_outbox_oldest_age_seconds), before the consumer lag, so
 * "pending 0 and every lag 0" in one scrape means every event committed before it has been
 * applied by every consumer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/outbox.h"
#include "bus_internal.h"
#define EMPORIUM_SERVICE_NO_HTTP /* core: no HTTP types here */
#include "emporium/service.h"

#define RELAY_BATCH 500
#define RELAY_MAX_DBS 32
#define MARK_CHUNK 100
#define IDLE_MIN_MS 20       /* an idle relay's first wait, and its wait slice */
#define IDLE_MAX_MS 200      /* its longest wait */
#define BUSY_WAIT_MS 50      /* between visits while rows come but no poll fills a batch */
#define RELAY_MARGIN_MS 5000 /* a poll reads from this long (in ids) before the newest row sent */
#define RELAY_FULL_MS 5000   /* ... and from the start this often */

enum { OUTBOX_NONE, OUTBOX_HISTORY, OUTBOX_QUEUE }; /* outbox_kind() */

struct outbox_relay {
    struct app *app;
    struct bus *bus;
    struct db *dbs[RELAY_MAX_DBS];
    _Atomic int n_dbs; /* grows in the relay thread (release); scrapes read it (acquire) */
    int seen_app_dbs;  /* the app's databases looked at so far (relay thread only) */
    pthread_t th;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int64_t pending, oldest_age_ms, published, failures;
    /* Per database (relay thread only): the lowest id the next poll reads, when it last read
     * from the start (mono ms), and whether sent rows are deleted (OUTBOX_QUEUE_MIGRATION)
     * rather than marked. */
    int64_t from[RELAY_MAX_DBS], full_at[RELAY_MAX_DBS];
    bool queue[RELAY_MAX_DBS];
};

static void pause_ms(struct outbox_relay *r, int ms)
{
    bus__pause_ms(&r->mu, &r->cv, &r->stop, ms);
}

struct mark_ctx {
    const int64_t *ids;
    int n;
    bool queue; /* delete the rows instead */
};

static int mark_tx(struct db_conn *c, void *vctx)
{
    struct mark_ctx *m = vctx;
    int64_t now = now_ms();
    for (int at = 0; at < m->n; at += MARK_CHUNK) {
        int k = m->n - at < MARK_CHUNK ? m->n - at : MARK_CHUNK;
        char sql[64 + MARK_CHUNK * 6];
        struct db_val a[MARK_CHUNK + 1];
        /* The mark's parameters are now then the ids; a delete's the ids alone. */
        int skip = m->queue ? 1 : 0;
        a[0] = DB_INT(now);
        int len = snprintf(sql, sizeof sql, "%s",
                           m->queue ? "DELETE FROM outbox WHERE id IN ("
                                    : "UPDATE outbox SET published_at = $1 WHERE id IN (");
        for (int i = 0; i < k; i++) {
            a[i + 1] = DB_INT(m->ids[at + i]);
            len +=
                snprintf(sql + len, sizeof sql - (size_t)len, "%s$%d", i ? "," : "", i + 2 - skip);
        }
        snprintf(sql + len, sizeof sql - (size_t)len, ")");
        int rc = db_query(c, sql, k + 1 - skip, a + skip, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Database k's next rows (at most RELAY_BATCH) into *out: their count, or an ERR_*. */
static int poll_db(struct outbox_relay *r, int k, struct db_rows **out)
{
    /* Marking a row sent leaves its unsent index entry dead until the table is vacuumed, and
     * a poll from the start steps over all of them. So a poll starts RELAY_MARGIN_MS of ids
     * before the newest row sent, and only every RELAY_FULL_MS from the start: that one
     * finds a row whose transaction committed later than the margin after its id was made
     * (or whose writer's clock is behind), at most RELAY_FULL_MS late. */
    int64_t now = mono_ms();
    bool full = now - r->full_at[k] >= RELAY_FULL_MS;
    if (full)
        r->full_at[k] = now;
    struct db_val a[] = {DB_INT(RELAY_BATCH), DB_INT(full ? 0 : r->from[k])};
    int rc = db_query_once(r->dbs[k],
                           "SELECT id, topic, aggregate_id, payload FROM outbox WHERE "
                           "published_at IS NULL AND id >= $2 ORDER BY id LIMIT $1",
                           2, a, out);
    return rc < 0 ? rc : db_rows_count(*out);
}

/* Database k's rows, acknowledged by the bus, marked sent or deleted (which may be retried:
 * the rows are sent again only if it never lands). */
static int mark_db(struct outbox_relay *r, int k, const struct db_rows *rows)
{
    int n = db_rows_count(rows);
    int64_t *ids = calloc((size_t)n, sizeof *ids);
    if (!ids)
        return ERR_NOMEM;
    for (int i = 0; i < n; i++)
        ids[i] = db_get_i64(rows, i, 0);
    struct mark_ctx mc = {ids, n, r->queue[k]};
    int rc = 0;
    for (int attempt = 0; attempt < 5 && (rc = db_transact(r->dbs[k], mark_tx, NULL, &mc)) < 0;
         attempt++)
        pause_ms(r, 100 << attempt);
    if (rc >= 0) {
        atomic_fetch_add(&r->published, n);
        int64_t floor = ids[n - 1] - ((int64_t)RELAY_MARGIN_MS << 22); /* id.h: ms << 22 */
        if (floor > r->from[k])
            r->from[k] = floor;
    }
    free(ids);
    return rc;
}

/* One visit: every database polled, all their rows published in one produce (one
 * transaction on the log), then each database's rows marked. A database that cannot be
 * polled does not hold the others back. Returns the rows sent (with *full when a poll filled
 * a batch: more is waiting), or the first ERR_*. */
static int visit(struct outbox_relay *r, bool *full)
{
    *full = false;
    int n_dbs = atomic_load_explicit(&r->n_dbs, memory_order_relaxed), total = 0, rc = 0;
    int poll_rc = 0;
    struct db_rows *rows[RELAY_MAX_DBS] = {0};
    for (int k = 0; k < n_dbs && !atomic_load(&r->stop); k++) {
        int n = poll_db(r, k, &rows[k]);
        if (n < 0 && poll_rc == 0)
            poll_rc = n;
        if (n >= RELAY_BATCH)
            *full = true;
        total += n > 0 ? n : 0;
    }
    struct bus_msg *msgs = total > 0 ? calloc((size_t)total, sizeof *msgs) : NULL;
    char(*eids)[21] = msgs ? calloc((size_t)total, sizeof *eids) : NULL;
    if (total > 0 && (!msgs || !eids))
        rc = ERR_NOMEM;
    else if (total > 0) {
        int m = 0;
        for (int k = 0; k < n_dbs; k++)
            for (int i = 0; i < db_rows_count(rows[k]); i++, m++) {
                id_format(db_get_i64(rows[k], i, 0), eids[m]);
                msgs[m] = (struct bus_msg){
                    .topic = db_get(rows[k], i, 1),
                    .id = eids[m],
                    .key = db_get(rows[k], i, 2),
                    .key_len = strlen(db_get(rows[k], i, 2)),
                    .value = db_get(rows[k], i, 3),
                    .len = strlen(db_get(rows[k], i, 3)),
                };
            }
        rc = bus_produce(r->bus, msgs, total, 10000);
        for (int k = 0; k < n_dbs && rc >= 0; k++)
            if (db_rows_count(rows[k]) > 0)
                rc = mark_db(r, k, rows[k]);
    }
    free(msgs);
    free(eids);
    for (int k = 0; k < n_dbs; k++)
        db_rows_free(rows[k]);
    return rc < 0 ? rc : poll_rc < 0 ? poll_rc : total;
}

static void count_pending(struct outbox_relay *r)
{
    int64_t pending = 0, oldest = 0, now = now_ms();
    int n = atomic_load_explicit(&r->n_dbs, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        struct db_rows *rows = NULL;
        if (db_query_once(r->dbs[i],
                          "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE published_at IS NULL",
                          0, NULL, &rows) >= 0 &&
            db_rows_count(rows) == 1) {
            pending += db_get_i64(rows, 0, 0);
            if (!db_is_null(rows, 0, 1) && (oldest == 0 || db_get_i64(rows, 0, 1) < oldest))
                oldest = db_get_i64(rows, 0, 1);
        }
        db_rows_free(rows);
    }
    atomic_store(&r->pending, pending);
    atomic_store(&r->oldest_age_ms, oldest ? now - oldest : 0);
}

static void add_db(struct outbox_relay *r, struct db *db, int kind);
static void add_attached(struct outbox_relay *r);

static void *relay_main(void *arg)
{
    struct outbox_relay *r = arg;
    log_thread_name("relay", NULL);
    int backoff = 200;
    int64_t last_maintain = mono_ms();
    bool warned = false;
    int idle_ms = IDLE_MIN_MS;
    while (!atomic_load(&r->stop)) {
        bool full = false;
        uint64_t made = outbox_rows_made(); /* before the polls: a row made after is seen */
        add_attached(r);
        int rc = visit(r, &full);
        bool busy = rc > 0, failed = rc < 0;
        if (failed) {
            atomic_fetch_add(&r->failures, 1);
            if (!warned)
                log_warn("outbox relay: publishing failed, retrying with backoff: %s", err_str(rc));
            warned = true;
        }
        int64_t now = mono_ms();
        if (r->bus->ops->maintain && now - last_maintain >= 3600 * 1000) {
            r->bus->ops->maintain(r->bus);
            last_maintain = now;
        }
        if (failed) {
            pause_ms(r, backoff);
            backoff = backoff < 10000 ? backoff * 2 : 10000;
            continue;
        }
        if (warned)
            log_info("outbox relay: publishing again");
        warned = false;
        backoff = 200;
        if (full) { /* more is waiting: at once */
            idle_ms = IDLE_MIN_MS;
            continue;
        }
        if (busy) {
            /* Rows keep coming, each visit takes what came since the last: a short wait
             * lets a visit take more of them, so a load pays a poll, a produce and a mark
             * per database BUSY_WAIT_MS instead of one after the other without a pause. */
            pause_ms(r, BUSY_WAIT_MS);
            idle_ms = IDLE_MIN_MS;
            continue;
        }
        /* Idle: wait IDLE_MIN_MS slices up to idle_ms, polling again at once when a row was
         * made in this process (its commit may land just after the poll that follows, so
         * the slices stay short for a while); rows made by other processes wait at most
         * IDLE_MAX_MS. A read-only load then costs the databases 5 polls a second each
         * instead of 50. */
        for (int waited = 0; waited < idle_ms && !atomic_load(&r->stop); waited += IDLE_MIN_MS) {
            pause_ms(r, IDLE_MIN_MS);
            if (outbox_rows_made() != made)
                break;
        }
        if (outbox_rows_made() != made)
            idle_ms = IDLE_MIN_MS;
        else if (idle_ms < IDLE_MAX_MS)
            idle_ms = idle_ms * 2 < IDLE_MAX_MS ? idle_ms * 2 : IDLE_MAX_MS;
    }
    count_pending(r);
    return NULL;
}

/* kind: outbox_kind() of its service_db. */
static void add_db(struct outbox_relay *r, struct db *db, int kind)
{
    int n = atomic_load_explicit(&r->n_dbs, memory_order_relaxed);
    if (!db || n == RELAY_MAX_DBS)
        return;
    for (int i = 0; i < n; i++)
        if (r->dbs[i] == db)
            return;
    r->dbs[n] = db;
    r->queue[n] = kind == OUTBOX_QUEUE;
    atomic_store_explicit(&r->n_dbs, n + 1, memory_order_release);
}

/* Whether d's migrations create an outbox, and which kind it ends up (outbox.h). */
static int outbox_kind(const struct service_db *d)
{
    int kind = OUTBOX_NONE;
    for (int m = 0; m < d->n_migrations; m++) {
        const char *sql = d->migrations[m].sql;
        if (sql && strstr(sql, "CREATE TABLE outbox"))
            kind = OUTBOX_HISTORY;
        else if (sql && kind && !strcmp(sql, OUTBOX_QUEUE_MIGRATION))
            kind = OUTBOX_QUEUE;
    }
    return kind;
}

/* Databases attached after start (app_db_attach: an order shard on another server): those
 * named "<name>_<n>" after a sharded database with an outbox of a service running here. */
static void add_attached(struct outbox_relay *r)
{
    int n = app_db_count(r->app);
    for (; r->seen_app_dbs < n; r->seen_app_dbs++) {
        struct db *db = app_db_at(r->app, r->seen_app_dbs);
        const char *name = db ? db_name(db) : "";
        for (int s = 0; services_all[s]; s++) {
            const struct service *svc = services_all[s];
            if (!app_has_service(r->app, svc->name) || !svc->dbs)
                continue;
            for (const struct service_db *d = svc->dbs; d->name; d++) {
                size_t len = strlen(d->name);
                if (d->shards && !strncmp(name, d->name, len) && name[len] == '_' &&
                    name[len + 1] &&
                    strspn(name + len + 1, "0123456789") == strlen(name + len + 1) &&
                    outbox_kind(d))
                    add_db(r, db, outbox_kind(d));
            }
        }
    }
}

int outbox_relay_start(struct app *app, struct bus *b, struct outbox_relay **out)
{
    *out = NULL;
    struct outbox_relay *r = calloc(1, sizeof *r);
    if (!r)
        return ERR_NOMEM;
    r->app = app;
    r->bus = b;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    /* The outbox databases: those of the running services whose migrations create it. */
    for (int s = 0; services_all[s]; s++) {
        const struct service *svc = services_all[s];
        if (!app_has_service(app, svc->name) || !svc->dbs)
            continue;
        for (const struct service_db *d = svc->dbs; d->name; d++) {
            int kind = outbox_kind(d);
            if (!kind)
                continue;
            if (!d->shards) {
                add_db(r, app_db(app, d->name), kind);
                continue;
            }
            for (int i = 0; i < d->shards; i++) {
                add_db(r, app_db_shard(app, d->name, i), kind);
            }
        }
    }
    r->seen_app_dbs = app_db_count(app); /* what attaches later: add_attached() */
    if (pthread_create(&r->th, NULL, relay_main, r) != 0) {
        outbox_relay_stop(r);
        return ERR_NOMEM;
    }
    r->started = true;
    *out = r;
    return 0;
}

void outbox_relay_stop(struct outbox_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    atomic_store(&r->stop, true);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->started)
        pthread_join(r->th, NULL);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

void outbox_relay_stats(struct outbox_relay *r, struct outbox_relay_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!r)
        return;
    count_pending(r); /* live: a scrape sees every row committed before it */
    out->pending = atomic_load(&r->pending);
    out->oldest_age_ms = atomic_load(&r->oldest_age_ms);
    out->published = atomic_load(&r->published);
    out->failures = atomic_load(&r->failures);
}
