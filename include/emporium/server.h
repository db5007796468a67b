/* SPDX-License-Identifier: MIT */
/* server.h — the HTTP server over libmicrohttpd (used by main.c and tests).
 *
 * http_server_start() builds the route table from every selected service plus the
 * operational routes (/health, /ready, /metrics, /openapi.json), binds cfg->listen and
 * starts the worker thread pool. http_server_stop() stops accepting, lets in-flight requests
 * finish (at most cfg->drain_seconds) and frees everything. */
#ifndef EMPORIUM_SERVER_H
#define EMPORIUM_SERVER_H
#include "emporium/app.h"
#include "emporium/http.h"

struct http_server;

int http_server_start(struct http_server **out, struct app *app);
/* Returns the bound port (useful with port 0). */
int http_server_port(const struct http_server *s);
void http_server_stop(struct http_server *s);

/* The merged OpenAPI document (every *.openapi.json fragment); yours to json_decref. */
json_t *http_openapi_document(void);
/* Every route of every registered service (for tests that check the OpenAPI coverage):
 * calls fn for each, with the owning service's name. */
void http_routes_foreach(void (*fn)(const char *service, const struct http_route *r, void *ctx),
                         void *ctx);

#endif
