/* SPDX-License-Identifier: MIT */
/* user_http.c — identity routes: register, login, logout, users/me. */
#include <stdio.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "user_internal.h"

/* Validates email + password (+ name) from a JSON body; email is normalised into out. */
static int read_credentials(struct http_req *req, json_t *body, char email[USER_EMAIL_MAX + 1],
                            const char **password)
{
    const char *raw = NULL;
    int rc = http_json_string(req, body, "email", true, 1, USER_EMAIL_MAX, &raw);
    if (rc < 0)
        return rc;
    if (user__normalize_email(raw, email) < 0)
        return http_fail(req, ERR_INVALID, "email", "is not a valid email address");
    return http_json_string(req, body, "password", true, USER_PASSWORD_MIN, USER_PASSWORD_MAX,
                            password);
}

static int reply_session(struct http_req *req, struct db_conn *c, int64_t user_id, int status)
{
    char token[64];
    int64_t expires;
    int rc = user__session_create(c, user_id, app_config(http_app(req))->session_ttl_hours,
                                  token, &expires);
    if (rc < 0)
        return rc;
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_INT(user_id)};
    rc = db_query(c, USER_SELECT "WHERE id = $1", 1, args, &rows);
    if (rc < 0)
        return rc;
    if (db_rows_count(rows) != 1) {
        db_rows_free(rows);
        return ERR_INTERNAL;
    }
    char ts[32];
    json_t *out = json_pack("{s:o,s:s,s:s}", "user", user__json(rows, 0), "token", token,
                            "expires_at", time_format(expires, ts));
    db_rows_free(rows);
    sodium_memzero(token, sizeof token);
    return http_reply_json(req, status, out);
}

static int h_register(struct http_req *req)
{
    int rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"email", "password", "name", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        return rc;
    char email[USER_EMAIL_MAX + 1];
    const char *password, *name = NULL;
    if ((rc = read_credentials(req, body, email, &password)) < 0)
        return rc;
    if ((rc = http_json_string(req, body, "name", true, 1, USER_NAME_MAX, &name)) < 0)
        return rc;
    char hash[crypto_pwhash_STRBYTES];
    if ((rc = user__hash_password(password, hash)) < 0)
        return rc;

    struct db_conn *c;
    if ((rc = db_conn_take(app_db(http_app(req), "users"), &c)) < 0)
        return rc;
    int64_t id = id_new(0), now = now_ms();
    struct db_val args[] = {DB_INT(id), DB_TEXT(email), DB_TEXT(name), DB_TEXT(hash), DB_INT(now)};
    rc = db_begin(c);
    if (rc == 0)
        rc = db_query(c,
                      "INSERT INTO users (id, email, name, password_hash, role, tier, created_at, "
                      "updated_at) VALUES ($1, $2, $3, $4, 'customer', 'standard', $5, $5)",
                      5, args, NULL);
    if (rc == ERR_CONFLICT) {
        db_rollback(c);
        db_conn_give(c);
        return http_fail_code(req, ERR_CONFLICT, "email_taken", NULL,
                              "an account with this email already exists");
    }
    if (rc >= 0)
        rc = reply_session(req, c, id, 201);
    if (rc >= 0)
        rc = db_commit(c);
    else
        db_rollback(c);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    user__run_login_hooks(http_app(req), id, http_header(req, "X-Cart-Token"));
    return 0;
}

static int h_login(struct http_req *req)
{
    int rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"email", "password", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        return rc;
    char email[USER_EMAIL_MAX + 1];
    const char *password;
    if ((rc = read_credentials(req, body, email, &password)) < 0)
        return rc;
    double retry;
    if (user__throttle_check(email, http_client_ip(req), &retry) < 0) {
        char v[32];
        snprintf(v, sizeof v, "%.0f", retry < 1 ? 1 : retry + 0.5);
        http_add_header(req, "Retry-After", v);
        return http_fail_code(req, ERR_RATELIMITED, "too_many_failures", NULL,
                              "too many failed logins, retry after %s s", v);
    }
    struct db_conn *c;
    if ((rc = db_conn_take(app_db(http_app(req), "users"), &c)) < 0)
        return rc;
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_TEXT(email)};
    rc = db_query(c, "SELECT id, password_hash FROM users WHERE email = $1", 1, args, &rows);
    if (rc < 0) {
        db_conn_give(c);
        return rc;
    }
    bool found = db_rows_count(rows) == 1;
    /* The hash check runs without holding the connection: it takes tens of ms. */
    db_conn_give(c);
    bool ok = user__verify_password(found ? db_get(rows, 0, 1) : NULL, password);
    int64_t id = found ? db_get_i64(rows, 0, 0) : 0;
    db_rows_free(rows);
    if (!ok) {
        user__throttle_fail(email, http_client_ip(req));
        return http_fail_code(req, ERR_UNAUTHORIZED, "invalid_credentials", NULL,
                              "wrong email or password");
    }
    if ((rc = db_conn_take(app_db(http_app(req), "users"), &c)) < 0)
        return rc;
    int64_t now = now_ms();
    /* Opportunistic cleanup of this user's expired sessions keeps the table small. */
    struct db_val cargs[] = {DB_INT(id), DB_INT(now)};
    db_query(c, "DELETE FROM sessions WHERE user_id = $1 AND expires_at <= $2", 2, cargs, NULL);
    rc = reply_session(req, c, id, 200);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    user__run_login_hooks(http_app(req), id, http_header(req, "X-Cart-Token"));
    return 0;
}

static int h_logout(struct http_req *req)
{
    struct db_conn *c;
    int rc = db_conn_take(app_db(http_app(req), "users"), &c);
    if (rc < 0)
        return rc;
    rc = user__session_delete(c, http_auth(req)->token_hash);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    return http_reply_raw(req, 204, NULL, "", 0, false);
}

static int h_me(struct http_req *req)
{
    struct db_conn *c;
    int rc = db_conn_take(app_db(http_app(req), "users"), &c);
    if (rc < 0)
        return rc;
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_INT(http_auth(req)->user_id)};
    rc = db_query(c, USER_SELECT "WHERE id = $1", 1, args, &rows);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    if (db_rows_count(rows) != 1) {
        db_rows_free(rows);
        return http_fail(req, ERR_UNAUTHORIZED, NULL, "the account no longer exists");
    }
    json_t *u = user__json(rows, 0);
    db_rows_free(rows);
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, 200, u);
}

const struct http_route user__routes[] = {
    {"POST", "/api/v1/auth/register", h_register, ROUTE_OFFLOAD | ROUTE_LIMIT_STRICT},
    {"POST", "/api/v1/auth/login", h_login, ROUTE_OFFLOAD | ROUTE_LIMIT_STRICT},
    {"POST", "/api/v1/auth/logout", h_logout, ROUTE_AUTH},
    {"GET", "/api/v1/users/me", h_me, ROUTE_AUTH},
    {NULL, NULL, NULL, 0},
};
