/* SPDX-License-Identifier: MIT */
/* trace.h — distributed tracing: W3C trace context and spans exported as OTLP/HTTP JSON.
 *
 * Every thread has a current trace context (a W3C traceparent, or none). The HTTP core makes
 * each request's server span current while its handler runs, a consumer makes each event's
 * consumer span current while its handlers run; calls to other services (upstream.c) start a
 * client span under the current one and send its id in their `traceparent` header, and the
 * events a thread writes (outbox.c) carry the current span's traceparent, so a consumer's
 * span is a child of the span that wrote the event.
 *
 * Ids are always made (the traceparent header and the access log need them); spans are only
 * recorded when EMPORIUM_OTLP_ENDPOINT is set and the trace is sampled (the traceparent's
 * flag 01): otherwise a span is its ids and nothing is allocated or queued. Recorded spans go
 * into a bounded queue (full: the span is dropped and counted, a request never waits) that a
 * background thread sends in batches (up to 512 spans, or what is there each second) with a
 * POST to <endpoint>/v1/traces, each with EMPORIUM_OTLP_TIMEOUT_MS. trace_stop() sends what
 * is queued before it returns (graceful shutdown). docs/tracing.md.
 *
 * Attributes are what the span's owner puts there: never secrets (no Authorization header,
 * tokens, card data). */
#ifndef EMPORIUM_TRACE_H
#define EMPORIUM_TRACE_H
#include <stdbool.h>
#include <stdint.h>

struct config;

/* OTLP's SpanKind numbers. */
enum trace_kind {
    TRACE_INTERNAL = 1,
    TRACE_SERVER = 2,
    TRACE_CLIENT = 3,
    TRACE_PRODUCER = 4,
    TRACE_CONSUMER = 5
};

#define TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */

struct trace_rec; /* a recorded span, owned by the span until trace_span_end() */

/* Caller-allocated (a stack variable or a member); valid from trace_span_begin() to
 * trace_span_end(). */
struct trace_span {
    char traceparent[TRACEPARENT_LEN + 1]; /* this span: "00-<trace>-<span id>-<flags>" */
    struct trace_rec *rec;                 /* NULL: not recorded */
    char prev[TRACEPARENT_LEN + 1];        /* the thread's context before trace_span_enter() */
    bool entered;
};

/* Starts the exporter when cfg->otlp_endpoint is set (else nothing is ever recorded).
 * Counted: every trace_start() wants its trace_stop(), even a failed one; the first one's
 * settings win. Returns 0, or ERR_NOMEM / ERR_UNAVAILABLE (no thread; logged, and the
 * process runs on without tracing: spans are never a reason not to serve). */
int trace_start(const struct config *cfg);
/* Sends every queued span (each POST bounded by the timeout; after a failure the rest is
 * dropped), stops the exporter thread. No-op when trace_start() did not start one. */
void trace_stop(void);
/* Whether spans are recorded in this process. */
bool trace_enabled(void);

/* Whether s is a well-formed W3C traceparent (version 00, lowercase hex, non-zero ids). */
bool trace_valid(const char *traceparent);

/* Begins span s named `name` (copied; a route pattern or "process <topic>") of kind `kind`:
 * a child of `parent` (a traceparent: its trace id and flags, its span id as the parent) or,
 * when parent is NULL, empty or malformed, the root of a new sampled trace. Never fails: when
 * it cannot record, s only carries ids. */
void trace_span_begin(struct trace_span *s, enum trace_kind kind, const char *name,
                      const char *parent);
/* Renames s (e.g. once the route is known). */
void trace_span_name(struct trace_span *s, const char *name);
/* Attributes (at most 12 per span; more are ignored). key must be a static string; value is
 * copied (cut at 127 bytes). */
void trace_span_str(struct trace_span *s, const char *key, const char *value);
void trace_span_int(struct trace_span *s, const char *key, int64_t value);
/* Marks s failed (OTLP status ERROR) with a short message (copied; may be NULL). */
void trace_span_error(struct trace_span *s, const char *message);
/* Makes s the thread's current context until trace_span_end(s) restores the previous one. */
void trace_span_enter(struct trace_span *s);
/* Ends s: stamps the end time and queues it for export (or drops and counts it when the queue
 * is full); restores the thread's context when s was entered. s carries only ids afterwards. */
void trace_span_end(struct trace_span *s);
/* Ends s without exporting it (a request not worth a span: /health, /metrics). */
void trace_span_discard(struct trace_span *s);

/* The thread's current context: sets it (NULL or malformed: none), or reads it ("" when
 * none; borrowed until the thread changes it). */
void trace_context_set(const char *traceparent);
const char *trace_context(void);

/* Counters since the process started (also on /metrics). */
struct trace_stats {
    unsigned long exported;      /* spans a receiver accepted */
    unsigned long dropped;       /* spans dropped because the queue was full */
    unsigned long failed_spans;  /* spans lost with a failed export */
    unsigned long export_errors; /* POSTs that failed (no answer, timeout, not 2xx) */
    unsigned long queued;        /* spans waiting now */
};
void trace_stats(struct trace_stats *out);

#endif
