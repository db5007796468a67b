/* SPDX-License-Identifier: MIT */
/* log.h — log lines on stderr: JSON (one object per line) or readable one-line text.
 *
 * The format is JSON when stderr is not a terminal and text on a terminal, unless set with
 * log_set_format() (EMPORIUM_LOG_FORMAT=text|json). Every line is written with one write(2),
 * so lines from different threads never interleave. Messages are printf-style; callers must
 * never pass secrets (passwords, tokens, card numbers, cart tokens).
 *
 * Domain events (order paid, login throttled, admin created…) are logged at info with
 * log_event() and typed fields, so they can be searched by name and id:
 *
 *     log_event("order.paid", LOG_I("order_id", id), LOG_I("amount", cents),
 *               LOG_S("currency", "EUR"));
 *
 * JSON:  {"ts":"…","level":"info","msg":"order.paid","event":"order.paid","order_id":42,…}
 * text:  2026-12-06T02:10:00.123Z INFO  order.paid order_id=42 amount=1999 currency=EUR */
#ifndef EMPORIUM_LOG_H
#define EMPORIUM_LOG_H
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_AUTO, LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_set_level(enum log_level lvl);
/* AUTO picks text when stderr is a terminal, JSON otherwise. */
void log_set_format(enum log_format fmt);
bool log_enabled(enum log_level lvl);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes a finished JSON object line (must end with '\n'), e.g. the access line, in one
 * write; in the text format it is rendered as text first. */
void log_write_line(const char *line, size_t len);

/* --- domain events --- */
enum log_field_kind { LOG_FIELD_END, LOG_FIELD_STR, LOG_FIELD_INT, LOG_FIELD_NUM, LOG_FIELD_BOOL };
struct log_field {
    const char *key;
    enum log_field_kind kind;
    const char *s;
    long long i;
    double d;
};
#define LOG_S(k, v) ((struct log_field){.key = (k), .kind = LOG_FIELD_STR, .s = (v)})
#define LOG_I(k, v) ((struct log_field){.key = (k), .kind = LOG_FIELD_INT, .i = (long long)(v)})
#define LOG_F(k, v) ((struct log_field){.key = (k), .kind = LOG_FIELD_NUM, .d = (double)(v)})
#define LOG_B(k, v) ((struct log_field){.key = (k), .kind = LOG_FIELD_BOOL, .i = !!(v)})
/* Logs event `name` ("order.paid": <service or entity>.<past tense>) at `lvl` with the
 * fields, terminated by a field of kind LOG_FIELD_END (the macros below add it). A NULL
 * string field is logged as null. */
void log_fields(enum log_level lvl, const char *name, const struct log_field *fields);
/* log_event(name, LOG_I(…), LOG_S(…), …): at info, at least one field. */
#define log_event(name, ...)                                                                       \
    log_fields(LOG_INFO, (name), (const struct log_field[]){__VA_ARGS__, {.kind = LOG_FIELD_END}})
/* The same at warn (e.g. a payment failed, a login throttled). */
#define log_event_warn(name, ...)                                                                  \
    log_fields(LOG_WARN, (name), (const struct log_field[]){__VA_ARGS__, {.kind = LOG_FIELD_END}})

/* Names the calling thread `prefix` + `name`, cut to the 15 bytes Linux keeps (top -H,
 * perf --sort comm): "w-" + "orders_3" gives "w-orders_3". */
void log_thread_name(const char *prefix, const char *name);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
