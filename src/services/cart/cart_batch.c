/* SPDX-License-Identifier: MIT */
/* cart_batch.c — group commit of add-to-cart on PostgreSQL (CART_MODE_DB).
 *
 * Why: on a durable PostgreSQL every commit waits for its WAL flush, and an add on its own
 * (cart__add_once) is one round trip and one commit, made on the request's thread: the
 * request threads then spend their time waiting for flushes, one add each. Here a parked
 * add (cart__change_submit) is queued instead; CART_BATCH_THREADS writer threads each take
 * up to CART_BATCH_MAX queued adds and run the three statements of every one of them
 * (cart__store_add_stmts) in one pipeline: one round trip and one commit for the batch.
 *
 * The statements run in queue order except that the batch is sorted by owner (stable: one
 * cart's adds keep their order), so two batches in flight lock their carts in the same
 * order and cannot deadlock each other. Each add's statements see the ones before it in
 * the transaction, so the limits (per line, per cart, one currency) hold as for an add on
 * its own. A failed batch (a deadlock with another writer, an error) commits nothing: its
 * adds are then run one by one (cart__add_once, with its retries), so one add's error
 * never fails another. done() is called only after the commit (or the failure), on the
 * writer's thread.
 *
 * Stopping (cart__batch_free): the writers run what is queued, then exit; a later submit
 * fails with ERR_UNAVAILABLE. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "cart_internal.h"

#define CART_BATCH_MAX (DB_STMT_MAX / 3) /* three statements an add, one db_query_many */
#define CART_BATCH_THREADS 4

struct cart_batch {
    struct app *app;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cart_op *head, *tail; /* under mu */
    bool stop;                   /* under mu */
    int nthreads;
    pthread_t threads[CART_BATCH_THREADS];
};

/* The order the batch runs in: by owner, then by queue position. */
static int owner_cmp(const struct cart_owner *a, const struct cart_owner *b)
{
    if (a->user_id != b->user_id)
        return a->user_id < b->user_id ? -1 : 1;
    return strcmp(a->token_hash, b->token_hash);
}

static void sort_ops(struct cart_op **ops, int n)
{
    for (int i = 1; i < n; i++) { /* insertion sort: stable, and n <= CART_BATCH_MAX */
        struct cart_op *x = ops[i];
        int j = i;
        while (j > 0 && owner_cmp(&ops[j - 1]->owner, &x->owner) > 0) {
            ops[j] = ops[j - 1];
            j--;
        }
        ops[j] = x;
    }
}

static void run_batch(struct cart_batch *b, struct cart_op **ops, int n)
{
    sort_ops(ops, n);
    struct slot {
        struct cart_item it;
        struct cart_add_stmts a;
    } *slots = calloc((size_t)n, sizeof *slots);
    struct db_stmt st[CART_BATCH_MAX * 3];
    int rc = slots ? 0 : ERR_NOMEM;
    if (rc == 0 && n > 1) {
        int64_t now = now_ms();
        for (int i = 0; i < n; i++) {
            ops[i]->why->why = CART_REFUSE_NONE;
            cart__view_clear(ops[i]->v);
            cart__add_item(ops[i], &slots[i].it);
            cart__store_add_stmts(&slots[i].a, &ops[i]->owner, &slots[i].it, CART_MAX_QTY,
                                  CART_MAX_LINES, now);
            memcpy(&st[3 * i], slots[i].a.st, sizeof slots[i].a.st);
            /* the outputs point into the slot: st[] is a copy of its three statements */
        }
        struct db_conn *c;
        if ((rc = db_conn_take(app_db(b->app, "carts"), &c)) == 0) {
            rc = db_query_many(c, st, 3 * n, true);
            db_conn_give(c);
        }
        for (int i = 0; i < n; i++) {
            bool applied = false;
            int one = cart__store_add_result(&slots[i].a, rc, ops[i]->v, &applied);
            if (rc == 0)
                cart__change_done(ops[i], cart__add_outcome(ops[i], one, applied));
        }
    }
    free(slots);
    if (rc == 0 && n > 1)
        return;
    /* One add alone, or a batch that committed nothing: each on its own. */
    for (int i = 0; i < n; i++)
        cart__change_done(ops[i], cart__add_once(b->app, ops[i]));
}

static void *writer_main(void *arg)
{
    struct cart_batch *b = arg;
    struct cart_op *ops[CART_BATCH_MAX];
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stop)
            pthread_cond_wait(&b->cv, &b->mu);
        if (!b->head)
            break; /* stopping, and nothing left */
        int n = 0;
        while (b->head && n < CART_BATCH_MAX) {
            ops[n++] = b->head;
            b->head = b->head->next_batch;
        }
        if (!b->head)
            b->tail = NULL;
        else
            pthread_cond_signal(&b->cv); /* more: another writer takes them meanwhile */
        pthread_mutex_unlock(&b->mu);
        run_batch(b, ops, n);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int cart__batch_new(struct app *app, struct cart_batch **out)
{
    *out = NULL;
    struct cart_batch *b = calloc(1, sizeof *b);
    if (!b)
        return ERR_NOMEM;
    b->app = app;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    for (int i = 0; i < CART_BATCH_THREADS; i++) {
        if (pthread_create(&b->threads[i], NULL, writer_main, b) != 0) {
            log_error("cart: could not start an add-to-cart writer thread");
            cart__batch_free(b);
            return ERR_INTERNAL;
        }
        b->nthreads++;
    }
    *out = b;
    return 0;
}

int cart__batch_submit(struct cart_batch *b, struct cart_op *op)
{
    op->next_batch = NULL;
    pthread_mutex_lock(&b->mu);
    if (b->stop) {
        pthread_mutex_unlock(&b->mu);
        return ERR_UNAVAILABLE;
    }
    if (b->tail)
        b->tail->next_batch = op;
    else
        b->head = op;
    b->tail = op;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void cart__batch_free(struct cart_batch *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->nthreads; i++)
        pthread_join(b->threads[i], NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
