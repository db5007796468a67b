/* SPDX-License-Identifier: MIT */
/* bus.c — the bus port's front: the consumer registry, in-process broadcasts, the partition
 * of a key and the CloudEvents envelope parser (see emporium/bus.h).
 *
 * Subscriptions and listeners are made at start-up (from services' init()) and then only
 * read, so reading them takes no lock: each count is published with release semantics after
 * its entry is written. */
#include "emporium/bus.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "emporium/err.h"
#include "bus_internal.h"

static struct bus__sub subs[BUS_MAX_SUBS];
static _Atomic int n_subs;

static struct {
    char consumer[32];
    bus_flush_fn fn;
    void *ctx;
} flushes[BUS_MAX_SUBS];
static _Atomic int n_flushes;

static struct {
    char topic[48];
    bus_local_fn fn;
    void *ctx;
} listeners[BUS_MAX_SUBS];
static _Atomic int n_listeners;

static bool name_ok(const char *s, size_t cap)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= cap)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '_' || s[i] == '.'))
            return false;
    return true;
}

int bus_subscribe(const char *consumer, const char *topic, bus_handler_fn fn, void *ctx)
{
    return bus_subscribe_types(consumer, topic, NULL, fn, ctx);
}

int bus_subscribe_types(const char *consumer, const char *topic, const char *const *types,
                        bus_handler_fn fn, void *ctx)
{
    int n = atomic_load(&n_subs);
    if (!name_ok(consumer, sizeof subs[0].consumer) || !name_ok(topic, sizeof subs[0].topic) || !fn)
        return ERR_INVALID;
    if (n == BUS_MAX_SUBS)
        return ERR_NOMEM;
    strcpy(subs[n].consumer, consumer);
    strcpy(subs[n].topic, topic);
    subs[n].fn = fn;
    subs[n].ctx = ctx;
    subs[n].types = types;
    subs[n].broadcast = false;
    atomic_store_explicit(&n_subs, n + 1, memory_order_release);
    return 0;
}

int bus_subscribe_broadcast(const char *consumer, const char *topic, bus_handler_fn fn, void *ctx)
{
    /* One instance id per process: every broadcast group of the process shares it. */
    static char instance[13];
    if (!instance[0]) {
        unsigned char r[6];
        randombytes_buf(r, sizeof r);
        sodium_bin2hex(instance, sizeof instance, r, sizeof r);
    }
    char group[32];
    int len = snprintf(group, sizeof group, "%s" BUS_BROADCAST_MARK "%s", consumer ? consumer : "",
                       instance);
    if (!name_ok(consumer, 12) || len < 0 || (size_t)len >= sizeof group)
        return ERR_INVALID;
    int rc = bus_subscribe(group, topic, fn, ctx);
    if (rc == 0)
        subs[atomic_load(&n_subs) - 1].broadcast = true;
    return rc;
}

int bus_subscribe_flush(const char *consumer, bus_flush_fn fn, void *ctx)
{
    int n = atomic_load(&n_flushes);
    if (!name_ok(consumer, sizeof flushes[0].consumer) || !fn)
        return ERR_INVALID;
    for (int i = 0; i < n; i++)
        if (!strcmp(flushes[i].consumer, consumer))
            return ERR_CONFLICT;
    if (n == BUS_MAX_SUBS)
        return ERR_NOMEM;
    strcpy(flushes[n].consumer, consumer);
    flushes[n].fn = fn;
    flushes[n].ctx = ctx;
    atomic_store_explicit(&n_flushes, n + 1, memory_order_release);
    return 0;
}

int bus__flush(const char *consumer)
{
    int n = atomic_load_explicit(&n_flushes, memory_order_acquire), rc = 0;
    for (int i = 0; i < n; i++)
        if (!consumer || !strcmp(flushes[i].consumer, consumer)) {
            int e = flushes[i].fn(flushes[i].ctx);
            if (e < 0 && rc == 0)
                rc = e;
        }
    return rc;
}

int bus__subs(const struct bus__sub **out)
{
    *out = subs;
    return atomic_load_explicit(&n_subs, memory_order_acquire);
}

bool bus_consumer_known(const char *consumer)
{
    int n = atomic_load_explicit(&n_subs, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (!strcmp(subs[i].consumer, consumer))
            return true;
    return false;
}

void bus_consumer_names(char *buf, size_t cap)
{
    int n = atomic_load_explicit(&n_subs, memory_order_acquire);
    size_t len = 0;
    if (cap)
        buf[0] = 0;
    for (int i = 0; i < n; i++) {
        bool seen = subs[i].broadcast; /* not for --consumers: every process runs its own */
        for (int j = 0; j < i && !seen; j++)
            seen = !strcmp(subs[i].consumer, subs[j].consumer);
        if (seen)
            continue;
        int w = snprintf(buf + len, cap - len, "%s%s", len ? "," : "", subs[i].consumer);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
    }
}

int bus_listen(const char *topic, bus_local_fn fn, void *ctx)
{
    int n = atomic_load(&n_listeners);
    if (n == BUS_MAX_SUBS || strlen(topic) >= sizeof listeners[0].topic)
        return ERR_NOMEM;
    strcpy(listeners[n].topic, topic);
    listeners[n].fn = fn;
    listeners[n].ctx = ctx;
    atomic_store_explicit(&n_listeners, n + 1, memory_order_release);
    return 0;
}

int bus_broadcast(const char *topic, const char *key, const char *payload, size_t len)
{
    int n = atomic_load_explicit(&n_listeners, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (!strcmp(listeners[i].topic, topic))
            listeners[i].fn(listeners[i].ctx, topic, key, payload, len);
    return 0;
}

void bus_reset(void)
{
    atomic_store(&n_subs, 0);
    atomic_store(&n_flushes, 0);
    atomic_store(&n_listeners, 0);
}

int bus_partition_of(const char *key, size_t len, int partitions)
{
    /* FNV-1a: stable across processes and versions (the log stores the partition). */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 16777619u;
    }
    return partitions > 0 ? (int)(h % (uint32_t)partitions) : 0;
}

/* "2026-12-06T05:01:02.345Z" (or without the fraction) to Unix ms; 0 when unparsable. */
int64_t bus_time_parse(const char *s)
{
    struct tm tm = {0};
    unsigned ms = 0;
    int y, mo, d, h, mi, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return 0;
    if (s[n] == '.') {
        int digits = 0;
        for (const char *p = s + n + 1; *p >= '0' && *p <= '9'; p++)
            if (digits++ < 3)
                ms = ms * 10 + (unsigned)(*p - '0');
        while (digits > 0 && digits < 3) {
            ms *= 10;
            digits++;
        }
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ---- the type of an envelope without parsing it --------------------------------------- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at the opening quote: the end of the string (after its closing quote), or NULL; *plain
 * false when it holds an escape. */
static const char *skip_string(const char *p, const char *end, bool *plain)
{
    *plain = true;
    for (p++; p < end; p++) {
        if (*p == '"')
            return p + 1;
        if (*p == '\\') {
            *plain = false;
            p++;
        } else if ((unsigned char)*p < 0x20) {
            return NULL;
        }
    }
    return NULL;
}

/* p at a value: the end of it, or NULL. Nested objects and arrays are skipped by depth,
 * strings in them whole; what is not a string or a bracket is skipped up to the next , } ]
 * (numbers, true, false, null: their syntax is json_loadb's business). */
static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;
    bool plain;
    do {
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '"') {
            if (!(p = skip_string(p, end, &plain)))
                return NULL;
        } else if (*p == '{' || *p == '[') {
            if (++depth > 64)
                return NULL;
            p++;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0)
                return NULL;
            depth--;
            p++;
        } else if (*p == ',' || *p == ':') {
            if (depth == 0)
                return NULL;
            p++;
        } else {
            while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
                   *p != '\t' && *p != '\r')
                p++;
        }
    } while (depth > 0);
    return p;
}

int bus_event_type(const char *json, size_t len, const char **type, size_t *type_len)
{
    const char *p = json, *end = json + len;
    bool plain;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return ERR_INVALID;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return ERR_INVALID; /* also an empty object: no type */
        const char *key = p + 1, *after = skip_string(p, end, &plain);
        if (!after)
            return ERR_INVALID;
        bool is_type = plain && after - key - 1 == 4 && !memcmp(key, "type", 4);
        p = skip_ws(after, end);
        if (p >= end || *p++ != ':')
            return ERR_INVALID;
        p = skip_ws(p, end);
        if (is_type) {
            if (p >= end || *p != '"')
                return ERR_INVALID;
            const char *v = p + 1, *vend = skip_string(p, end, &plain);
            if (!vend || !plain)
                return ERR_INVALID;
            *type = v;
            *type_len = (size_t)(vend - v - 1);
            return 0;
        }
        if (!(p = skip_value(p, end)))
            return ERR_INVALID;
        p = skip_ws(p, end);
        if (p >= end || *p != ',')
            return ERR_INVALID; /* '}': the object ended without a type */
        p++;
    }
}

int bus_event_parse(const struct bus_msg *m, struct bus_event *out)
{
    memset(out, 0, sizeof *out);
    out->msg = m;
    json_t *doc = json_loadb(m->value, m->len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return ERR_INVALID;
    }
    out->doc = doc;
    const char *spec = json_string_value(json_object_get(doc, "specversion"));
    out->id = json_string_value(json_object_get(doc, "id"));
    out->type = json_string_value(json_object_get(doc, "type"));
    out->source = json_string_value(json_object_get(doc, "source"));
    out->subject = json_string_value(json_object_get(doc, "subject"));
    out->time = json_string_value(json_object_get(doc, "time"));
    out->traceparent = json_string_value(json_object_get(doc, "traceparent"));
    out->data = json_object_get(doc, "data");
    out->at_ms = bus_time_parse(out->time);
    if (!spec || strcmp(spec, "1.0") != 0 || !out->id || !out->type || !out->source) {
        json_decref(doc);
        out->doc = NULL;
        return ERR_INVALID;
    }
    return 0;
}

void bus__pause_ms(pthread_mutex_t *mu, pthread_cond_t *cv, atomic_bool *stop, int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(mu);
    while (!atomic_load(stop) && pthread_cond_timedwait(cv, mu, &t) == 0)
        ;
    pthread_mutex_unlock(mu);
}
