/* SPDX-License-Identifier: MIT */
/* cart.c — the cart service: user and guest carts in the `carts` database, the guest token,
 * the merge of a guest cart on login/register, and the client interface (svc/cart.h).
 *
 * A cart belongs to a user (carts.user_id) or to a guest (carts.token_hash). A guest token
 * is 16 random bytes plus a 16-byte HMAC-SHA256 of them under a secret kept in the database
 * (so every process of a deployment, and every restart, accepts the same tokens), encoded
 * base64url. Issuing one costs no write: the guest's cart row is created on its first
 * change, keyed by the SHA-256 of the token — the token itself is never stored, and a token
 * the server did not issue is never accepted (a client cannot pick a token to share).
 *
 * Every change to a cart runs in one transaction that first locks the cart row (an UPDATE
 * of carts.updated_at), so concurrent changes to one cart queue up and the per-line (99)
 * and per-cart (100 lines) limits hold under concurrency. Lines keep the product name and
 * price read from the catalog at add time (checkout refuses when they changed since, and
 * sets the new ones: cart_set_prices). Guest carts idle for EMPORIUM_GUEST_CART_TTL_DAYS
 * (30) are swept. Domain only: SQL is in cart_store.c, HTTP in cart_http.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/metrics.h"
#include "emporium/id.h"
#include "emporium/log.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "emporium/timer.h"
#include "emporium/svc/cart.h"
#include "emporium/svc/product.h"
#include "emporium/svc/user.h"
#include "cart_internal.h"

#define GUEST_SWEEP_BATCH 500
#define GUEST_SWEEP_MAX_BATCHES 20 /* per run: a run stays short; the next one goes on */

static unsigned char token_key[crypto_auth_hmacsha256_KEYBYTES];
static int guest_ttl_days = 30; /* EMPORIUM_GUEST_CART_TTL_DAYS (struct config) */

/* ---------------------------------------------------------------- guest tokens */

static int secret_init(struct app *app)
{
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "carts"), &c);
    if (rc < 0)
        return rc;
    unsigned char fresh[sizeof token_key];
    char hex[2 * sizeof token_key + 1], got[2 * sizeof token_key + 1];
    randombytes_buf(fresh, sizeof fresh);
    sodium_bin2hex(hex, sizeof hex, fresh, sizeof fresh);
    rc = cart__store_secret(c, hex, got, sizeof got);
    db_conn_give(c);
    sodium_memzero(fresh, sizeof fresh);
    sodium_memzero(hex, sizeof hex);
    size_t len = 0;
    if (rc == 0 &&
        (sodium_hex2bin(token_key, sizeof token_key, got, strlen(got), NULL, &len, NULL) != 0 ||
         len != sizeof token_key))
        rc = ERR_INTERNAL;
    sodium_memzero(got, sizeof got);
    return rc;
}

static void token_mac(const unsigned char nonce[16], unsigned char mac[16])
{
    unsigned char full[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(full, nonce, 16, token_key);
    memcpy(mac, full, 16);
}

void cart__token_new(char out[CART_TOKEN_LEN + 1])
{
    unsigned char raw[32];
    randombytes_buf(raw, 16);
    token_mac(raw, raw + 16);
    sodium_bin2base64(out, CART_TOKEN_LEN + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

bool cart__token_valid(const char *token)
{
    if (!token || strlen(token) != CART_TOKEN_LEN)
        return false;
    unsigned char raw[32], mac[16];
    size_t len = 0;
    if (sodium_base642bin(raw, sizeof raw, token, CART_TOKEN_LEN, NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        len != sizeof raw)
        return false;
    token_mac(raw, mac);
    return sodium_memcmp(mac, raw + 16, 16) == 0;
}

void cart__token_hash(const char *token, char out[65])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(out, 65, h, sizeof h);
}

/* ---------------------------------------------------------------- reading and changing */

struct cart_ctx *cart__ctx(struct app *app) { return app_service_ctx(app, "cart"); }

int cart__get(struct app *app, const struct cart_owner *o, struct cart_view *out)
{
    struct cart_ctx *x = cart__ctx(app);
    if (x && x->mode == CART_MODE_MEM)
        return cart__mem_get(app, x->mem, o, out);
    if (x && x->mode == CART_MODE_REDIS)
        return cart__redis_get(app, x->redis, o, out);
    return cart__get_db(app, o, out);
}

int cart__get_db(struct app *app, const struct cart_owner *o, struct cart_view *out)
{
    out->n = 0;
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "carts"), &c);
    if (rc < 0)
        return rc;
    int64_t cart_id;
    rc = cart__store_find(c, o, &cart_id);
    if (rc == 0)
        rc = cart__store_load(c, cart_id, out);
    else if (rc == ERR_NOTFOUND)
        rc = 0; /* no cart yet: an empty one */
    db_conn_give(c);
    return rc;
}

/* A change is one write intent (struct cart_op, cart_internal.h): change_tx runs it inside
 * the carts writer's batch, possibly more than once (a retried batch), so it starts from
 * scratch every time. */
/* Adds to the cart in ch->v (loaded by the caller, in the same transaction); the view is
 * then brought up to date in memory rather than read again. */
static int add_line(struct db_conn *c, struct cart_op *ch, int64_t cart_id)
{
    struct cart_view *v = ch->v;
    struct cart_item *line = NULL;
    for (int i = 0; i < v->n && !line; i++)
        if (v->items[i].product_id == ch->product_id)
            line = &v->items[i];
    int have = line ? line->quantity : 0;
    if (line && have + ch->quantity > CART_MAX_QTY) {
        ch->why->why = CART_REFUSE_LINE_MAX;
        ch->why->have = have;
        return ERR_INVALID;
    }
    /* One currency per cart: its subtotal is one Money. */
    for (int i = 0; i < v->n; i++) {
        if (strcmp(v->items[i].currency, ch->info.currency) != 0) {
            ch->why->why = CART_REFUSE_CURRENCY;
            return ERR_CONFLICT;
        }
    }
    struct cart_item it = {.product_id = ch->product_id,
                           .quantity = have + ch->quantity,
                           .unit_price = ch->info.price};
    snprintf(it.name, sizeof it.name, "%s", ch->info.name);
    snprintf(it.currency, sizeof it.currency, "%s", ch->info.currency);
    int rc;
    /* The price and name are refreshed to what the catalog says now. */
    if (line) {
        if ((rc = cart__store_line_refresh(c, cart_id, &it)) < 0)
            return rc;
        it.added_at = line->added_at;
        snprintf(it.currency, sizeof it.currency, "%s", line->currency); /* kept by refresh */
        *line = it;
        return 0;
    }
    if (v->n >= CART_MAX_LINES) {
        ch->why->why = CART_REFUSE_CART_FULL;
        return ERR_CONFLICT;
    }
    it.added_at = now_ms();
    if ((rc = cart__store_line_insert(c, cart_id, &it, it.added_at)) < 0)
        return rc;
    struct cart_item *items = realloc(v->items, (size_t)(v->n + 1) * sizeof *items);
    if (!items)
        return ERR_NOMEM;
    v->items = items;
    int at = v->n; /* the lines' order: (added_at, product_id) */
    while (at > 0 &&
           (items[at - 1].added_at > it.added_at ||
            (items[at - 1].added_at == it.added_at && items[at - 1].product_id > it.product_id)))
        at--;
    memmove(&items[at + 1], &items[at], (size_t)(v->n - at) * sizeof *items);
    items[at] = it;
    v->n++;
    return 0;
}

static int change_tx(struct db_conn *c, void *vctx)
{
    struct cart_op *ch = vctx;
    ch->why->why = CART_REFUSE_NONE;
    cart__view_clear(ch->v);
    int64_t cart_id;
    int rc = cart__store_lock(c, &ch->owner, ch->kind == CART_OP_ADD, &cart_id);
    if (rc == ERR_NOTFOUND) {
        if (ch->kind == CART_OP_SET) {
            ch->why->why = CART_REFUSE_NOT_IN_CART;
            return ERR_NOTFOUND;
        }
        return 1; /* removing from a cart that does not exist: an empty cart */
    }
    if (rc < 0)
        return rc;
    switch (ch->kind) {
    case CART_OP_ADD:
        if ((rc = cart__store_load(c, cart_id, ch->v)) < 0 || (rc = add_line(c, ch, cart_id)) < 0)
            return rc;
        return 0;
    case CART_OP_SET:
        rc = ch->quantity == 0 ? cart__store_line_delete(c, cart_id, ch->product_id)
                               : cart__store_line_set_qty(c, cart_id, ch->product_id, ch->quantity);
        if (rc == 0) {
            ch->why->why = CART_REFUSE_NOT_IN_CART;
            rc = ERR_NOTFOUND;
        }
        break;
    case CART_OP_REMOVE:
        rc = cart__store_line_delete(c, cart_id, ch->product_id);
        break;
    }
    if (rc < 0)
        return rc;
    rc = cart__store_load(c, cart_id, ch->v);
    return rc < 0 ? rc : 0;
}

int cart__change_prepare(struct app *app, struct cart_op *op, enum cart_op_kind kind,
                         const struct cart_owner *o, int64_t product_id, int quantity,
                         struct cart_view *out, struct cart_refusal_info *why)
{
    why->why = CART_REFUSE_NONE;
    out->n = 0;
    *op = (struct cart_op){.kind = kind,
                           .owner = *o,
                           .product_id = product_id,
                           .quantity = quantity,
                           .v = out,
                           .why = why};
    if (kind != CART_OP_ADD)
        return 0;
    /* ERR_UNAVAILABLE when the catalog does not answer (or does not run here). */
    int rc = product_get_info(app, product_id, &op->info);
    if (rc == ERR_NOTFOUND || (rc == 0 && !op->info.active)) {
        why->why = CART_REFUSE_NO_PRODUCT;
        return ERR_NOTFOUND;
    }
    return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------- changes in memory */

int cart__view_copy(struct cart_view *dst, const struct cart_view *src)
{
    cart__view_clear(dst);
    if (src->n == 0)
        return 0;
    if (!(dst->items = malloc((size_t)src->n * sizeof *dst->items)))
        return ERR_NOMEM;
    memcpy(dst->items, src->items, (size_t)src->n * sizeof *dst->items);
    dst->n = src->n;
    return 0;
}

static void view_remove_at(struct cart_view *v, int at)
{
    memmove(&v->items[at], &v->items[at + 1], (size_t)(v->n - at - 1) * sizeof *v->items);
    v->n--;
}

int cart__apply(struct cart_op *op, struct cart_view *v, int64_t now, bool *changed)
{
    *changed = false;
    op->why->why = CART_REFUSE_NONE;
    op->gone = false;
    int at = -1;
    for (int i = 0; i < v->n && at < 0; i++)
        if (v->items[i].product_id == op->product_id)
            at = i;
    if (op->kind == CART_OP_SET || op->kind == CART_OP_REMOVE) {
        if (at < 0) {
            if (op->kind == CART_OP_REMOVE)
                return 0; /* idempotent */
            op->why->why = CART_REFUSE_NOT_IN_CART;
            return ERR_NOTFOUND;
        }
        *changed = true;
        if (op->kind == CART_OP_SET && op->quantity > 0) {
            v->items[at].quantity = op->quantity;
            op->line = v->items[at];
            return 0;
        }
        op->line = v->items[at];
        op->gone = true;
        view_remove_at(v, at);
        return 0;
    }
    int have = at >= 0 ? v->items[at].quantity : 0;
    if (at >= 0 && have + op->quantity > CART_MAX_QTY) {
        op->why->why = CART_REFUSE_LINE_MAX;
        op->why->have = have;
        return ERR_INVALID;
    }
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->items[i].currency, op->info.currency) != 0) {
            op->why->why = CART_REFUSE_CURRENCY;
            return ERR_CONFLICT;
        }
    struct cart_item it = {.product_id = op->product_id,
                           .quantity = have + op->quantity,
                           .unit_price = op->info.price};
    snprintf(it.name, sizeof it.name, "%s", op->info.name);
    snprintf(it.currency, sizeof it.currency, "%s", op->info.currency);
    if (at >= 0) { /* the price and name are refreshed; the currency and the place stay */
        it.added_at = v->items[at].added_at;
        snprintf(it.currency, sizeof it.currency, "%s", v->items[at].currency);
        v->items[at] = it;
    } else {
        if (v->n >= CART_MAX_LINES) {
            op->why->why = CART_REFUSE_CART_FULL;
            return ERR_CONFLICT;
        }
        struct cart_item *items = realloc(v->items, (size_t)(v->n + 1) * sizeof *items);
        if (!items)
            return ERR_NOMEM;
        v->items = items;
        it.added_at = now;
        int pos = v->n; /* the lines' order: (added_at, product_id) */
        while (pos > 0 && (items[pos - 1].added_at > it.added_at ||
                           (items[pos - 1].added_at == it.added_at &&
                            items[pos - 1].product_id > it.product_id)))
            pos--;
        memmove(&items[pos + 1], &items[pos], (size_t)(v->n - pos) * sizeof *items);
        items[pos] = it;
        v->n++;
    }
    op->line = it;
    *changed = true;
    return 0;
}

int cart__write_line_tx(struct db_conn *c, void *vop)
{
    struct cart_op *op = vop;
    int64_t now = now_ms();
    int rc;
    if (op->touch_row && (rc = cart__store_touch(c, &op->owner, now)) < 0)
        return rc;
    if (op->gone) {
        rc = cart__store_line_drop(c, &op->owner, op->product_id);
        return rc < 0 ? rc : 0;
    }
    rc = cart__store_line_put(c, &op->owner, &op->line, now);
    if (rc == 0) { /* no carts row (yet, or any more) */
        if ((rc = cart__store_touch(c, &op->owner, now)) < 0)
            return rc;
        rc = cart__store_line_put(c, &op->owner, &op->line, now);
        if (rc == 0)
            rc = ERR_INTERNAL;
    }
    return rc < 0 ? rc : 0;
}

/* The refusal of an add that did not change its line, read off the cart as it is (ch->v,
 * after the add's statements), in the order add_line checks. */
int cart__add_outcome(struct cart_op *ch, int rc, bool applied)
{
    if (rc < 0 || applied)
        return rc;
    const struct cart_view *v = ch->v;
    for (int i = 0; i < v->n; i++)
        if (v->items[i].product_id == ch->product_id &&
            v->items[i].quantity + ch->quantity > CART_MAX_QTY) {
            ch->why->why = CART_REFUSE_LINE_MAX;
            ch->why->have = v->items[i].quantity;
            return ERR_INVALID;
        }
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->items[i].currency, ch->info.currency) != 0) {
            ch->why->why = CART_REFUSE_CURRENCY;
            return ERR_CONFLICT;
        }
    if (v->n >= CART_MAX_LINES) {
        ch->why->why = CART_REFUSE_CART_FULL;
        return ERR_CONFLICT;
    }
    return ERR_INTERNAL; /* not changed, and no reason: cannot happen under the cart lock */
}

void cart__add_item(const struct cart_op *ch, struct cart_item *it)
{
    *it = (struct cart_item){
        .product_id = ch->product_id, .quantity = ch->quantity, .unit_price = ch->info.price};
    snprintf(it->name, sizeof it->name, "%s", ch->info.name);
    snprintf(it->currency, sizeof it->currency, "%s", ch->info.currency);
}

/* PostgreSQL: an add is one round trip and one commit (cart__store_add_once) rather than
 * the writer-intent transaction of change_tx (six statements, each a round trip there).
 * Deadlocks and serialisation failures (ERR_BUSY) are retried. */
int cart__add_once(struct app *app, struct cart_op *ch)
{
    struct cart_item it;
    cart__add_item(ch, &it);
    int rc = ERR_BUSY;
    bool applied = false;
    for (int attempt = 0; attempt < 6 && rc == ERR_BUSY; attempt++) {
        struct db_conn *c;
        ch->why->why = CART_REFUSE_NONE;
        cart__view_clear(ch->v);
        if ((rc = db_conn_take(app_db(app, "carts"), &c)) < 0)
            return rc;
        rc =
            cart__store_add_once(c, &ch->owner, &it, CART_MAX_QTY, CART_MAX_LINES, ch->v, &applied);
        db_conn_give(c);
    }
    return cart__add_outcome(ch, rc, applied);
}

static bool add_is_once(struct app *app, const struct cart_op *op)
{
    struct db *db = app_db(app, "carts");
    return op->kind == CART_OP_ADD && db && db_dialect(db) == DB_POSTGRES;
}

void cart__change_counted(const struct cart_op *op, int rc)
{
    if (op->kind == CART_OP_ADD && rc >= 0 && op->why->why == CART_REFUSE_NONE)
        metrics_count("emporium_cart_adds_total", op->owner.user_id ? "customer" : "guest");
}

void cart__change_done(struct cart_op *op, int rc)
{
    cart__change_counted(op, rc);
    op->done(op, rc < 0 ? rc : 0);
}

static void change_done(struct db_write_req *w, int rc)
{
    cart__change_done((struct cart_op *)w, rc);
}

int cart__change_submit(struct app *app, struct cart_op *op, cart_op_done_fn done, void *arg)
{
    op->done = done;
    op->arg = arg;
    struct cart_ctx *x = cart__ctx(app);
    if (x && x->mode == CART_MODE_MEM)
        return cart__mem_change(app, x->mem, op, false);
    if (x && x->mode == CART_MODE_REDIS)
        return cart__redis_change(app, x->redis, op, false);
    return cart__change_submit_db(app, op);
}

int cart__change_submit_db(struct app *app, struct cart_op *op)
{
    op->w = (struct db_write_req){.fn = change_tx, .ctx = op, .done = change_done};
    if (add_is_once(app, op)) {
        struct cart_ctx *x = cart__ctx(app);
        if (x && x->batch) /* with the other adds of the moment, one commit */
            return cart__batch_submit(x->batch, op);
        change_done(&op->w, cart__add_once(app, op)); /* at once, on this thread */
        return 0;
    }
    return db_write_submit(app_db(app, "carts"), &op->w);
}

int cart__change_wait(struct app *app, struct cart_op *op)
{
    struct cart_ctx *x = cart__ctx(app);
    if (x && x->mode == CART_MODE_MEM)
        return cart__mem_change(app, x->mem, op, true);
    if (x && x->mode == CART_MODE_REDIS)
        return cart__redis_change(app, x->redis, op, true);
    return cart__change_wait_db(app, op);
}

int cart__change_wait_db(struct app *app, struct cart_op *op)
{
    int rc = add_is_once(app, op) ? cart__add_once(app, op) : cart__tx(app, change_tx, op);
    cart__change_counted(op, rc);
    return rc < 0 ? rc : 0;
}

/* The blocking form: prepare, then one intent waited for. */
static int change_run(struct app *app, enum cart_op_kind kind, const struct cart_owner *o,
                      int64_t product_id, int quantity, struct cart_view *out,
                      struct cart_refusal_info *why)
{
    struct cart_op op;
    int rc = cart__change_prepare(app, &op, kind, o, product_id, quantity, out, why);
    return rc < 0 ? rc : cart__change_wait(app, &op);
}

int cart__add(struct app *app, const struct cart_owner *o, int64_t product_id, int quantity,
              struct cart_view *out, struct cart_refusal_info *why)
{
    return change_run(app, CART_OP_ADD, o, product_id, quantity, out, why);
}

int cart__set(struct app *app, const struct cart_owner *o, int64_t product_id, int quantity,
              struct cart_view *out, struct cart_refusal_info *why)
{
    return change_run(app, CART_OP_SET, o, product_id, quantity, out, why);
}

int cart__remove(struct app *app, const struct cart_owner *o, int64_t product_id,
                 struct cart_view *out)
{
    struct cart_refusal_info why;
    return change_run(app, CART_OP_REMOVE, o, product_id, 0, out, &why);
}

/* ---------------------------------------------------------------- writes beside the changes */

/* The client interface and the merge write the database directly (cart__tx): with carts in
 * memory they run with the cart held and then forget it there; with carts in Redis the
 * database write moves the cart's revision past any change in flight (cart__store_lock) and
 * the Redis copy is then deleted, so the next use reads the cart again. */
struct held {
    struct app *app;
    cart_tx_fn fn;
    void *ctx;
};

static int held_tx(void *vh)
{
    struct held *h = vh;
    return cart__tx(h->app, h->fn, h->ctx);
}

static int nothing(void *unused)
{
    (void)unused;
    return 0;
}

static void forget(struct app *app, const struct cart_owner *o)
{
    struct cart_ctx *x = cart__ctx(app);
    if (x && x->mode == CART_MODE_REDIS)
        cart__redis_forget(x->redis, o);
    else if (x && x->mode == CART_MODE_MEM)
        cart__mem_locked(x->mem, o, nothing, NULL);
}

static int held_run(struct app *app, const struct cart_owner *o, int (*fn)(void *ctx), void *ctx)
{
    struct cart_ctx *x = cart__ctx(app);
    if (x && x->mode == CART_MODE_MEM)
        return cart__mem_locked(x->mem, o, fn, ctx);
    int rc = fn(ctx);
    forget(app, o);
    return rc;
}

/* ---------------------------------------------------------------- merge on login */

struct merge_ctx {
    int64_t user_id;
    struct cart_owner guest;
    struct cart_view *lines;
    int merged, dropped;
};

static int merge_tx(struct db_conn *c, void *vctx)
{
    struct merge_ctx *m = vctx;
    m->merged = m->dropped = 0;
    int64_t guest_id, user_cart;
    int rc = cart__store_find(c, &m->guest, &guest_id);
    if (rc == ERR_NOTFOUND)
        return 1;
    if (rc < 0)
        return rc;
    if ((rc = cart__store_load(c, guest_id, m->lines)) < 0)
        return rc;
    struct cart_owner user = {.user_id = m->user_id};
    if (m->lines->n > 0 && (rc = cart__store_lock(c, &user, true, &user_cart)) < 0)
        return rc;
    int64_t now = now_ms();
    for (int i = 0; i < m->lines->n; i++) {
        const struct cart_item *it = &m->lines->items[i];
        /* Quantities add up, capped at the per-line maximum. */
        rc = cart__store_line_merge(c, user_cart, it->product_id, it->quantity, CART_MAX_QTY);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            m->merged++;
            continue;
        }
        /* Line count, and a currency the cart already holds (a cart has one currency). */
        int64_t lines;
        char cur[4];
        if ((rc = cart__store_shape(c, user_cart, &lines, cur)) < 0)
            return rc;
        if (lines >= CART_MAX_LINES || (cur[0] && strcmp(cur, it->currency) != 0)) {
            m->dropped++;
            continue;
        }
        if ((rc = cart__store_line_insert(c, user_cart, it, now + i)) < 0)
            return rc;
        m->merged++;
    }
    rc = cart__store_drop(c, guest_id);
    return rc < 0 ? rc : 0;
}

static int merge_run(void *vh) { return held_tx(vh); }

static void merge_hook(struct app *app, int64_t user_id, const char *token)
{
    if (!token || !cart__token_valid(token) || user_id <= 0)
        return;
    struct merge_ctx m = {.user_id = user_id};
    cart__token_hash(token, m.guest.token_hash);
    m.lines = calloc(1, sizeof *m.lines);
    if (!m.lines) {
        log_error("cart: merging a guest cart into user %lld failed: out of memory",
                  (long long)user_id);
        return;
    }
    int rc = held_run(app, &(struct cart_owner){.user_id = user_id}, merge_run,
                      &(struct held){app, merge_tx, &m});
    forget(app, &m.guest);
    if (rc < 0)
        log_error("cart: merging a guest cart into user %lld failed: %s", (long long)user_id,
                  err_str(rc));
    else if (m.merged || m.dropped)
        log_event("cart.merged", LOG_I("user_id", user_id), LOG_I("lines", m.merged),
                  LOG_I("dropped", m.dropped));
    cart__view_clear(m.lines);
    free(m.lines);
}

/* ---------------------------------------------------------------- the guest sweep */

/* Guest carts idle longer than the TTL go (with their lines): anonymous add-to-cart makes a
 * row, and nothing else would ever remove it. One run deletes at most
 * GUEST_SWEEP_MAX_BATCHES × GUEST_SWEEP_BATCH carts; the next run goes on. */
static void sweep_guests(struct app *app, void *ctx)
{
    (void)ctx;
    struct db_conn *c;
    if (db_conn_take(app_db(app, "carts"), &c) < 0)
        return;
    int64_t cutoff = now_ms() - (int64_t)guest_ttl_days * 86400 * 1000;
    int total = 0, rc = 0;
    for (int i = 0; i < GUEST_SWEEP_MAX_BATCHES; i++) {
        if ((rc = cart__store_sweep_guests(c, cutoff, GUEST_SWEEP_BATCH)) <= 0)
            break;
        total += rc;
    }
    db_conn_give(c);
    if (rc < 0)
        log_warn("cart: the guest cart sweep failed: %s", err_str(rc));
    struct cart_ctx *x = cart__ctx(app);
    if (total > 0 && x && x->mode == CART_MODE_MEM)
        cart__mem_forget_guests(x->mem); /* idle for days: none is in use */
    if (total > 0)
        log_event("cart.guests_swept", LOG_I("carts", total), LOG_I("ttl_days", guest_ttl_days));
}

/* ---------------------------------------------------------------- client interface */

int cart_get_lines(struct app *app, int64_t user_id, struct cart_line *out, int *n)
{
    *n = 0;
    struct db_conn *c; /* ERR_UNAVAILABLE when this process does not run the service */
    int rc = db_conn_take(app_db(app, "carts"), &c);
    if (rc < 0)
        return rc;
    rc = cart__store_user_lines(c, user_id, out, n);
    db_conn_give(c);
    return rc;
}

struct lines_ctx {
    int64_t user_id;
    enum { LINES_CLEAR, LINES_SUBTRACT, LINES_PRICE } what;
    const struct cart_line *lines;
    int n;
};

static int lines_tx(struct db_conn *c, void *vctx)
{
    struct lines_ctx *x = vctx;
    struct cart_owner o = {.user_id = x->user_id};
    int64_t cart_id;
    int rc = cart__store_lock(c, &o, false, &cart_id);
    if (rc == ERR_NOTFOUND)
        return 1;
    if (rc < 0)
        return rc;
    if (x->what == LINES_CLEAR)
        return cart__store_clear(c, cart_id);
    for (int i = 0; rc >= 0 && i < x->n; i++) {
        const struct cart_line *l = &x->lines[i];
        rc = x->what == LINES_SUBTRACT
                 ? cart__store_line_subtract(c, cart_id, l->product_id, l->quantity)
                 : cart__store_line_price(c, cart_id, l->product_id, l->unit_price, l->currency);
    }
    return rc < 0 ? rc : 0;
}

struct lines_run_ctx {
    struct app *app;
    struct lines_ctx *x;
};
static int lines_held(void *vr);

static int lines_run(struct app *app, int64_t user_id, int what, const struct cart_line *lines,
                     int n)
{
    if (n < 0 || (n > 0 && !lines))
        return ERR_INVALID;
    struct lines_ctx x = {.user_id = user_id, .what = what, .lines = lines, .n = n};
    struct lines_run_ctx r = {app, &x};
    return held_run(app, &(struct cart_owner){.user_id = user_id}, lines_held, &r);
}

static int lines_held(void *vr)
{
    struct lines_run_ctx *r = vr;
    struct app *app = r->app;
    struct lines_ctx *x = r->x;
    int64_t user_id = x->user_id;
    int what = (int)x->what, n = x->n;
    const struct cart_line *lines = x->lines;
    struct db *db = app_db(app, "carts");
    if (what == LINES_SUBTRACT && n > 0 && db && db_dialect(db) == DB_POSTGRES) {
        /* One round trip and one commit after each order rather than a transaction of a
         * statement or two per line. */
        int rc = ERR_BUSY;
        for (int attempt = 0; attempt < 6 && rc == ERR_BUSY; attempt++)
            rc = cart__store_user_subtract_once(db, user_id, lines, n);
        return rc;
    }
    return what == LINES_CLEAR || n ? cart__tx(app, lines_tx, x) : 0;
}

int cart_clear(struct app *app, int64_t user_id)
{
    return lines_run(app, user_id, LINES_CLEAR, NULL, 0);
}

int cart_remove_lines(struct app *app, int64_t user_id, const struct cart_line *lines, int n)
{
    return lines_run(app, user_id, LINES_SUBTRACT, lines, n);
}

int cart_set_prices(struct app *app, int64_t user_id, const struct cart_line *lines, int n)
{
    return lines_run(app, user_id, LINES_PRICE, lines, n);
}

/* ---------------------------------------------------------------- the service */

int cart__init(struct app *app)
{
    guest_ttl_days = app_config(app)->guest_cart_ttl_days;
    metrics_counter_declare("emporium_cart_adds_total", "cart",
                            "Successful add-to-cart requests, by guest or customer cart.");
    int rc = secret_init(app);
    if (rc < 0)
        return rc;
    struct cart_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return ERR_NOMEM;
    struct db *db = app_db(app, "carts");
    x->mode = app_redis(app)                      ? CART_MODE_REDIS
              : db && db_dialect(db) == DB_SQLITE ? CART_MODE_MEM
                                                  : CART_MODE_DB;
    if (x->mode == CART_MODE_MEM)
        rc = cart__mem_new(&x->mem);
    else if (x->mode == CART_MODE_REDIS)
        rc = cart__redis_new(app, &x->redis);
    else if (db && db_dialect(db) == DB_POSTGRES)
        rc = cart__batch_new(app, &x->batch);
    if (rc == 0)
        rc = app_set_service_ctx(app, "cart", x);
    if (rc < 0) {
        cart__mem_free(x->mem);
        cart__redis_free(x->redis);
        cart__batch_free(x->batch);
        free(x);
        return rc;
    }
    if ((rc = user_add_login_hook(merge_hook)) < 0)
        return rc;
    if (x->mode == CART_MODE_MEM &&
        (rc = timer_add(app, "cart.mem_trim", 60 * 1000, cart__mem_trim, x->mem)) < 0)
        return rc;
    /* First right after `serve` starts, then hourly: a TTL in days needs no finer grain. */
    return timer_add(app, "cart.guest_sweep", 3600 * 1000, sweep_guests, NULL);
}

void cart__deinit(struct app *app)
{
    sodium_memzero(token_key, sizeof token_key);
    struct cart_ctx *x = cart__ctx(app);
    if (x) {
        cart__batch_free(x->batch); /* before the database closes: its queue runs first */
        cart__mem_free(x->mem);
        cart__redis_free(x->redis);
        free(x);
        app_set_service_ctx(app, "cart", NULL);
    }
}
