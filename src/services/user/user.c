/* SPDX-License-Identifier: MIT */
/* user.c — the identity service: accounts, sessions, the bearer-token authenticator.
 *
 * Passwords are hashed with argon2id (libsodium, OWASP's minimum: t=2, m=19 MiB) and checked
 * in constant time; an unknown email is checked against a dummy hash so both paths cost
 * the same. Session tokens are 32 random bytes (base64url); only their SHA-256 is stored,
 * so a leaked database holds no usable token. Failed logins are throttled per account and
 * per client address by token buckets that only failures drain; this throttle stays on even
 * when EMPORIUM_RATE_LIMITS=off. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/ratelimit.h"
#include "emporium/service.h"
#include "emporium/timer.h"
#include "emporium/svc/user.h"
#include "user_internal.h"

#define PW_OPSLIMIT 2
#define PW_MEMLIMIT (19u * 1024 * 1024)

/* Failure throttles: 5 failures per account then one more every 30 s; 30 per address then
 * one every 2 s. */
#define THROTTLE_ACCOUNT_RATE (1.0 / 30)
#define THROTTLE_ACCOUNT_BURST 5
#define THROTTLE_IP_RATE 0.5
#define THROTTLE_IP_BURST 30

static struct ratelimit *login_throttle;
static char dummy_hash[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static user_login_hook_fn login_hooks[8];
static int n_login_hooks;

int user_add_login_hook(user_login_hook_fn fn)
{
    if (n_login_hooks == 8)
        return ERR_NOMEM;
    login_hooks[n_login_hooks++] = fn;
    return 0;
}

void user__run_login_hooks(struct app *app, int64_t user_id, const char *cart_token)
{
    for (int i = 0; i < n_login_hooks; i++)
        login_hooks[i](app, user_id, cart_token);
}

int user__hash_password(const char *pw, char out[crypto_pwhash_STRBYTES])
{
    if (crypto_pwhash_str_alg(out, pw, strlen(pw), PW_OPSLIMIT, PW_MEMLIMIT,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return ERR_NOMEM;
    return 0;
}

static void dummy_init(void)
{
    if (user__hash_password("not a real password, only for timing", dummy_hash) < 0)
        dummy_hash[0] = 0;
}

bool user__verify_password(const char *hash, const char *pw)
{
    if (!hash) {
        pthread_once(&dummy_once, dummy_init);
        /* The result is irrelevant; only the time it takes matters. */
        volatile int sink = dummy_hash[0] ? crypto_pwhash_str_verify(dummy_hash, pw, strlen(pw)) : 0;
        (void)sink;
        return false;
    }
    return crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0;
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
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' ||
            c == ';' || c == '(' || c == ')' || c == '\\')
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

void user__token_hash(const char *token, unsigned char out[32])
{
    crypto_hash_sha256(out, (const unsigned char *)token, strlen(token));
}

static void hex32(const unsigned char in[32], char out[65])
{
    sodium_bin2hex(out, 65, in, 32);
}

int user__session_create(struct db_conn *c, int64_t user_id, int ttl_hours, char token[64],
                         int64_t *expires_at)
{
    unsigned char raw[32], hash[32];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(token, 64, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    user__token_hash(token, hash);
    char hexhash[65];
    hex32(hash, hexhash);
    int64_t now = now_ms();
    *expires_at = now + (int64_t)ttl_hours * 3600 * 1000;
    struct db_val args[] = {DB_TEXT(hexhash), DB_INT(user_id), DB_INT(now), DB_INT(*expires_at)};
    int rc = db_query(c,
                      "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) "
                      "VALUES ($1, $2, $3, $4)",
                      4, args, NULL);
    sodium_memzero(raw, sizeof raw);
    return rc < 0 ? rc : 0;
}

int user__session_delete(struct db_conn *c, const unsigned char hash[32])
{
    char hexhash[65];
    hex32(hash, hexhash);
    struct db_val args[] = {DB_TEXT(hexhash)};
    int rc = db_query(c, "DELETE FROM sessions WHERE token_hash = $1", 1, args, NULL);
    return rc < 0 ? rc : 0;
}

/* Resolves a bearer token for the HTTP core (registered with app_set_authenticator). */
static int user_authenticate(struct app *app, const char *token, struct app_identity *out)
{
    size_t n = strlen(token);
    if (n < 20 || n > 128)
        return ERR_UNAUTHORIZED;
    unsigned char hash[32];
    user__token_hash(token, hash);
    char hexhash[65];
    hex32(hash, hexhash);
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "users"), &c);
    if (rc < 0)
        return rc;
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_TEXT(hexhash), DB_INT(now_ms())};
    rc = db_query(c,
                  "SELECT u.id, u.role, u.tier FROM sessions s JOIN users u ON u.id = s.user_id "
                  "WHERE s.token_hash = $1 AND s.expires_at > $2",
                  2, args, &rows);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    if (db_rows_count(rows) != 1) {
        db_rows_free(rows);
        return ERR_UNAUTHORIZED;
    }
    out->user_id = db_get_i64(rows, 0, 0);
    out->admin = !strcmp(db_get(rows, 0, 1), "admin");
    out->premium = !strcmp(db_get(rows, 0, 2), "premium");
    memcpy(out->token_hash, hash, 32);
    db_rows_free(rows);
    return 0;
}

/* Throttle keys: "acct:<email>" and "ip:<addr>". Returns ERR_RATELIMITED with *retry set
 * when either bucket is empty. */
int user__throttle_check(const char *email, const char *ip, double *retry)
{
    char key[USER_EMAIL_MAX + 16];
    struct rl_result r;
    int64_t now = now_ms();
    snprintf(key, sizeof key, "acct:%s", email);
    ratelimit_peek(login_throttle, key, THROTTLE_ACCOUNT_RATE, THROTTLE_ACCOUNT_BURST, now, &r);
    if (!r.allowed) {
        *retry = r.retry_after;
        return ERR_RATELIMITED;
    }
    snprintf(key, sizeof key, "ip:%s", ip);
    ratelimit_peek(login_throttle, key, THROTTLE_IP_RATE, THROTTLE_IP_BURST, now, &r);
    if (!r.allowed) {
        *retry = r.retry_after;
        return ERR_RATELIMITED;
    }
    return 0;
}

void user__throttle_fail(const char *email, const char *ip)
{
    char key[USER_EMAIL_MAX + 16];
    struct rl_result r;
    int64_t now = now_ms();
    snprintf(key, sizeof key, "acct:%s", email);
    ratelimit_take(login_throttle, key, THROTTLE_ACCOUNT_RATE, THROTTLE_ACCOUNT_BURST, now, &r);
    snprintf(key, sizeof key, "ip:%s", ip);
    ratelimit_take(login_throttle, key, THROTTLE_IP_RATE, THROTTLE_IP_BURST, now, &r);
}

json_t *user__json(const struct db_rows *rows, int row)
{
    /* columns: id, email, name, role, tier, created_at */
    char ts[32];
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", db_get(rows, row, 0), "email",
                     db_get(rows, row, 1), "name", db_get(rows, row, 2), "role",
                     db_get(rows, row, 3), "tier", db_get(rows, row, 4), "created_at",
                     time_format(db_get_i64(rows, row, 5), ts));
}

/* Timer job: deletes expired sessions, a bounded batch per run. */
static void user_session_sweep(struct app *app, void *ctx)
{
    struct db_conn *c;
    if (db_conn_take(app_db(app, "users"), &c) < 0)
        return;
    struct db_val args[] = {DB_INT(now_ms())};
    int rc = db_query(c,
                      "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions "
                      "WHERE expires_at <= $1 LIMIT 5000)",
                      1, args, NULL);
    db_conn_give(c);
    if (rc < 0)
        log_warn("user: sweeping expired sessions failed: %s", err_str(rc));
    else if (rc > 0)
        log_event("user.sessions_expired", LOG_I("deleted", rc));
}

static int user_init(struct app *app)
{
    login_throttle = ratelimit_mem_new(100000);
    if (!login_throttle)
        return ERR_NOMEM;
    int rc = app_set_authenticator(app, user_authenticate);
    if (rc == 0)
        rc = timer_add(app, "user.session_sweep", app_config(app)->session_sweep_seconds * 1000,
                       user_session_sweep, NULL);
    return rc;
}

static void user_deinit(struct app *app)
{
    app_set_authenticator(app, NULL);
    ratelimit_free(login_throttle);
    login_throttle = NULL;
    n_login_hooks = 0;
}

static const struct db_migration user_migrations[] = {
    {.sql = "CREATE TABLE users ("
            " id BIGINT PRIMARY KEY,"
            " email TEXT NOT NULL UNIQUE,"
            " name TEXT NOT NULL,"
            " password_hash TEXT NOT NULL,"
            " role TEXT NOT NULL DEFAULT 'customer',"
            " tier TEXT NOT NULL DEFAULT 'standard',"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE TABLE sessions ("
            " token_hash TEXT PRIMARY KEY,"
            " user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
            " created_at BIGINT NOT NULL,"
            " expires_at BIGINT NOT NULL);"
            "CREATE INDEX sessions_user ON sessions (user_id);"
            "CREATE INDEX sessions_expires ON sessions (expires_at);"},
};

static const struct service_db user_dbs[] = {
    {"users", 0, user_migrations, sizeof user_migrations / sizeof user_migrations[0]},
    {NULL, 0, NULL, 0},
};

const struct service service_user = {
    .name = "user",
    .routes = user__routes,
    .dbs = user_dbs,
    .init = user_init,
    .deinit = user_deinit,
    .command = "user",
    .run_command = user__command,
    .cli = &user__cli,
    .command_help = "create an account: user create --email E --password-file F [--role admin] [--tier premium]",
};
