/* SPDX-License-Identifier: MIT */
/* user_http.c — the identity routes: parse the request, call the domain (svc/user.h),
 * render the answer. The only file of the service that includes emporium/http.h; it also
 * assembles the service (routes, databases, lifecycle, command) for the registry. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "emporium/service.h"
#include "emporium/svc/user.h"
#include "user_internal.h"

static json_t *user_json(const struct user *u)
{
    char id[24], ts[32];
    snprintf(id, sizeof id, "%lld", (long long)u->id);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", id, "email", u->email, "name", u->name,
                     "role", u->role == USER_ROLE_ADMIN ? "admin" : "customer", "tier",
                     u->tier == USER_TIER_PREMIUM ? "premium" : "standard", "created_at",
                     time_format(u->created_at, ts));
}

/* A refusal from the domain, through the one error mapping. */
static int fail(struct http_req *req, int rc, const struct user_problem *why)
{
    if (rc == ERR_RATELIMITED && why->retry_after > 0) {
        char v[32];
        snprintf(v, sizeof v, "%.0f", why->retry_after < 1 ? 1 : why->retry_after + 0.5);
        http_add_header(req, "Retry-After", v);
    }
    if (why->code)
        return http_fail_code(req, rc, why->code, NULL, "%s", why->message ? why->message : "");
    if (why->field || why->message)
        return http_fail(req, rc, why->field, "%s", why->message ? why->message : "");
    return rc;
}

static int reply_session(struct http_req *req, struct user_session *s, int status)
{
    char ts[32];
    json_t *out = json_pack("{s:o,s:s,s:s}", "user", user_json(&s->user), "token", s->token,
                            "expires_at", time_format(s->expires_at, ts));
    sodium_memzero(s->token, sizeof s->token);
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, status, out);
}

static int h_register(struct http_req *req)
{
    int rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"email", "password", "name", NULL};
    struct user_new in = {.role = USER_ROLE_CUSTOMER, .tier = USER_TIER_STANDARD};
    if ((rc = http_json_only(req, body, allowed)) < 0 ||
        (rc = http_json_string(req, body, "email", true, 1, USER_EMAIL_MAX, &in.email)) < 0 ||
        (rc = http_json_string(req, body, "password", true, USER_PASSWORD_MIN, USER_PASSWORD_MAX,
                               &in.password)) < 0 ||
        (rc = http_json_string(req, body, "name", true, 1, USER_NAME_MAX, &in.name)) < 0)
        return rc;
    struct user_session s;
    struct user_problem why = {0};
    if ((rc = user_create(http_app(req), &in, NULL, &s, &why)) < 0)
        return fail(req, rc, &why);
    int64_t id = s.user.id;
    if ((rc = reply_session(req, &s, 201)) < 0)
        return rc;
    user_run_login_hooks(http_app(req), id, http_header(req, "X-Cart-Token"));
    return 0;
}

static int h_login(struct http_req *req)
{
    int rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"email", "password", NULL};
    const char *email, *password;
    if ((rc = http_json_only(req, body, allowed)) < 0 ||
        (rc = http_json_string(req, body, "email", true, 1, USER_EMAIL_MAX, &email)) < 0 ||
        (rc = http_json_string(req, body, "password", true, USER_PASSWORD_MIN, USER_PASSWORD_MAX,
                               &password)) < 0)
        return rc;
    struct user_session s;
    struct user_problem why = {0};
    rc = user_login(http_app(req), email, password, http_client_ip(req), &s, &why);
    if (rc < 0)
        return fail(req, rc, &why);
    int64_t id = s.user.id;
    if ((rc = reply_session(req, &s, 200)) < 0)
        return rc;
    user_run_login_hooks(http_app(req), id, http_header(req, "X-Cart-Token"));
    return 0;
}

static int h_logout(struct http_req *req)
{
    int rc = user_logout(http_app(req), http_auth(req)->token_hash);
    if (rc < 0)
        return rc;
    return http_reply_raw(req, 204, NULL, "", 0, false);
}

static int h_me(struct http_req *req)
{
    struct user u;
    int rc = user_get(http_app(req), http_auth(req)->user_id, &u);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_UNAUTHORIZED, NULL, "the account no longer exists");
    if (rc < 0)
        return rc;
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, 200, user_json(&u));
}

/* ---- internal route (caller: user_remote.c in processes without the user service) ---- */

/* Resolves a bearer token for another process. The token comes in the body, never in the
 * path or a query (access logs show those), and is never logged. 401 naming "token" when
 * it is unknown, expired or logged out; the caller caches only acceptances. */
static int h_int_verify(struct http_req *req)
{
    int rc = http_internal_guard(req);
    if (rc < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"token", NULL};
    const char *token;
    if ((rc = http_json_only(req, body, allowed)) < 0 ||
        (rc = http_json_string(req, body, "token", true, 1, 256, &token)) < 0)
        return rc;
    struct app_identity id;
    rc = user__verify_token(http_app(req), token, &id);
    if (rc == ERR_UNAUTHORIZED)
        return http_fail(req, rc, "token", "invalid or expired token");
    if (rc < 0)
        return rc;
    char uid[24];
    snprintf(uid, sizeof uid, "%lld", (long long)id.user_id);
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, 200,
                           json_pack("{s:s,s:s,s:s}", "user_id", uid, "role",
                                     id.admin ? "admin" : "customer", "tier",
                                     id.premium ? "premium" : "standard"));
}

static const struct http_route user_routes[] = {
    {"POST", "/api/v1/auth/register", h_register, ROUTE_OFFLOAD | ROUTE_LIMIT_STRICT},
    {"POST", "/api/v1/auth/login", h_login, ROUTE_OFFLOAD | ROUTE_LIMIT_STRICT},
    {"POST", "/api/v1/auth/logout", h_logout, ROUTE_AUTH},
    {"GET", "/api/v1/users/me", h_me, ROUTE_AUTH},
    {"POST", "/internal/v1/user/sessions/verify", h_int_verify, ROUTE_NOLIMIT},
    {NULL, NULL, NULL, 0},
};

const struct service service_user = {
    .name = "user",
    .routes = user_routes,
    .dbs = user__dbs,
    .init = user__init,
    .deinit = user__deinit,
    .init_remote = user__remote_init,
    .deinit_remote = user__remote_deinit,
    .command = "user",
    .run_command = user__command,
    .command_help = "manage accounts without the HTTP API: create, bulk-create",
    .cli = &user__cli,
};
