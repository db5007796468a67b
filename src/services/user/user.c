/* SPDX-License-Identifier: MIT */
/* user.c — the identity service's domain: accounts, sessions, sign-in and its throttling,
 * the bearer-token authenticator, the expired-session sweep.
 *
 * Passwords are hashed with argon2id (libsodium, OWASP's minimum: t=2, m=19 MiB) and checked
 * in constant time; an unknown email is checked against a dummy hash so both paths cost the
 * same. Session tokens are 32 random bytes (base64url); only their SHA-256 is stored. Failed
 * logins are throttled by three token buckets that only failures drain (svc/user.h, README);
 * this throttle stays on even when EMPORIUM_RATE_LIMITS=off. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/ratelimit.h"
#define EMPORIUM_SERVICE_NO_HTTP /* the domain knows nothing of HTTP */
#include "emporium/service.h"
#include "emporium/svc/user.h"
#include "emporium/timer.h"
#include "user_internal.h"

#define PW_OPSLIMIT 2
#define PW_MEMLIMIT (19u * 1024 * 1024)

/* Process-wide, computed once: a hash to burn the same time on for an unknown email. */
static char dummy_hash[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
/* Registered by other services' init() — which may run before ours — and dropped by our
 * deinit(). */
static user_login_hook_fn login_hooks[8];
static int n_login_hooks;

static struct user_ctx *ctx_of(struct app *app) { return app_service_ctx(app, "user"); }

static void set_problem(struct user_problem *why, const char *field, const char *code,
                        const char *message)
{
    if (why) {
        why->field = field;
        why->code = code;
        why->message = message;
    }
}

/* --- login hooks --- */

int user_add_login_hook(user_login_hook_fn fn)
{
    if (n_login_hooks == 8)
        return ERR_NOMEM;
    login_hooks[n_login_hooks++] = fn;
    return 0;
}

void user_run_login_hooks(struct app *app, int64_t user_id, const char *cart_token)
{
    for (int i = 0; i < n_login_hooks; i++)
        login_hooks[i](app, user_id, cart_token);
}

/* --- passwords, emails, tokens --- */

/* Each argon2id computation holds PW_MEMLIMIT (19 MB) while it runs, so how many run at once
 * is bounded here rather than by the slow-work pool, which is sized for checkouts (48
 * threads on SQLite): a burst of logins holds at most PW_CONCURRENT * 19 MB, and the waiting
 * ones take no CPU (two cores are saturated by two hashes anyway). */
#define PW_CONCURRENT 4
static pthread_mutex_t pw_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pw_cv = PTHREAD_COND_INITIALIZER;
static int pw_running;

static void pw_enter(void)
{
    pthread_mutex_lock(&pw_mu);
    while (pw_running >= PW_CONCURRENT)
        pthread_cond_wait(&pw_cv, &pw_mu);
    pw_running++;
    pthread_mutex_unlock(&pw_mu);
}

static void pw_leave(void)
{
    pthread_mutex_lock(&pw_mu);
    pw_running--;
    pthread_cond_signal(&pw_cv);
    pthread_mutex_unlock(&pw_mu);
}

static int hash_password(const char *pw, char out[crypto_pwhash_STRBYTES])
{
    pw_enter();
    int rc = crypto_pwhash_str_alg(out, pw, strlen(pw), PW_OPSLIMIT, PW_MEMLIMIT,
                                   crypto_pwhash_ALG_ARGON2ID13);
    pw_leave();
    return rc != 0 ? ERR_NOMEM : 0;
}

static bool pw_verify(const char *hash, const char *pw)
{
    pw_enter();
    bool ok = crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0;
    pw_leave();
    return ok;
}

static void dummy_init(void)
{
    if (hash_password("not a real password, only for timing", dummy_hash) < 0)
        dummy_hash[0] = 0;
}

/* hash NULL: burns the same time against the dummy hash and returns false. */
static bool verify_password(const char *hash, const char *pw)
{
    if (!hash) {
        pthread_once(&dummy_once, dummy_init);
        /* The result is irrelevant; only the time it takes matters. */
        volatile bool sink = dummy_hash[0] ? pw_verify(dummy_hash, pw) : false;
        (void)sink;
        return false;
    }
    return pw_verify(hash, pw);
}

/* Characters (UTF-8 code points) in s. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static int check_password(const char *pw, struct user_problem *why)
{
    size_t n = pw ? utf8_chars(pw) : 0;
    if (n < USER_PASSWORD_MIN || n > USER_PASSWORD_MAX || strlen(pw) > USER_PASSWORD_MAX * 4) {
        set_problem(why, "password", NULL, "must be 8 to 128 characters long");
        return ERR_INVALID;
    }
    return 0;
}

int user__normalize_email(const char *in, char out[USER_EMAIL_MAX + 1])
{
    while (isspace((unsigned char)*in))
        in++;
    size_t n = strlen(in);
    while (n && isspace((unsigned char)in[n - 1]))
        n--;
    if (n < 3 || n > USER_EMAIL_MAX)
        return ERR_INVALID;
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' ||
            c == '(' || c == ')' || c == '\\')
            return ERR_INVALID;
        if (c == '@') {
            if (at)
                return ERR_INVALID;
            at = in + i;
        }
        out[i] = (char)(c < 0x80 ? tolower(c) : c);
    }
    out[n] = 0;
    if (!at || at == in || (size_t)(at - in) > 64)
        return ERR_INVALID;
    const char *domain = at + 1;
    size_t dlen = n - (size_t)(domain - in);
    const char *dot = memchr(domain, '.', dlen);
    if (dlen < 3 || !dot || dot == domain || domain[dlen - 1] == '.' || strstr(out, ".."))
        return ERR_INVALID;
    return 0;
}

/* --- throttling --- */

enum { T_PAIR, T_ADDR, T_ACCOUNT };
static const struct {
    const char *scope;
    double rate, burst;
} buckets[] = {
    [T_PAIR] = {"account_address", USER_THROTTLE_PAIR_RATE, USER_THROTTLE_PAIR_BURST},
    [T_ADDR] = {"address", USER_THROTTLE_ADDR_RATE, USER_THROTTLE_ADDR_BURST},
    [T_ACCOUNT] = {"account", USER_THROTTLE_ACCOUNT_RATE, USER_THROTTLE_ACCOUNT_BURST},
};

static void bucket_key(int b, const char *email, const char *addr, char *key, size_t cap)
{
    if (b == T_PAIR)
        snprintf(key, cap, "pair:%s|%s", email, addr);
    else if (b == T_ADDR)
        snprintf(key, cap, "addr:%s", addr);
    else
        snprintf(key, cap, "acct:%s", email);
}

/* ERR_RATELIMITED with the longest wait when any bucket is empty. */
static int throttle_check(struct user_ctx *ctx, const char *email, const char *addr,
                          struct user_problem *why)
{
    char key[USER_EMAIL_MAX + 80];
    int64_t now = now_ms();
    int rc = 0;
    for (int b = 0; b < 3; b++) {
        struct rl_result r;
        bucket_key(b, email, addr, key, sizeof key);
        ratelimit_peek(ctx->throttle, key, buckets[b].rate, buckets[b].burst, now, &r);
        if (r.allowed)
            continue;
        if (rc == 0 || (why && r.retry_after > why->retry_after)) {
            if (why)
                why->retry_after = r.retry_after;
            if (rc == 0)
                log_event_warn("user.login_throttled", LOG_S("scope", buckets[b].scope),
                               LOG_S("client_ip", addr), LOG_F("retry_after_s", r.retry_after));
        }
        rc = ERR_RATELIMITED;
    }
    if (rc)
        set_problem(why, NULL, "too_many_failures", "too many failed logins, retry later");
    return rc;
}

static void throttle_fail(struct user_ctx *ctx, const char *email, const char *addr)
{
    char key[USER_EMAIL_MAX + 80];
    int64_t now = now_ms();
    for (int b = 0; b < 3; b++) {
        struct rl_result r;
        bucket_key(b, email, addr, key, sizeof key);
        ratelimit_take(ctx->throttle, key, buckets[b].rate, buckets[b].burst, now, &r);
    }
}

/* --- the client interface --- */

/* Validates and normalises a new account into *u (id and times set). */
static int prepare(const struct user_new *in, struct user *u, struct user_problem *why)
{
    memset(u, 0, sizeof *u);
    if (!in->email || user__normalize_email(in->email, u->email) < 0) {
        set_problem(why, "email", NULL, "is not a valid email address");
        return ERR_INVALID;
    }
    int rc = check_password(in->password, why);
    if (rc < 0)
        return rc;
    const char *name = in->name ? in->name : u->email;
    size_t chars = utf8_chars(name);
    if (chars < 1 || chars > USER_NAME_MAX || strlen(name) >= sizeof u->name) {
        set_problem(why, "name", NULL, "must be 1 to 100 characters long");
        return ERR_INVALID;
    }
    snprintf(u->name, sizeof u->name, "%s", name);
    u->role = in->role;
    u->tier = in->tier;
    u->id = id_new(0);
    u->created_at = now_ms();
    return 0;
}

int user_create(struct app *app, const struct user_new *in, struct user *out,
                struct user_session *session, struct user_problem *why)
{
    struct user u;
    int rc = prepare(in, &u, why);
    if (rc < 0)
        return rc;
    /* The hash takes tens of ms: no connection is held meanwhile. */
    char hash[crypto_pwhash_STRBYTES];
    if ((rc = hash_password(in->password, hash)) < 0)
        return rc;
    struct db_conn *c;
    if ((rc = db_conn_take(app_db(app, "users"), &c)) < 0)
        return rc;
    rc = db_begin(c);
    if (rc == 0)
        rc = user_store_insert(c, &u, hash);
    if (rc == 0 && session)
        rc = user__session_open(app, c, &u, false, session);
    if (rc == 0)
        rc = db_commit(c);
    else
        db_rollback(c);
    db_conn_give(c);
    if (rc == ERR_CONFLICT) {
        set_problem(why, "email", "email_taken", "an account with this email already exists");
        if (session)
            sodium_memzero(session->token, sizeof session->token);
        return rc;
    }
    if (rc < 0) {
        if (session)
            sodium_memzero(session->token, sizeof session->token);
        return rc;
    }
    if (session)
        session->user = u;
    if (out)
        *out = u;
    if (u.role == USER_ROLE_ADMIN)
        log_event("user.admin_created", LOG_I("user_id", u.id));
    else
        log_event("user.registered", LOG_I("user_id", u.id),
                  LOG_S("tier", u.tier == USER_TIER_PREMIUM ? "premium" : "standard"));
    return 0;
}

int user_login(struct app *app, const char *email, const char *password, const char *client_addr,
               struct user_session *out, struct user_problem *why)
{
    struct user_ctx *ctx = ctx_of(app);
    char norm[USER_EMAIL_MAX + 1];
    if (!email || user__normalize_email(email, norm) < 0) {
        set_problem(why, "email", NULL, "is not a valid email address");
        return ERR_INVALID;
    }
    int rc = check_password(password, why);
    if (rc < 0)
        return rc;
    if (!client_addr)
        client_addr = "unknown";
    if ((rc = throttle_check(ctx, norm, client_addr, why)) < 0)
        return rc;

    struct db_conn *c;
    if ((rc = db_conn_take(app_db(app, "users"), &c)) < 0)
        return rc;
    char hash[USER_HASH_MAX];
    rc = user_store_by_email(c, norm, &out->user, hash);
    /* The hash check runs without holding the connection: it takes tens of ms. */
    db_conn_give(c);
    if (rc < 0 && rc != ERR_NOTFOUND)
        return rc;
    bool found = rc == 0;
    if (!verify_password(found ? hash : NULL, password)) {
        throttle_fail(ctx, norm, client_addr);
        set_problem(why, NULL, "invalid_credentials", "wrong email or password");
        return ERR_UNAUTHORIZED;
    }
    if ((rc = db_conn_take(app_db(app, "users"), &c)) < 0)
        return rc;
    rc = user__session_open(app, c, &out->user, false, out);
    db_conn_give(c);
    return rc;
}

int user_get(struct app *app, int64_t id, struct user *out)
{
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "users"), &c);
    if (rc < 0)
        return rc;
    rc = user_store_by_id(c, id, out);
    db_conn_give(c);
    return rc;
}

int user_get_many(struct app *app, const int64_t *ids, int n, struct user *out)
{
    if (n < 0 || n > USER_GET_MANY_MAX)
        return ERR_INVALID;
    struct db *db = app_db(app, "users");
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    rc = user_store_by_ids(c, db_dialect(db), ids, n, out);
    db_conn_give(c);
    return rc;
}

int user_bulk_create(struct app *app, long count, const char *fmt, const char *password,
                     void *tokens_file, long *created, struct user_problem *why)
{
    FILE *tf = tokens_file;
    *created = 0;
    const char *pct = strstr(fmt, "%d");
    if (!pct || strchr(pct + 2, '%') || strchr(fmt, '%') != pct) {
        set_problem(why, "email_format", NULL, "must contain exactly one %d");
        return ERR_INVALID;
    }
    int rc = check_password(password, why);
    if (rc < 0)
        return rc;
    char hash[crypto_pwhash_STRBYTES];
    if ((rc = hash_password(password, hash)) < 0)
        return rc;
    struct db_conn *c;
    if ((rc = db_conn_take(app_db(app, "users"), &c)) < 0)
        return rc;
    rc = db_begin(c);
    for (long i = 1; rc >= 0 && i <= count; i++) {
        char email[USER_EMAIL_MAX + 1];
        /* fmt was checked to hold exactly one %d: print around it, never as a format. */
        snprintf(email, sizeof email, "%.*s%ld%s", (int)(pct - fmt), fmt, i, pct + 2);
        struct user u = {.id = id_new(0), .created_at = now_ms()};
        if (user__normalize_email(email, u.email) < 0) {
            set_problem(why, "email_format", NULL, "does not make valid email addresses");
            rc = ERR_INVALID;
            break;
        }
        snprintf(u.name, sizeof u.name, "%s", u.email);
        bool inserted = false;
        rc = user_store_insert_or_get(c, &u, hash, &inserted);
        if (rc >= 0 && inserted)
            (*created)++;
        if (rc >= 0 && tf) {
            struct user_session s;
            rc = user__session_open(app, c, &u, true, &s);
            if (rc >= 0)
                fprintf(tf, "%s\n", s.token);
            sodium_memzero(s.token, sizeof s.token);
        }
    }
    if (rc >= 0)
        rc = db_commit(c);
    else
        db_rollback(c);
    db_conn_give(c);
    if (rc >= 0)
        log_event("user.bulk_created", LOG_I("created", *created), LOG_I("requested", count));
    return rc < 0 ? rc : 0;
}

/* --- for the app: the authenticator and the sweep --- */

/* Resolves a bearer token (registered with app_set_authenticator): user_session.c. */
static int user_authenticate(struct app *app, const char *token, struct app_identity *out)
{
    return user__session_lookup(app, token, out);
}

int user__init(struct app *app)
{
    struct user_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return ERR_NOMEM;
    ctx->throttle = ratelimit_mem_new(100000);
    int rc = ctx->throttle ? app_set_service_ctx(app, "user", ctx) : ERR_NOMEM;
    if (rc < 0) {
        ratelimit_free(ctx->throttle);
        free(ctx);
        return rc;
    }
    rc = user__sessions_init(app, ctx);
    if (rc == 0)
        rc = app_set_authenticator(app, user_authenticate);
    if (rc == 0)
        rc = timer_add(app, "user.session_sweep", app_config(app)->session_sweep_seconds * 1000,
                       user__session_sweep, NULL);
    if (rc < 0)
        user__deinit(app); /* app_new() only deinits the services whose init() succeeded */
    return rc;
}

void user__deinit(struct app *app)
{
    app_set_authenticator(app, NULL);
    struct user_ctx *ctx = ctx_of(app);
    if (ctx) {
        ratelimit_free(ctx->throttle);
        user__sessions_deinit(ctx);
        free(ctx);
        app_set_service_ctx(app, "user", NULL);
    }
    n_login_hooks = 0;
}

/* The internal route behind other processes' remote authenticator (user_remote.c). */
int user__verify_token(struct app *app, const char *token, struct app_identity *out)
{
    return user_authenticate(app, token, out);
}
