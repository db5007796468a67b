/* SPDX-License-Identifier: MIT */
/* product_internal.h — shared between the product service's own files only. */
#ifndef EMPORIUM_PRODUCT_INTERNAL_H
#define EMPORIUM_PRODUCT_INTERNAL_H
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "emporium/buf.h"
#include "emporium/db.h"
#include "emporium/http.h"
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

/* Column list every product read uses; product__json() and product__info_from_row() index
 * into it. */
#define PRODUCT_COLS                                                                        \
    "p.id, p.sku, p.name, p.description, p.category, p.price, p.currency, p.image_url, "    \
    "p.attributes, p.active, p.stock_available, p.created_at, p.updated_at, p.weight_grams"
enum {
    PC_ID, PC_SKU, PC_NAME, PC_DESC, PC_CATEGORY, PC_PRICE, PC_CURRENCY, PC_IMAGE, PC_ATTRS,
    PC_ACTIVE, PC_STOCK, PC_CREATED, PC_UPDATED, PC_WEIGHT, PC_NCOLS
};

extern const struct http_route product__routes[];
/* GET /api/v1/products (product_search.c). */
int product__list(struct http_req *req);

/* The catalog's database. */
struct db *product__db(struct app *app);

/* The public JSON of a product row (PRODUCT_COLS starting at column `col0`), appended to
 * out as compact JSON text (stable member order, so equal rows give equal bytes). */
void product__json_row(struct buf *out, const struct db_rows *rows, int row);

/* Cache plumbing (product_cache.c). Keys: "p:<id>" (product response bytes),
 * "i:<id>" (struct product_info), lists "l:<gen>:…", categories "c:<gen>". */
int product__cache_init(void);
void product__cache_deinit(void);
struct cache *product__cache(void);
uint64_t product__generation(void);
/* After a write committed: drops the product's entries locally, bumps the generation when
 * lists may have changed, and publishes on cache-invalidation for the other processes. */
void product__invalidate(int64_t id, bool lists);

/* Search attributes (product_attrs.c): an in-memory copy of what filters and sorts read. */
enum { PA_KNOWN = 1, PA_ACTIVE = 2, PA_IN_STOCK = 4 };
struct product_attr {
    int64_t id; /* 0: empty slot */
    int64_t price;
    uint16_t cat;     /* index for product__attr_cat() */
    uint8_t flags;    /* PA_*; only PA_KNOWN: deleted */
    uint8_t name_len; /* bytes, at most 255 */
};
/* Brings the copy up to date (first load, rows dirtied by writes); c is a products
 * connection. */
int product__attrs_sync(struct db_conn *c, enum db_dialect d);
/* Reads these ids' rows into the copy (rows not found are marked deleted). */
int product__attrs_fetch(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n);
/* Marks a product's row (id <= 0: all rows) for re-reading before the next search. */
void product__attrs_dirty(int64_t id);
void product__attrs_free(void);
/* Lookups: between product__attrs_rdlock() and product__attrs_unlock() only. */
void product__attrs_rdlock(void);
void product__attrs_unlock(void);
const struct product_attr *product__attr_find(int64_t id);
int product__attr_cat(const char *slug); /* -1: no product has that category */
/* A list of ids as one text parameter and the matching SQL condition on a column `id`
 * (json_each on SQLite, string_to_array on PostgreSQL). */
void product__ids_param(struct buf *b, enum db_dialect d, const int64_t *ids, int n);
const char *product__ids_in(enum db_dialect d);

/* Seeding (product_seed.c). */
int product__seed_command(struct app *app, int argc, char **argv);
int product__on_serve(struct app *app);
/* Generates and inserts n products over m categories; progress on a TTY when show. */
int product__seed(struct app *app, int n, int m, bool show_progress, uint32_t seed);

/* Validation helpers shared by HTTP and the seed. */
bool product__slug_ok(const char *s);
bool product__sku_ok(const char *s);
/* Strong ETag of bytes: "\"<16 hex>\"" into out (at least 20 bytes). */
void product__etag(const char *data, size_t len, char out[24]);
/* True when the If-None-Match header value lists etag (or is "*"). */
bool product__etag_matches(const char *header, const char *etag);

#endif
