/* SPDX-License-Identifier: MIT */
/* metrics.h — Prometheus text exposition (format 0.0.4).
 *
 * The HTTP core keeps its own per-route counters and histograms. Any module adds its own
 * families by registering a writer that appends complete families (# HELP, # TYPE, samples)
 * to the output; writers are called under no lock and must be thread-safe. Registration
 * happens at start-up (service init), not per request. */
#ifndef EMPORIUM_METRICS_H
#define EMPORIUM_METRICS_H
#include "emporium/buf.h"

typedef void (*metrics_writer_fn)(struct buf *out, void *ctx);

/* Returns 0 or ERR_NOMEM. At most 64 writers. */
int metrics_add_writer(metrics_writer_fn fn, void *ctx);
void metrics_remove_all(void);
/* Appends every registered family to out. */
void metrics_write_all(struct buf *out);
/* Appends process_* families (CPU seconds, resident memory, open fds, start time) and
 * emporium_build_info{version="…"} 1. */
void metrics_write_process(struct buf *out);

/* --- business counters ---
 * A counter family is a name ("emporium_orders_total"), one label ("status") and a help
 * text; each label value ("paid", "cancelled") is one series. Declare the family once (a
 * service's init) and count from any thread, lock-free after a series' first use:
 *
 *     metrics_counter_declare("emporium_orders_total", "status", "Orders by status reached.");
 *     metrics_count("emporium_orders_total", "paid");
 *
 * /metrics shows every declared family (with `# HELP` / `# TYPE … counter`) and its series.
 * Counting an undeclared family declares it with label "kind" and a generic help text.
 * Bounds: 32 families, 32 series each; label values are truncated to 47 bytes. Past a bound
 * counts are dropped (the counter is an observation, never a reason to fail a request).
 * Counters live for the process. */
int metrics_counter_declare(const char *name, const char *label, const char *help);
void metrics_count(const char *name, const char *label_value);
void metrics_count_add(const char *name, const char *label_value, unsigned long n);
/* The current value (0 when the series does not exist): for tests and health checks. */
unsigned long metrics_counter_value(const char *name, const char *label_value);
/* Appends every declared counter family to out (called by /metrics). */
void metrics_write_counters(struct buf *out);

#endif
