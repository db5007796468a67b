/* SPDX-License-Identifier: MIT */
/* db_write.c — group commit: one writer thread per SQLite database commits the write
 * intents of many concurrent callers in one transaction.
 *
 * Why: on SQLite every commit costs the same fixed work whatever it holds — the write lock
 * (fcntl locks), the WAL frames of every page it touched (written and checksummed whole)
 * and the wal-index update — and writers of one file are serialised anyway. A batch pays
 * that once for all its intents, and intents touching the same pages (an index's last
 * page, a hot table page) write them once.
 *
 * The queue is a FIFO under the writer's mutex; submitters append and wake the writer only
 * when it sleeps. The writer takes up to batch_max intents (optionally waiting batch_wait_us
 * for more when the previous batch held more than one, i.e. only under load), then:
 *
 *     BEGIN IMMEDIATE
 *       SAVEPOINT w; fn(intent 1); RELEASE w      (or ROLLBACK TO w; RELEASE w on failure)
 *       SAVEPOINT w; fn(intent 2); …
 *     COMMIT                                      then every intent's done(rc)
 *
 * so a failing intent leaves no trace and its neighbours commit. An intent failing with
 * ERR_BUSY goes back to the queue (6 attempts in all, as db_transact). When the transaction
 * itself is lost (BEGIN or COMMIT failed, or an error rolled the whole transaction back,
 * which SQLite does on I/O errors, disk full or out of memory), the intents that had
 * succeeded are not committed: on ERR_BUSY they are queued again (their reset runs before
 * the next try), otherwise they get the error. done() is only ever called after the commit
 * (or after the failure), so no caller is answered before its write is in the WAL.
 *
 * Stopping (db_close): the writer runs what is queued, then exits; later submits fail with
 * ERR_UNAVAILABLE. PostgreSQL has row locks and many connections, so there db_write() is
 * db_transact() on the caller's thread. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "adapters/db_internal.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/trace.h"

#define W_ATTEMPTS 6

struct db__writer {
    struct db *db;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct db_write_req *head, *tail; /* under mu */
    int queued;                       /* under mu */
    bool sleeping, stop;              /* under mu */
    pthread_t thread;
    int last_batch; /* writer thread only */
    _Atomic uint64_t batches, intents, max_batch;
};

static pthread_mutex_t w_start_mu = PTHREAD_MUTEX_INITIALIZER;
/* Set on writer threads: a db_write() from inside an intent would wait for itself. */
static _Thread_local bool w_on_writer;

/* ---- the batch --------------------------------------------------------------------------- */

static void w_backoff(int attempt)
{
    long us = (1000L << attempt) + (long)randombytes_uniform(1000u << attempt);
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Puts the intents of list back at the front of the queue, in their order. */
static void w_requeue(struct db__writer *w, struct db_write_req *list)
{
    if (!list)
        return;
    struct db_write_req *last = list;
    int n = 1;
    while (last->next_) {
        last = last->next_;
        n++;
    }
    pthread_mutex_lock(&w->mu);
    last->next_ = w->head;
    if (!w->head)
        w->tail = last;
    w->head = list;
    w->queued += n;
    pthread_mutex_unlock(&w->mu);
}

/* Appends r to the list (head, tail). */
static void w_append(struct db_write_req **head, struct db_write_req **tail, struct db_write_req *r)
{
    r->next_ = NULL;
    if (*tail)
        (*tail)->next_ = r;
    else
        *head = r;
    *tail = r;
}

/* Runs one intent in its own savepoint. Returns 0 when the transaction is still usable
 * (r->rc_ set: 0 = wants the commit, 1 = done without change, < 0 = its error), or the
 * error that lost the transaction. */
static int w_run_one(struct db_conn *c, struct db_write_req *r)
{
    if (r->reset)
        r->reset(r->ctx);
    int rc = db_query(c, "SAVEPOINT emp_w", 0, NULL, NULL);
    if (rc < 0)
        return rc;
    long saved = db__fault_exchange(r->fault_);
    trace_context_set(r->trace_); /* the events it writes continue the submitter's trace */
    rc = r->fn(c, r->ctx);
    trace_context_set(NULL);
    r->fault_ = db__fault_exchange(saved);
    if (rc == 0) {
        int rel = db_query(c, "RELEASE emp_w", 0, NULL, NULL);
        if (rel < 0)
            return rel;
        r->rc_ = 0;
        return 0;
    }
    r->rc_ = rc > 0 ? 1 : rc;
    int rb = db_query(c, "ROLLBACK TO emp_w", 0, NULL, NULL);
    if (rb >= 0)
        rb = db_query(c, "RELEASE emp_w", 0, NULL, NULL);
    /* The savepoint is gone when SQLite rolled the whole transaction back on its own. */
    return rb < 0 ? rb : 0;
}

/* Runs the batch; intents that are finished are appended to (done, done_tail), those to
 * run again to (again, again_tail). */
static void w_batch(struct db__writer *w, struct db_write_req *batch, struct db_write_req **done,
                    struct db_write_req **done_tail, struct db_write_req **again,
                    struct db_write_req **again_tail)
{
    struct db_conn *c = NULL;
    int rc = db_conn_take(w->db, &c);
    if (rc == 0)
        rc = db_begin(c);
    struct db_write_req *ok = NULL, *ok_tail = NULL; /* want the commit */
    struct db_write_req *r = batch;
    bool lost = false; /* an intent's failure took the transaction with it */
    while (rc == 0 && r) {
        struct db_write_req *next = r->next_;
        r->attempts_++;
        rc = w_run_one(c, r);
        if (rc < 0) { /* the transaction is lost: r is decided by its own result */
            lost = true;
            if (r->rc_ == ERR_BUSY && r->attempts_ < W_ATTEMPTS)
                w_append(again, again_tail, r);
            else
                w_append(done, done_tail, r);
            r = next;
            break;
        }
        if (r->rc_ == ERR_BUSY && r->attempts_ < W_ATTEMPTS)
            w_append(again, again_tail, r);
        else if (r->rc_ == 0)
            w_append(&ok, &ok_tail, r);
        else
            w_append(done, done_tail, r);
        r = next;
    }
    if (rc == 0)
        rc = db_commit(c);
    if (rc < 0 && c)
        db_rollback(c);
    db_conn_give(c);
    /* Not committed because of another intent, or busy: run again later (bounded). Not
     * committed because BEGIN or COMMIT failed otherwise: that error is theirs. */
    bool retry = lost || rc == ERR_BUSY;
    for (struct db_write_req *next; r; r = next) {
        next = r->next_;
        r->attempts_++;
        if (retry && r->attempts_ < W_ATTEMPTS) {
            w_append(again, again_tail, r);
        } else {
            r->rc_ = rc;
            w_append(done, done_tail, r);
        }
    }
    for (struct db_write_req *next; ok; ok = next) {
        next = ok->next_;
        if (rc < 0 && retry && ok->attempts_ < W_ATTEMPTS) {
            w_append(again, again_tail, ok);
        } else {
            ok->rc_ = rc;
            w_append(done, done_tail, ok);
        }
    }
}

static void *w_main(void *arg)
{
    struct db__writer *w = arg;
    log_thread_name("w-", w->db->name);
    w_on_writer = true;
    int busy_rounds = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop) {
            w->sleeping = true;
            pthread_cond_wait(&w->cv, &w->mu);
            w->sleeping = false;
        }
        if (!w->head)
            break;
        int max = w->db->write_batch_max;
        /* Under load (the last batch held several intents), wait a little for more. */
        if (w->db->write_batch_wait_us > 0 && w->last_batch > 1 && w->queued < max && !w->stop) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)w->db->write_batch_wait_us * 1000L;
            while (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            w->sleeping = true;
            while (w->queued < max && !w->stop &&
                   pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
                ;
            w->sleeping = false;
        }
        struct db_write_req *batch = w->head, *last = w->head;
        int n = 1;
        while (n < max && last->next_) {
            last = last->next_;
            n++;
        }
        w->head = last->next_;
        if (!w->head)
            w->tail = NULL;
        last->next_ = NULL;
        w->queued -= n;
        pthread_mutex_unlock(&w->mu);

        w->last_batch = n;
        struct db_write_req *done = NULL, *done_tail = NULL, *again = NULL, *again_tail = NULL;
        w_batch(w, batch, &done, &done_tail, &again, &again_tail);
        atomic_fetch_add(&w->batches, 1);
        atomic_fetch_add(&w->intents, (uint64_t)n);
        if ((uint64_t)n > atomic_load(&w->max_batch))
            atomic_store(&w->max_batch, (uint64_t)n);
        for (struct db_write_req *next; done; done = next) {
            next = done->next_;
            done->next_ = NULL;
            done->done(done, done->rc_ > 0 ? 0 : done->rc_);
        }
        if (again) {
            /* Busy (another process holds the lock, or a row vanished under an intent):
             * back off as db_transact does, growing while it lasts. */
            w_backoff(busy_rounds < W_ATTEMPTS - 1 ? ++busy_rounds : busy_rounds);
            w_requeue(w, again);
        } else {
            busy_rounds = 0;
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- starting and stopping -------------------------------------------------------------- */

static struct db__writer *w_get(struct db *db)
{
    struct db__writer *w = atomic_load_explicit(&db->writer, memory_order_acquire);
    if (w)
        return w;
    pthread_mutex_lock(&w_start_mu);
    w = atomic_load(&db->writer);
    if (!w && (w = calloc(1, sizeof *w)) != NULL) {
        w->db = db;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->thread, NULL, w_main, w) != 0) {
            log_error("db %s: cannot start the writer thread", db->name);
            pthread_mutex_destroy(&w->mu);
            pthread_cond_destroy(&w->cv);
            free(w);
            w = NULL;
        } else {
            atomic_store_explicit(&db->writer, w, memory_order_release);
        }
    }
    pthread_mutex_unlock(&w_start_mu);
    return w;
}

void db__writer_stop(struct db *db)
{
    struct db__writer *w = atomic_load(&db->writer);
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    atomic_store(&db->writer, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

/* ---- the API ------------------------------------------------------------------------------ */

int db_write_submit(struct db *db, struct db_write_req *r)
{
    if (!db)
        return ERR_UNAVAILABLE;
    r->next_ = NULL;
    r->attempts_ = 0;
    r->rc_ = 0;
    r->fault_ = db__fault_exchange(0);
    memcpy(r->trace_, trace_context(), sizeof r->trace_);
    if (db->dialect != DB_SQLITE || w_on_writer) {
        /* PostgreSQL: at once, on this thread. On a writer thread (an intent's done callback
         * submitting more) waiting for the queue would be waiting for oneself. */
        db__fault_exchange(r->fault_);
        r->done(r, db_transact(db, r->fn, r->reset, r->ctx));
        return 0;
    }
    struct db__writer *w = w_get(db);
    if (!w) {
        db__fault_exchange(r->fault_);
        return ERR_UNAVAILABLE;
    }
    pthread_mutex_lock(&w->mu);
    if (w->stop) {
        pthread_mutex_unlock(&w->mu);
        db__fault_exchange(r->fault_);
        return ERR_UNAVAILABLE;
    }
    if (w->tail)
        w->tail->next_ = r;
    else
        w->head = r;
    w->tail = r;
    w->queued++;
    if (w->sleeping && (w->queued == 1 || w->queued >= db->write_batch_max))
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

struct w_sync {
    struct db_write_req req;
    sem_t sem;
    int rc;
};

static void w_sync_done(struct db_write_req *r, int rc)
{
    struct w_sync *s = (struct w_sync *)r;
    s->rc = rc;
    sem_post(&s->sem);
}

int db_write(struct db *db, db_tx_fn fn, void (*reset)(void *ctx), void *ctx)
{
    if (!db)
        return ERR_UNAVAILABLE;
    if (db->dialect != DB_SQLITE)
        return db_transact(db, fn, reset, ctx);
    if (w_on_writer) {
        log_error("db %s: db_write() called from inside a write intent", db->name);
        return ERR_INTERNAL;
    }
    struct w_sync s = {.req = {.fn = fn, .reset = reset, .ctx = ctx, .done = w_sync_done}};
    sem_init(&s.sem, 0, 0);
    int rc = db_write_submit(db, &s.req);
    if (rc == 0) {
        while (sem_wait(&s.sem) != 0 && errno == EINTR)
            ;
        rc = s.rc;
        /* the failures this intent's calls consumed count on the caller's thread */
        db__fault_exchange(s.req.fault_);
    }
    sem_destroy(&s.sem);
    return rc;
}

struct w_one {
    const char *sql;
    int n;
    const struct db_val *args;
    int affected;
};

static int w_one_tx(struct db_conn *c, void *ctx)
{
    struct w_one *o = ctx;
    int rc = db_query(c, o->sql, o->n, o->args, NULL);
    if (rc < 0)
        return rc;
    o->affected = rc;
    return rc == 0 ? 1 : 0; /* nothing changed: nothing to commit */
}

int db_write_one(struct db *db, const char *sql, int n, const struct db_val *args)
{
    if (!db)
        return ERR_UNAVAILABLE;
    /* PostgreSQL: one statement is its own transaction, one round trip, shared with other
     * calls' statements under load (db_query_many_shared). */
    if (db->dialect != DB_SQLITE) {
        struct db_stmt st = {.sql = sql, .n = n, .args = args};
        int rc = db_query_many_shared(db, &st, 1);
        return rc < 0 ? rc : st.rc;
    }
    struct w_one o = {sql, n, args, 0};
    int rc = db_write(db, w_one_tx, NULL, &o);
    return rc < 0 ? rc : o.affected;
}

struct w_many {
    struct db_stmt *st;
    int n;
};

static int w_many_tx(struct db_conn *c, void *ctx)
{
    struct w_many *m = ctx;
    int rc = db_query_many(c, m->st, m->n, true);
    return rc < 0 ? rc : 0;
}

int db__write_many(struct db *db, struct db_stmt *st, int n)
{
    struct w_many m = {st, n};
    return db_write(db, w_many_tx, NULL, &m);
}

void db_write_stats(struct db *db, struct db_write_stats *out)
{
    *out = (struct db_write_stats){0};
    if (db && db->ops->wal_stats)
        db->ops->wal_stats(db, &out->commits, &out->wal_frames);
    if (db)
        db__combiner_stats(db, out);
    struct db__writer *w = db ? atomic_load(&db->writer) : NULL;
    if (!w)
        return;
    out->batches = atomic_load(&w->batches);
    out->intents = atomic_load(&w->intents);
    out->max_batch = atomic_load(&w->max_batch);
}
