/* SPDX-License-Identifier: MIT */
/* offload.c — the slow-work pool: handlers of ROUTE_OFFLOAD routes run here, never on the
 * threads that serve requests.
 *
 * The request threads are few (one per CPU): a handler that hashes a password with argon2id,
 * waits on the payment provider or waits for a concurrent duplicate would hold one of them
 * for its whole duration, and two such requests stall every other client. So the server
 * suspends the connection (MHD_suspend_connection), hands the request to this pool and
 * returns to serving others; a pool thread runs the handler and resumes the connection,
 * after which libmicrohttpd calls the server back on the connection's own thread to send
 * the response (server.c).
 *
 * Bounded: at most `threads` handlers run at once (threads are started on demand, never
 * stopped before shutdown) and at most `queue_max` more wait; past that http__offload_submit()
 * refuses and the client gets 503 with Retry-After, instead of an ever-growing queue.
 *
 * Shutdown: http__offload_free() lets the pool finish what is queued (each job still
 * resumes its connection, so the responses go out while the server drains), then joins. */
#include <pthread.h>
#include <stdlib.h>

#include "emporium/err.h"
#include "emporium/log.h"
#include "http_internal.h"

struct job {
    struct job *next;
    struct http_req *req;
};

struct http_offload {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail; /* waiting jobs; nodes come from each request's arena */
    int waiting, running, idle;
    int nthreads, max_threads, queue_max;
    bool stop;
    void (*run)(struct http_req *req);
    pthread_t *threads;
};

static void *worker_main(void *arg)
{
    struct http_offload *o = arg;
    log_thread_name("offload", NULL);
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (!o->head && !o->stop) {
            o->idle++;
            pthread_cond_wait(&o->cv, &o->mu);
            o->idle--;
        }
        if (!o->head) /* stopping and nothing left */
            break;
        struct job *j = o->head;
        o->head = j->next;
        if (!o->head)
            o->tail = NULL;
        o->waiting--;
        o->running++;
        pthread_mutex_unlock(&o->mu);
        o->run(j->req); /* j lives in the request's arena: not touched after this */
        pthread_mutex_lock(&o->mu);
        o->running--;
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

int http__offload_new(struct http_offload **out, int threads, int queue_max,
                      void (*run)(struct http_req *req))
{
    struct http_offload *o = calloc(1, sizeof *o);
    if (!o)
        return ERR_NOMEM;
    o->threads = calloc((size_t)threads, sizeof *o->threads);
    if (!o->threads) {
        free(o);
        return ERR_NOMEM;
    }
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->max_threads = threads;
    o->queue_max = queue_max;
    o->run = run;
    *out = o;
    return 0;
}

int http__offload_submit(struct http_offload *o, struct http_req *req,
                         void (*before_queue)(struct http_req *req))
{
    struct job *j = arena_alloc(req->arena, sizeof *j);
    if (!j)
        return ERR_NOMEM;
    j->req = req;
    pthread_mutex_lock(&o->mu);
    int rc = 0;
    if (o->stop) {
        rc = ERR_UNAVAILABLE;
        goto out;
    }
    /* At most max_threads running and queue_max waiting for one of them. */
    if (o->running + o->waiting >= o->max_threads + o->queue_max) {
        rc = ERR_BUSY;
        goto out;
    }
    /* Another thread when no idle one is left for this job (idle threads that were already
     * signalled still count as idle until they take their job: hence the comparison). */
    if (o->idle <= o->waiting && o->nthreads < o->max_threads) {
        if (pthread_create(&o->threads[o->nthreads], NULL, worker_main, o) == 0)
            o->nthreads++;
        else if (o->nthreads == 0) {
            log_warn("http: cannot start a slow-work thread");
            rc = ERR_BUSY;
            goto out;
        }
    }
    /* Suspended before any worker can see the job, so its resume cannot come first. */
    before_queue(req);
    if (o->tail)
        o->tail->next = j;
    else
        o->head = j;
    o->tail = j;
    o->waiting++;
    pthread_cond_signal(&o->cv);
out:
    pthread_mutex_unlock(&o->mu);
    return rc;
}

void http__offload_stats(struct http_offload *o, int *running, int *waiting)
{
    pthread_mutex_lock(&o->mu);
    *running = o->running;
    *waiting = o->waiting;
    pthread_mutex_unlock(&o->mu);
}

void http__offload_free(struct http_offload *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    o->stop = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    for (int i = 0; i < o->nthreads; i++)
        pthread_join(o->threads[i], NULL);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
    free(o->threads);
    free(o);
}
