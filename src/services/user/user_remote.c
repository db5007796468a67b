/* SPDX-License-Identifier: MIT */
/* user_remote.c — the bearer-token authenticator of a process that does not run the user
 * service but has EMPORIUM_USER_URL (the order, catalog, inventory … processes of the
 * scale-out topology): each token is checked by the user process's internal route
 * POST /internal/v1/user/sessions/verify (user_http.c) through upstream.h.
 *
 * Acceptances are cached for EMPORIUM_USER_AUTH_CACHE_SECONDS (default 5; 0 = no cache), so
 * a customer's burst of requests asks once. The key is the token's SHA-256, never the token,
 * and the cache is a fixed table of CACHE_SLOTS entries (a new entry replaces whatever held
 * its slot), so its size is bounded whatever the traffic. Refusals are never cached: a new
 * session works at once. The price of the cache: a session that ends (logout, expiry) keeps
 * working in this process until its entry expires, at most the cache TTL. No answer from the
 * user process (down, deadline, breaker open) is ERR_UNAVAILABLE, so the request gets a 503,
 * never a 401 that would make a client drop a good token. The token is never logged. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#define EMPORIUM_SERVICE_NO_HTTP /* the domain knows nothing of HTTP */
#include "emporium/service.h"
#include "emporium/timer.h"
#include "emporium/upstream.h"
#include "user_internal.h"

#define CACHE_SLOTS 4096 /* a power of two; ~220 KiB */
#define CTX_NAME "user.remote"

struct slot {
    unsigned char key[32]; /* SHA-256 of the token */
    int64_t user_id;       /* 0: empty */
    int64_t until_ms;      /* trusted until then */
    bool admin, premium;
};

struct user_remote {
    pthread_mutex_t mu;
    int64_t ttl_ms;
    struct upstream *up;
    struct slot slots[CACHE_SLOTS];
};

static struct slot *slot_of(struct user_remote *r, const unsigned char key[32])
{
    uint32_t h;
    memcpy(&h, key, sizeof h);
    return &r->slots[h & (CACHE_SLOTS - 1)];
}

static bool cache_get(struct user_remote *r, const unsigned char key[32], int64_t now,
                      struct app_identity *out)
{
    bool hit = false;
    pthread_mutex_lock(&r->mu);
    struct slot *s = slot_of(r, key);
    if (s->user_id && s->until_ms > now && !memcmp(s->key, key, 32)) {
        out->user_id = s->user_id;
        out->admin = s->admin;
        out->premium = s->premium;
        hit = true;
    }
    pthread_mutex_unlock(&r->mu);
    return hit;
}

static void cache_put(struct user_remote *r, const struct app_identity *id, int64_t now)
{
    pthread_mutex_lock(&r->mu);
    struct slot *s = slot_of(r, id->token_hash);
    memcpy(s->key, id->token_hash, 32);
    s->user_id = id->user_id;
    s->admin = id->admin;
    s->premium = id->premium;
    s->until_ms = now + r->ttl_ms;
    pthread_mutex_unlock(&r->mu);
}

/* The answer of the verify route -> *out; ERR_UNAVAILABLE when it is not one. */
static int parse_identity(json_t *resp, struct app_identity *out)
{
    const char *uid = json_string_value(json_object_get(resp, "user_id"));
    const char *role = json_string_value(json_object_get(resp, "role"));
    const char *tier = json_string_value(json_object_get(resp, "tier"));
    if (!uid || !role || !tier || id_parse(uid, &out->user_id) < 0 || out->user_id <= 0)
        return ERR_UNAVAILABLE;
    out->admin = !strcmp(role, "admin");
    out->premium = !strcmp(tier, "premium");
    return 0;
}

static int remote_authenticate(struct app *app, const char *token, struct app_identity *out)
{
    struct user_remote *r = app_service_ctx(app, CTX_NAME);
    size_t n = strlen(token);
    if (!r || n < 20 || n > 128) /* the user service issues 43-byte tokens */
        return ERR_UNAUTHORIZED;
    crypto_hash_sha256(out->token_hash, (const unsigned char *)token, n);
    int64_t now = now_ms();
    if (r->ttl_ms > 0 && cache_get(r, out->token_hash, now, out))
        return 0;
    if (!r->up)
        return ERR_UNAVAILABLE;
    json_t *body = json_pack("{s:s}", "token", token), *resp = NULL;
    if (!body)
        return ERR_NOMEM;
    int status;
    int rc = upstream_call_json(r->up, "POST", "/internal/v1/user/sessions/verify", NULL, body,
                                UPSTREAM_IDEMPOTENT, &status, &resp);
    json_decref(body);
    if (rc == 0) {
        const char *field =
            json_string_value(json_object_get(json_object_get(resp, "error"), "field"));
        if (status == 200)
            rc = parse_identity(resp, out);
        else if (status == 401 && field && !strcmp(field, "token"))
            rc = ERR_UNAUTHORIZED; /* unknown, expired or logged out */
        else if (status == 400)
            rc = ERR_UNAUTHORIZED; /* a token the route cannot even read */
        else {
            /* Our own fault (e.g. a wrong internal token: 401/403 on X-Internal-Token) or the
             * user service's: a 503 for the client, and a line for the operator. */
            log_warn("user: the remote authenticator got HTTP %d from %s", status,
                     app_config(app)->user_url);
            rc = ERR_UNAVAILABLE;
        }
    }
    json_decref(resp);
    if (rc == 0 && r->ttl_ms > 0)
        cache_put(r, out, now);
    return rc;
}

int user__remote_init(struct app *app)
{
    const struct config *cfg = app_config(app);
    if (!cfg->user_url)
        return 0;
    struct user_remote *r = calloc(1, sizeof *r);
    if (!r)
        return ERR_NOMEM;
    pthread_mutex_init(&r->mu, NULL);
    r->ttl_ms = (int64_t)cfg->user_auth_cache_seconds * 1000;
    r->up = upstream_service(cfg, "user", cfg->user_url);
    int rc = r->up ? app_set_service_ctx(app, CTX_NAME, r) : ERR_NOMEM;
    if (rc == 0 && (rc = app_set_authenticator(app, remote_authenticate)) < 0)
        app_set_service_ctx(app, CTX_NAME, NULL);
    if (rc < 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
    }
    return rc;
}

void user__remote_deinit(struct app *app)
{
    struct user_remote *r = app_service_ctx(app, CTX_NAME);
    if (!r)
        return;
    app_set_authenticator(app, NULL);
    app_set_service_ctx(app, CTX_NAME, NULL);
    sodium_memzero(r->slots, sizeof r->slots);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
