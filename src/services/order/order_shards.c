/* SPDX-License-Identifier: MIT */
/* order_shards.c — the order shard map: users -> buckets -> physical shards (docs/sharding.md).
 *
 * A user's orders live in one of ORDER_BUCKETS virtual buckets, bucket = f(hash(user_id)),
 * and the shard map says which physical shard (orders_0 … orders_5) holds each bucket. The
 * map is kept in the "order_map" database (table shard_map: runs of buckets, and a version
 * in shard_map_version) and cached here; `emporium shards move` (order_reshard.c) changes
 * it online. The bucket function and the first map reproduce the placement of the fixed six
 * shards exactly: bucket = (h % 6) * 512 + (h / 6) % 512, buckets 512g … 512g+511 on
 * orders_g, so bucket / 512 == h % 6, the old shard. An order id's 6 shard bits hold that
 * number, the id's "group" (id.h): an id names its group of 512 buckets, and the map names
 * the shard of each bucket. While every bucket of a group is on one shard (always, unless
 * an operator moved part of a group) an id resolves with no query; otherwise the order's
 * user (read from the candidates) names its bucket.
 *
 * The cache and the write fence. Every public entry point of the service runs as an "op"
 * (order__op_enter/leave) that pins the map it started with: all its routing uses that one
 * map. A serving process re-reads the version every ORDER_MAP_POLL_MS (a timer job); when it
 * changed it loads the new map, waits until every op pinned to the old one has finished,
 * and only then records in shard_map_acks that it serves the new version. The mover waits
 * for those acknowledgements, so after a fence (buckets marked fenced: writes to them answer
 * ERR_UNAVAILABLE, a retryable 503) no write of a process to those buckets can still be in
 * flight, and after a switch no process reads or writes the old place any more. A process
 * registers (shard_map_acks, version 0) before it loads the map and starts serving, so a
 * mover never misses one; a process whose heartbeat is older than ORDER_MAP_DEAD_MS is
 * taken as gone. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/timer.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "order_internal.h"

#define SHARDS_CTX "order.shards"

struct order_map {
    int refs; /* ops pinned to this map (under shards.mu) */
    int64_t version;
    unsigned char shard[ORDER_BUCKETS];
    unsigned char fenced[ORDER_BUCKETS];
};

struct order_shards {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct order_map *cur;
    struct db *ctl;
    char process[64];
    bool serving;
    struct app *app;
    int stragglers;         /* maps given up on by refresh() whose ops still run */
    int64_t warned_version; /* the last map not installed for want of a shard (refresh) */
    int64_t last_ack_ms;    /* the heartbeat (timer thread only) */
    int64_t last_attach_ms; /* the last try to open a missing shard (timer thread only) */
};

/* The op of this thread: its pinned map and how deeply ops nest. */
static _Thread_local struct order_map *tl_map;
static _Thread_local int tl_depth;

static struct order_shards *ctx_of(struct app *app) { return app_service_ctx(app, SHARDS_CTX); }

struct db *order__map_db(struct app *app)
{
    struct order_shards *sh = ctx_of(app);
    return sh ? sh->ctl : app_db(app, "order_map");
}

/* --- buckets --- */

static uint64_t mix(int64_t user_id)
{
    /* splitmix64's finalizer: ids are time-ordered, so their low bits alone would skew. */
    uint64_t z = (uint64_t)user_id + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

unsigned order__bucket_of_user(int64_t user_id)
{
    uint64_t h = mix(user_id);
    return (unsigned)(h % ORDER_GROUPS) * ORDER_BUCKETS_PER_GROUP +
           (unsigned)((h / ORDER_GROUPS) % ORDER_BUCKETS_PER_GROUP);
}

unsigned order__shard_of_user(int64_t user_id)
{
    return order__bucket_of_user(user_id) / ORDER_BUCKETS_PER_GROUP;
}

/* --- loading and caching --- */

static int seed_tx(struct db_conn *c, void *ctx)
{
    (void)ctx;
    struct db_rows *r = NULL;
    int rc = db_query(c, "SELECT version FROM shard_map_version WHERE one = 1", 0, NULL, &r);
    int have = rc >= 0 && db_rows_count(r) > 0;
    db_rows_free(r);
    if (rc < 0 || have)
        return rc < 0 ? rc : 1;
    /* The first map: the placement of the fixed six shards (see the top of this file). */
    for (int g = 0; g < ORDER_GROUPS && rc >= 0; g++) {
        struct db_val a[] = {DB_INT(g * ORDER_BUCKETS_PER_GROUP),
                             DB_INT(g * ORDER_BUCKETS_PER_GROUP + ORDER_BUCKETS_PER_GROUP - 1),
                             DB_INT(g)};
        rc = db_query(c, "INSERT INTO shard_map (lo, hi, shard) VALUES ($1, $2, $3)", 3, a, NULL);
    }
    if (rc >= 0)
        rc = db_query(c, "INSERT INTO shard_map_version (one, version) VALUES (1, 1)", 0, NULL,
                      NULL);
    return rc < 0 ? rc : 0;
}

int order__map_version(struct db *ctl, int64_t *version)
{
    struct db_rows *r = NULL;
    int rc = db_query_once(ctl, "SELECT version FROM shard_map_version WHERE one = 1", 0, NULL, &r);
    if (rc >= 0)
        *version = db_rows_count(r) ? db_get_i64(r, 0, 0) : 0;
    db_rows_free(r);
    return rc < 0 ? rc : 0;
}

int order__map_read(struct db *ctl, int64_t *version, unsigned char shard[ORDER_BUCKETS],
                    unsigned char fenced[ORDER_BUCKETS])
{
    struct db_conn *c;
    int rc = db_conn_take(ctl, &c);
    if (rc < 0)
        return rc;
    struct db_rows *v = NULL, *m = NULL, *f = NULL;
    struct db_stmt st[] = {
        {.sql = "SELECT version FROM shard_map_version WHERE one = 1", .out = &v},
        {.sql = "SELECT lo, hi, shard FROM shard_map ORDER BY lo", .out = &m},
        {.sql = "SELECT lo, hi FROM shard_moves WHERE step = 'fenced'", .out = &f},
    };
    /* One snapshot: the version and the map it names. */
    if ((rc = db_begin(c)) == 0)
        rc = db_query_many(c, st, 3, false);
    db_rollback(c);
    db_conn_give(c);
    memset(shard, 0xFF, ORDER_BUCKETS);
    memset(fenced, 0, ORDER_BUCKETS);
    if (rc >= 0 && db_rows_count(v) != 1)
        rc = ERR_NOTFOUND;
    if (rc >= 0) {
        *version = db_get_i64(v, 0, 0);
        for (int i = 0; i < db_rows_count(m); i++) {
            int64_t lo = db_get_i64(m, i, 0), hi = db_get_i64(m, i, 1), s = db_get_i64(m, i, 2);
            for (int64_t b = lo; b <= hi && b < ORDER_BUCKETS && b >= 0; b++)
                shard[b] = (unsigned char)(s >= 0 && s < ORDER_SHARDS_MAX ? s : 0xFF);
        }
        for (int i = 0; i < db_rows_count(f); i++)
            for (int64_t b = db_get_i64(f, i, 0); b <= db_get_i64(f, i, 1); b++)
                if (b >= 0 && b < ORDER_BUCKETS)
                    fenced[b] = 1;
        for (int b = 0; b < ORDER_BUCKETS && rc >= 0; b++)
            if (shard[b] == 0xFF) {
                log_error("shard map version %lld leaves bucket %d without a shard",
                          (long long)*version, b);
                rc = ERR_INTERNAL;
            }
    }
    db_rows_free(v);
    db_rows_free(m);
    db_rows_free(f);
    return rc < 0 ? rc : 0;
}

/* --- shards on other servers (table shard_servers of order_map) --- */

extern const struct service_db order__dbs[]; /* order_store.c */

int order__shard_attach(struct app *app, unsigned shard, const char *url)
{
    char name[32];
    snprintf(name, sizeof name, "orders_%u", shard);
    if (shard < ORDER_SHARDS || shard >= ORDER_SHARDS_MAX)
        return ERR_INVALID;
    if (app_db(app, name))
        return 0;
    struct db_options opt = {.url = url,
                             .pool_size = app_config(app)->db_pool_size,
                             .prepare = app_config(app)->db_prepare};
    struct db *db = NULL;
    int rc = db_open(&db, name, &opt);
    if (rc == 0)
        rc = db_migrate(db, order__dbs[0].migrations, order__dbs[0].n_migrations);
    if (rc == 0 && (rc = app_db_attach(app, db)) == ERR_CONFLICT)
        rc = 0; /* another thread attached it meanwhile: keep that one */
    else if (rc == 0)
        db = NULL; /* the app's now */
    if (rc < 0) {
        char red[512];
        log_warn("order shard %s at %s: %s", name, url_redacted(url, red, sizeof red), err_str(rc));
    }
    db_close(db);
    return rc;
}

int order__shards_attach_all(struct app *app)
{
    struct db_rows *r = NULL;
    int rc = db_query_once(order__map_db(app),
                           "SELECT shard, url FROM shard_servers ORDER BY shard", 0, NULL, &r);
    for (int i = 0; rc >= 0 && i < db_rows_count(r); i++) {
        int one = order__shard_attach(app, (unsigned)db_get_i64(r, i, 0), db_get(r, i, 1));
        if (one < 0 && rc >= 0)
            rc = one; /* the others are still tried */
    }
    db_rows_free(r);
    return rc < 0 ? rc : 0;
}

/* The first shard map m names that is not open here, or -1. */
static int missing_shard(struct app *app, const struct order_map *m)
{
    unsigned char seen[ORDER_SHARDS_MAX] = {0};
    for (int b = 0; b < ORDER_BUCKETS; b++) {
        unsigned s = m->shard[b];
        if (s < ORDER_SHARDS_MAX && !seen[s]++ && !order__shard_db(app, s))
            return (int)s;
    }
    return -1;
}

static int load_map(struct order_shards *sh, struct order_map **out)
{
    struct order_map *m = calloc(1, sizeof *m);
    if (!m)
        return ERR_NOMEM;
    int rc = order__map_read(sh->ctl, &m->version, m->shard, m->fenced);
    if (rc < 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

static int ack(struct order_shards *sh, int64_t version)
{
    struct db_val a[] = {DB_TEXT(sh->process), DB_INT(version), DB_INT(now_ms())};
    int rc = db_write_one(sh->ctl,
                          "INSERT INTO shard_map_acks (process, version, seen_at) "
                          "VALUES ($1, $2, $3) ON CONFLICT (process) DO UPDATE SET "
                          "version = excluded.version, seen_at = excluded.seen_at",
                          3, a);
    return rc < 0 ? rc : 0;
}

/* The version this process may acknowledge: the current one once no op pinned to an older
 * map still runs, else 0 (nothing new). */
static int64_t ackable(struct order_shards *sh)
{
    pthread_mutex_lock(&sh->mu);
    int64_t v = sh->stragglers ? 0 : sh->cur->version;
    pthread_mutex_unlock(&sh->mu);
    return v;
}

/* Installs the map the database holds now, when its version is new: waits (at most
 * ORDER_MAP_DRAIN_MS) for the ops pinned to the old map to finish. 1 when the process now
 * serves the database's version, 0 when it could not yet, or an ERR_*. */
static int refresh(struct order_shards *sh)
{
    int64_t v = 0;
    int rc = order__map_version(sh->ctl, &v);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sh->mu);
    int64_t have = sh->cur->version;
    pthread_mutex_unlock(&sh->mu);
    if (v == have)
        return ackable(sh) ? 1 : 0;
    struct order_map *m;
    if ((rc = load_map(sh, &m)) < 0)
        return rc;
    /* A map that names a shard on a server this process cannot reach yet is not installed
     * (nor acknowledged: a mover waits, and resumes later); the old one keeps serving. */
    int missing = missing_shard(sh->app, m);
    if (missing >= 0 && mono_ms() - sh->last_attach_ms >= 1000) {
        sh->last_attach_ms = mono_ms(); /* a server that does not answer costs its timeout */
        order__shards_attach_all(sh->app);
        missing = missing_shard(sh->app, m);
    }
    if (missing >= 0) {
        if (sh->warned_version != m->version)
            log_warn("shard map version %lld names orders_%d, which cannot be opened here yet: "
                     "serving version %lld until it can",
                     (long long)m->version, missing, (long long)have);
        sh->warned_version = m->version;
        free(m);
        return 0;
    }
    pthread_mutex_lock(&sh->mu);
    struct order_map *old = sh->cur;
    sh->cur = m;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ORDER_MAP_DRAIN_MS / 1000;
    while (old->refs > 0 && pthread_cond_timedwait(&sh->cv, &sh->mu, &dl) == 0)
        ;
    int drained = old->refs == 0;
    if (drained) {
        free(old);
    } else {
        old->refs = -old->refs; /* the last op to leave frees it (order__op_leave) */
        sh->stragglers++;
    }
    pthread_mutex_unlock(&sh->mu);
    if (!drained) {
        log_warn("shard map version %lld: ops pinned to version %lld still running after %d ms",
                 (long long)m->version, (long long)have, ORDER_MAP_DRAIN_MS);
        return 0;
    }
    log_info("shard map: now version %lld", (long long)m->version);
    return 1;
}

static void poll_job(struct app *app, void *ctx)
{
    (void)ctx;
    struct order_shards *sh = ctx_of(app);
    if (!sh || !sh->serving)
        return;
    int64_t before = ackable(sh);
    /* A shard of the serving map that could not be opened: tried again once a second. */
    pthread_mutex_lock(&sh->mu);
    int missing = missing_shard(app, sh->cur);
    pthread_mutex_unlock(&sh->mu);
    if (missing >= 0 && mono_ms() - sh->last_attach_ms >= 1000) {
        sh->last_attach_ms = mono_ms();
        order__shards_attach_all(app);
    }
    int rc = refresh(sh);
    int64_t v = rc == 1 ? ackable(sh) : 0;
    /* A new version at once; the same one as a heartbeat, once a second. */
    if (v && (v != before || mono_ms() - sh->last_ack_ms >= 1000) && ack(sh, v) == 0)
        sh->last_ack_ms = mono_ms();
}

int order__shards_init(struct app *app)
{
    struct order_shards *sh = calloc(1, sizeof *sh);
    if (!sh)
        return ERR_NOMEM;
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cv, NULL);
    sh->app = app;
    sh->ctl = app_db(app, "order_map");
    char host[32] = "";
    gethostname(host, sizeof host - 1);
    snprintf(sh->process, sizeof sh->process, "%s-%d-%08x", host, (int)getpid(),
             (unsigned)randombytes_random());
    int rc = sh->ctl ? db_transact(sh->ctl, seed_tx, NULL, NULL) : ERR_INTERNAL;
    if (rc >= 0)
        rc = load_map(sh, &sh->cur);
    if (rc >= 0)
        rc = app_set_service_ctx(app, SHARDS_CTX, sh);
    /* Shards on other servers: one that cannot be reached leaves its buckets answering a
     * retryable 503 until the next try (poll_job), not a process that fails to start. */
    if (rc >= 0 && order__shards_attach_all(app) < 0)
        log_warn("some order shards cannot be opened yet: their orders answer 503 until they can");
    if (rc < 0) {
        free(sh->cur);
        pthread_mutex_destroy(&sh->mu);
        pthread_cond_destroy(&sh->cv);
        free(sh);
        return rc;
    }
    if ((rc = timer_add(app, "order.shard_map", ORDER_MAP_POLL_MS, poll_job, NULL)) < 0)
        order__shards_deinit(app);
    return rc;
}

int order__shards_serve(struct app *app)
{
    struct order_shards *sh = ctx_of(app);
    /* Registered first, then the map loaded: a mover that fenced before this process
     * registered is seen in the load; one that fenced after waits for this process. */
    int rc = ack(sh, 0);
    if (rc < 0)
        return rc;
    sh->serving = true;
    if ((rc = refresh(sh)) != 1)
        return rc < 0 ? rc : ERR_UNAVAILABLE;
    int64_t v = ackable(sh);
    rc = ack(sh, v);
    sh->last_ack_ms = mono_ms();
    return rc;
}

void order__shards_deinit(struct app *app)
{
    struct order_shards *sh = ctx_of(app);
    if (!sh)
        return;
    if (sh->serving) {
        struct db_val a[] = {DB_TEXT(sh->process)};
        db_write_one(sh->ctl, "DELETE FROM shard_map_acks WHERE process = $1", 1, a);
    }
    app_set_service_ctx(app, SHARDS_CTX, NULL);
    free(sh->cur);
    pthread_mutex_destroy(&sh->mu);
    pthread_cond_destroy(&sh->cv);
    free(sh);
}

/* --- ops --- */

void order__op_enter(struct app *app)
{
    if (tl_depth++ > 0)
        return;
    struct order_shards *sh = ctx_of(app);
    if (!sh)
        return;
    pthread_mutex_lock(&sh->mu);
    tl_map = sh->cur;
    tl_map->refs++;
    pthread_mutex_unlock(&sh->mu);
}

void order__op_leave(struct app *app)
{
    if (--tl_depth > 0)
        return;
    struct order_shards *sh = ctx_of(app);
    struct order_map *m = tl_map;
    tl_map = NULL;
    if (!sh || !m)
        return;
    pthread_mutex_lock(&sh->mu);
    if (m->refs > 0) {
        if (--m->refs == 0 && m != sh->cur)
            pthread_cond_broadcast(&sh->cv);
    } else if (++m->refs == 0) {
        free(m); /* abandoned by a refresh that gave up waiting */
        sh->stragglers--;
    }
    pthread_mutex_unlock(&sh->mu);
}

/* The map of this thread's op, or the current one (outside an op: a CLI command). */
static const struct order_map *map_now(struct order_shards *sh)
{
    return tl_map ? tl_map : sh->cur;
}

struct db *order__shard_db(struct app *app, unsigned shard)
{
    return shard < ORDER_SHARDS_MAX ? app_db_shard(app, "orders", (int)shard) : NULL;
}

/* --- routing --- */

int order__route_user(struct app *app, int64_t user_id, bool write, struct db **out)
{
    *out = NULL;
    struct order_shards *sh = ctx_of(app);
    unsigned b = order__bucket_of_user(user_id);
    if (!sh)
        return (*out = order__shard_db(app, b / ORDER_BUCKETS_PER_GROUP)) ? 0 : ERR_UNAVAILABLE;
    const struct order_map *m = map_now(sh);
    if (write && m->fenced[b])
        return ERR_UNAVAILABLE; /* being moved: a retryable 503 for a moment */
    return (*out = order__shard_db(app, m->shard[b])) ? 0 : ERR_UNAVAILABLE;
}

int order__route_id(struct app *app, int64_t order_id, bool write, struct db **out)
{
    *out = NULL;
    unsigned g = id_shard(order_id);
    if (order_id <= 0 || g >= ORDER_GROUPS)
        return ERR_NOTFOUND;
    struct order_shards *sh = ctx_of(app);
    if (!sh)
        return (*out = order__shard_db(app, g)) ? 0 : ERR_UNAVAILABLE;
    const struct order_map *m = map_now(sh);
    unsigned lo = g * ORDER_BUCKETS_PER_GROUP, hi = lo + ORDER_BUCKETS_PER_GROUP;
    bool one = true, fenced = false;
    for (unsigned b = lo; b < hi; b++) {
        one = one && m->shard[b] == m->shard[lo];
        fenced = fenced || m->fenced[b];
    }
    if (one && !(write && fenced))
        return (*out = order__shard_db(app, m->shard[lo])) ? 0 : ERR_UNAVAILABLE;
    /* The group is split (or partly fenced): the order's user names its bucket. Any
     * candidate that has the row knows the user (a copy being moved has the same one). */
    unsigned char tried[ORDER_SHARDS_MAX] = {0};
    for (unsigned b = lo; b < hi; b++) {
        unsigned s = m->shard[b];
        if (s >= ORDER_SHARDS_MAX || tried[s])
            continue;
        tried[s] = 1;
        struct db *db = order__shard_db(app, s);
        int64_t user_id = 0;
        int rc = db ? order__store_owner(db, order_id, &user_id) : ERR_UNAVAILABLE;
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        unsigned ub = order__bucket_of_user(user_id);
        if (write && m->fenced[ub])
            return ERR_UNAVAILABLE;
        return (*out = order__shard_db(app, m->shard[ub])) ? 0 : ERR_UNAVAILABLE;
    }
    return ERR_NOTFOUND;
}

bool order__owns(struct app *app, unsigned shard, int64_t user_id)
{
    struct order_shards *sh = ctx_of(app);
    unsigned b = order__bucket_of_user(user_id);
    if (!sh)
        return b / ORDER_BUCKETS_PER_GROUP == shard;
    return map_now(sh)->shard[b] == shard;
}

int order__shards_in_use(struct app *app, unsigned char used[ORDER_SHARDS_MAX])
{
    memset(used, 0, ORDER_SHARDS_MAX);
    struct order_shards *sh = ctx_of(app);
    if (!sh) {
        memset(used, 1, ORDER_SHARDS);
        return ORDER_SHARDS;
    }
    const struct order_map *m = map_now(sh);
    int n = 0;
    for (int b = 0; b < ORDER_BUCKETS; b++)
        if (m->shard[b] < ORDER_SHARDS_MAX && !used[m->shard[b]]) {
            used[m->shard[b]] = 1;
            n++;
        }
    return n;
}

int64_t order__map_cached_version(struct app *app)
{
    struct order_shards *sh = ctx_of(app);
    if (!sh)
        return 0;
    pthread_mutex_lock(&sh->mu);
    int64_t v = sh->cur->version;
    pthread_mutex_unlock(&sh->mu);
    return v;
}
