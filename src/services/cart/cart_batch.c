/* SPDX-License-Identifier: MIT */
/* cart_batch.c — group commit of add-to-cart on PostgreSQL (CART_MODE_DB).
 *
 * Why: on a durable PostgreSQL every commit waits for its WAL flush, and an add on its own
 * (cart__add_once) is one round trip and one commit, made on the request's thread: the
 * request threads then spend their time waiting for flushes, one add each. Here a parked
 * add (cart__change_submit) is queued instead; CART_BATCH_THREADS writer threads each take
 * up to CART_BATCH_MAX queued adds and run them as set statements (cart__store_addset_*:
 * the values as arrays, three statements for all the carts of a round, see plan_rounds) in
 * one pipeline: one round trip and one commit for the batch, and three statements for
 * PostgreSQL to parse and plan instead of three an add (with one statement set per add, the
 * four writers' backends spent ~1.4 cores of the box planning them at 3,700 adds/s).
 *
 * The batch is sorted by owner (stable: one cart's adds keep their order), so two batches
 * in flight lock their carts in the same order and cannot deadlock each other. A round holds
 * one add of each of its carts, checked against its own cart only; a cart's next add is in
 * the next round, whose statements see the rounds before it in the transaction, so the
 * limits (per line, per cart, one currency) hold as for an add on its own. Adds beyond
 * CART_ROUNDS_MAX rounds (one cart's 11th add in a batch) run on their own after the
 * commit. A failed batch (a deadlock with another writer, an error) commits nothing: its
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

#define CART_BATCH_MAX 64 /* adds a writer takes at once */
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

/* Rounds: the adds of a batch grouped so that a round holds distinct carts of one kind
 * (guests, then users; in owner order): round r of a kind holds the r-th add of each of its
 * carts. Each round is three set statements (cart__store_addset_stmts), run in round order
 * in one pipeline and one transaction; a cart's later adds see its earlier ones. */
#define CART_ROUNDS_MAX (DB_STMT_MAX / 3)

static bool same_owner(const struct cart_op *a, const struct cart_op *b)
{
    return owner_cmp(&a->owner, &b->owner) == 0;
}

/* Assigns each add its round (-1: beyond CART_ROUNDS_MAX, run on its own after the batch);
 * ops are sorted by owner. Returns the number of rounds. */
static int plan_rounds(struct cart_op **ops, int n, int *round)
{
    int occ[CART_BATCH_MAX], guest_rounds = 0, nrounds = 0;
    for (int i = 0; i < n; i++) {
        occ[i] = i > 0 && same_owner(ops[i - 1], ops[i]) ? occ[i - 1] + 1 : 0;
        if (ops[i]->owner.user_id == 0 && occ[i] >= guest_rounds)
            guest_rounds = occ[i] + 1;
    }
    for (int i = 0; i < n; i++) {
        round[i] = ops[i]->owner.user_id == 0 ? occ[i] : guest_rounds + occ[i];
        if (round[i] >= CART_ROUNDS_MAX)
            round[i] = -1;
        else if (round[i] >= nrounds)
            nrounds = round[i] + 1;
    }
    return nrounds;
}

/* The adds of round r: their owners, lines and views, and their index in ops. */
static int round_members(struct cart_op **ops, int n, const int *round, int r,
                         struct cart_item *its, const struct cart_owner **ow,
                         const struct cart_item **it, struct cart_view **vs, int *idx)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (round[i] == r) {
            ow[k] = &ops[i]->owner;
            it[k] = &its[i];
            vs[k] = ops[i]->v;
            idx[k++] = i;
        }
    return k;
}

static void run_batch(struct cart_batch *b, struct cart_op **ops, int n)
{
    sort_ops(ops, n);
    int round[CART_BATCH_MAX];
    int nrounds = n > 1 ? plan_rounds(ops, n, round) : 0;
    struct cart_set_stmts *sets = NULL;
    struct cart_item *its = NULL;
    const struct cart_owner *ow[CART_BATCH_MAX];
    const struct cart_item *it[CART_BATCH_MAX];
    struct cart_view *vs[CART_BATCH_MAX];
    int idx[CART_BATCH_MAX];
    int rc = ERR_NOMEM;
    if (nrounds > 0 && (sets = calloc((size_t)nrounds, sizeof *sets)) &&
        (its = calloc((size_t)n, sizeof *its))) {
        rc = 0;
        for (int i = 0; i < n; i++) {
            ops[i]->why->why = CART_REFUSE_NONE;
            cart__add_item(ops[i], &its[i]);
        }
        int64_t now = now_ms();
        struct db_stmt st[CART_ROUNDS_MAX * 3];
        int built = 0;
        for (int r = 0; r < nrounds && rc == 0; r++) {
            int k = round_members(ops, n, round, r, its, ow, it, vs, idx);
            if (k > 0 && (rc = cart__store_addset_stmts(&sets[r], ow, it, k, CART_MAX_QTY,
                                                        CART_MAX_LINES, now)) == 0)
                memcpy(&st[3 * built++], sets[r].st, sizeof sets[r].st);
        }
        if (rc == 0) {
            struct db_conn *c;
            if ((rc = db_conn_take(app_db(b->app, "carts"), &c)) == 0) {
                rc = db_query_many(c, st, 3 * built, true);
                db_conn_give(c);
            }
        }
        /* Committed (rc 0): every add of the rounds is answered with its outcome, never run
         * again. Else each set is freed and every add runs on its own below. */
        for (int r = 0; r < nrounds; r++) {
            if (!sets[r].st[0].sql)
                continue; /* never built */
            int k = round_members(ops, n, round, r, its, ow, it, vs, idx);
            bool applied[CART_BATCH_MAX];
            int one = cart__store_addset_result(&sets[r], rc, ow, it, k, vs, applied);
            for (int j = 0; j < k && rc == 0; j++)
                cart__change_done(ops[idx[j]],
                                  one < 0 ? one : cart__add_outcome(ops[idx[j]], 0, applied[j]));
        }
    }
    free(sets);
    free(its);
    if (rc == 0) {
        for (int i = 0; i < n; i++)
            if (round[i] == -1) /* beyond the rounds: on its own, after the batch */
                cart__change_done(ops[i], cart__add_once(b->app, ops[i]));
        return;
    }
    /* One add alone, or a batch that committed nothing: each on its own. */
    for (int i = 0; i < n; i++)
        cart__change_done(ops[i], cart__add_once(b->app, ops[i]));
}

static void *writer_main(void *arg)
{
    struct cart_batch *b = arg;
    log_thread_name("cart-writer", NULL);
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
