/* SPDX-License-Identifier: MIT */
/* events_wait.h — test support for the event path: wait until a server's events settled.
 *
 * Consumers run off the request threads, so what an order changes in analytics or
 * recommendations appears shortly after the 201. th_events_settled() polls /metrics until one
 * scrape shows emporium_outbox_pending 0 and every emporium_consumer_lag 0 (the relay counts
 * pending rows before the lag, so that scrape means every event committed before it was
 * applied by every consumer of that server), or the deadline passes. */
#ifndef EMPORIUM_TEST_EVENTS_WAIT_H
#define EMPORIUM_TEST_EVENTS_WAIT_H
#include <stdbool.h>

struct th_server;

/* true when settled within timeout_s seconds. */
bool th_events_settled(struct th_server *s, int timeout_s);
/* The value of the first sample of /metrics whose line starts with `prefix` (name and
 * labels), -1 when absent. */
double th_metric(struct th_server *s, const char *prefix);
/* The same in a /metrics body already fetched (several samples of one scrape). */
double th_metric_in(const char *body, const char *prefix);

#include <sys/types.h>

/* Starts `emporium worker [--consumers LIST] [--relay]` on s's data dir / database, its
 * output appended to s's log, and waits (60 s) until it logged that it runs. extra_env:
 * NULL-terminated "NAME=value" list, may be NULL. Returns the pid, or -1 (also when it exited
 * before it ran). */
pid_t th_worker_start(struct th_server *s, const char *consumers, bool relay,
                      const char *const *extra_env);
/* SIGTERM and wait (60 s); the exit status, or -1. */
int th_worker_stop(pid_t pid);
/* kill -9 and reap. */
void th_worker_kill(pid_t pid);

#endif
