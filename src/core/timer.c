/* SPDX-License-Identifier: MIT */
/* timer.c — the background job runner (see timer.h).
 *
 * One thread sleeps on a condition variable bound to CLOCK_MONOTONIC until the earliest
 * job is due, runs it without holding the lock, and schedules its next run period_ms after
 * the run ended. timer_add() and timers_stop() wake it. */
#include "emporium/timer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/buf.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"

#define TIMER_MAX_JOBS 32
#define TIMER_NAME_MAX 64
#define TIMER_MAX_PERIOD_MS (24 * 3600 * 1000)

struct timer_job {
    char name[TIMER_NAME_MAX];
    int period_ms;
    timer_fn fn;
    void *ctx;
    int64_t due_ms; /* monotonic */
    int64_t runs;   /* completed runs; read by other threads under the lock */
};

struct timers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stop;
    struct app *app;
    struct timer_job jobs[TIMER_MAX_JOBS];
    int n_jobs;
};

struct timers *timers_new(void)
{
    struct timers *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

void timers_free(struct timers *t)
{
    if (!t)
        return;
    timers_stop(t);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int timer_add(struct app *app, const char *name, int period_ms, timer_fn fn, void *ctx)
{
    struct timers *t = app_timers(app);
    if (!t || !fn || !name || !*name || strlen(name) >= TIMER_NAME_MAX || period_ms < 1 ||
        period_ms > TIMER_MAX_PERIOD_MS)
        return ERR_INVALID;
    pthread_mutex_lock(&t->mu);
    int rc = 0;
    for (int i = 0; i < t->n_jobs; i++)
        if (!strcmp(t->jobs[i].name, name))
            rc = ERR_CONFLICT;
    if (rc == 0 && t->n_jobs == TIMER_MAX_JOBS)
        rc = ERR_NOMEM;
    if (rc == 0) {
        struct timer_job *j = &t->jobs[t->n_jobs++];
        memset(j, 0, sizeof *j);
        strcpy(j->name, name);
        j->period_ms = period_ms;
        j->fn = fn;
        j->ctx = ctx;
        j->due_ms = mono_ms(); /* first run right after the start (or now, if started) */
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static struct timer_job *find(struct timers *t, const char *name)
{
    for (int i = 0; i < t->n_jobs; i++)
        if (!strcmp(t->jobs[i].name, name))
            return &t->jobs[i];
    return NULL;
}

int64_t timer_runs(struct app *app, const char *name)
{
    struct timers *t = app_timers(app);
    if (!t)
        return -1;
    pthread_mutex_lock(&t->mu);
    struct timer_job *j = find(t, name);
    int64_t n = j ? j->runs : -1;
    pthread_mutex_unlock(&t->mu);
    return n;
}

bool timer_running(struct app *app)
{
    struct timers *t = app_timers(app);
    if (!t)
        return false;
    pthread_mutex_lock(&t->mu);
    bool r = t->running;
    pthread_mutex_unlock(&t->mu);
    return r;
}

static void *timer_main(void *arg)
{
    struct timers *t = arg;
    log_thread_name("timer", NULL);
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        int64_t now = mono_ms();
        struct timer_job *next = NULL;
        for (int i = 0; i < t->n_jobs; i++)
            if (!next || t->jobs[i].due_ms < next->due_ms)
                next = &t->jobs[i];
        if (next && next->due_ms <= now) {
            /* jobs[] only grows and entries never move, so `next` stays valid unlocked. */
            timer_fn fn = next->fn;
            void *ctx = next->ctx;
            pthread_mutex_unlock(&t->mu);
            fn(t->app, ctx);
            pthread_mutex_lock(&t->mu);
            next->runs++;
            next->due_ms = mono_ms() + next->period_ms;
            continue;
        }
        if (!next) {
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        struct timespec until;
        until.tv_sec = (time_t)(next->due_ms / 1000);
        until.tv_nsec = (long)(next->due_ms % 1000) * 1000000L;
        int rc = pthread_cond_timedwait(&t->cv, &t->mu, &until);
        (void)rc; /* timeout, wake-up or spurious: the loop re-reads the clock */
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* The metrics registry has no per-writer removal (the server clears it when it stops), so
 * the writer reads the running set through this pointer, cleared before the set is freed. */
static pthread_mutex_t metrics_mu = PTHREAD_MUTEX_INITIALIZER;
static struct timers *metrics_live;

static void timers_metrics(struct buf *out, void *ctx)
{
    pthread_mutex_lock(&metrics_mu);
    struct timers *t = metrics_live;
    if (!t) {
        pthread_mutex_unlock(&metrics_mu);
        return;
    }
    buf_puts(out, "# HELP emporium_timer_runs_total Completed runs of each background job.\n"
                  "# TYPE emporium_timer_runs_total counter\n");
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->n_jobs; i++)
        buf_printf(out, "emporium_timer_runs_total{job=\"%s\"} %lld\n", t->jobs[i].name,
                   (long long)t->jobs[i].runs);
    pthread_mutex_unlock(&t->mu);
    pthread_mutex_unlock(&metrics_mu);
}

int timers_start(struct timers *t, struct app *app)
{
    pthread_mutex_lock(&t->mu);
    if (t->running) {
        pthread_mutex_unlock(&t->mu);
        return 0;
    }
    t->app = app;
    t->stop = false;
    int64_t now = mono_ms();
    for (int i = 0; i < t->n_jobs; i++)
        t->jobs[i].due_ms = now;
    int rc = pthread_create(&t->thread, NULL, timer_main, t) == 0 ? 0 : ERR_NOMEM;
    t->running = rc == 0;
    pthread_mutex_unlock(&t->mu);
    if (rc == 0) {
        pthread_mutex_lock(&metrics_mu);
        metrics_live = t;
        pthread_mutex_unlock(&metrics_mu);
        metrics_add_writer(timers_metrics, NULL);
        log_debug("timer: started with %d jobs", t->n_jobs);
    }
    return rc;
}

void timers_stop(struct timers *t)
{
    if (!t)
        return;
    /* Lock order: metrics_mu before t->mu (as the writer takes them). */
    pthread_mutex_lock(&metrics_mu);
    if (metrics_live == t)
        metrics_live = NULL;
    pthread_mutex_unlock(&metrics_mu);
    pthread_mutex_lock(&t->mu);
    if (!t->running) {
        pthread_mutex_unlock(&t->mu);
        return;
    }
    t->stop = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_mutex_lock(&t->mu);
    t->running = false;
    pthread_mutex_unlock(&t->mu);
}
