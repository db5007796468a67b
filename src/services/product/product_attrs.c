/* SPDX-License-Identifier: MIT */
/* product_attrs.c — an in-memory copy of the few product columns that search filters and
 * sorts need (id, price, category, in stock, active, name length), so a search applies its
 * filters and picks its page without touching one product row per match.
 *
 * Rows are dense (a product keeps its slot for the life of the copy: the search index
 * remembers each document's slot), found by id through an open-addressing table.
 *
 * Loaded on the first search (the whole table, in id order, 20,000 rows a query). Kept fresh
 * by product__invalidate(): every write that bumps the list generation (admin writes, stock
 * crossing zero, the seed) marks its id dirty (or the whole copy, for id 0), and the next
 * search re-reads the dirty rows before it filters — so a search that starts after a write
 * returned sees it, like the generation-keyed page cache. Ids a search meets that the copy
 * does not know (written by another process) are read on the spot.
 *
 * Readers hold a read lock over a filter pass; syncs and every other row read that updates
 * the copy are serialised by their own mutex (sync_mu), so an older read never overwrites a
 * newer one. A write is covered once a sync that started after it has *finished*: dirty_seq
 * counts product__attrs_dirty() calls, synced_seq is the dirty_seq a finished sync covered,
 * and a search whose write is not covered yet waits for (or runs) that sync. All of it is
 * the service context's struct product_attrs; the rows come from product_store.c. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"
#include "emporium/log.h"
#include "product_internal.h"

#define LOAD_CHUNK 20000

void product__attrs_init(struct product_attrs *a)
{
    memset(a, 0, sizeof *a);
    pthread_rwlock_init(&a->lk, NULL);
    pthread_mutex_init(&a->sync_mu, NULL);
    pthread_mutex_init(&a->dirty_mu, NULL);
    a->dirty_all = true;
    atomic_store(&a->dirty_seq, 1);
    atomic_store(&a->synced_seq, 0);
}

static inline size_t slot_of(int64_t id, size_t mask)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & mask;
}

int64_t product__attr_slot(const struct product_attrs *a, int64_t id)
{
    if (!a->cap)
        return -1;
    size_t mask = a->cap - 1;
    for (size_t i = slot_of(id, mask);; i = (i + 1) & mask) {
        if (a->tab[i].id == id)
            return a->tab[i].slot;
        if (a->tab[i].id == 0)
            return -1;
    }
}

const struct product_attr *product__attr_find(const struct product_attrs *a, int64_t id)
{
    int64_t s = product__attr_slot(a, id);
    return s < 0 ? NULL : &a->rows[s];
}

int product__attr_cat(const struct product_attrs *a, const char *slug)
{
    for (int i = 0; i < a->ncats; i++)
        if (!strcmp(a->cats[i], slug))
            return i;
    return -1;
}

void product__attrs_rdlock(struct product_attrs *a) { pthread_rwlock_rdlock(&a->lk); }
void product__attrs_unlock(struct product_attrs *a) { pthread_rwlock_unlock(&a->lk); }

/* ---- writers (lk held for writing) ---------------------------------------------------- */

static int grow(struct product_attrs *a)
{
    size_t ncap = a->cap ? a->cap * 2 : 1 << 17;
    struct pa_slot *n = calloc(ncap, sizeof *n);
    if (!n)
        return ERR_NOMEM;
    for (size_t i = 0; i < a->cap; i++) {
        if (!a->tab[i].id)
            continue;
        size_t j = slot_of(a->tab[i].id, ncap - 1);
        while (n[j].id)
            j = (j + 1) & (ncap - 1);
        n[j] = a->tab[i];
    }
    free(a->tab);
    a->tab = n;
    a->cap = ncap;
    return 0;
}

static int intern_cat(struct product_attrs *a, const char *slug)
{
    int i = product__attr_cat(a, slug);
    if (i >= 0)
        return i;
    if (a->ncats == 65535)
        return ERR_TOOBIG;
    if (a->ncats == a->capcats) {
        int nc = a->capcats ? a->capcats * 2 : 64;
        void *p = realloc(a->cats, (size_t)nc * sizeof *a->cats);
        if (!p)
            return ERR_NOMEM;
        a->cats = p;
        a->capcats = nc;
    }
    snprintf(a->cats[a->ncats], sizeof a->cats[a->ncats], "%s", slug);
    return a->ncats++;
}

/* Row: id, price, category, in stock (0/1), active (0/1), length(name). */
static int put_row(struct product_attrs *a, const struct db_rows *r, int row)
{
    if (((size_t)a->nrows + 1) * 2 > a->cap) {
        int rc = grow(a);
        if (rc < 0)
            return rc;
    }
    int64_t id = db_get_i64(r, row, 0);
    if (id <= 0)
        return 0;
    int cat = intern_cat(a, db_get(r, row, 2) ? db_get(r, row, 2) : "");
    if (cat < 0)
        return cat;
    size_t mask = a->cap - 1, i = slot_of(id, mask);
    while (a->tab[i].id && a->tab[i].id != id)
        i = (i + 1) & mask;
    if (!a->tab[i].id) {
        if (a->nrows == UINT32_MAX)
            return ERR_TOOBIG;
        if (a->nrows == a->caprows) {
            uint32_t nc = a->caprows ? a->caprows * 2 : 1 << 16;
            struct product_attr *p = realloc(a->rows, (size_t)nc * sizeof *p);
            if (!p)
                return ERR_NOMEM;
            a->rows = p;
            a->caprows = nc;
        }
        a->tab[i] = (struct pa_slot){id, a->nrows++};
    }
    int64_t nl = db_get_i64(r, row, 5);
    a->rows[a->tab[i].slot] = (struct product_attr){
        .id = id,
        .price = db_get_i64(r, row, 1),
        .cat = (uint16_t)cat,
        .flags = (uint8_t)(PA_KNOWN | (db_get_i64(r, row, 4) ? PA_ACTIVE : 0) |
                           (db_get_i64(r, row, 3) ? PA_IN_STOCK : 0)),
        .name_len = (uint8_t)(nl > 255 ? 255
                              : nl < 0 ? 0
                                       : nl),
    };
    return 0;
}

static int load_all(struct product_attrs *a, struct db_conn *c)
{
    pthread_rwlock_wrlock(&a->lk);
    /* products keep their slots (and categories their numbers); what the table no longer
     * returns is gone (known, not active) */
    for (uint32_t i = 0; i < a->nrows; i++)
        a->rows[i].flags = PA_KNOWN;
    a->loaded = false;
    int64_t after = 0;
    int rc = 0;
    for (;;) {
        struct db_rows *rows = NULL;
        rc = product__store_attr_chunk(c, after, LOAD_CHUNK, &rows);
        if (rc < 0)
            break;
        int n = db_rows_count(rows);
        for (int i = 0; i < n && rc >= 0; i++)
            rc = put_row(a, rows, i);
        if (n)
            after = db_get_i64(rows, n - 1, 0);
        db_rows_free(rows);
        if (rc < 0 || n < LOAD_CHUNK)
            break;
    }
    a->loaded = rc >= 0;
    pthread_rwlock_unlock(&a->lk);
    return rc < 0 ? rc : 0;
}

/* sync_mu held. */
static int fetch_rows(struct product_attrs *a, struct db_conn *c, enum db_dialect d,
                      const int64_t *ids, int n)
{
    if (n <= 0)
        return 0;
    struct db_rows *rows = NULL;
    int rc = product__store_attr_ids(c, d, ids, n, &rows);
    if (rc < 0)
        return rc;
    pthread_rwlock_wrlock(&a->lk);
    /* rows not returned are gone: forget what we knew (known, not active) */
    for (int i = 0; i < n; i++) {
        struct product_attr *p = (struct product_attr *)product__attr_find(a, ids[i]);
        if (p)
            p->flags = PA_KNOWN;
    }
    int nr = db_rows_count(rows);
    for (int i = 0; i < nr && rc >= 0; i++)
        rc = put_row(a, rows, i);
    pthread_rwlock_unlock(&a->lk);
    db_rows_free(rows);
    return rc < 0 ? rc : 0;
}

/* Ids the copy does not know (written by another process): read under sync_mu, so this
 * read cannot land after, and undo, a newer sync of the same rows. */
int product__attrs_fetch(struct product_attrs *a, struct db_conn *c, enum db_dialect d,
                         const int64_t *ids, int n)
{
    pthread_mutex_lock(&a->sync_mu);
    int rc = fetch_rows(a, c, d, ids, n);
    pthread_mutex_unlock(&a->sync_mu);
    return rc;
}

void product__attrs_dirty(struct product_attrs *a, int64_t id)
{
    pthread_mutex_lock(&a->dirty_mu);
    if (id <= 0 || a->ndirty == PRODUCT_DIRTY_MAX)
        a->dirty_all = true;
    else
        a->dirty[a->ndirty++] = id;
    atomic_fetch_add(&a->dirty_seq, 1);
    pthread_mutex_unlock(&a->dirty_mu);
}

static bool covered(struct product_attrs *a)
{
    /* synced_seq never passes dirty_seq: equal means the last dirtying is in the copy */
    uint64_t done = atomic_load_explicit(&a->synced_seq, memory_order_acquire);
    return done == atomic_load_explicit(&a->dirty_seq, memory_order_acquire);
}

int product__attrs_sync(struct product_attrs *a, struct db_conn *c, enum db_dialect d)
{
    if (covered(a))
        return 0;
    pthread_mutex_lock(&a->sync_mu);
    if (covered(a)) { /* a sync that finished while we waited covered us */
        pthread_mutex_unlock(&a->sync_mu);
        return 0;
    }
    pthread_mutex_lock(&a->dirty_mu);
    bool all = a->dirty_all;
    int n = a->ndirty;
    uint64_t seq = atomic_load(&a->dirty_seq);
    memcpy(a->sync_ids, a->dirty, (size_t)n * sizeof *a->sync_ids);
    a->ndirty = 0;
    a->dirty_all = false;
    pthread_mutex_unlock(&a->dirty_mu);
    int rc = all || !a->loaded ? load_all(a, c) : fetch_rows(a, c, d, a->sync_ids, n);
    if (rc < 0) { /* try again next time: synced_seq stays behind */
        pthread_mutex_lock(&a->dirty_mu);
        a->dirty_all = true;
        pthread_mutex_unlock(&a->dirty_mu);
        log_warn("product: search attributes not refreshed: %s", err_str(rc));
    } else {
        /* only now, with the rows in the copy, may readers skip the sync */
        atomic_store_explicit(&a->synced_seq, seq, memory_order_release);
    }
    pthread_mutex_unlock(&a->sync_mu);
    return rc;
}

void product__attrs_free(struct product_attrs *a)
{
    free(a->tab);
    a->tab = NULL;
    a->cap = 0;
    free(a->rows);
    a->rows = NULL;
    a->nrows = a->caprows = 0;
    free(a->cats);
    a->cats = NULL;
    a->ncats = a->capcats = 0;
    a->loaded = false;
    pthread_rwlock_destroy(&a->lk);
    pthread_mutex_destroy(&a->sync_mu);
    pthread_mutex_destroy(&a->dirty_mu);
}
