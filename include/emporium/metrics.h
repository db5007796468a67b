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
/* Appends process_* families (CPU seconds, resident memory, open fds, start time). */
void metrics_write_process(struct buf *out);

#endif
