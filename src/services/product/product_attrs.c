/* SPDX-License-Identifier: MIT */
/* product_attrs.c — an in-memory copy of the few product columns that search filters and
 * sorts need (id, price, category, in stock, active, name length), so a search applies its
 * filters and picks its page without touching one product row per match.
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
 * and a search whose write is not covered yet waits for (or runs) that sync. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"
#include "emporium/log.h"
#include "product_internal.h"

#define DIRTY_MAX 4096
#define LOAD_CHUNK 20000

static pthread_rwlock_t lk = PTHREAD_RWLOCK_INITIALIZER;
static struct product_attr *tab; /* open addressing, id 0 = empty */
static size_t cap, used;
static char (*cats)[PRODUCT_SLUG_MAX + 1];
static int ncats, capcats;
static bool loaded;

static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t dirty_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t dirty[DIRTY_MAX];
static int ndirty;
static bool dirty_all = true;
static _Atomic uint64_t dirty_seq = 1;  /* bumped by every product__attrs_dirty() */
static _Atomic uint64_t synced_seq = 0; /* dirty_seq covered by the last finished sync */

static inline size_t slot_of(int64_t id, size_t mask)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & mask;
}

const struct product_attr *product__attr_find(int64_t id)
{
    if (!cap)
        return NULL;
    size_t mask = cap - 1;
    for (size_t i = slot_of(id, mask);; i = (i + 1) & mask) {
        if (tab[i].id == id)
            return &tab[i];
        if (tab[i].id == 0)
            return NULL;
    }
}

int product__attr_cat(const char *slug)
{
    for (int i = 0; i < ncats; i++)
        if (!strcmp(cats[i], slug))
            return i;
    return -1;
}

void product__attrs_rdlock(void) { pthread_rwlock_rdlock(&lk); }
void product__attrs_unlock(void) { pthread_rwlock_unlock(&lk); }

/* ---- writers (lk held for writing) ---------------------------------------------------- */

static int grow(void)
{
    size_t ncap = cap ? cap * 2 : 1 << 17;
    struct product_attr *n = calloc(ncap, sizeof *n);
    if (!n)
        return ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) {
        if (!tab[i].id)
            continue;
        size_t j = slot_of(tab[i].id, ncap - 1);
        while (n[j].id)
            j = (j + 1) & (ncap - 1);
        n[j] = tab[i];
    }
    free(tab);
    tab = n;
    cap = ncap;
    return 0;
}

static int intern_cat(const char *slug)
{
    int i = product__attr_cat(slug);
    if (i >= 0)
        return i;
    if (ncats == 65535)
        return ERR_TOOBIG;
    if (ncats == capcats) {
        int nc = capcats ? capcats * 2 : 64;
        void *p = realloc(cats, (size_t)nc * sizeof *cats);
        if (!p)
            return ERR_NOMEM;
        cats = p;
        capcats = nc;
    }
    snprintf(cats[ncats], sizeof cats[ncats], "%s", slug);
    return ncats++;
}

/* Row: id, price, category, in stock (0/1), active (0/1), length(name). */
static int put_row(const struct db_rows *r, int row)
{
    if ((used + 1) * 2 > cap) {
        int rc = grow();
        if (rc < 0)
            return rc;
    }
    int64_t id = db_get_i64(r, row, 0);
    if (id <= 0)
        return 0;
    int cat = intern_cat(db_get(r, row, 2) ? db_get(r, row, 2) : "");
    if (cat < 0)
        return cat;
    size_t mask = cap - 1, i = slot_of(id, mask);
    while (tab[i].id && tab[i].id != id)
        i = (i + 1) & mask;
    if (!tab[i].id)
        used++;
    int64_t nl = db_get_i64(r, row, 5);
    tab[i] = (struct product_attr){
        .id = id,
        .price = db_get_i64(r, row, 1),
        .cat = (uint16_t)cat,
        .flags = (uint8_t)(PA_KNOWN | (db_get_i64(r, row, 4) ? PA_ACTIVE : 0) |
                           (db_get_i64(r, row, 3) ? PA_IN_STOCK : 0)),
        .name_len = (uint8_t)(nl > 255 ? 255 : nl < 0 ? 0 : nl),
    };
    return 0;
}

#define ATTR_COLS                                                                           \
    "SELECT id, price, category, CASE WHEN stock_available > 0 THEN 1 ELSE 0 END, active, " \
    "length(name) FROM products "

static int load_all(struct db_conn *c)
{
    pthread_rwlock_wrlock(&lk);
    if (tab)
        memset(tab, 0, cap * sizeof *tab);
    used = 0;
    ncats = 0;
    loaded = false;
    int64_t after = 0;
    int rc = 0;
    for (;;) {
        struct db_rows *rows = NULL;
        struct db_val args[] = {DB_INT(after), DB_INT(LOAD_CHUNK)};
        rc = db_query(c, ATTR_COLS "WHERE id > $1 ORDER BY id LIMIT $2", 2, args, &rows);
        if (rc < 0)
            break;
        int n = db_rows_count(rows);
        for (int i = 0; i < n && rc >= 0; i++)
            rc = put_row(rows, i);
        if (n)
            after = db_get_i64(rows, n - 1, 0);
        db_rows_free(rows);
        if (rc < 0 || n < LOAD_CHUNK)
            break;
    }
    loaded = rc >= 0;
    pthread_rwlock_unlock(&lk);
    return rc < 0 ? rc : 0;
}

/* ids as one text parameter: "[1,2]" for json_each (SQLite), "1,2" for string_to_array. */
void product__ids_param(struct buf *b, enum db_dialect d, const int64_t *ids, int n)
{
    if (d == DB_SQLITE)
        buf_puts(b, "[");
    for (int i = 0; i < n; i++)
        buf_printf(b, i ? ",%lld" : "%lld", (long long)ids[i]);
    if (d == DB_SQLITE)
        buf_puts(b, "]");
}

const char *product__ids_in(enum db_dialect d)
{
    return d == DB_SQLITE ? "id IN (SELECT value FROM json_each($1))"
                          : "id = ANY(string_to_array($1, ',')::bigint[])";
}

/* sync_mu held. */
static int fetch_rows(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n)
{
    if (n <= 0)
        return 0;
    struct buf p = BUF_INIT(0), sql = BUF_INIT(0);
    product__ids_param(&p, d, ids, n);
    buf_puts(&sql, ATTR_COLS "WHERE ");
    buf_puts(&sql, product__ids_in(d));
    if (p.err || sql.err) {
        buf_free(&p);
        buf_free(&sql);
        return ERR_NOMEM;
    }
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_TEXT(p.p)};
    int rc = db_query(c, sql.p, 1, args, &rows);
    buf_free(&p);
    buf_free(&sql);
    if (rc < 0)
        return rc;
    pthread_rwlock_wrlock(&lk);
    /* rows not returned are gone: forget what we knew (known, not active) */
    for (int i = 0; i < n; i++) {
        struct product_attr *a = (struct product_attr *)product__attr_find(ids[i]);
        if (a)
            a->flags = PA_KNOWN;
    }
    int nr = db_rows_count(rows);
    for (int i = 0; i < nr && rc >= 0; i++)
        rc = put_row(rows, i);
    pthread_rwlock_unlock(&lk);
    db_rows_free(rows);
    return rc < 0 ? rc : 0;
}

/* Ids the copy does not know (written by another process): read under sync_mu, so this
 * read cannot land after, and undo, a newer sync of the same rows. */
int product__attrs_fetch(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n)
{
    pthread_mutex_lock(&sync_mu);
    int rc = fetch_rows(c, d, ids, n);
    pthread_mutex_unlock(&sync_mu);
    return rc;
}

void product__attrs_dirty(int64_t id)
{
    pthread_mutex_lock(&dirty_mu);
    if (id <= 0 || ndirty == DIRTY_MAX)
        dirty_all = true;
    else
        dirty[ndirty++] = id;
    atomic_fetch_add(&dirty_seq, 1);
    pthread_mutex_unlock(&dirty_mu);
}

static bool covered(void)
{
    /* synced_seq never passes dirty_seq: equal means the last dirtying is in the copy */
    uint64_t done = atomic_load_explicit(&synced_seq, memory_order_acquire);
    return done == atomic_load_explicit(&dirty_seq, memory_order_acquire);
}

int product__attrs_sync(struct db_conn *c, enum db_dialect d)
{
    if (covered())
        return 0;
    pthread_mutex_lock(&sync_mu);
    if (covered()) { /* a sync that finished while we waited covered us */
        pthread_mutex_unlock(&sync_mu);
        return 0;
    }
    static int64_t ids[DIRTY_MAX];
    pthread_mutex_lock(&dirty_mu);
    bool all = dirty_all;
    int n = ndirty;
    uint64_t seq = atomic_load(&dirty_seq);
    memcpy(ids, dirty, (size_t)n * sizeof *ids);
    ndirty = 0;
    dirty_all = false;
    pthread_mutex_unlock(&dirty_mu);
    int rc = all || !loaded ? load_all(c) : fetch_rows(c, d, ids, n);
    if (rc < 0) { /* try again next time: synced_seq stays behind */
        pthread_mutex_lock(&dirty_mu);
        dirty_all = true;
        pthread_mutex_unlock(&dirty_mu);
        log_warn("product: search attributes not refreshed: %s", err_str(rc));
    } else {
        /* only now, with the rows in the copy, may readers skip the sync */
        atomic_store_explicit(&synced_seq, seq, memory_order_release);
    }
    pthread_mutex_unlock(&sync_mu);
    return rc;
}

void product__attrs_free(void)
{
    pthread_rwlock_wrlock(&lk);
    free(tab);
    tab = NULL;
    cap = used = 0;
    free(cats);
    cats = NULL;
    ncats = capcats = 0;
    loaded = false;
    pthread_rwlock_unlock(&lk);
    pthread_mutex_lock(&dirty_mu);
    ndirty = 0;
    dirty_all = true;
    atomic_fetch_add(&dirty_seq, 1);
    pthread_mutex_unlock(&dirty_mu);
}
