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
 * price read from the catalog at add time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/service.h"
#include "emporium/svc/cart.h"
#include "emporium/svc/user.h"
#include "cart_internal.h"


static unsigned char token_key[crypto_auth_hmacsha256_KEYBYTES];

/* ---------------------------------------------------------------- guest tokens */

int cart__secret_init(struct app *app)
{
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "carts"), &c);
    if (rc < 0)
        return rc;
    unsigned char fresh[sizeof token_key];
    char hex[2 * sizeof token_key + 1];
    randombytes_buf(fresh, sizeof fresh);
    sodium_bin2hex(hex, sizeof hex, fresh, sizeof fresh);
    /* The first process to start picks the secret; everyone then reads the same one. */
    struct db_val a[] = {DB_TEXT(hex)};
    rc = db_query(c, "INSERT INTO cart_secret (id, secret) VALUES (1, $1) ON CONFLICT DO NOTHING",
                  1, a, NULL);
    struct db_rows *r = NULL;
    if (rc >= 0)
        rc = db_query(c, "SELECT secret FROM cart_secret WHERE id = 1", 0, NULL, &r);
    db_conn_give(c);
    sodium_memzero(fresh, sizeof fresh);
    sodium_memzero(hex, sizeof hex);
    if (rc < 0)
        return rc;
    size_t len = 0;
    if (db_rows_count(r) != 1 ||
        sodium_hex2bin(token_key, sizeof token_key, db_get(r, 0, 0), strlen(db_get(r, 0, 0)),
                       NULL, &len, NULL) != 0 ||
        len != sizeof token_key)
        rc = ERR_INTERNAL;
    db_rows_free(r);
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

/* ---------------------------------------------------------------- storage */

int cart__tx(struct app *app, cart_tx_fn fn, void *ctx)
{
    return db_transact(app_db(app, "carts"), fn, NULL, ctx);
}

static const char *owner_col(const struct cart_owner *o)
{
    return o->user_id ? "user_id" : "token_hash";
}

static struct db_val owner_val(const struct cart_owner *o)
{
    return o->user_id ? DB_INT(o->user_id) : DB_TEXT(o->token_hash);
}

int cart__find(struct db_conn *c, const struct cart_owner *o, int64_t *cart_id)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT id FROM carts WHERE %s = $1", owner_col(o));
    struct db_val a[] = {owner_val(o)};
    struct db_rows *r = NULL;
    int rc = db_query(c, sql, 1, a, &r);
    if (rc < 0)
        return rc;
    rc = db_rows_count(r) == 1 ? 0 : ERR_NOTFOUND;
    if (rc == 0)
        *cart_id = db_get_i64(r, 0, 0);
    db_rows_free(r);
    return rc;
}

int cart__lock(struct db_conn *c, const struct cart_owner *o, bool create, int64_t *cart_id)
{
    int64_t now = now_ms();
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE carts SET updated_at = $2 WHERE %s = $1", owner_col(o));
    struct db_val a[] = {owner_val(o), DB_INT(now)};
    int rc = db_query(c, sql, 2, a, NULL);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (!create)
            return ERR_NOTFOUND;
        /* A concurrent creator makes this a no-op (PostgreSQL waits for it to commit); the
         * UPDATE after it then locks whichever row won. */
        struct db_val ia[] = {DB_INT(id_new(0)), o->user_id ? DB_INT(o->user_id) : DB_NULLV,
                              o->user_id ? DB_NULLV : DB_TEXT(o->token_hash), DB_INT(now)};
        rc = db_query(c,
                      "INSERT INTO carts (id, user_id, token_hash, created_at, updated_at) "
                      "VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
                      4, ia, NULL);
        if (rc < 0)
            return rc;
        if ((rc = db_query(c, sql, 2, a, NULL)) < 0)
            return rc;
        if (rc != 1)
            return ERR_BUSY;
    }
    return cart__find(c, o, cart_id);
}

int cart__load(struct db_conn *c, int64_t cart_id, struct cart_view *out)
{
    struct db_val a[] = {DB_INT(cart_id), DB_INT(CART_MAX_LINES)};
    struct db_rows *r = NULL;
    int rc = db_query(c,
                      "SELECT product_id, name, quantity, unit_price, currency FROM cart_items "
                      "WHERE cart_id = $1 ORDER BY added_at, product_id LIMIT $2",
                      2, a, &r);
    if (rc < 0)
        return rc;
    out->n = db_rows_count(r);
    for (int i = 0; i < out->n; i++) {
        struct cart_item *it = &out->items[i];
        it->product_id = db_get_i64(r, i, 0);
        snprintf(it->name, sizeof it->name, "%s", db_get(r, i, 1) ? db_get(r, i, 1) : "");
        it->quantity = (int)db_get_i64(r, i, 2);
        it->unit_price = db_get_i64(r, i, 3);
        snprintf(it->currency, sizeof it->currency, "%s", db_get(r, i, 4) ? db_get(r, i, 4) : "");
    }
    db_rows_free(r);
    return 0;
}

static json_t *money(int64_t amount, const char *currency)
{
    return json_pack("{s:I,s:s}", "amount", (json_int_t)amount, "currency", currency);
}

json_t *cart__json(const struct cart_view *v)
{
    json_t *items = json_array();
    int64_t subtotal = 0, count = 0;
    for (int i = 0; items && i < v->n; i++) {
        const struct cart_item *it = &v->items[i];
        char pid[21];
        int64_t line = it->unit_price * it->quantity;
        subtotal += line;
        count += it->quantity;
        json_array_append_new(
            items, json_pack("{s:s,s:s,s:i,s:o,s:o}", "product_id", id_format(it->product_id, pid),
                             "name", it->name, "quantity", it->quantity, "unit_price",
                             money(it->unit_price, it->currency), "line_total",
                             money(line, it->currency)));
    }
    return json_pack("{s:o,s:o,s:I}", "items", items, "subtotal",
                     money(subtotal, v->n ? v->items[0].currency : "USD"), "item_count",
                     (json_int_t)count);
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
    int rc = cart__find(c, &m->guest, &guest_id);
    if (rc == ERR_NOTFOUND)
        return 1;
    if (rc < 0)
        return rc;
    if ((rc = cart__load(c, guest_id, m->lines)) < 0)
        return rc;
    struct cart_owner user = {.user_id = m->user_id};
    if (m->lines->n > 0 && (rc = cart__lock(c, &user, true, &user_cart)) < 0)
        return rc;
    int64_t now = now_ms();
    for (int i = 0; i < m->lines->n; i++) {
        const struct cart_item *it = &m->lines->items[i];
        /* Quantities add up, capped at the per-line maximum. */
        struct db_val ua[] = {DB_INT(user_cart), DB_INT(it->product_id), DB_INT(it->quantity),
                              DB_INT(CART_MAX_QTY), DB_INT(now)};
        rc = db_query(c,
                      "UPDATE cart_items SET quantity = CASE WHEN quantity + $3 > $4 THEN $4 "
                      "ELSE quantity + $3 END, updated_at = $5 "
                      "WHERE cart_id = $1 AND product_id = $2",
                      5, ua, NULL);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            m->merged++;
            continue;
        }
        struct db_rows *r = NULL;
        struct db_val ca[] = {DB_INT(user_cart)};
        /* Line count, and a currency the cart already holds (a cart has one currency). */
        if ((rc = db_query(c, "SELECT count(*), MIN(currency) FROM cart_items WHERE cart_id = $1",
                           1, ca, &r)) < 0)
            return rc;
        int64_t lines = db_get_i64(r, 0, 0);
        bool other_currency = db_get(r, 0, 1) && strcmp(db_get(r, 0, 1), it->currency) != 0;
        db_rows_free(r);
        if (lines >= CART_MAX_LINES || other_currency) {
            m->dropped++;
            continue;
        }
        struct db_val ia[] = {DB_INT(user_cart),     DB_INT(it->product_id), DB_TEXT(it->name),
                              DB_INT(it->quantity),  DB_INT(it->unit_price), DB_TEXT(it->currency),
                              DB_INT(now + i)};
        rc = db_query(c,
                      "INSERT INTO cart_items (cart_id, product_id, name, quantity, unit_price, "
                      "currency, added_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                      7, ia, NULL);
        if (rc < 0)
            return rc;
        m->merged++;
    }
    struct db_val ga[] = {DB_INT(guest_id)};
    if ((rc = db_query(c, "DELETE FROM cart_items WHERE cart_id = $1", 1, ga, NULL)) < 0)
        return rc;
    if ((rc = db_query(c, "DELETE FROM carts WHERE id = $1", 1, ga, NULL)) < 0)
        return rc;
    return 0;
}

void cart__merge_hook(struct app *app, int64_t user_id, const char *token)
{
    if (!token || !cart__token_valid(token) || user_id <= 0)
        return;
    struct merge_ctx m = {.user_id = user_id};
    cart__token_hash(token, m.guest.token_hash);
    m.lines = malloc(sizeof *m.lines);
    if (!m.lines) {
        log_error("cart: merging a guest cart into user %lld failed: out of memory",
                  (long long)user_id);
        return;
    }
    int rc = cart__tx(app, merge_tx, &m);
    if (rc < 0)
        log_error("cart: merging a guest cart into user %lld failed: %s", (long long)user_id,
                  err_str(rc));
    else if (m.dropped)
        log_warn("cart: merged %d guest line(s) into user %lld, dropped %d over the %d-line cap",
                 m.merged, (long long)user_id, m.dropped, CART_MAX_LINES);
    free(m.lines);
}

/* ---------------------------------------------------------------- client interface */

int cart_get_lines(struct app *app, int64_t user_id, struct cart_line *out, int *n)
{
    *n = 0;
    struct db_conn *c; /* ERR_UNAVAILABLE when this process does not run the service */
    int rc = db_conn_take(app_db(app, "carts"), &c);
    if (rc < 0)
        return rc;
    struct db_val a[] = {DB_INT(user_id), DB_INT(CART_MAX_LINES)};
    struct db_rows *r = NULL;
    rc = db_query(c,
                  "SELECT i.product_id, i.quantity, i.unit_price, i.currency FROM cart_items i "
                  "JOIN carts c ON c.id = i.cart_id WHERE c.user_id = $1 "
                  "ORDER BY i.added_at, i.product_id LIMIT $2",
                  2, a, &r);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    for (int i = 0; i < db_rows_count(r); i++) {
        out[i].product_id = db_get_i64(r, i, 0);
        out[i].quantity = (int)db_get_i64(r, i, 1);
        out[i].unit_price = db_get_i64(r, i, 2);
        snprintf(out[i].currency, sizeof out[i].currency, "%s", db_get(r, i, 3) ? db_get(r, i, 3) : "");
    }
    *n = db_rows_count(r);
    db_rows_free(r);
    return 0;
}

struct clear_ctx {
    int64_t user_id;
    const struct cart_line *lines; /* NULL: everything */
    int n;
};

static int clear_tx(struct db_conn *c, void *vctx)
{
    struct clear_ctx *x = vctx;
    struct cart_owner o = {.user_id = x->user_id};
    int64_t cart_id;
    int rc = cart__lock(c, &o, false, &cart_id);
    if (rc == ERR_NOTFOUND)
        return 1;
    if (rc < 0)
        return rc;
    if (!x->lines) {
        struct db_val a[] = {DB_INT(cart_id)};
        rc = db_query(c, "DELETE FROM cart_items WHERE cart_id = $1", 1, a, NULL);
        return rc < 0 ? rc : 0;
    }
    for (int i = 0; i < x->n; i++) {
        struct db_val a[] = {DB_INT(cart_id), DB_INT(x->lines[i].product_id),
                             DB_INT(x->lines[i].quantity), DB_INT(now_ms())};
        rc = db_query(c,
                      "UPDATE cart_items SET quantity = quantity - $3, updated_at = $4 "
                      "WHERE cart_id = $1 AND product_id = $2 AND quantity > $3",
                      4, a, NULL);
        if (rc == 0)
            rc = db_query(c, "DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2", 2,
                          a, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int prices_tx(struct db_conn *c, void *vctx)
{
    struct clear_ctx *x = vctx;
    struct cart_owner o = {.user_id = x->user_id};
    int64_t cart_id;
    int rc = cart__lock(c, &o, false, &cart_id);
    if (rc == ERR_NOTFOUND)
        return 1;
    for (int i = 0; rc >= 0 && i < x->n; i++) {
        struct db_val a[] = {DB_INT(cart_id), DB_INT(x->lines[i].product_id),
                             DB_INT(x->lines[i].unit_price), DB_TEXT(x->lines[i].currency),
                             DB_INT(now_ms())};
        rc = db_query(c,
                      "UPDATE cart_items SET unit_price = $3, currency = $4, updated_at = $5 "
                      "WHERE cart_id = $1 AND product_id = $2",
                      5, a, NULL);
    }
    return rc < 0 ? rc : 0;
}

int cart_set_prices(struct app *app, int64_t user_id, const struct cart_line *lines, int n)
{
    if (n < 0 || (n > 0 && !lines))
        return ERR_INVALID;
    struct clear_ctx x = {.user_id = user_id, .lines = lines, .n = n};
    return n ? cart__tx(app, prices_tx, &x) : 0;
}

int cart_clear(struct app *app, int64_t user_id)
{
    struct clear_ctx x = {.user_id = user_id};
    return cart__tx(app, clear_tx, &x);
}

int cart_remove_lines(struct app *app, int64_t user_id, const struct cart_line *lines, int n)
{
    if (n < 0 || (n > 0 && !lines))
        return ERR_INVALID;
    struct clear_ctx x = {.user_id = user_id, .lines = lines, .n = n};
    return n ? cart__tx(app, clear_tx, &x) : 0;
}

/* ---------------------------------------------------------------- the service */

static int cart_init(struct app *app)
{
    int rc = cart__secret_init(app);
    if (rc < 0)
        return rc;
    return user_add_login_hook(cart__merge_hook);
}

static void cart_deinit(struct app *app)
{
    sodium_memzero(token_key, sizeof token_key);
}

static const struct db_migration cart_migrations[] = {
    {.sql = "CREATE TABLE carts ("
            " id BIGINT PRIMARY KEY,"
            " user_id BIGINT UNIQUE,"
            " token_hash TEXT UNIQUE,"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL,"
            " CHECK ((user_id IS NULL) <> (token_hash IS NULL)));"
            "CREATE TABLE cart_items ("
            " cart_id BIGINT NOT NULL REFERENCES carts(id) ON DELETE CASCADE,"
            " product_id BIGINT NOT NULL,"
            " name TEXT NOT NULL,"
            " quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 99),"
            " unit_price BIGINT NOT NULL,"
            " currency TEXT NOT NULL,"
            " added_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL,"
            " PRIMARY KEY (cart_id, product_id));"
            "CREATE INDEX carts_updated ON carts (updated_at);"
            "CREATE TABLE cart_secret ("
            " id INTEGER PRIMARY KEY,"
            " secret TEXT NOT NULL);"},
};

static const struct service_db cart_dbs[] = {
    {"carts", 0, cart_migrations, sizeof cart_migrations / sizeof cart_migrations[0]},
    {NULL, 0, NULL, 0},
};

const struct service service_cart = {
    .name = "cart",
    .routes = cart__routes,
    .dbs = cart_dbs,
    .init = cart_init,
    .deinit = cart_deinit,
};
