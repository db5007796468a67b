/* SPDX-License-Identifier: MIT */
/* db_combine.c — db_query_many_shared(): group commit on PostgreSQL without a writer thread.
 *
 * Why: on PostgreSQL with synchronous_commit on, every commit waits for its WAL flush, and
 * the waits (a sleep on WALWriteLock, then a wake-up) cost the backends more CPU than most
 * statements of the checkout: the bench's place-order row ran ~22 % more orders a second
 * with synchronous_commit off. Fewer commits keep the durability and lose most of that.
 *
 * How: the calls of one database queue up. The first caller to find no batch running runs
 * one (the leader): it takes the queued calls, as many as fit in one pipeline (DB_STMT_MAX
 * statements), and sends all their statements as one implicit transaction: one round trip,
 * one commit. Callers that arrive meanwhile wait and form the next batch, so a batch only
 * holds more than one call under load, and an idle database answers a lone call at once.
 * When the combined transaction fails, nothing of it was kept (the implicit transaction
 * rolled back), and the leader runs each of its calls again alone, so every call gets its
 * own outcome, as if it had run by itself; a lost connection is the exception (the commit's
 * fate is unknown): every call of the batch gets ERR_UNAVAILABLE, as a lone call would.
 * A call run again alone is released as soon as its outcome is known.
 *
 * One batch runs at a time, so a batch must never wait long: every batch (and every call
 * run again alone) starts with a lock_timeout of COMB_LOCK_TIMEOUT. A call that waits that
 * long for a row lock another transaction holds (ERR_BUSY: also a deadlock) leaves the
 * combiner: its own thread runs it on a connection of its own, with no time limit, as it
 * would have run without sharing, while the other calls go on.
 *
 * On SQLite the call is an intent of the database's group-commit writer (db_write.c). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/db_internal.h"
#include "emporium/err.h"

struct comb_call {
    struct db_stmt *st;
    int n;
    int rc;
    bool alone; /* waited too long for a lock: its thread runs it outside the combiner */
    bool done;  /* under the combiner's mutex */
    struct comb_call *next;
};

struct db__combiner {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct comb_call *head, *tail; /* under mu */
    bool running;                  /* under mu: a leader is running a batch */
    _Atomic uint64_t batches, calls, max_batch;
};

#define COMB_LOCK_TIMEOUT "100ms"

static pthread_mutex_t comb_start_mu = PTHREAD_MUTEX_INITIALIZER;

static struct db__combiner *comb_get(struct db *db)
{
    struct db__combiner *k = atomic_load_explicit(&db->combiner, memory_order_acquire);
    if (k)
        return k;
    pthread_mutex_lock(&comb_start_mu);
    k = atomic_load(&db->combiner);
    if (!k && (k = calloc(1, sizeof *k)) != NULL) {
        pthread_mutex_init(&k->mu, NULL);
        pthread_cond_init(&k->cv, NULL);
        atomic_store_explicit(&db->combiner, k, memory_order_release);
    }
    pthread_mutex_unlock(&comb_start_mu);
    return k;
}

void db__combiner_free(struct db *db)
{
    struct db__combiner *k = atomic_load(&db->combiner);
    if (!k)
        return;
    atomic_store(&db->combiner, NULL);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    free(k);
}

void db__combiner_stats(struct db *db, struct db_write_stats *out)
{
    struct db__combiner *k = atomic_load(&db->combiner);
    if (!k)
        return;
    out->batches += atomic_load(&k->batches);
    out->intents += atomic_load(&k->calls);
    uint64_t m = atomic_load(&k->max_batch);
    if (m > out->max_batch)
        out->max_batch = m;
}

/* Releases x: its thread may return (and x be gone) once the mutex is released. */
static void comb_finish(struct db__combiner *k, struct comb_call *x)
{
    pthread_mutex_lock(&k->mu);
    x->done = true;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

/* The first `calls` calls from x on, after the lock_timeout statement, as one implicit
 * transaction on c; every statement's rc goes back to its call. */
static int comb_pipeline(struct db_conn *c, struct comb_call *x, int calls)
{
    struct db_stmt all[DB_STMT_MAX] = {
        {.sql = "SELECT set_config('lock_timeout', '" COMB_LOCK_TIMEOUT "', true)"}};
    int n = 1;
    struct comb_call *y = x;
    for (int i = 0; i < calls; i++, y = y->next) {
        memcpy(&all[n], y->st, (size_t)y->n * sizeof all[0]);
        n += y->n;
    }
    int rc = db_query_many(c, all, n, true);
    n = 1;
    for (int i = 0; i < calls; i++, x = x->next) {
        for (int j = 0; j < x->n; j++)
            x->st[j].rc = all[n + j].rc;
        n += x->n;
    }
    return rc;
}

/* Runs the batch (calls linked by next, their statements fitting one pipeline after the
 * lock_timeout one) on one connection and sets each call's outcome. Returns true when the
 * calls are still to be released (comb_wait does it for all at once); a batch whose calls
 * ran again one by one released each as soon as it was done. */
static bool comb_run(struct db__combiner *k, struct db *db, struct comb_call *batch, int calls)
{
    struct db_conn *c = NULL;
    int rc = db_conn_take(db, &c);
    bool taken = rc >= 0;
    if (taken)
        rc = comb_pipeline(c, batch, calls);
    bool whole = !taken || rc >= 0 || rc == ERR_UNAVAILABLE || rc == ERR_NOMEM || calls == 1;
    for (struct comb_call *x = batch, *next; x; x = next) {
        next = x->next;
        int xrc = rc;
        /* One statement failed and the whole transaction with it: each call alone now. */
        if (!whole)
            xrc = comb_pipeline(c, x, 1);
        if (xrc == ERR_BUSY)
            x->alone = true;
        else
            x->rc = xrc < 0 ? xrc : 0;
        if (!whole)
            comb_finish(k, x);
    }
    if (taken)
        db_conn_give(c);
    return whole;
}

static void comb_wait(struct db__combiner *k, struct db *db, struct comb_call *me);

int db_query_many_shared(struct db *db, struct db_stmt *st, int n)
{
    if (!db)
        return ERR_UNAVAILABLE;
    if (n < 1 || n > DB_STMT_MAX || !st)
        return ERR_INVALID;
    if (db->dialect == DB_SQLITE)
        return db__write_many(db, st, n);
    struct db__combiner *k = n < DB_STMT_MAX ? comb_get(db) : NULL; /* room for lock_timeout */
    struct comb_call me = {.st = st, .n = n, .alone = !k};
    if (k)
        comb_wait(k, db, &me);
    if (me.alone) {
        struct db_conn *c;
        int rc = db_conn_take(db, &c);
        if (rc < 0)
            return rc;
        rc = db_query_many(c, st, n, true);
        db_conn_give(c);
        return rc;
    }
    return me.rc;
}

/* Queues me and waits for its outcome, leading batches while none runs. */
static void comb_wait(struct db__combiner *k, struct db *db, struct comb_call *me)
{
    pthread_mutex_lock(&k->mu);
    if (k->tail)
        k->tail->next = me;
    else
        k->head = me;
    k->tail = me;
    while (!me->done) {
        if (k->running) {
            pthread_cond_wait(&k->cv, &k->mu);
            continue;
        }
        /* Lead: the calls at the head that fit in one pipeline (at least the first). */
        k->running = true;
        struct comb_call *batch = k->head, *last = batch;
        int stmts = 1 + batch->n, calls = 1; /* with the lock_timeout statement */
        while (last->next && stmts + last->next->n <= DB_STMT_MAX) {
            last = last->next;
            stmts += last->n;
            calls++;
        }
        k->head = last->next;
        if (!k->head)
            k->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&k->mu);
        atomic_fetch_add(&k->batches, 1);
        atomic_fetch_add(&k->calls, (uint64_t)calls);
        uint64_t m = atomic_load(&k->max_batch);
        while ((uint64_t)calls > m && !atomic_compare_exchange_weak(&k->max_batch, &m, calls))
            ;
        bool release = comb_run(k, db, batch, calls);
        pthread_mutex_lock(&k->mu);
        for (struct comb_call *x = batch, *next; release && x; x = next) {
            next = x->next;
            x->done = true; /* x may be gone once the mutex is released */
        }
        k->running = false;
        pthread_cond_broadcast(&k->cv);
    }
    pthread_mutex_unlock(&k->mu);
}
