/* SPDX-License-Identifier: MIT */
/* request.c — the handler-facing request API (emporium/http.h): accessors, replies, errors
 * and the JSON field validators that name the field at fault. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emporium/app.h"
#include "emporium/upstream.h"
#include "emporium/err.h"
#include "http_internal.h"

const char *http_method(const struct http_req *req) { return req->method; }
const char *http_path(const struct http_req *req) { return req->url; }
const struct http_auth *http_auth(const struct http_req *req) { return &req->auth; }
const char *http_client_ip(const struct http_req *req) { return req->client_ip; }
const char *http_request_id(const struct http_req *req) { return req->request_id; }
struct app *http_app(const struct http_req *req) { return req->app; }
struct arena *http_arena(struct http_req *req) { return req->arena; }

const char *http_param(const struct http_req *req, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < req->n_params; i++)
        if (req->params[i].name_len == n && !memcmp(req->params[i].name, name, n))
            return req->params[i].value;
    return NULL;
}

const char *http_query(const struct http_req *req, const char *name)
{
    if (!req->conn) /* injected (inject.c) */
        return http__inject_value(req, 0, name);
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(const struct http_req *req, const char *name)
{
    if (!req->conn) /* injected (inject.c) */
        return http__inject_value(req, 1, name);
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_body(const struct http_req *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.p ? req->body.p : "";
}

static void json_decref_cb(void *j) { json_decref(j); }

json_t *http_json_body(struct http_req *req, int *err)
{
    if (req->json)
        return req->json;
    const char *ct = http_header(req, "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        *err = http_fail(req, ERR_UNSUPPORTED, NULL, "content type must be application/json");
        return NULL;
    }
    if (req->body.len == 0) {
        *err = http_fail(req, ERR_INVALID, "body", "a JSON object is required");
        return NULL;
    }
    json_error_t je;
    /* jansson rejects invalid UTF-8 and NUL bytes in strings by default; duplicate keys are
     * refused too (which one would win is ambiguous). Any top-level value is decoded so a
     * non-object gets the clearer "must be a JSON object". */
    json_t *j =
        json_loadb(req->body.p, req->body.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!j) {
        *err =
            http_fail_code(req, ERR_INVALID, "invalid_json", NULL, "malformed JSON: %s", je.text);
        return NULL;
    }
    if (arena_defer(req->arena, json_decref_cb, j) < 0) {
        json_decref(j);
        *err = ERR_NOMEM;
        return NULL;
    }
    if (!json_is_object(j)) {
        *err = http_fail(req, ERR_INVALID, "body", "must be a JSON object");
        return NULL;
    }
    req->json = j;
    return j;
}

int http_add_header(struct http_req *req, const char *name, const char *value)
{
    if (!name || !value) /* e.g. an arena_printf() that failed */
        return ERR_NOMEM;
    if (req->n_headers == HTTP_MAX_RESP_HEADERS)
        return ERR_TOOBIG;
    char *n = arena_strdup(req->arena, name), *v = arena_strdup(req->arena, value);
    if (!n || !v)
        return ERR_NOMEM;
    req->headers[req->n_headers].name = n;
    req->headers[req->n_headers].value = v;
    req->n_headers++;
    return 0;
}

static void resp_clear(struct http_req *req)
{
    if (req->resp_owned)
        free(req->resp_data);
    req->resp_data = NULL;
    req->resp_len = 0;
    req->resp_owned = false;
}

int http_reply_raw(struct http_req *req, int status, const char *content_type, const char *data,
                   size_t len, bool copy)
{
    resp_clear(req);
    req->status = status;
    req->content_type = content_type;
    if (copy) {
        req->resp_data = malloc(len ? len : 1);
        if (!req->resp_data) {
            req->status = 500;
            return ERR_NOMEM;
        }
        memcpy(req->resp_data, data, len);
        req->resp_owned = true;
    } else {
        req->resp_data = (char *)data;
    }
    req->resp_len = len;
    return 0;
}

int http_reply_json(struct http_req *req, int status, json_t *body)
{
    if (!body) {
        req->status = 500;
        return ERR_NOMEM;
    }
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s) {
        req->status = 500;
        return ERR_NOMEM;
    }
    resp_clear(req);
    req->status = status;
    req->content_type = "application/json";
    req->resp_data = s;
    req->resp_len = strlen(s);
    req->resp_owned = true;
    return 0;
}

int http_reply_created(struct http_req *req, const char *location, json_t *body)
{
    int rc = http_add_header(req, "Location", location);
    if (rc < 0) {
        json_decref(body);
        return rc;
    }
    return http_reply_json(req, 201, body);
}

static void set_message(struct http_req *req, const char *fmt, va_list ap)
{
    if (fmt)
        vsnprintf(req->err_message, sizeof req->err_message, fmt, ap);
}

int http_fail(struct http_req *req, int code, const char *field, const char *fmt, ...)
{
    if (field)
        snprintf(req->err_field, sizeof req->err_field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    set_message(req, fmt, ap);
    va_end(ap);
    return code;
}

int http_fail_code(struct http_req *req, int code, const char *machine_code, json_t *extra,
                   const char *fmt, ...)
{
    if (machine_code)
        snprintf(req->err_code_name, sizeof req->err_code_name, "%s", machine_code);
    if (extra) {
        json_decref(req->err_extra);
        req->err_extra = extra;
    }
    va_list ap;
    va_start(ap, fmt);
    set_message(req, fmt, ap);
    va_end(ap);
    return code;
}

int http_query_limit(struct http_req *req, int def, int max, int *out)
{
    const char *v = http_query(req, "limit");
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < 1 || n > max)
        return http_fail(req, ERR_INVALID, "limit", "must be an integer from 1 to %d", max);
    *out = (int)n;
    return 0;
}

int http_json_only(struct http_req *req, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach (obj, key, val) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, key)) {
                ok = true;
                break;
            }
        if (!ok)
            return http_fail(req, ERR_INVALID, key, "unknown field");
    }
    return 0;
}

/* Counts UTF-8 code points (the input is valid UTF-8: jansson checked it). */
static size_t utf8_len(const char *s, size_t bytes)
{
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

int http_json_string(struct http_req *req, json_t *obj, const char *field, bool required,
                     size_t min_len, size_t max_len, const char **out)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (required)
            return http_fail(req, ERR_INVALID, field, "is required");
        return 0;
    }
    if (!json_is_string(v))
        return http_fail(req, ERR_INVALID, field, "must be a string");
    size_t len = utf8_len(json_string_value(v), json_string_length(v));
    if (len < min_len || len > max_len)
        return http_fail(req, ERR_INVALID, field, "must be %zu to %zu characters long", min_len,
                         max_len);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return http_fail(req, ERR_INVALID, field, "must not contain NUL characters");
    *out = json_string_value(v);
    return 0;
}

int http_json_int(struct http_req *req, json_t *obj, const char *field, bool required, int64_t min,
                  int64_t max, int64_t *out)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (required)
            return http_fail(req, ERR_INVALID, field, "is required");
        return 0;
    }
    if (!json_is_integer(v))
        return http_fail(req, ERR_INVALID, field, "must be an integer");
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return http_fail(req, ERR_INVALID, field, "must be from %lld to %lld", (long long)min,
                         (long long)max);
    *out = n;
    return 0;
}

int http_internal_guard(struct http_req *req)
{
    int rc =
        upstream_internal_check(app_config(http_app(req)), http_header(req, UPSTREAM_TOKEN_HEADER));
    if (rc == ERR_UNAUTHORIZED)
        return http_fail(req, rc, UPSTREAM_TOKEN_HEADER, "the internal token is required");
    if (rc < 0)
        return http_fail(req, rc, UPSTREAM_TOKEN_HEADER, "the internal token is not accepted");
    return 0;
}
