/* SPDX-License-Identifier: MIT */
/* cart_internal.h — shared between the cart service's files only.
 *
 * Three layers: cart_http.c (routes: who is calling, parse, render; the only file that
 * includes emporium/http.h), cart.c (domain: tokens, changes and their limits, the merge,
 * the guest sweep, the client interface of svc/cart.h), cart_store.c (every SQL statement,
 * cart__store_*, and the schema). */
#ifndef EMPORIUM_CART_INTERNAL_H
#define EMPORIUM_CART_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/buf.h"
#include "emporium/db.h"
#include "emporium/svc/cart.h"
#include "emporium/svc/product.h"

#define CART_MAX_QTY 99
/* A guest cart token: base64url of 16 random bytes and a 16-byte HMAC of them. */
#define CART_TOKEN_LEN 43

/* Whose cart: a user, or a guest named by the SHA-256 (hex) of its token. */
struct cart_owner {
    int64_t user_id;     /* 0 for a guest */
    char token_hash[65]; /* guests only */
};

/* One line as stored. */
struct cart_item {
    int64_t product_id;
    char name[201];
    int quantity;
    int64_t unit_price;
    char currency[4];
    int64_t added_at; /* the lines' order: (added_at, product_id) */
};

/* A cart as read: n lines in items (malloc'd by cart__store_load, sized to the cart: a
 * request holds a few hundred bytes, not CART_MAX_LINES lines). Start from {0}; release the
 * lines with cart__view_clear(). */
struct cart_view {
    int n;
    struct cart_item *items;
};
void cart__view_clear(struct cart_view *v);

/* --- domain (cart.c), for the HTTP layer --- */

/* Issues a new guest token (NUL-terminated, CART_TOKEN_LEN chars) into out. */
void cart__token_new(char out[CART_TOKEN_LEN + 1]);
/* Whether token is one this deployment issued (its HMAC checks out). */
bool cart__token_valid(const char *token);
void cart__token_hash(const char *token, char out[65]);

/* Why a change was refused (beside its ERR_* code). */
enum cart_refusal {
    CART_REFUSE_NONE,
    CART_REFUSE_NO_PRODUCT,  /* ERR_NOTFOUND: unknown or inactive product */
    CART_REFUSE_LINE_MAX,    /* ERR_INVALID: the line would exceed CART_MAX_QTY (have) */
    CART_REFUSE_CART_FULL,   /* ERR_CONFLICT: CART_MAX_LINES lines already */
    CART_REFUSE_NOT_IN_CART, /* ERR_NOTFOUND: PATCH of a line that is not there */
    CART_REFUSE_CURRENCY,    /* ERR_CONFLICT: another currency than the cart's */
};
struct cart_refusal_info {
    enum cart_refusal why;
    int have; /* LINE_MAX: the quantity already in the cart */
};

/* The owner's cart (an empty view when it has none). */
int cart__get(struct app *app, const struct cart_owner *o, struct cart_view *out);
/* Adds quantity of a product (its name and price read from the catalog now); SET changes a
 * line's quantity (0 removes); REMOVE drops a line (idempotent). *out is the cart after the
 * change. Refusals: an ERR_* code with *why filled. ERR_UNAVAILABLE when the catalog is not
 * reachable. */
int cart__add(struct app *app, const struct cart_owner *o, int64_t product_id, int quantity,
              struct cart_view *out, struct cart_refusal_info *why);
int cart__set(struct app *app, const struct cart_owner *o, int64_t product_id, int quantity,
              struct cart_view *out, struct cart_refusal_info *why);
int cart__remove(struct app *app, const struct cart_owner *o, int64_t product_id,
                 struct cart_view *out);

/* The same changes without waiting for their commit (the HTTP layer parks the request
 * meanwhile). cart__change_prepare() checks what can be checked at once (the product, for an
 * add) and fills op; 0, or the refusal as cart__add() returns it. cart__change_submit() then
 * queues it on the carts database's writer: done(op, rc) is called exactly once, on the
 * writer's thread, after the change is durable (rc 0) or failed (rc and *why as cart__add()
 * would return them); 0, or ERR_UNAVAILABLE at once (done not called). op, *out and *why are
 * the caller's until done. */
enum cart_op_kind { CART_OP_ADD, CART_OP_SET, CART_OP_REMOVE };
struct cart_op;
typedef void (*cart_op_done_fn)(struct cart_op *op, int rc);
struct cart_op {
    struct db_write_req w;
    enum cart_op_kind kind;
    /* cart_mem.c / cart_redis.c: the state the durable write brings the database to */
    struct cart_item line; /* the changed line after the change */
    bool gone;             /* ... or: the line was removed */
    bool touch_row;        /* upsert the carts row (new, or updated_at an hour old) */
    int64_t rev;           /* Redis: the cart's revision after the change */
    int64_t db_rev;        /* Redis: the revision the database held (write not applied) */
    bool applied;          /* Redis: the snapshot was written */
    struct cart_view snap; /* Redis: the whole cart after the change */
    void *entry;           /* cart_mem.c: the cart in memory */
    struct cart_owner owner;
    int64_t product_id;
    int quantity;
    struct product_info info; /* ADD */
    struct cart_view *v;
    struct cart_refusal_info *why;
    cart_op_done_fn done;
    void *arg;                  /* the caller's */
    struct cart_op *next_batch; /* cart_batch.c's queue */
};
int cart__change_prepare(struct app *app, struct cart_op *op, enum cart_op_kind kind,
                         const struct cart_owner *o, int64_t product_id, int quantity,
                         struct cart_view *out, struct cart_refusal_info *why);
int cart__change_submit(struct app *app, struct cart_op *op, cart_op_done_fn done, void *arg);
/* Or: runs the prepared change and waits for its commit; returns what cart__add() does. */
int cart__change_wait(struct app *app, struct cart_op *op);

/* Where carts live (chosen at init): the database alone (PostgreSQL without Redis: several
 * processes may share it), the database behind an in-memory state (embedded SQLite: this
 * process is the only writer), or Redis with the database behind it. */
enum cart_mode { CART_MODE_DB, CART_MODE_MEM, CART_MODE_REDIS };
struct cart_mem;
struct cart_redis;
struct cart_batch;
struct cart_ctx {
    enum cart_mode mode;
    struct cart_mem *mem;
    struct cart_redis *redis;
    struct cart_batch *batch; /* CART_MODE_DB on PostgreSQL: the adds' group commit */
};
struct cart_ctx *cart__ctx(struct app *app);

/* Applies a prepared change to the view v in memory, with the checks change_tx makes (the
 * same refusals in *op->why, the same ERR_*). *changed says whether anything changed; then
 * op->line / op->gone say what the line became. */
int cart__apply(struct cart_op *op, struct cart_view *v, int64_t now, bool *changed);
/* The durable write of an applied change (op->line / op->gone, op->touch_row): an intent
 * function of the carts writer. */
int cart__write_line_tx(struct db_conn *c, void *vop);
int cart__view_copy(struct cart_view *dst, const struct cart_view *src);
/* The database path (CART_MODE_DB, and beyond the memory bounds). */
int cart__get_db(struct app *app, const struct cart_owner *o, struct cart_view *out);
int cart__change_submit_db(struct app *app, struct cart_op *op);
int cart__change_wait_db(struct app *app, struct cart_op *op);
/* Counts a successful add and calls op->done(op, rc). */
void cart__change_done(struct cart_op *op, int rc);
void cart__change_counted(const struct cart_op *op, int rc);

/* The add on PostgreSQL (cart.c): the line as the add writes it; the add alone, in one
 * round trip (retried on ERR_BUSY); and its outcome once its statements ran (rc, and whether
 * the line changed, with op->v the cart after them): 0, or the refusal in op->why. */
void cart__add_item(const struct cart_op *op, struct cart_item *it);
int cart__add_once(struct app *app, struct cart_op *op);
int cart__add_outcome(struct cart_op *op, int rc, bool applied);

/* --- cart_batch.c: adds committed in batches (CART_MODE_DB on PostgreSQL) --- */
int cart__batch_new(struct app *app, struct cart_batch **out);
/* Queues a prepared add; cart__change_done(op, rc) once, on a writer thread, after its
 * commit. 0, or ERR_UNAVAILABLE when stopping (done not called). */
int cart__batch_submit(struct cart_batch *b, struct cart_op *op);
void cart__batch_free(struct cart_batch *b); /* runs what is queued first; NULL is a no-op */

/* --- cart_mem.c: the in-memory state (CART_MODE_MEM) --- */
int cart__mem_new(struct cart_mem **out);
void cart__mem_free(struct cart_mem *m);
int cart__mem_get(struct app *app, struct cart_mem *m, const struct cart_owner *o,
                  struct cart_view *out);
/* Applies the prepared op in memory and queues its durable write; done(op, rc) once, as
 * cart__change_submit() says. wait: the same, waited for on this thread. */
int cart__mem_change(struct app *app, struct cart_mem *m, struct cart_op *op, bool wait);
/* Runs fn(ctx) (a blocking database change of the owner's cart) with the owner's cart held,
 * then forgets the cart in memory (the next use reads it again). */
int cart__mem_locked(struct cart_mem *m, const struct cart_owner *o, int (*fn)(void *ctx),
                     void *ctx);
/* Forgets every guest cart without writes in flight (after the guest sweep). */
void cart__mem_forget_guests(struct cart_mem *m);
/* Timer job: drops carts idle for a while (memory is bounded by count and lines too). */
void cart__mem_trim(struct app *app, void *ctx);

/* --- cart_redis.c: carts in Redis (CART_MODE_REDIS) --- */
int cart__redis_new(struct app *app, struct cart_redis **out);
void cart__redis_free(struct cart_redis *r); /* NULL is a no-op */
int cart__redis_get(struct app *app, struct cart_redis *r, const struct cart_owner *o,
                    struct cart_view *out);
int cart__redis_change(struct app *app, struct cart_redis *r, struct cart_op *op, bool wait);
/* Deletes the Redis copy of the owner's cart (the next use reads the database). */
void cart__redis_forget(struct cart_redis *r, const struct cart_owner *o);

/* --- store (cart_store.c): SQL only --- */

/* Runs fn in a transaction on the carts database (commit on 0, rollback on > 0 = success
 * without change, rollback on < 0 = the error), retrying on ERR_BUSY. */
typedef int (*cart_tx_fn)(struct db_conn *c, void *ctx);
int cart__tx(struct app *app, cart_tx_fn fn, void *ctx);

/* The owner's cart id without creating or locking; ERR_NOTFOUND when it has none. */
int cart__store_find(struct db_conn *c, const struct cart_owner *o, int64_t *cart_id);
/* Inside a transaction: the owner's cart id, created when create is true (else
 * ERR_NOTFOUND), and its row locked so concurrent changes to one cart queue up. */
int cart__store_lock(struct db_conn *c, const struct cart_owner *o, bool create, int64_t *cart_id);
/* The lines of a cart, oldest first. */
int cart__store_load(struct db_conn *c, int64_t cart_id, struct cart_view *out);
/* How many lines the cart has, and a currency it holds ("" when empty; at most 3 bytes). */
int cart__store_shape(struct db_conn *c, int64_t cart_id, int64_t *lines, char currency[4]);
/* The whole add in one round trip, as one transaction of its own (not inside one): creates
 * or locks the owner's cart, then adds it->quantity to the line (name and price refreshed,
 * currency kept) unless the line would exceed max_qty, the cart holds another currency, or
 * it has max_lines lines without this product; then reads the cart. *applied says whether
 * the line changed; *out is the cart after it (to tell why when it did not). */
int cart__store_add_once(struct db_conn *c, const struct cart_owner *o, const struct cart_item *it,
                         int max_qty, int max_lines, struct cart_view *out, bool *applied);
/* The same add as three statements for a caller's pipeline (cart_batch.c puts several adds
 * in one db_query_many, one transaction): cart__store_add_stmts() fills a->st (pointing into
 * *a, *o and *it, which must outlive the call); cart__store_add_result() reads the outcome
 * of those statements (rc: the db_query_many result) into *out / *applied and frees the
 * rows, whatever rc is. */
struct cart_add_stmts {
    char cart_sql[384], line_sql[1024], load_sql[320];
    struct db_val ca[4], la[9], ra[2];
    struct db_rows *line, *items;
    struct db_stmt st[3];
};
void cart__store_add_stmts(struct cart_add_stmts *a, const struct cart_owner *o,
                           const struct cart_item *it, int max_qty, int max_lines, int64_t now);
int cart__store_add_result(struct cart_add_stmts *a, int rc, struct cart_view *out, bool *applied);
/* Many adds of distinct carts of one kind (users, or guests) as three set statements (the
 * carts rows, the lines, the carts read back), their values passed as arrays: for a batch
 * of k adds three statements to parse and plan instead of 3k (cart_batch.c). The checks
 * are those of cart__store_add_stmts, each add against its own cart. */
struct cart_set_stmts {
    struct buf ids, owners, pids, names, qtys, prices, curs;
    struct db_val ca[3], la[9], ra[2];
    struct db_rows *lines, *items;
    struct db_stmt st[3];
};
int cart__store_addset_stmts(struct cart_set_stmts *s, const struct cart_owner *const *owners,
                             const struct cart_item *const *items, int n, int max_qty,
                             int max_lines, int64_t now);
/* After the statements ran with result rc: each owner's cart into views[i], and whether
 * its add was applied. Frees what the statements hold. */
int cart__store_addset_result(struct cart_set_stmts *s, int rc,
                              const struct cart_owner *const *owners,
                              const struct cart_item *const *items, int n,
                              struct cart_view *const *views, bool *applied);
int cart__store_line_insert(struct db_conn *c, int64_t cart_id, const struct cart_item *it,
                            int64_t added_at);
/* Sets quantity, name and price of an existing line. */
int cart__store_line_refresh(struct db_conn *c, int64_t cart_id, const struct cart_item *it);
/* These return the number of rows changed (0 or 1) or an ERR_*. */
int cart__store_line_set_qty(struct db_conn *c, int64_t cart_id, int64_t product_id, int q);
int cart__store_line_delete(struct db_conn *c, int64_t cart_id, int64_t product_id);
/* Subtracts q; a line left at zero or below is deleted. */
int cart__store_line_subtract(struct db_conn *c, int64_t cart_id, int64_t product_id, int q);
/* Adds q to an existing line, capped at max. */
int cart__store_line_merge(struct db_conn *c, int64_t cart_id, int64_t product_id, int q, int max);
int cart__store_line_price(struct db_conn *c, int64_t cart_id, int64_t product_id,
                           int64_t unit_price, const char *currency);
int cart__store_clear(struct db_conn *c, int64_t cart_id);
/* Deletes the cart and its lines. */
int cart__store_drop(struct db_conn *c, int64_t cart_id);
/* The user's lines (at most CART_MAX_LINES), oldest first. */
int cart__store_user_lines(struct db_conn *c, int64_t user_id, struct cart_line *out, int *n);
/* PostgreSQL only (arrays): cart__store_line_subtract() of every line of the user's cart,
 * the cart row locked first, in one round trip and one transaction of its own (its commit
 * shared with other carts' subtracts: db_query_many_shared). */
int cart__store_user_subtract_once(struct db *db, int64_t user_id, const struct cart_line *lines,
                                   int n);
/* Upserts the owner's carts row (created, or updated_at = now). */
int cart__store_touch(struct db_conn *c, const struct cart_owner *o, int64_t now);
/* Sets the owner's line to it (inserted or replaced: quantity, name, price; the currency and
 * added_at of an existing line stay). Returns rows changed: 0 when the owner has no cart row. */
int cart__store_line_put(struct db_conn *c, const struct cart_owner *o, const struct cart_item *it,
                         int64_t now);
int cart__store_line_drop(struct db_conn *c, const struct cart_owner *o, int64_t product_id);
/* Writes the whole cart v as revision rev unless the database holds rev or a later one
 * (*applied false, *db_rev = the revision it holds); creates the carts row if needed. */
int cart__store_snapshot(struct db_conn *c, const struct cart_owner *o, int64_t rev,
                         const struct cart_view *v, int64_t now, bool *applied, int64_t *db_rev);
/* The revision of the owner's cart (-1 when it has no row). */
int cart__store_rev(struct db_conn *c, const struct cart_owner *o, int64_t *rev);
/* Stores hex as the token secret unless one exists, then reads the one in force. */
int cart__store_secret(struct db_conn *c, const char *hex, char *out, size_t cap);
/* Deletes up to batch guest carts (and their lines) last changed before cutoff, in one
 * transaction. Returns how many carts went, or an ERR_*. */
int cart__store_sweep_guests(struct db_conn *c, int64_t cutoff, int batch);

/* The service definition (in cart_http.c) needs these. */
int cart__init(struct app *app);
void cart__deinit(struct app *app);

#endif
