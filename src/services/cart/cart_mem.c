/* SPDX-License-Identifier: MIT */
/* cart_mem.c — carts in memory with the database written behind them (embedded mode).
 *
 * With the embedded SQLite store this process is the carts database's only writer, so the
 * carts in use can live in memory: a change is checked and applied there (no read of the
 * lines, no lock statement) and its durable write is one statement — the changed line set
 * to its new state, or deleted — queued on the carts database's group-commit writer
 * (db_write_submit). The request is answered only when the batch holding that write has
 * committed, so every acknowledged change survives a restart or kill -9, exactly as before;
 * the next start reads the cart from the database. The carts row's updated_at (which the
 * guest sweep reads) is written with the first change of a cart and then at most hourly.
 *
 * Each cart in memory belongs to one of MEM_STRIPES locks (by its owner's hash); a change
 * holds that lock while it applies and queues its write, so the writes of one cart reach the
 * writer — which runs them in order — in the order they were applied. A write that fails
 * marks its cart stale: it is read from the database again once its writes in flight are
 * done (meanwhile a change answers 503, retryable). The client interface's writes (checkout,
 * merge) run as before, with the cart held, and then forget it in memory.
 *
 * Bounds: at most MEM_MAX_CARTS carts and MEM_MAX_LINES lines in memory; a cart beyond them
 * is served by the database path (cart.c, change_tx), and the cart.mem_trim job forgets carts
 * idle for MEM_IDLE_MS. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "cart_internal.h"

#define MEM_BUCKETS 65536 /* a power of two */
#define MEM_STRIPES 256
#define MEM_MAX_CARTS 50000
#define MEM_MAX_LINES 250000
#define MEM_IDLE_MS (10 * 60 * 1000)
#define MEM_TOUCH_MS (3600 * 1000) /* carts.updated_at: at most this old */

struct mem_cart {
    struct mem_cart *next;
    struct cart_owner owner;
    struct cart_view v;
    int64_t touched; /* the carts row's updated_at as last written; 0: write it */
    int64_t used;
    atomic_int inflight; /* writes queued and not done */
    atomic_bool stale;   /* a write failed: read the cart again */
};

struct cart_mem {
    pthread_mutex_t locks[MEM_STRIPES];
    struct mem_cart *buckets[MEM_BUCKETS]; /* bucket b under locks[b % MEM_STRIPES] */
    atomic_int carts;
    atomic_long lines;
};

int cart__mem_new(struct cart_mem **out)
{
    struct cart_mem *m = calloc(1, sizeof *m);
    if (!m)
        return ERR_NOMEM;
    for (int i = 0; i < MEM_STRIPES; i++)
        pthread_mutex_init(&m->locks[i], NULL);
    *out = m;
    return 0;
}

static void entry_free(struct cart_mem *m, struct mem_cart *e)
{
    atomic_fetch_sub(&m->carts, 1);
    atomic_fetch_sub(&m->lines, e->v.n);
    cart__view_clear(&e->v);
    free(e);
}

void cart__mem_free(struct cart_mem *m)
{
    if (!m)
        return;
    for (size_t b = 0; b < MEM_BUCKETS; b++)
        for (struct mem_cart *e = m->buckets[b], *next; e; e = next) {
            next = e->next;
            entry_free(m, e);
        }
    for (int i = 0; i < MEM_STRIPES; i++)
        pthread_mutex_destroy(&m->locks[i]);
    free(m);
}

static size_t bucket_of(const struct cart_owner *o)
{
    uint64_t h;
    if (o->user_id) {
        h = (uint64_t)o->user_id * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    } else {
        h = 0; /* the first 16 hex digits of a SHA-256 */
        for (int i = 0; i < 16 && o->token_hash[i]; i++)
            h = h * 16 + (uint64_t)(o->token_hash[i] <= '9' ? o->token_hash[i] - '0'
                                                            : (o->token_hash[i] | 0x20) - 'a' + 10);
    }
    return (size_t)(h & (MEM_BUCKETS - 1));
}

static bool same_owner(const struct cart_owner *a, const struct cart_owner *b)
{
    return a->user_id == b->user_id && (a->user_id || !strcmp(a->token_hash, b->token_hash));
}

static pthread_mutex_t *lock_of(struct cart_mem *m, size_t b) { return &m->locks[b % MEM_STRIPES]; }

/* Under the bucket's lock: the cart, or NULL. */
static struct mem_cart *find(struct cart_mem *m, size_t b, const struct cart_owner *o,
                             struct mem_cart ***link)
{
    struct mem_cart **p = &m->buckets[b];
    for (; *p; p = &(*p)->next)
        if (same_owner(&(*p)->owner, o)) {
            if (link)
                *link = p;
            return *p;
        }
    return NULL;
}

static void unlink_entry(struct cart_mem *m, size_t b, struct mem_cart *e)
{
    for (struct mem_cart **p = &m->buckets[b]; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            entry_free(m, e);
            return;
        }
}

/* Under the bucket's lock: the owner's cart in memory, read from the database when it is not
 * there (or stale). ERR_BUSY: stale with writes in flight. ERR_NOMEM with *full: beyond the
 * bounds (the caller uses the database path). */
static int load(struct app *app, struct cart_mem *m, size_t b, const struct cart_owner *o,
                struct mem_cart **out, bool *full)
{
    *full = false;
    struct mem_cart *e = find(m, b, o, NULL);
    if (e && atomic_load(&e->stale)) {
        if (atomic_load(&e->inflight) > 0)
            return ERR_BUSY;
        unlink_entry(m, b, e);
        e = NULL;
    }
    if (e) {
        *out = e;
        return 0;
    }
    if (atomic_load(&m->carts) >= MEM_MAX_CARTS || atomic_load(&m->lines) >= MEM_MAX_LINES) {
        *full = true;
        return ERR_NOMEM;
    }
    struct cart_view v = {0};
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "carts"), &c);
    if (rc < 0)
        return rc;
    int64_t cart_id;
    rc = cart__store_find(c, o, &cart_id);
    if (rc == 0)
        rc = cart__store_load(c, cart_id, &v);
    else if (rc == ERR_NOTFOUND)
        rc = 0;
    db_conn_give(c);
    if (rc < 0) {
        cart__view_clear(&v);
        return rc;
    }
    if (!(e = calloc(1, sizeof *e))) {
        cart__view_clear(&v);
        return ERR_NOMEM;
    }
    e->owner = *o;
    e->v = v;
    e->next = m->buckets[b];
    m->buckets[b] = e;
    atomic_fetch_add(&m->carts, 1);
    atomic_fetch_add(&m->lines, v.n);
    *out = e;
    return 0;
}

int cart__mem_get(struct app *app, struct cart_mem *m, const struct cart_owner *o,
                  struct cart_view *out)
{
    out->n = 0;
    size_t b = bucket_of(o);
    pthread_mutex_lock(lock_of(m, b));
    struct mem_cart *e = NULL;
    bool full;
    int rc = load(app, m, b, o, &e, &full);
    if (rc == 0) {
        e->used = now_ms();
        rc = cart__view_copy(out, &e->v);
    }
    pthread_mutex_unlock(lock_of(m, b));
    if (rc < 0 && full)
        return cart__get_db(app, o, out);
    return rc;
}

static void mem_done(struct db_write_req *w, int rc)
{
    struct cart_op *op = (struct cart_op *)w;
    struct mem_cart *e = op->entry;
    if (rc < 0)
        atomic_store(&e->stale, true);
    atomic_fetch_sub(&e->inflight, 1);
    cart__change_done(op, rc);
}

int cart__mem_change(struct app *app, struct cart_mem *m, struct cart_op *op, bool wait)
{
    size_t b = bucket_of(&op->owner);
    pthread_mutex_lock(lock_of(m, b));
    struct mem_cart *e = NULL;
    bool full, changed = false;
    int rc = load(app, m, b, &op->owner, &e, &full);
    if (rc < 0) {
        pthread_mutex_unlock(lock_of(m, b));
        if (full) /* beyond the bounds: the database path */
            return wait ? cart__change_wait_db(app, op) : cart__change_submit_db(app, op);
        if (!wait)
            cart__change_done(op, rc);
        return wait ? rc : 0;
    }
    int64_t now = now_ms();
    e->used = now;
    int before = e->v.n;
    rc = cart__apply(op, &e->v, now, &changed);
    atomic_fetch_add(&m->lines, e->v.n - before);
    if (rc == 0)
        rc = cart__view_copy(op->v, &e->v);
    if (rc < 0 || !changed) { /* refused, or nothing to write */
        pthread_mutex_unlock(lock_of(m, b));
        if (!wait)
            cart__change_done(op, rc);
        return wait ? rc : 0;
    }
    op->touch_row = e->touched < now - MEM_TOUCH_MS;
    if (op->touch_row)
        e->touched = now;
    op->entry = e;
    atomic_fetch_add(&e->inflight, 1);
    if (wait) {
        /* Under the lock: the next change of this cart queues behind this one. */
        rc = db_write(app_db(app, "carts"), cart__write_line_tx, NULL, op);
        if (rc < 0)
            atomic_store(&e->stale, true);
        atomic_fetch_sub(&e->inflight, 1);
        pthread_mutex_unlock(lock_of(m, b));
        cart__change_counted(op, rc);
        return rc < 0 ? rc : 0;
    }
    op->w = (struct db_write_req){.fn = cart__write_line_tx, .ctx = op, .done = mem_done};
    rc = db_write_submit(app_db(app, "carts"), &op->w);
    if (rc < 0) {
        atomic_store(&e->stale, true);
        atomic_fetch_sub(&e->inflight, 1);
    }
    pthread_mutex_unlock(lock_of(m, b));
    if (rc < 0)
        cart__change_done(op, rc);
    return 0;
}

int cart__mem_locked(struct cart_mem *m, const struct cart_owner *o, int (*fn)(void *ctx),
                     void *ctx)
{
    size_t b = bucket_of(o);
    pthread_mutex_lock(lock_of(m, b));
    int rc = fn(ctx);
    struct mem_cart *e = find(m, b, o, NULL);
    if (e) {
        if (atomic_load(&e->inflight) == 0)
            unlink_entry(m, b, e);
        else
            atomic_store(&e->stale, true);
    }
    pthread_mutex_unlock(lock_of(m, b));
    return rc;
}

static void drop_where(struct cart_mem *m, int64_t cutoff, bool guests)
{
    for (size_t b = 0; b < MEM_BUCKETS; b++) {
        pthread_mutex_lock(lock_of(m, b));
        for (struct mem_cart **p = &m->buckets[b]; *p;) {
            struct mem_cart *e = *p;
            if ((guests ? e->owner.user_id == 0 : e->used < cutoff) &&
                atomic_load(&e->inflight) == 0) {
                *p = e->next;
                entry_free(m, e);
            } else {
                p = &e->next;
            }
        }
        pthread_mutex_unlock(lock_of(m, b));
    }
}

void cart__mem_trim(struct app *app, void *ctx)
{
    (void)app;
    drop_where(ctx, now_ms() - MEM_IDLE_MS, false);
}

void cart__mem_forget_guests(struct cart_mem *m) { drop_where(m, 0, true); }
