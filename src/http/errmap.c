/* SPDX-License-Identifier: MIT */
/* errmap.c — the only place an error code becomes an HTTP status and a JSON body.
 *
 * Body: {"error": {"code": "...", "message": "...", "field": "..."}} with `field` only when a
 * handler named one, plus any extra members the handler attached (e.g. product_id). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "emporium/err.h"
#include "http_internal.h"

int http__err_status(int code)
{
    switch (code) {
    case ERR_INVALID:
        return 400;
    case ERR_UNAUTHORIZED:
        return 401;
    case ERR_PAYMENT:
        return 402;
    case ERR_FORBIDDEN:
        return 403;
    case ERR_NOTFOUND:
        return 404;
    case ERR_METHOD:
        return 405;
    case ERR_CONFLICT:
        return 409;
    case ERR_TOOBIG:
        return 413;
    case ERR_UNSUPPORTED:
        return 415;
    case ERR_RATELIMITED:
        return 429;
    case ERR_HEADERS_TOOBIG:
        return 431;
    case ERR_UNAVAILABLE:
        return 503;
    case ERR_BUSY:
        return 503;
    case ERR_NOT_MODIFIED:
        return 304;
    default:
        return 500;
    }
}

/* The error's strings may quote a client's bytes (jansson's parse errors do) or be cut
 * mid-character by their fixed buffers; json_string() refuses invalid UTF-8, which would
 * drop the member. Such a string is sent with its non-ASCII bytes as '?'. */
static json_t *err_text(const char *s)
{
    json_t *j = json_string(s);
    char tmp[256];
    size_t n = 0;
    if (j)
        return j;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 1 < sizeof tmp; p++)
        tmp[n++] = *p < 0x80 ? (char)*p : '?';
    tmp[n] = 0;
    return json_string(tmp);
}

void http__error_respond(struct http_req *req, int code)
{
    int status = http__err_status(code);
    if (status == 304) {
        http_reply_raw(req, 304, NULL, "", 0, false);
        return;
    }
    json_t *err = req->err_extra ? req->err_extra : json_object();
    req->err_extra = NULL;
    json_object_set_new(err, "code",
                        err_text(req->err_code_name[0] ? req->err_code_name : err_name(code)));
    json_object_set_new(err, "message",
                        err_text(req->err_message[0] ? req->err_message : err_str(code)));
    if (req->err_field[0])
        json_object_set_new(err, "field", err_text(req->err_field));
    if (status == 503 || status == 429) {
        bool have = false;
        for (int i = 0; i < req->n_headers; i++)
            if (!strcasecmp(req->headers[i].name, "Retry-After"))
                have = true;
        if (!have)
            http_add_header(req, "Retry-After", "1");
    }
    if (status == 405 && req->allow)
        http_add_header(req, "Allow", req->allow); /* the path's real methods (server.c) */
    http_reply_json(req, status, json_pack("{s:o}", "error", err));
}
