/* SPDX-License-Identifier: MIT */
/* log.c — log lines on stderr, JSON or text (see log.h).
 *
 * Each line is built in a bounded buffer and written with one write(2), so lines from
 * different threads never interleave and no lock is taken. The level and the format are
 * process-wide, set once by main.c before any thread starts. JSON strings are escaped by the
 * one escaper, buf_json_escape(). */
#include "emporium/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "emporium/buf.h"
#include "emporium/id.h"

#define LOG_LINE_MAX 8192

static enum log_level min_level = LOG_INFO;
static bool text_format; /* false: JSON */

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_text[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void log_set_level(enum log_level lvl) { min_level = lvl; }

void log_set_format(enum log_format fmt)
{
    text_format = fmt == LOG_FORMAT_TEXT || (fmt == LOG_FORMAT_AUTO && isatty(STDERR_FILENO));
}

bool log_enabled(enum log_level lvl) { return lvl >= min_level; }

static void write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

/* Writes b (one line without its '\n'); on overflow a truncated but still valid line. */
static void flush_line(struct buf *b, const char *fallback)
{
    buf_append(b, "\n", 1);
    if (b->err)
        write_all(fallback, strlen(fallback));
    else
        write_all(b->p, b->len);
    buf_free(b);
}

/* Text values: bare when they are a simple word, else quoted and escaped like JSON. */
static void text_value(struct buf *b, const char *s)
{
    bool bare = *s != 0;
    for (const char *p = s; *p && bare; p++)
        bare = (unsigned char)*p > ' ' && *p != '"' && *p != '=' && *p != 0x7f;
    if (bare) {
        buf_puts(b, s);
        return;
    }
    buf_append(b, "\"", 1);
    buf_json_escape(b, s);
    buf_append(b, "\"", 1);
}

static void begin(struct buf *b, enum log_level lvl)
{
    char ts[32];
    time_format(now_ms(), ts);
    if (text_format)
        buf_printf(b, "%s %s ", ts, level_text[lvl]);
    else
        buf_printf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[lvl]);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if (lvl < min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct buf b = BUF_INIT(LOG_LINE_MAX);
    begin(&b, lvl);
    if (text_format) {
        /* One line per message: control characters are escaped, the rest kept as is. */
        const char *run = msg;
        for (const char *p = msg; *p; p++)
            if ((unsigned char)*p < ' ') {
                buf_append(&b, run, (size_t)(p - run));
                buf_printf(&b, "\\x%02x", (unsigned char)*p);
                run = p + 1;
            }
        buf_puts(&b, run);
    } else {
        buf_json_escape(&b, msg);
        buf_append(&b, "\"}", 2);
    }
    flush_line(&b, "{\"level\":\"error\",\"msg\":\"log line too long or out of memory\"}\n");
}

void log_fields(enum log_level lvl, const char *name, const struct log_field *fields)
{
    if (lvl < min_level)
        return;
    struct buf b = BUF_INIT(LOG_LINE_MAX);
    begin(&b, lvl);
    if (text_format) {
        buf_puts(&b, name);
    } else {
        buf_json_escape(&b, name);
        buf_puts(&b, "\",\"event\":\"");
        buf_json_escape(&b, name);
        buf_append(&b, "\"", 1);
    }
    for (const struct log_field *f = fields; f->kind != LOG_FIELD_END; f++) {
        if (text_format) {
            buf_printf(&b, " %s=", f->key);
        } else {
            buf_append(&b, ",\"", 2);
            buf_json_escape(&b, f->key);
            buf_append(&b, "\":", 2);
        }
        switch (f->kind) {
        case LOG_FIELD_STR:
            if (!f->s) {
                buf_puts(&b, "null");
            } else if (text_format) {
                text_value(&b, f->s);
            } else {
                /* A field is cut at 1 KiB rather than losing the whole line. */
                buf_append(&b, "\"", 1);
                buf_json_escape_max(&b, f->s, 1024);
                buf_append(&b, "\"", 1);
            }
            break;
        case LOG_FIELD_INT:
            buf_printf(&b, "%lld", f->i);
            break;
        case LOG_FIELD_NUM:
            /* six significant digits: a log is read by people (and scanned for card-like
             * digit runs: 6.4450000000000305 looked like a Visa number to log-hygiene) */
            if (isfinite(f->d))
                buf_printf(&b, "%.6g", f->d);
            else
                buf_puts(&b, "null");
            break;
        case LOG_FIELD_BOOL:
            buf_puts(&b, f->i ? "true" : "false");
            break;
        case LOG_FIELD_END:
            break;
        }
    }
    if (!text_format)
        buf_append(&b, "}", 1);
    flush_line(&b, "{\"level\":\"error\",\"msg\":\"log line too long or out of memory\"}\n");
}

/* A JSON object line rendered as text: "ts LEVEL msg key=value …". */
static bool render_text(const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return false;
    }
    const char *ts = json_string_value(json_object_get(o, "ts"));
    const char *lvl = json_string_value(json_object_get(o, "level"));
    const char *msg = json_string_value(json_object_get(o, "msg"));
    int li = 1;
    for (int i = 0; lvl && i < 4; i++)
        if (!strcmp(lvl, level_names[i]))
            li = i;
    struct buf b = BUF_INIT(LOG_LINE_MAX);
    buf_printf(&b, "%s %s %s", ts ? ts : "-", level_text[li], msg ? msg : "-");
    const char *key;
    json_t *v;
    json_object_foreach (o, key, v) {
        if (!strcmp(key, "ts") || !strcmp(key, "level") || !strcmp(key, "msg"))
            continue;
        buf_printf(&b, " %s=", key);
        if (json_is_string(v)) {
            text_value(&b, json_string_value(v));
        } else if (json_is_real(v)) {
            /* the JSON line said 85.666; jansson's double would print 85.665999999999997 */
            buf_printf(&b, "%.6g", json_real_value(v));
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            buf_puts(&b, s ? s : "?");
            free(s);
        }
    }
    json_decref(o);
    if (b.err) {
        buf_free(&b);
        return false;
    }
    flush_line(&b, "");
    return true;
}

void log_write_line(const char *line, size_t len)
{
    if (text_format && len > 0 && render_text(line, len - (line[len - 1] == '\n')))
        return;
    write_all(line, len);
}

void log_thread_name(const char *prefix, const char *name)
{
    char tname[16];
    snprintf(tname, sizeof tname, "%s%s", prefix, name ? name : "");
    pthread_setname_np(pthread_self(), tname);
}
