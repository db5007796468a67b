/* SPDX-License-Identifier: MIT */
/* user_session.c — sign-in sessions: where they are kept, how a bearer token is resolved,
 * and the cache in front of that.
 *
 * Store. Every session is a row of the users database's `sessions` table (token SHA-256
 * hex, user id, expiry). With Redis (EMPORIUM_REDIS_URL / EMPORIUM_REDIS_CLUSTER) a new
 * session is also a Redis string `<prefix>sess:<generation>:{<sha256 hex>}` = "1 <user id>
 * <role> <tier> <expires_at>" with a PX TTL of the session's lifetime (the whole hash is the
 * {tag}, so sessions spread over the cluster's slots), written before the row commits. A
 * lookup asks Redis, and the table only when Redis has no copy: sessions from before Redis
 * was turned on, `user bulk-create` tokens, and copies Redis lost (a restart without
 * persistence, a failover) stay valid. Logout deletes the row first, then the copy (a
 * logout whose copy could not be deleted answers 503 and the client retries), so Redis never
 * knows a session the database has revoked, except for that moment.
 *
 * Turning Redis on or off logs nobody out: the table holds every session. A process that
 * starts without Redis bumps the generation (table session_store): sessions revoked while
 * Redis was off may still have copies there, and the next processes with Redis use new keys
 * (the old ones expire by their TTL). Processes of one deployment must agree on Redis.
 * With Redis configured but down, a token not in the process cache answers ERR_UNAVAILABLE
 * (HTTP 503 with Retry-After), never 401; so do login, registration and logout.
 *
 * Cache. A verified session (token hash → user id, role, tier) is kept in this process for
 * at most SESSION_CACHE_MS (5 s), and never past its expiry, in a fixed table of
 * SESSION_CACHE_SLOTS entries (direct-mapped on the hash, a newer entry replaces an older
 * one in its slot: bounded memory, ~3.7 MB). Logout drops the entry here at once and writes
 * a `session.revoked` event to the users database's outbox in the transaction that deletes
 * the session; every process consumes the cache-invalidation topic in a broadcast group and
 * drops the entry when it arrives (the relay's poll plus the consumer's: well under a
 * second when the bus is healthy). Whatever happens to the bus, another process stops
 * accepting a revoked token within SESSION_CACHE_MS. user__sessions_forget_user() does the
 * same for every session of one account (`user.sessions_revoked`), for a password or role
 * change. A lookup that raced an invalidation is not cached (an epoch counter). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <sodium.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/config.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/outbox.h"
#include "emporium/redis.h"
#define EMPORIUM_SERVICE_NO_HTTP /* the domain knows nothing of HTTP */
#include "emporium/service.h"
#include "emporium/svc/user.h"
#include "user_internal.h"

#define SESSION_CACHE_SLOTS 65536 /* a power of two */
#define SESSION_CACHE_LOCKS 64
#define SWEEP_BATCH 5000

struct sc_entry {
    unsigned char h[32];
    int64_t user_id;
    int64_t until; /* Unix ms; 0 = empty */
    bool admin, premium;
};

struct user_sessions {
    struct app *app;
    struct redis *redis; /* NULL: sessions in the database */
    char prefix[64];     /* "<EMPORIUM_REDIS_PREFIX>sess:" */
    int64_t started_ms;
    int64_t generation;         /* of the Redis copies (user_store_session_generation) */
    atomic_uint_fast64_t epoch; /* bumped by every invalidation */
    pthread_mutex_t locks[SESSION_CACHE_LOCKS];
    struct sc_entry slots[SESSION_CACHE_SLOTS];
};

static struct user_sessions *sessions_of(struct app *app)
{
    struct user_ctx *ctx = app_service_ctx(app, "user");
    return ctx ? ctx->sessions : NULL;
}

/* --- the cache --- */

static size_t slot_of(const unsigned char h[32])
{
    uint64_t v;
    memcpy(&v, h, sizeof v); /* a SHA-256: uniform */
    return (size_t)(v & (SESSION_CACHE_SLOTS - 1));
}

static pthread_mutex_t *lock_of(struct user_sessions *s, size_t slot)
{
    return &s->locks[slot % SESSION_CACHE_LOCKS];
}

static bool cache_get(struct user_sessions *s, const unsigned char h[32], int64_t now,
                      struct app_identity *out)
{
    size_t i = slot_of(h);
    bool hit = false;
    pthread_mutex_lock(lock_of(s, i));
    struct sc_entry *e = &s->slots[i];
    if (e->until > now && memcmp(e->h, h, 32) == 0) {
        out->user_id = e->user_id;
        out->admin = e->admin;
        out->premium = e->premium;
        hit = true;
    }
    pthread_mutex_unlock(lock_of(s, i));
    return hit;
}

static void cache_put(struct user_sessions *s, const unsigned char h[32],
                      const struct app_identity *id, int64_t until, uint_fast64_t epoch)
{
    size_t i = slot_of(h);
    pthread_mutex_lock(lock_of(s, i));
    /* Under the slot's lock: an invalidation that ran since the lookup began wins. */
    if (atomic_load(&s->epoch) == epoch) {
        s->slots[i] = (struct sc_entry){
            .user_id = id->user_id, .until = until, .admin = id->admin, .premium = id->premium};
        memcpy(s->slots[i].h, h, 32);
    }
    pthread_mutex_unlock(lock_of(s, i));
}

static void cache_drop(struct user_sessions *s, const unsigned char h[32])
{
    size_t i = slot_of(h);
    pthread_mutex_lock(lock_of(s, i));
    atomic_fetch_add(&s->epoch, 1);
    if (memcmp(s->slots[i].h, h, 32) == 0 && s->slots[i].until) {
        s->slots[i].until = 0;
        metrics_count("emporium_session_cache_total", "drop");
    }
    pthread_mutex_unlock(lock_of(s, i));
}

static void cache_drop_user(struct user_sessions *s, int64_t user_id)
{
    for (int l = 0; l < SESSION_CACHE_LOCKS; l++) {
        pthread_mutex_lock(&s->locks[l]);
        atomic_fetch_add(&s->epoch, 1);
        for (size_t i = (size_t)l; i < SESSION_CACHE_SLOTS; i += SESSION_CACHE_LOCKS)
            if (s->slots[i].until && s->slots[i].user_id == user_id) {
                s->slots[i].until = 0;
                metrics_count("emporium_session_cache_total", "drop");
            }
        pthread_mutex_unlock(&s->locks[l]);
    }
}

/* --- the Redis store --- */

static void redis_key(const struct user_sessions *s, const char *hex, char *key, size_t cap)
{
    snprintf(key, cap, "%s%lld:{%s}", s->prefix, (long long)s->generation, hex);
}

static int redis_put(struct user_sessions *s, const char *hex, int64_t user_id, enum user_role role,
                     enum user_tier tier, int64_t expires_at, int64_t now)
{
    char key[160], val[96], px[24];
    redis_key(s, hex, key, sizeof key);
    snprintf(val, sizeof val, "1 %lld %d %d %lld", (long long)user_id, (int)role, (int)tier,
             (long long)expires_at);
    snprintf(px, sizeof px, "%lld", (long long)(expires_at > now ? expires_at - now : 1));
    const char *argv[] = {"SET", key, val, "PX", px};
    struct redisReply *rep = NULL;
    int rc = redis_command(s->redis, key, strlen(key), 5, argv, NULL, &rep);
    if (rc == 0 && rep->type == REDIS_REPLY_ERROR) {
        log_warn("user: Redis refused a session write: %.120s", rep->str);
        rc = ERR_UNAVAILABLE;
    }
    redis_reply_free(rep);
    return rc;
}

/* 0 and *out, ERR_NOTFOUND, or ERR_UNAVAILABLE. */
static int redis_get(struct user_sessions *s, const char *hex, int64_t now,
                     struct app_identity *out, int64_t *expires_at)
{
    char key[160];
    redis_key(s, hex, key, sizeof key);
    const char *argv[] = {"GET", key};
    struct redisReply *rep = NULL;
    int rc = redis_command(s->redis, key, strlen(key), 2, argv, NULL, &rep);
    if (rc < 0)
        return rc;
    long long uid = 0, exp = 0;
    int role = 0, tier = 0;
    if (rep->type == REDIS_REPLY_NIL)
        rc = ERR_NOTFOUND;
    else if (rep->type != REDIS_REPLY_STRING ||
             sscanf(rep->str, "1 %lld %d %d %lld", &uid, &role, &tier, &exp) != 4 || uid <= 0)
        rc = rep->type == REDIS_REPLY_ERROR ? ERR_UNAVAILABLE : ERR_NOTFOUND;
    else if (exp <= now)
        rc = ERR_NOTFOUND;
    redis_reply_free(rep);
    if (rc == 0) {
        out->user_id = uid;
        out->admin = role == USER_ROLE_ADMIN;
        out->premium = tier == USER_TIER_PREMIUM;
        *expires_at = exp;
    }
    return rc;
}

static int redis_del(struct user_sessions *s, const char *hex)
{
    char key[160];
    redis_key(s, hex, key, sizeof key);
    const char *argv[] = {"DEL", key};
    struct redisReply *rep = NULL;
    int rc = redis_command(s->redis, key, strlen(key), 2, argv, NULL, &rep);
    if (rc == 0 && rep->type == REDIS_REPLY_ERROR)
        rc = ERR_UNAVAILABLE;
    redis_reply_free(rep);
    return rc;
}

/* --- sessions --- */

void user__token_hash(const char *token, char hex[65], unsigned char raw[32])
{
    unsigned char h[32];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(hex, 65, h, 32);
    if (raw)
        memcpy(raw, h, 32);
}

int user__session_open(struct app *app, struct db_conn *c, const struct user *u, bool in_db,
                       struct user_session *s)
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(s->token, sizeof s->token, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    char hex[65];
    user__token_hash(s->token, hex, NULL);
    int64_t now = now_ms();
    s->expires_at = now + (int64_t)app_config(app)->session_ttl_hours * 3600 * 1000;
    struct user_sessions *ss = sessions_of(app);
    /* The row first (the caller commits it after): the database holds every session. */
    int rc = user_store_session_add(c, hex, u->id, now, s->expires_at);
    if (rc == 0 && ss && ss->redis && !in_db)
        rc = redis_put(ss, hex, u->id, u->role, u->tier, s->expires_at, now);
    if (rc < 0)
        sodium_memzero(s->token, sizeof s->token);
    return rc;
}

int user__session_lookup(struct app *app, const char *token, struct app_identity *out)
{
    size_t n = strlen(token);
    if (n < 20 || n > 128)
        return ERR_UNAUTHORIZED;
    char hex[65];
    user__token_hash(token, hex, out->token_hash);
    struct user_sessions *ss = sessions_of(app);
    int64_t now = now_ms();
    if (ss && cache_get(ss, out->token_hash, now, out)) {
        metrics_count("emporium_session_cache_total", "hit");
        return 0;
    }
    metrics_count("emporium_session_cache_total", "miss");
    uint_fast64_t epoch = ss ? atomic_load(&ss->epoch) : 0;
    int64_t expires_at = 0;
    int rc = ERR_NOTFOUND;
    if (ss && ss->redis && (rc = redis_get(ss, hex, now, out, &expires_at)) == ERR_UNAVAILABLE)
        return rc; /* the session may exist: 503, not 401 */
    if (rc == ERR_NOTFOUND) {
        struct db_conn *c;
        if ((rc = db_conn_take(app_db(app, "users"), &c)) < 0)
            return rc;
        enum user_role role;
        enum user_tier tier;
        rc = user_store_session_user(c, hex, now, &out->user_id, &role, &tier, &expires_at);
        db_conn_give(c);
        out->admin = role == USER_ROLE_ADMIN;
        out->premium = tier == USER_TIER_PREMIUM;
    }
    if (rc == ERR_NOTFOUND)
        return ERR_UNAUTHORIZED;
    if (rc < 0)
        return rc;
    if (ss) {
        int64_t until = now + SESSION_CACHE_MS;
        cache_put(ss, out->token_hash, out, until < expires_at ? until : expires_at, epoch);
    }
    return 0;
}

/* The event that tells every process to drop a cached session (or all of an account's). */
static int revoke_event(struct db_conn *c, int64_t user_id, const char *hex)
{
    json_t *data = hex ? json_pack("{s:s,s:s}", "service", "user", "token_hash", hex)
                       : json_pack("{s:s,s:I}", "service", "user", "user_id", (json_int_t)user_id);
    if (!data)
        return ERR_NOMEM;
    int rc = outbox_add(c, 0, BUS_TOPIC_CACHE, "user", user_id > 0 ? user_id : 0,
                        hex ? "session.revoked" : "user.sessions_revoked", data);
    json_decref(data);
    return rc;
}

int user_logout(struct app *app, const unsigned char token_hash[32])
{
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, token_hash, 32);
    struct user_sessions *ss = sessions_of(app);
    if (ss)
        cache_drop(ss, token_hash);
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "users"), &c);
    if (rc < 0)
        return rc;
    /* The row, and the event that drops the session from the other processes' caches, in
     * one transaction; then the Redis copy. The database first: a Redis copy without a row
     * is the only way the two can differ, and a logout that could not delete it fails
     * (503: the client retries; the token stays valid until then). */
    rc = db_begin(c);
    if (rc == 0)
        rc = user_store_session_delete(c, hex);
    if (rc == 0)
        rc = revoke_event(c, 0, hex);
    if (rc == 0)
        rc = db_commit(c);
    else
        db_rollback(c);
    db_conn_give(c);
    if (rc == 0 && ss && ss->redis)
        rc = redis_del(ss, hex);
    if (ss)
        cache_drop(ss, token_hash); /* a lookup that ran meanwhile may have cached it again */
    return rc;
}

int user__sessions_forget_user(struct app *app, struct db_conn *c, int64_t user_id)
{
    struct user_sessions *ss = sessions_of(app);
    if (ss)
        cache_drop_user(ss, user_id);
    return revoke_event(c, user_id, NULL);
}

static int on_invalidation(void *vctx, const struct bus_event *ev)
{
    struct user_sessions *ss = vctx;
    bool one = !strcmp(ev->type, "session.revoked");
    if (!one && strcmp(ev->type, "user.sessions_revoked") != 0)
        return 0;
    /* Nothing cached here predates this process (5 s of margin for other hosts' clocks). */
    if (ev->at_ms && ev->at_ms < ss->started_ms - 5000)
        return 0;
    if (one) {
        const char *hex = json_string_value(json_object_get(ev->data, "token_hash"));
        unsigned char h[32];
        size_t len = 0;
        if (hex && sodium_hex2bin(h, sizeof h, hex, strlen(hex), NULL, &len, NULL) == 0 &&
            len == sizeof h)
            cache_drop(ss, h);
    } else {
        json_int_t uid = json_integer_value(json_object_get(ev->data, "user_id"));
        if (uid > 0)
            cache_drop_user(ss, uid);
    }
    return 0;
}

/* Timer job: deletes expired sessions, a bounded batch per run (the next run takes more).
 * Sessions in Redis expire by their TTL. */
void user__session_sweep(struct app *app, void *unused)
{
    (void)unused;
    struct db_conn *c;
    if (db_conn_take(app_db(app, "users"), &c) < 0)
        return;
    int rc = user_store_sessions_sweep(c, now_ms(), SWEEP_BATCH);
    db_conn_give(c);
    if (rc < 0)
        log_warn("user: sweeping expired sessions failed: %s", err_str(rc));
    else if (rc > 0)
        log_event("user.sessions_expired", LOG_I("deleted", rc));
}

int user__sessions_init(struct app *app, struct user_ctx *ctx)
{
    struct user_sessions *ss = calloc(1, sizeof *ss);
    if (!ss)
        return ERR_NOMEM;
    ss->app = app;
    ss->redis = app_redis(app);
    ss->started_ms = now_ms();
    snprintf(ss->prefix, sizeof ss->prefix, "%ssess:", app_config(app)->redis_prefix);
    for (int i = 0; i < SESSION_CACHE_LOCKS; i++)
        pthread_mutex_init(&ss->locks[i], NULL);
    ctx->sessions = ss;
    /* A process without Redis starts a new generation of Redis copies: sessions it revokes
     * meanwhile would otherwise live on there when Redis is turned on again. */
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "users"), &c);
    if (rc == 0) {
        rc = user_store_session_generation(c, ss->redis == NULL, &ss->generation);
        db_conn_give(c);
    }
    if (rc < 0)
        return rc;
    metrics_counter_declare("emporium_session_cache_total", "result",
                            "Bearer-token lookups answered by the process's session cache (hit) "
                            "or the session store (miss); drop = entries invalidated.");
    if (ss->redis)
        log_info("user: sessions in Redis (generation %lld), the database's copy behind them",
                 (long long)ss->generation);
    return bus_subscribe_broadcast("sessions", BUS_TOPIC_CACHE, on_invalidation, ss);
}

void user__sessions_deinit(struct user_ctx *ctx)
{
    struct user_sessions *ss = ctx->sessions;
    if (!ss)
        return;
    for (int i = 0; i < SESSION_CACHE_LOCKS; i++)
        pthread_mutex_destroy(&ss->locks[i]);
    sodium_memzero(ss->slots, sizeof ss->slots);
    free(ss);
    ctx->sessions = NULL;
}
