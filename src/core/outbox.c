/* SPDX-License-Identifier: MIT */
/* outbox.c — writes domain events into the caller's transaction (see emporium/outbox.h).
 *
 * Every state change writes one of these, so the stored document is written straight into
 * one buffer instead of packing an envelope object and running jansson's json_dumps over
 * it (which cost ~17 % of an order's instructions for 7 events). The output is compact JSON
 * with the same escaping as json_dumps(JSON_COMPACT): UTF-8 passes through, '"', '\' and
 * control characters are escaped. */
#include "emporium/outbox.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/trace.h"

struct jw {
    char *p;
    size_t len, cap;
    bool oom;
};

static bool jw_reserve(struct jw *w, size_t more)
{
    if (w->oom)
        return false;
    if (w->cap - w->len >= more)
        return true;
    size_t cap = w->cap ? w->cap : 512;
    while (cap - w->len < more)
        cap *= 2;
    char *p = realloc(w->p, cap);
    if (!p) {
        w->oom = true;
        return false;
    }
    w->p = p;
    w->cap = cap;
    return true;
}

static void jw_raw(struct jw *w, const char *s, size_t n)
{
    if (jw_reserve(w, n + 1)) {
        memcpy(w->p + w->len, s, n);
        w->len += n;
    }
}

static void jw_str(struct jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF"; /* as jansson: \u001F */
    if (!jw_reserve(w, n * 6 + 3))                /* worst case: every byte \u00XX */
        return;
    char *o = w->p + w->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            *o++ = (char)ch;
            continue;
        }
        *o++ = '\\';
        switch (ch) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o++ = '"';
    w->len = (size_t)(o - w->p);
}

static void jw_cstr(struct jw *w, const char *s) { jw_str(w, s, strlen(s)); }

static void jw_int(struct jw *w, json_int_t v)
{
    char tmp[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (!jw_reserve(w, n + 2))
        return;
    if (v < 0)
        w->p[w->len++] = '-';
    while (n)
        w->p[w->len++] = tmp[--n];
}

static void jw_value(struct jw *w, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *m;
        bool first = true;
        jw_raw(w, "{", 1);
        json_object_foreach (v, k, m) {
            if (!first)
                jw_raw(w, ",", 1);
            first = false;
            jw_cstr(w, k);
            jw_raw(w, ":", 1);
            jw_value(w, m);
        }
        jw_raw(w, "}", 1);
        break;
    }
    case JSON_ARRAY:
        jw_raw(w, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                jw_raw(w, ",", 1);
            jw_value(w, json_array_get(v, i));
        }
        jw_raw(w, "]", 1);
        break;
    case JSON_STRING:
        jw_str(w, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        jw_int(w, json_integer_value(v));
        break;
    case JSON_TRUE:
        jw_raw(w, "true", 4);
        break;
    case JSON_FALSE:
        jw_raw(w, "false", 5);
        break;
    case JSON_REAL: { /* not in any event today: let jansson format it */
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (t)
            jw_raw(w, t, strlen(t));
        else
            w->oom = true;
        free(t);
        break;
    }
    default:
        jw_raw(w, "null", 4);
        break;
    }
}

/* The thread's trace context is trace.c's: this name stays for the callers. */
void outbox_trace_set(const char *traceparent) { trace_context_set(traceparent); }

/* The event's traceparent: the current span's (a request's server span, a consumer's span),
 * so the consumer's span of this event is its child; a new trace when there is none. */
static void trace_make(char out[56])
{
    const char *cur = trace_context();
    if (cur[0]) {
        memcpy(out, cur, 56);
        return;
    }
    struct trace_span root;
    trace_span_begin(&root, TRACE_PRODUCER, NULL, NULL);
    memcpy(out, root.traceparent, 56);
    trace_span_discard(&root);
}

static _Atomic uint64_t rows_made;

uint64_t outbox_rows_made(void) { return atomic_load_explicit(&rows_made, memory_order_relaxed); }

int outbox_row_make(struct outbox_row *r, unsigned shard, const char *topic,
                    const char *aggregate_type, int64_t aggregate_id, const char *event_type,
                    json_t *payload)
{
    atomic_fetch_add_explicit(&rows_made, 1, memory_order_relaxed);
    memset(r, 0, sizeof *r);
    int64_t id = id_new(shard), now = now_ms();
    char idbuf[21], ts[32], tp[56], source[64];
    id_format(id, idbuf);
    id_format(aggregate_id, r->aggregate_id);
    trace_make(tp);
    /* source: "/emporium/<service>", the service being the topic without "-events". */
    size_t tl = strlen(topic);
    if (tl > 7 && !strcmp(topic + tl - 7, "-events"))
        tl -= 7;
    snprintf(source, sizeof source, "/emporium/%.*s", (int)(tl < 40 ? tl : 40), topic);
    /* CloudEvents 1.0, structured JSON, in this member order (docs/events.md). */
    struct jw w = {0};
    jw_raw(&w, "{\"specversion\":\"1.0\",\"id\":", 26);
    jw_cstr(&w, idbuf);
    jw_raw(&w, ",\"source\":", 10);
    jw_cstr(&w, source);
    jw_raw(&w, ",\"type\":", 8);
    jw_cstr(&w, event_type);
    jw_raw(&w, ",\"subject\":", 11);
    jw_cstr(&w, r->aggregate_id);
    jw_raw(&w, ",\"time\":", 8);
    jw_cstr(&w, time_format(now, ts));
    jw_raw(&w, ",\"datacontenttype\":\"application/json\",\"traceparent\":", 52);
    jw_cstr(&w, tp);
    jw_raw(&w, ",\"aggregatetype\":", 17);
    jw_cstr(&w, aggregate_type);
    jw_raw(&w, ",\"dataschemaversion\":\"1\",\"data\":", 32);
    if (payload)
        jw_value(&w, payload);
    else
        jw_raw(&w, "null", 4);
    jw_raw(&w, "}", 1);
    if (w.oom || !w.p) {
        free(w.p);
        return ERR_NOMEM;
    }
    w.p[w.len] = '\0'; /* every jw_* reserved one byte more */
    r->payload = w.p;
    r->args[0] = DB_INT(id);
    r->args[1] = DB_TEXT(topic);
    r->args[2] = DB_TEXT(aggregate_type);
    r->args[3] = DB_TEXT(r->aggregate_id);
    r->args[4] = DB_TEXT(event_type);
    r->args[5] = DB_TEXT(r->payload);
    r->args[6] = DB_INT(now);
    return 0;
}

void outbox_row_free(struct outbox_row *r)
{
    free(r->payload);
    r->payload = NULL;
}

int outbox_add(struct db_conn *c, unsigned shard, const char *topic, const char *aggregate_type,
               int64_t aggregate_id, const char *event_type, json_t *payload)
{
    struct outbox_row r;
    int rc = outbox_row_make(&r, shard, topic, aggregate_type, aggregate_id, event_type, payload);
    if (rc < 0)
        return rc;
    rc = db_query(c, OUTBOX_INSERT, OUTBOX_NARGS, r.args, NULL);
    outbox_row_free(&r);
    return rc < 0 ? rc : 0;
}
