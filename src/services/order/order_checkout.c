/* SPDX-License-Identifier: MIT */
/* order_checkout.c — POST /api/v1/orders: the idempotent checkout saga (ARCHITECTURE.md §3).
 *
 * 1. Validate everything that can be checked without changing anything (key, address,
 *    card, method): bad input costs nothing and records nothing.
 * 2. Look the Idempotency-Key up in the user's shard: a key already used with a different
 *    body gets 409 idempotency_key_reused; a finished one gets its stored response; one
 *    still in progress is waited for (or gets 409 request_in_progress).
 * 3. Read the cart, re-price it from the catalog, price the shipping. Nothing is recorded
 *    yet, so a failure here leaves the key unused.
 * 4. In one transaction: claim the key (INSERT (user, key, request hash); the primary key
 *    makes this the lock: a concurrent duplicate fails the insert and goes back to 2) and
 *    create the order PENDING with its items, history and order.placed event. It commits
 *    at once, so no database lock is held across the saga.
 * 5. Reserve the stock (reservation id = order id, with a TTL) — out of stock fails here.
 * 6. Authorize the payment (key derived from the order id: a retry never charges twice).
 * 7. Capture, confirm the reservation, then in one transaction: PAID + history + event +
 *    the stored response on the key. Only then does the client hear 201.
 * 8. Create the shipment, empty the cart (both retried by the recovery sweep if lost).
 * Any failure after 4 moves the order to FAILED (owing compensation) in one transaction
 * with the stored response, then compensates (release stock, void/refund). Transient
 * failures (a dependency down) drop the key instead, so the client's retry starts over. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/buf.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/outbox.h"
#include "emporium/svc/cart.h"
#include "emporium/svc/inventory.h"
#include "emporium/svc/payment.h"
#include "emporium/svc/product.h"
#include "emporium/svc/recommendation.h"
#include "emporium/svc/shipping.h"
#include "order_internal.h"

#define KEY_WAIT_MS 15000 /* a duplicate waits this long for the first request's result */

struct checkout {
    struct app *app;
    int64_t user_id, order_id;
    unsigned shard;
    struct db *db;
    const char *key;
    char hash[65];
    struct shipping_address addr;
    const char *method;
    struct payment_card card;
    int n;
    char currency[4];
    int64_t subtotal, shipping, total;
    /* Last, and not zeroed (~25 KB): only the first n are ever read. */
    struct cart_line lines[CART_MAX_LINES];
    char names[CART_MAX_LINES][201];
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* --- step 1: input --- */

static int key_check(struct http_req *req, const char **out)
{
    const char *k = http_header(req, "Idempotency-Key");
    if (!k || !*k)
        return http_fail(req, ERR_INVALID, "Idempotency-Key", "the header is required");
    size_t n = strlen(k);
    if (n > ORDER_KEY_MAX)
        return http_fail(req, ERR_INVALID, "Idempotency-Key", "must be 1 to %d characters",
                         ORDER_KEY_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || (unsigned char)k[i] > 0x7e)
            return http_fail(req, ERR_INVALID, "Idempotency-Key",
                             "must be printable ASCII characters");
    *out = k;
    return 0;
}

static int card_read(struct http_req *req, json_t *p, struct payment_card *card)
{
    if (!json_is_object(p))
        return http_fail(req, ERR_INVALID, "payment", p ? "must be an object" : "is required");
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
        if (strcmp(k, "card_number") && strcmp(k, "exp_month") && strcmp(k, "exp_year") &&
            strcmp(k, "cvc")) {
            char f[80];
            snprintf(f, sizeof f, "payment.%.60s", k);
            return http_fail(req, ERR_INVALID, f, "unknown field");
        }
    }
    json_t *num = json_object_get(p, "card_number"), *m = json_object_get(p, "exp_month"),
           *y = json_object_get(p, "exp_year"), *cvc = json_object_get(p, "cvc");
    if (!json_is_string(num) || json_string_length(num) > 40)
        return http_fail(req, ERR_INVALID, "payment.card_number", "must be a card number string");
    if (!json_is_integer(m) || json_integer_value(m) < 1 || json_integer_value(m) > 12)
        return http_fail(req, ERR_INVALID, "payment.exp_month", "must be an integer from 1 to 12");
    if (!json_is_integer(y) || json_integer_value(y) < 2000 || json_integer_value(y) > 2100)
        return http_fail(req, ERR_INVALID, "payment.exp_year", "must be a four-digit year");
    if (!json_is_string(cvc) || json_string_length(cvc) > 8)
        return http_fail(req, ERR_INVALID, "payment.cvc", "must be a string of 3 or 4 digits");
    card->number = json_string_value(num);
    card->exp_month = (int)json_integer_value(m);
    card->exp_year = (int)json_integer_value(y);
    card->cvc = json_string_value(cvc);
    const char *field, *msg;
    bool expired;
    if (payment_card_check(card, &field, &msg, &expired) < 0) {
        char f[40];
        snprintf(f, sizeof f, "payment.%s", field);
        if (expired)
            return http_fail_code(req, ERR_INVALID, "card_expired",
                                  json_pack("{s:s}", "field", f), "%s", msg);
        return http_fail(req, ERR_INVALID, f, "%s", msg);
    }
    return 0;
}

/* The request hash covers what the body asks for. The card enters only as its last four
 * digits, length and expiry: no hash of a card number is ever stored. */
static int request_hash(json_t *body, const struct payment_card *card, char out[65])
{
    const char *n = card->number;
    size_t len = strlen(n);
    json_t *doc = json_pack("{s:O,s:s,s:{s:s,s:I,s:i,s:i}}", "shipping_address",
                            json_object_get(body, "shipping_address"), "shipping_method",
                            json_string_value(json_object_get(body, "shipping_method"))
                                ? json_string_value(json_object_get(body, "shipping_method"))
                                : "standard",
                            "card", "last4", n + (len >= 4 ? len - 4 : 0), "len",
                            (json_int_t)len, "m", card->exp_month, "y", card->exp_year);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (!text)
        return ERR_NOMEM;
    unsigned char h[32];
    crypto_hash_sha256(h, (const unsigned char *)text, strlen(text));
    free(text);
    sodium_bin2hex(out, 65, h, sizeof h);
    return 0;
}

/* --- step 2: the key --- */

static int reply_stored(struct http_req *req, int status, const char *body)
{
    http_add_header(req, "Idempotent-Replayed", "true");
    return http_reply_raw(req, status, "application/json", body, strlen(body), true);
}

/* 1: no record for the key (go on; order_create claims it); 0: answered from the stored
 * record; <0: error set. A record still in progress is waited for. */
static int key_lookup(struct http_req *req, struct checkout *co)
{
    int64_t deadline = mono_ms() + KEY_WAIT_MS;
    for (;;) {
        struct db_conn *c;
        int rc = db_conn_take(co->db, &c);
        if (rc < 0)
            return rc;
        struct db_val a[] = {DB_INT(co->user_id), DB_TEXT(co->key)};
        struct db_rows *r = NULL;
        rc = db_query(c,
                      "SELECT request_hash, state, response_status, response_body FROM "
                      "idempotency_keys WHERE user_id = $1 AND idem_key = $2",
                      2, a, &r);
        db_conn_give(c);
        if (rc < 0)
            return rc;
        if (db_rows_count(r) == 0) {
            db_rows_free(r);
            return 1;
        }
        if (strcmp(db_get(r, 0, 0), co->hash) != 0) {
            db_rows_free(r);
            return http_fail_code(req, ERR_CONFLICT, "idempotency_key_reused", NULL,
                                  "this Idempotency-Key was used with a different request");
        }
        if (!strcmp(db_get(r, 0, 1), "done")) {
            rc = reply_stored(req, (int)db_get_i64(r, 0, 2), db_get(r, 0, 3));
            db_rows_free(r);
            return rc < 0 ? rc : 0;
        }
        db_rows_free(r);
        if (mono_ms() > deadline) {
            http_add_header(req, "Retry-After", "1");
            return http_fail_code(req, ERR_CONFLICT, "request_in_progress", NULL,
                                  "a request with this Idempotency-Key is still running");
        }
        sleep_ms(25);
    }
}

static int key_drop(struct checkout *co)
{
    struct db_conn *c;
    int rc = db_conn_take(co->db, &c);
    if (rc < 0)
        return rc;
    struct db_val a[] = {DB_INT(co->user_id), DB_TEXT(co->key)};
    rc = db_query(c, "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2", 2, a, NULL);
    db_conn_give(c);
    return rc < 0 ? rc : 0;
}

static int key_store(struct db_conn *c, struct checkout *co, int status, const char *body)
{
    struct db_val a[] = {DB_INT(status), DB_TEXT(body), DB_INT(now_ms()), DB_INT(co->user_id),
                         DB_TEXT(co->key)};
    int rc = db_query(c,
                      "UPDATE idempotency_keys SET state = 'done', response_status = $1, "
                      "response_body = $2, updated_at = $3 WHERE user_id = $4 AND idem_key = $5",
                      5, a, NULL);
    return rc < 0 ? rc : 0;
}

/* --- step 3: cart, prices --- */

static int price_cart(struct http_req *req, struct checkout *co)
{
    int rc = cart_get_lines(co->app, co->user_id, co->lines, &co->n);
    if (rc < 0)
        return rc;
    if (co->n == 0)
        return http_fail_code(req, ERR_INVALID, "cart_empty", NULL, "the cart is empty");
    co->subtotal = 0;
    struct shipping_item si[CART_MAX_LINES];
    for (int i = 0; i < co->n; i++) {
        struct product_info pi;
        char pid[21];
        id_format(co->lines[i].product_id, pid);
        rc = product_get_info(co->app, co->lines[i].product_id, &pi);
        if (rc == ERR_NOTFOUND || (rc == 0 && !pi.active))
            return http_fail_code(req, ERR_CONFLICT, "product_unavailable",
                                  json_pack("{s:s}", "product_id", pid),
                                  "a product in the cart is no longer sold");
        if (rc < 0)
            return rc;
        if (i == 0)
            snprintf(co->currency, sizeof co->currency, "%s", pi.currency);
        else if (strcmp(co->currency, pi.currency) != 0)
            return http_fail_code(req, ERR_CONFLICT, "currency_mismatch",
                                  json_pack("{s:s}", "product_id", pid),
                                  "the cart mixes currencies");
        /* The catalog's price now is the price: the cart's copy may be stale. */
        co->lines[i].unit_price = pi.price;
        snprintf(co->names[i], sizeof co->names[i], "%s", pi.name);
        co->subtotal += pi.price * co->lines[i].quantity;
        si[i] = (struct shipping_item){co->lines[i].product_id, co->lines[i].quantity};
    }
    struct shipping_option opt;
    rc = shipping_price(co->app, si, co->n, co->addr.country, co->method, &opt, NULL);
    if (rc < 0)
        return rc;
    /* Shipping is priced in one currency: never add it to a total in another. */
    if (strcmp(opt.currency, co->currency) != 0)
        return http_fail_code(req, ERR_CONFLICT, "currency_unsupported", NULL,
                              "shipping is only priced in %s; this cart is in %s", opt.currency,
                              co->currency);
    co->shipping = opt.price;
    co->total = co->subtotal + co->shipping;
    return 0;
}

/* --- step 4: the pending order, with the claim on the key --- */

static int order_create(struct checkout *co, const struct payment_card *card, bool *lost)
{
    *lost = false;
    struct db_conn *c;
    int rc = db_conn_take(co->db, &c);
    if (rc < 0)
        return rc;
    json_t *aj = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", co->addr.name, "line1",
                           co->addr.line1, "line2", co->addr.line2, "city", co->addr.city,
                           "region", co->addr.region, "postal_code", co->addr.postal_code,
                           "country", co->addr.country);
    char *addr = aj ? json_dumps(aj, JSON_COMPACT) : NULL;
    json_decref(aj);
    char digits[24] = "", last4[5] = "";
    size_t nd = 0;
    for (const char *s = card->number; *s && nd < sizeof digits - 1; s++)
        if (*s >= '0' && *s <= '9')
            digits[nd++] = *s;
    digits[nd] = 0;
    if (nd >= 4)
        memcpy(last4, digits + nd - 4, 5);
    const char *brand = digits[0] == '4' ? "visa" : digits[0] == '5' || digits[0] == '2' ? "mastercard"
                        : digits[0] == '3'                                            ? "amex"
                        : digits[0] == '6'                                            ? "discover"
                                                                                      : "unknown";
    sodium_memzero(digits, sizeof digits);
    int64_t now = now_ms();
    rc = addr ? db_begin(c) : ERR_NOMEM;
    /* The claim on the key commits with the order: the primary key makes it the lock, so
     * a concurrent duplicate fails here (ERR_CONFLICT, *lost) and waits for our result. */
    struct db_val k[] = {DB_INT(co->user_id), DB_TEXT(co->key), DB_TEXT(co->hash),
                         DB_INT(co->order_id), DB_INT(now)};
    if (rc == 0) {
        rc = db_query(c,
                      "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, order_id, "
                      "state, created_at, updated_at) VALUES ($1, $2, $3, $4, 'in_progress', $5, $5)",
                      5, k, NULL);
        if (rc == ERR_CONFLICT)
            *lost = true;
        else if (rc > 0)
            rc = 0;
    }
    struct db_val a[] = {DB_INT(co->order_id),  DB_INT(co->user_id),  DB_TEXT(co->currency),
                         DB_INT(co->subtotal),  DB_INT(co->shipping), DB_INT(co->total),
                         DB_TEXT(co->method),   DB_TEXT(addr ? addr : ""), DB_TEXT(brand),
                         DB_TEXT(last4),        DB_TEXT(co->key),     DB_INT(now)};
    if (rc == 0)
        rc = db_query(c,
                      "INSERT INTO orders (id, user_id, status, currency, subtotal, shipping, "
                      "total, shipping_method, shipping_address, payment_brand, payment_last4, "
                      "retryable, compensated, idempotency_key, created_at, updated_at) VALUES "
                      "($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, 0, 1, $11, $12, $12)",
                      12, a, NULL);
    json_t *items = json_array();
    for (int i = 0; rc >= 0 && i < co->n; i++) {
        struct db_val li[] = {DB_INT(co->order_id), DB_INT(i), DB_INT(co->lines[i].product_id),
                              DB_TEXT(co->names[i]), DB_INT(co->lines[i].quantity),
                              DB_INT(co->lines[i].unit_price)};
        rc = db_query(c,
                      "INSERT INTO order_items (order_id, line, product_id, name, quantity, "
                      "unit_price) VALUES ($1, $2, $3, $4, $5, $6)",
                      6, li, NULL);
        char pid[21];
        json_array_append_new(items, json_pack("{s:s,s:i,s:I}", "product_id",
                                               id_format(co->lines[i].product_id, pid),
                                               "quantity", co->lines[i].quantity, "unit_price",
                                               (json_int_t)co->lines[i].unit_price));
    }
    if (rc >= 0) {
        struct db_val h[] = {DB_INT(id_new(co->shard)), DB_INT(co->order_id), DB_INT(now)};
        rc = db_query(c, "INSERT INTO order_history (id, order_id, status, at) VALUES ($1, $2, 'pending', $3)",
                      3, h, NULL);
    }
    if (rc >= 0) {
        char uid[21], oid[21];
        json_t *data = json_pack("{s:s,s:s,s:s,s:O,s:o,s:o,s:o,s:s,s:s}", "order_id",
                                 id_format(co->order_id, oid), "user_id",
                                 id_format(co->user_id, uid), "status", "pending", "items", items,
                                 "subtotal", order__money(co->subtotal, co->currency), "shipping",
                                 order__money(co->shipping, co->currency), "total",
                                 order__money(co->total, co->currency), "shipping_method",
                                 co->method, "country", co->addr.country);
        rc = data ? outbox_add(c, co->shard, "order-events", "order", co->order_id,
                               "order.placed", data)
                  : ERR_NOMEM;
        json_decref(data);
    }
    json_decref(items);
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
    db_conn_give(c);
    free(addr);
    return rc < 0 ? rc : 0;
}

/* --- the end states --- */

/* FAILED + stored response in one transaction, then compensation. body_status/body: the
 * response to store (NULL: a transient failure, the key is dropped instead). */
static int order_fail(struct checkout *co, const char *reason, bool retryable, int body_status,
                      const char *error_body, char **stored)
{
    static const char *const from[] = {"pending", NULL};
    struct db_conn *c;
    int rc = db_conn_take(co->db, &c);
    if (rc < 0)
        return rc;
    char *body = NULL;
    if ((rc = db_begin(c)) == 0)
        rc = order__transition(c, co->order_id, "failed", from, reason, retryable, true, now_ms());
    if (rc >= 0 && body_status) {
        if (error_body) {
            body = strdup(error_body);
        } else {
            json_t *o = order__json(co->app, c, co->order_id, false, &rc);
            body = o ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
        }
        rc = body ? key_store(c, co, body_status, body) : ERR_NOMEM;
    }
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
    db_conn_give(c);
    if (stored && rc >= 0) {
        *stored = body;
        body = NULL;
    }
    free(body);
    if (rc >= 0 && !body_status)
        key_drop(co);
    /* Compensation is owed from the commit on; if it fails here the sweep finishes it. */
    order__compensate(co->app, co->order_id);
    return rc < 0 ? rc : 0;
}

/* PAID + stored 201 in one transaction. *body receives the response (yours to free). */
static int order_paid(struct checkout *co, char **body)
{
    static const char *const from[] = {"pending", NULL};
    struct db_conn *c;
    int rc = db_conn_take(co->db, &c);
    if (rc < 0)
        return rc;
    *body = NULL;
    if ((rc = db_begin(c)) == 0)
        rc = order__transition(c, co->order_id, "paid", from, NULL, false, false, now_ms());
    if (rc == 0)
        rc = ERR_CONFLICT; /* the recovery sweep failed it meanwhile */
    if (rc > 0) {
        json_t *o = order__json(co->app, c, co->order_id, false, &rc);
        *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        rc = *body ? key_store(c, co, 201, *body) : ERR_NOMEM;
    }
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0) {
        db_rollback(c);
        free(*body);
        *body = NULL;
    }
    db_conn_give(c);
    return rc < 0 ? rc : 0;
}

/* Tells in-process consumers (recommendations) that the order is paid. Best effort: the
 * durable copy of the event is the outbox row written with the PAID transition, which the
 * relay of the events issue will deliver to Kafka consumers in scale-out mode. */
static void publish_paid(struct checkout *co)
{
    struct buf b = BUF_INIT(0);
    char oid[21], pid[21];
    id_format(co->order_id, oid);
    buf_printf(&b, "{\"event_id\":\"order-paid-%s\",\"type\":\"order.paid\",\"order_id\":\"%s\","
                   "\"user_id\":\"%lld\",\"at\":%lld,\"currency\":\"%s\",\"items\":[",
               oid, oid, (long long)co->user_id, (long long)now_ms(), co->currency);
    for (int i = 0; i < co->n; i++)
        buf_printf(&b, "%s{\"product_id\":\"%s\",\"quantity\":%d,\"unit_price\":%lld}",
                   i ? "," : "", id_format(co->lines[i].product_id, pid), co->lines[i].quantity,
                   (long long)co->lines[i].unit_price);
    buf_puts(&b, "]}");
    if (!b.err)
        bus_publish(RECOMMENDATION_TOPIC, oid, b.p, b.len);
    buf_free(&b);
}

static void after_paid(struct checkout *co)
{
    struct shipment_info s;
    int rc = shipping_create(co->app, co->order_id, co->method, &co->addr, &s);
    if (rc == 0) {
        struct db_conn *c;
        if (db_conn_take(co->db, &c) == 0) {
            /* A cancel may have won the race since PAID committed: then no label. */
            struct db_val a[] = {DB_INT(s.id), DB_INT(co->order_id)};
            int n = db_query(c, ORDER_ATTACH_SHIPMENT_SQL, 2, a, NULL);
            db_conn_give(c);
            if (n == 0)
                shipping_cancel(co->app, co->order_id);
        }
    } else {
        log_warn("order %lld: creating the shipment failed (%s); the sweep retries",
                 (long long)co->order_id, err_str(rc));
    }
    /* Only the ordered quantities leave the cart: items added while checkout ran stay. */
    if ((rc = cart_remove_lines(co->app, co->user_id, co->lines, co->n)) < 0)
        log_warn("order %lld: emptying the cart failed: %s", (long long)co->order_id, err_str(rc));
    publish_paid(co);
}

/* The error body exactly as the HTTP core writes it for http_fail_code(extra={product_id}). */
static char *error_body(const char *code, const char *message, const char *product_id)
{
    json_t *e = json_object();
    if (product_id)
        json_object_set_new(e, "product_id", json_string(product_id));
    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_string(message));
    json_t *doc = json_pack("{s:o}", "error", e);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return s;
}

/* --- the handler --- */

/* 1 (lost the claim on the key to a concurrent duplicate: look the key up again), or the
 * handler's result. */
static int saga(struct http_req *req, struct checkout *co)
{
    /* Nothing is recorded until the order is: a failure here leaves the key unused. */
    int rc = price_cart(req, co);
    if (rc < 0)
        return rc;
    bool lost;
    if ((rc = order_create(co, &co->card, &lost)) < 0)
        return lost ? 1 : rc;

    struct inventory_item items[CART_MAX_LINES];
    for (int i = 0; i < co->n; i++)
        items[i] = (struct inventory_item){co->lines[i].product_id, co->lines[i].quantity};
    int64_t short_pid = 0;
    rc = inventory_reserve(co->app, co->order_id, items, co->n, order__settings.reservation_ttl_s,
                           &short_pid);
    if (rc == ERR_CONFLICT) {
        char pid[21];
        id_format(short_pid, pid);
        char *body = error_body("out_of_stock", "not enough stock for a product in the cart", pid);
        rc = body ? order_fail(co, "out_of_stock", true, 409, body, NULL) : ERR_NOMEM;
        free(body);
        if (rc < 0)
            return rc;
        return http_fail_code(req, ERR_CONFLICT, "out_of_stock", json_pack("{s:s}", "product_id", pid),
                              "not enough stock for a product in the cart");
    }
    if (rc < 0) {
        order_fail(co, "inventory_unavailable", true, 0, NULL, NULL);
        return rc;
    }

    char key[64], oid[21];
    snprintf(key, sizeof key, "order-%s-authorize", id_format(co->order_id, oid));
    struct payment_result pr;
    rc = payment_authorize(co->app, key, co->order_id, co->total, co->currency, &co->card, &pr);
    if (rc == ERR_PAYMENT) {
        char *stored = NULL;
        rc = order_fail(co, pr.failure_reason[0] ? pr.failure_reason : "card_declined",
                        pr.retryable, 402, NULL, &stored);
        if (rc < 0)
            return rc;
        rc = http_reply_raw(req, 402, "application/json", stored, strlen(stored), true);
        free(stored);
        return rc;
    }
    if (rc < 0) {
        order_fail(co, "payment_unavailable", true, 0, NULL, NULL);
        return rc;
    }
    if ((rc = payment_capture(co->app, co->order_id)) < 0) {
        order_fail(co, "payment_unavailable", true, 0, NULL, NULL);
        return rc;
    }
    rc = inventory_confirm(co->app, co->order_id);
    if (rc == ERR_NOTFOUND) {
        /* The reservation expired before we got here (a very slow payment). */
        char *body = error_body("reservation_expired", "the stock reservation expired, try again", NULL);
        rc = body ? order_fail(co, "reservation_expired", true, 409, body, NULL) : ERR_NOMEM;
        free(body);
        if (rc < 0)
            return rc;
        return http_fail_code(req, ERR_CONFLICT, "reservation_expired", NULL,
                              "the stock reservation expired, try again");
    }
    if (rc < 0) {
        order_fail(co, "inventory_unavailable", true, 0, NULL, NULL);
        return rc;
    }
    char *body;
    if ((rc = order_paid(co, &body)) < 0) {
        if (rc == ERR_CONFLICT) /* already failed by the sweep: make sure it is undone */
            order__compensate(co->app, co->order_id);
        else
            order_fail(co, "internal_error", true, 0, NULL, NULL);
        return rc == ERR_CONFLICT ? ERR_UNAVAILABLE : rc;
    }
    after_paid(co);
    rc = http_reply_raw(req, 201, "application/json", body, strlen(body), true);
    free(body);
    return rc;
}

int order__h_place(struct http_req *req)
{
    struct checkout *co = malloc(sizeof *co);
    if (!co)
        return ERR_NOMEM;
    memset(co, 0, offsetof(struct checkout, lines));
    int rc;
    co->app = http_app(req);
    co->user_id = http_auth(req)->user_id;
    if ((rc = key_check(req, &co->key)) < 0)
        goto out;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        goto out;
    static const char *const allowed[] = {"shipping_address", "payment", "shipping_method", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        goto out;
    const char *member, *msg;
    if (shipping_address_parse(json_object_get(body, "shipping_address"), true, &co->addr, &member,
                               &msg) < 0) {
        char f[80];
        snprintf(f, sizeof f, "shipping_address%s%.60s", member ? "." : "", member ? member : "");
        rc = http_fail(req, ERR_INVALID, f, "%s", json_object_get(body, "shipping_address") ? msg : "is required");
        goto out;
    }
    co->method = "standard";
    if ((rc = http_json_string(req, body, "shipping_method", false, 1, 16, &co->method)) < 0)
        goto out;
    if (strcmp(co->method, "standard") != 0 && strcmp(co->method, "express") != 0) {
        rc = http_fail(req, ERR_INVALID, "shipping_method", "must be standard or express");
        goto out;
    }
    if ((rc = card_read(req, json_object_get(body, "payment"), &co->card)) < 0)
        goto out;
    if ((rc = request_hash(body, &co->card, co->hash)) < 0)
        goto out;
    co->shard = order__shard_of_user(co->user_id);
    co->db = app_db_shard(co->app, "orders", (int)co->shard);
    if (!co->db) {
        rc = ERR_UNAVAILABLE;
        goto out;
    }
    co->order_id = id_new(co->shard);
    /* A duplicate that loses the race for the key goes back to waiting for the winner;
     * the winner's claim only disappears again when it failed transiently. */
    for (int attempt = 0; attempt < 50; attempt++) {
        rc = key_lookup(req, co);
        if (rc == 1)
            rc = saga(req, co);
        if (rc != 1)
            break;
        rc = ERR_BUSY;
    }
out:
    free(co);
    return rc < 0 ? rc : 0;
}
