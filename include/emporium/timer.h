/* SPDX-License-Identifier: MIT */
/* timer.h — periodic background jobs (sweeps, expiry), one facility for every service.
 *
 * A service registers its jobs from init() with timer_add(). Nothing runs until the app's
 * timers are started, which only `emporium serve` does (after every service's init() and
 * on_serve()); `migrate`, `seed`, `user` and the other commands never run a job. Jobs run on
 * ONE background thread, one at a time, on the monotonic clock (wall-clock changes do not
 * move them): a job first runs right after the start, then period_ms after its previous run
 * ended (runs never pile up; a slow job delays the others, so keep each run short and
 * bounded, e.g. a batch of at most a few thousand rows). app_free() stops the thread and
 * waits for a running job to finish before any service's deinit() runs.
 *
 * A job gets the app and its ctx; it must not block for long and must tolerate its service's
 * dependencies being unavailable (log and return). Jobs are counted in /metrics as
 * emporium_timer_runs_total{job="<name>"}. */
#ifndef EMPORIUM_TIMER_H
#define EMPORIUM_TIMER_H
#include <stdbool.h>
#include <stdint.h>

struct app;
struct timers;

typedef void (*timer_fn)(struct app *app, void *ctx);

/* Registers a job named `name` (copied; e.g. "user.session_sweep") to run every period_ms
 * (1 ms .. 1 day). Returns 0, ERR_INVALID (bad period or name), ERR_CONFLICT (name taken)
 * or ERR_NOMEM (at most 32 jobs). May be called before or after the start. */
int timer_add(struct app *app, const char *name, int period_ms, timer_fn fn, void *ctx);

/* How many times job `name` has completed (-1 when no such job). For tests and /metrics. */
int64_t timer_runs(struct app *app, const char *name);
/* Whether the background thread is running (false until app_start_timers()). */
bool timer_running(struct app *app);

/* --- used by app.c only --- */
struct timers *timers_new(void);
/* Starts the thread (idempotent). Returns 0 or ERR_NOMEM. */
int timers_start(struct timers *t, struct app *app);
/* Stops and joins the thread; the jobs stay registered. NULL is a no-op. */
void timers_stop(struct timers *t);
void timers_free(struct timers *t);

#endif
