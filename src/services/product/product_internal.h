/* SPDX-License-Identifier: MIT */
/* product_internal.h — shared between the product service's own files only.
 *
 * Layers: product_http.c (parse, call, render: the only file that includes emporium/http.h)
 * → product.c (the rules, the client interface, the service's context) and its helpers
 * product_search.c, product_cache.c, product_attrs.c, product_seed.c → product_store.c (the
 * schema and every SQL statement). */
#ifndef EMPORIUM_PRODUCT_INTERNAL_H
#define EMPORIUM_PRODUCT_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "emporium/buf.h"
#include "emporium/db.h"
#ifndef EMPORIUM_SERVICE_NO_HTTP
#define EMPORIUM_SERVICE_NO_HTTP /* layered: only the *_http.c files see HTTP */
#endif
#include "emporium/service.h"
#include "emporium/svc/product.h"

#define PRODUCT_SKU_MAX 64
#define PRODUCT_NAME_MAX 200
#define PRODUCT_DESC_MAX 5000
#define PRODUCT_SLUG_MAX 64
#define PRODUCT_CATNAME_MAX 100
#define PRODUCT_URL_MAX 1000
#define PRODUCT_ATTRS_MAX 4096
#define PRODUCT_PRICE_MAX 100000000000LL /* 1e9 in major units */
#define PRODUCT_Q_MAX 200
#define PRODUCT_MAX_WORDS 16
#define PRODUCT_WORD_MAX 64

extern const struct service_db product__dbs[];
/* Lifecycle (product.c); the service definition is in product_http.c, next to its routes. */
int product__init(struct app *app);
void product__deinit(struct app *app);

/* ---- the service's context (app_service_ctx(app, "product")) -------------------------- */

/* Search attributes (product_attrs.c): an in-memory copy of what filters and sorts read. */
enum { PA_KNOWN = 1, PA_ACTIVE = 2, PA_IN_STOCK = 4 };
struct product_attr {
    int64_t id;
    int64_t price;
    uint16_t cat;     /* index for product__attr_cat() */
    uint8_t flags;    /* PA_*; only PA_KNOWN: deleted */
    uint8_t name_len; /* bytes, at most 255 */
};

#define PRODUCT_DIRTY_MAX 4096

struct product_attrs {
    pthread_rwlock_t lk;
    /* one row per product id ever seen, dense: a product keeps its slot for the life of the
     * copy (a search index may remember it) */
    struct product_attr *rows;
    uint32_t nrows, caprows;
    struct pa_slot {
        int64_t id; /* 0: empty */
        uint32_t slot;
    } * tab; /* id -> slot: open addressing */
    size_t cap;
    char (*cats)[PRODUCT_SLUG_MAX + 1];
    int ncats, capcats;
    bool loaded;
    pthread_mutex_t sync_mu;
    pthread_mutex_t dirty_mu;
    int64_t dirty[PRODUCT_DIRTY_MAX];
    int64_t sync_ids[PRODUCT_DIRTY_MAX]; /* sync_mu held */
    int ndirty;
    bool dirty_all;
    _Atomic uint64_t dirty_seq;  /* bumped by every product__attrs_dirty() */
    _Atomic uint64_t synced_seq; /* dirty_seq covered by the last finished sync */
};

struct product_index; /* product_index.c */

struct product_ctx {
    struct app *app;
    struct cache *l1;            /* NULL when EMPORIUM_PRODUCT_CACHE_MB=0 */
    struct cache *matches;       /* search match sets (L1); NULL with l1 */
    struct cache *lists;         /* list/search pages in Redis (L2); NULL: none */
    _Atomic uint64_t generation; /* bumped when lists may have changed */
    struct product_attrs attrs;
    struct product_index *_Atomic index; /* made on the first search; product__index_free */
    int64_t started_ms; /* cache-invalidation events from before this are skipped */
};

/* The context; never NULL while the service runs (init() succeeded). */
struct product_ctx *product__ctx(struct app *app);
/* The catalog's database. */
struct db *product__db(struct app *app);

/* ---- writes (product.c) ----------------------------------------------------------------- */

/* A product write as the admin routes parse it. NULL / has_* false: not given. */
struct product_input {
    const char *sku, *name, *description, *category, *category_name, *image_url;
    const char *currency; /* NULL on update: keep the product's currency */
    char *attributes;     /* serialised JSON object (malloc'd; product__input_free) */
    int64_t price, weight;
    int active; /* -1 unset */
    bool has_price, has_weight;
};
void product__input_free(struct product_input *in);

/* Each returns the product's public JSON in *json (a write's response) and logs the domain
 * event with the ids. ERR_CONFLICT: the SKU is taken; ERR_NOTFOUND: no such product. */
int product__create(struct app *app, int64_t admin_id, const struct product_input *in, int64_t *id,
                    struct buf *json);
int product__update(struct app *app, int64_t admin_id, int64_t id, const struct product_input *in,
                    struct buf *json);
int product__delete(struct app *app, int64_t admin_id, int64_t id);

/* ---- reads (product.c): cached values are "<etag>\n<json>" ----------------------------- */

/* GET /products/{id}: one byte 'A' (active) or 'H' (hidden), then "<etag>\n<json>". */
int product__get_bytes(struct app *app, int64_t id, struct buf *out);
/* GET /categories: "<etag>\n<json>". */
int product__categories_bytes(struct app *app, struct buf *out);

/* The public JSON of a product row (PRODUCT_COLS) appended to out (stable member order, so
 * equal rows give equal bytes). */
void product__json_row(struct buf *out, const struct db_rows *rows, int row);
/* Strong ETag of bytes: "\"<16 hex>\"" into out (at least 20 bytes). */
void product__etag(const char *data, size_t len, char out[24]);
/* Appends "<etag>\n<json>" to out and frees json. */
int product__tagged(struct buf *json, struct buf *out);

/* Validation shared by the routes and the seed. */
bool product__slug_ok(const char *s);
bool product__sku_ok(const char *s);

/* ---- search (product_search.c) ------------------------------------------------------------ */

enum product_sort {
    PRODUCT_SORT_NEWEST = 'n',
    PRODUCT_SORT_PRICE_ASC = 'a',
    PRODUCT_SORT_PRICE_DESC = 'd',
    PRODUCT_SORT_RELEVANCE = 'r'
};

/* GET /api/v1/products as plain data. */
struct product_query {
    char words[PRODUCT_MAX_WORDS][PRODUCT_WORD_MAX + 1];
    int nwords;
    char category[PRODUCT_SLUG_MAX + 1];
    int64_t min_price, max_price; /* -1: none */
    bool in_stock;
    enum product_sort sort;
    int limit;
    bool has_cursor;
    int64_t cur_key, cur_id;
    double cur_rank;
};

/* Cuts q into words (q: at most PRODUCT_Q_MAX bytes of valid UTF-8, else ERR_INVALID). */
int product__query_words(struct product_query *q, const char *text);
/* Reads a cursor of this query's sort; ERR_INVALID when it is not one. */
int product__query_cursor(struct product_query *q, const char *cursor);
/* A page: "<etag>\n<json>" into out (from the L1 when warm). */
int product__search(struct app *app, const struct product_query *q, struct buf *out);

/* ---- cache (product_cache.c) ------------------------------------------------------------ */

int product__cache_init(struct product_ctx *ctx);
void product__cache_deinit(struct product_ctx *ctx);
uint64_t product__generation(struct product_ctx *ctx);
/* After an admin write committed: drops the product's entries locally, bumps the generation
 * when lists may have changed, and writes a product.invalidated event to the catalog's outbox
 * (topic cache-invalidation) so that every other process drops them too (id 0: every list). */
void product__invalidate(struct product_ctx *ctx, int64_t id, bool lists);
/* The same in this process only, for stock figures: every checkout changes them; the other
 * processes' entries age out. The product's product_get_info entry stays: it holds no stock,
 * and the checkout that changed the stock reads it. */
void product__invalidate_local(struct product_ctx *ctx, int64_t id, bool lists);

/* ---- search pages (product_search.c) ----------------------------------------------------- */

/* A page candidate; rank only matters (and is only set) for the relevance order. */
struct product_cand {
    int64_t id, price;
    double rank;
};

/* < 0 when a comes before b in the page order of s. */
static inline int product__cand_cmp(enum product_sort s, const struct product_cand *a,
                                    const struct product_cand *b)
{
#define PRODUCT_CMP(x, y) ((x) < (y) ? -1 : (x) > (y) ? 1 : 0)
    int c;
    switch (s) {
    case PRODUCT_SORT_RELEVANCE:
        return (c = PRODUCT_CMP(a->rank, b->rank)) ? c : PRODUCT_CMP(a->id, b->id);
    case PRODUCT_SORT_PRICE_ASC:
        return (c = PRODUCT_CMP(a->price, b->price)) ? c : PRODUCT_CMP(a->id, b->id);
    case PRODUCT_SORT_PRICE_DESC:
        return (c = PRODUCT_CMP(b->price, a->price)) ? c : PRODUCT_CMP(b->id, a->id);
    case PRODUCT_SORT_NEWEST:
    default:
        return PRODUCT_CMP(b->id, a->id);
    }
#undef PRODUCT_CMP
}

/* Keeps the k first candidates in order: top[0..*n). */
void product__top_insert(enum product_sort s, struct product_cand *top, int *n, int k,
                         const struct product_cand *c);

/* ---- the in-memory full-text index (product_index.c) ---------------------------------- */

/* The most ids product__index_page() reports as unknown to the attribute copy. */
#define PRODUCT_UNKNOWN_MAX 512

/* A search page's candidates straight from the in-memory index: the words' matches, filtered
 * by the attribute copy's columns (each index document remembers its product's slot there),
 * the k first after q's cursor in q's order into top[0..*nt), the relevance rank as
 * load_matches() gives it. Products the copy does not know are skipped; when unknown is not
 * NULL their ids are put there (*nunknown, at most PRODUCT_UNKNOWN_MAX, more: ERR_UNSUPPORTED)
 * for the caller to read them and ask again. The copy must have been synced; it is read
 * under its read lock. ERR_UNSUPPORTED as for product__index_match(). */
int product__index_page(struct product_ctx *ctx, struct db *db, const struct product_query *q,
                        struct product_cand *top, int k, int *nt, int64_t *unknown, int *nunknown);

/* The match set of q's words, as search_page() caches it ({count, 0}, then (id, rank) pairs),
 * from the in-memory index. ERR_UNSUPPORTED when the index cannot answer exactly now (not
 * built yet, busy syncing, PostgreSQL, a word FTS5 cuts in several tokens): ask FTS5. */
int product__index_match(struct product_ctx *ctx, struct db *db, const struct product_query *q,
                         struct buf *out);
void product__index_free(struct product_index *x); /* NULL is a no-op */
/* Starts building the index on a background thread (service start, embedded mode only). */
void product__index_warm(struct product_ctx *ctx, struct db *db);

/* ---- search attributes (product_attrs.c) --------------------------------------------- */

void product__attrs_init(struct product_attrs *a);
void product__attrs_free(struct product_attrs *a);
/* Brings the copy up to date (first load, rows dirtied by writes); c is a products
 * connection. */
int product__attrs_sync(struct product_attrs *a, struct db_conn *c, enum db_dialect d);
/* Reads these ids' rows into the copy (rows not found are marked deleted). */
int product__attrs_fetch(struct product_attrs *a, struct db_conn *c, enum db_dialect d,
                         const int64_t *ids, int n);
/* Marks a product's row (id <= 0: all rows) for re-reading before the next search. */
void product__attrs_dirty(struct product_attrs *a, int64_t id);
/* Lookups: between product__attrs_rdlock() and product__attrs_unlock() only. */
void product__attrs_rdlock(struct product_attrs *a);
void product__attrs_unlock(struct product_attrs *a);
const struct product_attr *product__attr_find(const struct product_attrs *a, int64_t id);
/* The product's slot in a->rows (stable while the service runs), -1 when unknown. */
int64_t product__attr_slot(const struct product_attrs *a, int64_t id);
int product__attr_cat(const struct product_attrs *a, const char *slug); /* -1: none */

/* ---- seed (product_seed.c) ------------------------------------------------------------- */

int product__seed_command(struct app *app, int argc, char **argv);
/* The command's flags, checked by main.c before the data dir is opened. */
extern const struct cli_command product__seed_cli;
int product__on_serve(struct app *app);
/* Generates and inserts n products over m categories; progress on a TTY when show. */
int product__seed(struct app *app, int n, int m, bool show_progress, uint32_t seed);

/* ---- store (product_store.c): every SQL statement on the `products` database ----------- */

/* The column list every product read returns, in this order. */
enum {
    PC_ID,
    PC_SKU,
    PC_NAME,
    PC_DESC,
    PC_CATEGORY,
    PC_PRICE,
    PC_CURRENCY,
    PC_IMAGE,
    PC_ATTRS,
    PC_ACTIVE,
    PC_STOCK,
    PC_CREATED,
    PC_UPDATED,
    PC_WEIGHT,
    PC_NCOLS
};

int product__store_info(struct db *db, int64_t id, struct product_info *out);
/* One product's row (PC_* columns); ERR_NOTFOUND when none. */
int product__store_row(struct db *db, int64_t id, struct db_rows **out);
/* Inserts (with its category, created when new) in one transaction. ERR_CONFLICT: SKU taken. */
int product__store_insert(struct db *db, int64_t id, const struct product_input *in, int64_t now);
/* Updates the given fields; *old (may be NULL) receives the price before. Returns 1, or 0
 * when there is no such product; ERR_CONFLICT: SKU taken. */
int product__store_update(struct db *db, int64_t id, const struct product_input *in, int64_t now,
                          struct product_info *old);
/* 1 deleted, 0 no such product. */
int product__store_delete(struct db *db, int64_t id);
/* slug, name, active product count; ordered by name. */
int product__store_categories(struct db *db, struct db_rows **out);
/* stock_available := available[i] for ids[i], i < n (ids distinct, in ascending order: the
 * rows are locked in that order), in one transaction (on SQLite one per PRODUCT_STOCK_CHUNK
 * products).
 * change[i] receives 0 (no change), 1 (changed) or 2 (changed and crossed zero). Returns 0,
 * or an error: then no change[] is meaningful. */
#define PRODUCT_STOCK_CHUNK 16 /* two statements a product: DB_STMT_MAX per pipeline */
int product__store_set_stock(struct db *db, const int64_t *ids, const int64_t *available, int n,
                             unsigned char *change);
/* A listing without words (PC_* columns, limit + 1 rows, keyset after the cursor). */
int product__store_list(struct db *db, const struct product_query *q, struct db_rows **out);
/* Full-text matches of the words, ordered by id: (id) on SQLite, with (named) the ids whose
 * name alone matches; (id, -rank) on PostgreSQL, named NULL. */
int product__store_match(struct db *db, const struct product_query *q, struct db_rows **all,
                         struct db_rows **named);
/* Rows (PC_* columns) of these ids, any order. */
int product__store_rows_by_ids(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n,
                               struct db_rows **out);
/* Text rows (id, name, description, updated_at) for the in-memory index: ids > after in id
 * order (at most limit), or every row updated at or after since. */
int product__store_text_chunk(struct db *db, int64_t after, int limit, struct db_rows **out);
int product__store_text_since(struct db *db, int64_t since, struct db_rows **out);
int product__store_text_newest(struct db *db, int64_t *newest); /* MAX(updated_at), 0: none */
/* Search attribute rows (id, price, category, in stock, active, name length): ids > after in
 * id order (at most limit), or these ids. */
int product__store_attr_chunk(struct db_conn *c, int64_t after, int limit, struct db_rows **out);
int product__store_attr_ids(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n,
                            struct db_rows **out);
/* Seeding (one connection, one transaction held by the seed). */
int product__store_count(struct db_conn *c, int64_t *n);
int product__store_category(struct db_conn *c, const char *slug, const char *name, int64_t now);
#define PRODUCT_SEED_COLS 10 /* id, sku, name, desc, category, price, image, attrs, weight, stock */
/* Inserts `rows` products (PRODUCT_SEED_COLS values each, then `now`); SKUs taken are skipped. */
int product__store_seed_insert(struct db_conn *c, int rows, const struct db_val *args);
/* A bigger page cache for a bulk load (SQLite), or back to normal. */
void product__store_bulk_mode(struct db *db, struct db_conn *c, bool on);
/* After a bulk load: PostgreSQL merges the search index's pending entries; SQLite: nothing. */
int product__store_index_flush(struct db *db);
/* 1 when the catalog has no product. */
int product__store_empty(struct db *db);

/* ---- product_remote.c: product_get_info over HTTP (EMPORIUM_PRODUCT_URL), for a process
 * that does not run the catalog. */
int product__remote_get_info(struct app *app, int64_t id, struct product_info *out);

#endif
