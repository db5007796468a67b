/* SPDX-License-Identifier: MIT */
/* inject.c — in-process requests through the real chain (see inject.h).
 *
 * An injected request is a struct http_req inside a struct inject_req, with conn == NULL.
 * request.c asks http__inject_value() for headers and query values of such a request, and
 * the chain itself is server.c's, reached through http__dispatch(). Cleanup mirrors the
 * server's completion callback: the request owns its response, its arena (added headers,
 * the parsed body, leases registered on it) and the error extras. Query values are percent-decoded the way
 * libmicrohttpd decodes them (%XX only; '+' stays '+'; a key without '=' has a NULL value),
 * and key lookups ignore case, as MHD_lookup_connection_value() does. */
#include "inject.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "http_internal.h"

struct inject_kv {
    char *name, *value; /* value may be NULL (a query key without '=') */
};

struct inject_req {
    struct http_req req; /* first: request.c hands us back a struct http_req * */
    struct inject_kv *headers, *args;
    int n_headers, n_args;
    char *path;
};

/* Makes room for one more pair; the new pair is zeroed. */
static struct inject_kv *kv_push(struct inject_kv **v, int *n)
{
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, …: grow to the next power of two */
        struct inject_kv *g = realloc(*v, (size_t)(*n ? *n * 2 : 1) * sizeof **v);
        if (!g)
            return NULL;
        *v = g;
    }
    struct inject_kv *kv = &(*v)[(*n)++];
    kv->name = kv->value = NULL;
    return kv;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string. A malformed escape stays as it is. */
static char *unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval((unsigned char)s[i + 1])) >= 0 &&
            (l = hexval((unsigned char)s[i + 2])) >= 0) {
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = 0;
    return out;
}

static int parse_query(struct inject_req *ir, const char *q)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 0) {
            const char *eq = memchr(q, '=', len);
            struct inject_kv *kv = kv_push(&ir->args, &ir->n_args);
            if (!kv || !(kv->name = unescape(q, eq ? (size_t)(eq - q) : len)))
                return ERR_NOMEM;
            if (eq) {
                kv->value = unescape(eq + 1, len - (size_t)(eq + 1 - q));
                if (!kv->value)
                    return ERR_NOMEM;
            }
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

static int parse_headers(struct inject_req *ir, const char *const *headers)
{
    for (const char *const *h = headers; h && *h; h++) {
        const char *colon = strchr(*h, ':');
        if (!colon)
            return ERR_INVALID;
        struct inject_kv *kv = kv_push(&ir->headers, &ir->n_headers);
        if (!kv)
            return ERR_NOMEM;
        kv->name = strndup(*h, (size_t)(colon - *h));
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        kv->value = strdup(v);
        if (!kv->name || !kv->value)
            return ERR_NOMEM;
    }
    return 0;
}

const char *http__inject_value(const struct http_req *req, int header, const char *name)
{
    const struct inject_req *ir = (const struct inject_req *)(const void *)req;
    const struct inject_kv *kv = header ? ir->headers : ir->args;
    int n = header ? ir->n_headers : ir->n_args;
    for (int i = 0; i < n; i++)
        if (!strcasecmp(kv[i].name, name))
            return kv[i].value;
    return NULL;
}

static void kv_free(struct inject_kv *kv, int n)
{
    for (int i = 0; i < n; i++) {
        free(kv[i].name);
        free(kv[i].value);
    }
    free(kv);
}

/* The server's completion callback, minus logging and metrics. */
static void inject_req_free(struct inject_req *ir)
{
    struct http_req *req = &ir->req;
    if (req->resp_owned)
        free(req->resp_data);
    arena_free(req->arena); /* NULL when the request could not be built */
    json_decref(req->err_extra);
    buf_free(&req->body);
    kv_free(ir->headers, ir->n_headers);
    kv_free(ir->args, ir->n_args);
    free(ir->path);
    free(ir);
}

static int take_response(struct http_req *req, struct http_inject_resp *out)
{
    out->status = req->status;
    out->len = req->resp_len;
    out->body = malloc(req->resp_len + 1);
    struct buf h = BUF_INIT(0);
    if (req->content_type)
        buf_printf(&h, "Content-Type: %s\n", req->content_type);
    buf_printf(&h, "X-Request-Id: %s\n", req->request_id);
    for (int i = 0; i < req->n_headers; i++)
        buf_printf(&h, "%s: %s\n", req->headers[i].name, req->headers[i].value);
    if (h.len == 0)
        buf_puts(&h, "");
    out->headers = buf_steal(&h, NULL);
    if (!out->body || !out->headers) {
        http_inject_resp_free(out);
        return ERR_NOMEM;
    }
    if (req->resp_len)
        memcpy(out->body, req->resp_data, req->resp_len);
    out->body[req->resp_len] = 0;
    return 0;
}

int http_inject_req(struct app *app, const char *method, const char *url,
                    const char *const *headers, const char *body, size_t len,
                    struct http_inject_resp *out)
{
    memset(out, 0, sizeof *out);
    struct inject_req *ir = calloc(1, sizeof *ir);
    if (!ir)
        return ERR_NOMEM;
    struct http_req *req = &ir->req;
    const struct config *cfg = app_config(app);
    const char *q = strchr(url, '?');
    ir->path = unescape(url, q ? (size_t)(q - url) : strlen(url));
    int rc = ir->path ? 0 : ERR_NOMEM;
    if (rc == 0 && q)
        rc = parse_query(ir, q + 1);
    if (rc == 0)
        rc = parse_headers(ir, headers);
    if (rc == 0 && !(req->arena = arena_new()))
        rc = ERR_NOMEM;
    if (rc < 0) {
        inject_req_free(ir);
        return rc;
    }
    req->start_us = http__now_us();
    req->conn = NULL;
    req->app = app;
    req->url = ir->path;
    req->method = method;
    req->body = BUF_INIT(cfg->max_body);
    snprintf(req->client_ip, sizeof req->client_ip, "127.0.0.1");
    snprintf(req->request_id, sizeof req->request_id, "inject");
    snprintf(req->traceparent, sizeof req->traceparent,
             "00-00000000000000000000000000000001-0000000000000001-01");
    if (len) {
        buf_append(&req->body, body, len);
        if (req->body.err) {
            req->body_too_big = true;
            buf_free(&req->body);
        }
    }
    http__dispatch(req);
    rc = take_response(req, out);
    inject_req_free(ir);
    return rc;
}

void http_inject_resp_free(struct http_inject_resp *r)
{
    free(r->body);
    free(r->headers);
    r->body = r->headers = NULL;
    r->len = 0;
}

int http_inject(struct app *app, const char *method, const char *url, const char *const *headers,
                const char *body, size_t len, int *status, char **resp_body)
{
    struct http_inject_resp r;
    int rc = http_inject_req(app, method, url, headers, body, len, &r);
    if (rc < 0)
        return rc;
    if (status)
        *status = r.status;
    if (resp_body) {
        *resp_body = r.body;
        r.body = NULL;
    }
    http_inject_resp_free(&r);
    return 0;
}

int http_inject_open(struct app *app)
{
    int rc = http__router_build(app);
    if (rc < 0)
        http__router_free();
    return rc;
}

void http_inject_close(void) { http__router_free(); }
