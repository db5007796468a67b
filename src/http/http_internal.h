/* SPDX-License-Identifier: MIT */
/* http_internal.h — the request object and what the HTTP core's files share.
 *
 * One struct http_req per request, allocated on libmicrohttpd's first callback and freed in
 * its completion callback, together with the request's arena (http_arena()). Strings in it
 * are either owned by MHD for the connection's life (url, method, header values), copied
 * into the request, or allocated from its arena (response headers). The parsed JSON body is
 * released by an arena cleanup. */
#ifndef EMPORIUM_HTTP_INTERNAL_H
#define EMPORIUM_HTTP_INTERNAL_H
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>

#include "emporium/arena.h"
#include "emporium/buf.h"
#include "emporium/http.h"
#include "emporium/trace.h"

#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_RESP_HEADERS 24

struct http_route_entry; /* router.c */

struct http_req {
    struct MHD_Connection *conn;
    struct app *app;
    struct arena *arena;
    const char *method;
    const char *url;
    const struct http_route_entry *route;
    int n_params;
    struct {
        const char *name;
        size_t name_len;
        char value[128];
    } params[HTTP_MAX_PARAMS];

    struct buf body;
    json_t *json; /* parsed body, released by an arena cleanup */
    bool body_too_big;
    bool headers_checked;

    struct http_auth auth;
    char client_ip[48];
    char request_id[129];   /* a client's X-Request-Id is echoed up to 128 characters */
    char traceparent[56];   /* the server span's: continues the caller's trace */
    struct trace_span span; /* the server span (recorded only when tracing is on) */

    /* response */
    int status;
    const char *content_type;
    char *resp_data;
    size_t resp_len;
    bool resp_owned;
    int n_headers;
    struct {
        const char *name;  /* arena */
        const char *value; /* arena */
    } headers[HTTP_MAX_RESP_HEADERS];

    /* error details for errmap */
    char err_field[64];
    char err_message[256];
    char err_code_name[48];
    json_t *err_extra;

    int64_t start_us;

    const char *allow; /* arena: Allow value for 405 / OPTIONS */
    bool token_given;  /* the request carried a bearer token or a cart token */
    int offload;       /* 0, or 1 once handed to the slow-work pool (or http_suspend()ed) */
    http_then_fn then; /* http_suspend(): answers once resumed */
    void *then_arg;
    _Atomic bool offload_done;
};

struct http_route_entry {
    const char *service;
    struct http_route route;
    int n_segs;
    const char *segs[12];
    size_t seg_lens[12];
    int index; /* into the metrics table */
    /* Query parameters the OpenAPI document gives this operation; others are refused.
     * query_documented false: the document does not describe the route, nothing is checked. */
    bool query_documented;
    int n_query;
    char **query;
};

/* router.c */
int http__router_build(struct app *app);
void http__router_free(void);
/* Finds the route; ERR_NOTFOUND when no path matches, ERR_METHOD when only the method
 * differs. On success fills req->route and req->params. */
int http__route(struct http_req *req, const char *path);
int http__route_count(void);
/* Writes the methods of every route whose pattern matches path as an Allow value ("GET,
 * HEAD, POST, OPTIONS"); returns how many routes matched (0: no such path). */
int http__route_allow(const char *path, char *out, size_t cap);
/* Whether `name` is a documented query parameter of the request's route. */
bool http__route_query_allowed(const struct http_route_entry *e, const char *name);
const struct http_route_entry *http__route_at(int i);

/* errmap.c: sets the JSON error response for code. */
void http__error_respond(struct http_req *req, int code);
int http__err_status(int code);

/* reqmetrics.c */
int http__metrics_init(int n_routes);
void http__metrics_free(void);
void http__metrics_observe(int route_index, int status, int64_t dur_us);
void http__metrics_inflight(int delta);
/* Set once a stop began: /ready answers 503 and responses close their connection. */
extern _Atomic bool http__draining;
void http__metrics_write(struct buf *out);

/* offload.c: the slow-work pool for ROUTE_OFFLOAD handlers. */
struct http_offload;
int http__offload_new(struct http_offload **out, int threads, int queue_max,
                      void (*run)(struct http_req *req));
/* Queues req for run(); before_queue(req) is called under the pool's lock just before the
 * job becomes visible to the workers (the server suspends the connection there). Returns 0,
 * ERR_BUSY when the pool and its queue are full, ERR_UNAVAILABLE when stopping, ERR_NOMEM. */
int http__offload_submit(struct http_offload *o, struct http_req *req,
                         void (*before_queue)(struct http_req *req));
void http__offload_stats(struct http_offload *o, int *running, int *waiting);
/* Runs what is queued, joins the threads, frees. NULL is a no-op. */
void http__offload_free(struct http_offload *o);

/* ops.c: operational routes */
extern const struct http_route http__ops_routes[];

int64_t http__now_us(void);

/* server.c: runs the chain and the error mapping (no response is queued). inject.c: the
 * header (header != 0) or query value of an injected request (conn == NULL). */
void http__dispatch(struct http_req *req);
const char *http__inject_value(const struct http_req *req, int header, const char *name);

#endif
