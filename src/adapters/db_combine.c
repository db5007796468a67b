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
    bool done; /* under the combiner's mutex */
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

/* Runs the batch (calls linked by next, their statements fitting one pipeline) on one
 * connection and sets every call's rc. */
static void comb_run(struct db *db, struct comb_call *batch, int calls)
{
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0) {
        for (struct comb_call *x = batch; x; x = x->next)
            x->rc = rc;
        return;
    }
    if (calls == 1) {
        batch->rc = db_query_many(c, batch->st, batch->n, true);
        db_conn_give(c);
        return;
    }
    /* A lock the batch waits for long gives it up (55P03: ERR_BUSY), and its calls run alone:
     * holding several calls' rows, it must not wait for deadlock detection (a second) should
     * another transaction want them in another order. */
    struct db_stmt all[DB_STMT_MAX] = {
        {.sql = "SELECT set_config('lock_timeout', '" COMB_LOCK_TIMEOUT "', true)"}};
    int n = 1;
    for (struct comb_call *x = batch; x; x = x->next) {
        memcpy(&all[n], x->st, (size_t)x->n * sizeof all[0]);
        n += x->n;
    }
    rc = db_query_many(c, all, n, true);
    if (rc >= 0 || rc == ERR_UNAVAILABLE || rc == ERR_NOMEM) {
        n = 1;
        for (struct comb_call *x = batch; x; x = x->next) {
            for (int i = 0; i < x->n; i++)
                x->st[i].rc = all[n + i].rc;
            n += x->n;
            x->rc = rc < 0 ? rc : 0;
        }
    } else {
        /* One statement failed and the whole transaction with it: each call alone now. */
        for (struct comb_call *x = batch; x; x = x->next)
            x->rc = db_query_many(c, x->st, x->n, true);
    }
    db_conn_give(c);
}

int db_query_many_shared(struct db *db, struct db_stmt *st, int n)
{
    if (!db)
        return ERR_UNAVAILABLE;
    if (n < 1 || n > DB_STMT_MAX || !st)
        return ERR_INVALID;
    if (db->dialect == DB_SQLITE)
        return db__write_many(db, st, n);
    struct db__combiner *k = comb_get(db);
    if (!k) {
        struct db_conn *c;
        int rc = db_conn_take(db, &c);
        if (rc < 0)
            return rc;
        rc = db_query_many(c, st, n, true);
        db_conn_give(c);
        return rc;
    }
    struct comb_call me = {.st = st, .n = n};
    pthread_mutex_lock(&k->mu);
    if (k->tail)
        k->tail->next = &me;
    else
        k->head = &me;
    k->tail = &me;
    while (!me.done) {
        if (k->running) {
            pthread_cond_wait(&k->cv, &k->mu);
            continue;
        }
        /* Lead: the calls at the head that fit in one pipeline (at least the first). */
        k->running = true;
        struct comb_call *batch = k->head, *last = batch;
        int stmts = 1 + batch->n, calls = 1; /* with comb_run's lock_timeout */
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
        comb_run(db, batch, calls);
        atomic_fetch_add(&k->batches, 1);
        atomic_fetch_add(&k->calls, (uint64_t)calls);
        uint64_t m = atomic_load(&k->max_batch);
        while ((uint64_t)calls > m && !atomic_compare_exchange_weak(&k->max_batch, &m, calls))
            ;
        pthread_mutex_lock(&k->mu);
        for (struct comb_call *x = batch, *next; x; x = next) {
            next = x->next;
            x->done = true; /* x may be gone once the mutex is released */
        }
        k->running = false;
        pthread_cond_broadcast(&k->cv);
    }
    pthread_mutex_unlock(&k->mu);
    return me.rc;
}
