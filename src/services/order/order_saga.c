/* SPDX-License-Identifier: MIT */
/* order_saga.c — order_place(): the idempotent checkout saga (docs/architecture.md).
 *
 * Domain code: it takes a struct order_place_req and answers an ERR_* code with a typed
 * struct order_outcome; order_http.c parses and renders. Steps:
 * 1. Look the Idempotency-Key up in the user's shard: a key already used with a different
 *    request gets idempotency_key_reused; a finished one gets its recorded outcome (the
 *    order as it is now); one still in progress is waited for (or request_in_progress).
 *    The first attempt skips this read (a new key is the common case): 2 or 3 finding the
 *    key used sends it here.
 * 2. Read the cart and visit the catalog once per line: prices, names, weights. A line whose
 *    price changed since it was added refuses the checkout (price_changed) and the cart takes
 *    the new prices, so the retry charges what the cart then shows. Shipping is priced from
 *    the weights already read. Nothing is recorded yet: a refusal leaves the key unused. A
 *    refusal for a key that is already used goes to 1 before anything is written (a retry
 *    of a finished checkout finds its cart emptied by it).
 * 3. In one transaction: claim the key (its primary key makes a concurrent duplicate fail
 *    and go back to 1) and create the order PENDING with its items, history and event.
 * 4. Reserve the stock (reservation id = order id, with a TTL): out of stock fails here.
 * 5. Score the order with the fraud rules (svc/fraud.h), then authorize and capture in one
 *    call (payment_charge; key derived from the order id: a retry never charges twice),
 *    confirm the reservation.
 * 6. The shipment (created once per order), then in one transaction: PAID + history + event
 *    + the outcome on the key + the shipment linked (on PostgreSQL with the order read back
 *    for the answer, one round trip). Then the cart loses the ordered quantities.
 * 5'-6' (held): when the fraud rules hold the order, it is only authorized: the reservation is
 *    confirmed (it must not expire while an operator reviews; a reject releases it) and the
 *    order moves to ON_HOLD with the outcome on the key, in one transaction; the answer is
 *    the same 201 with status "on_hold". order_approve()/order_reject() (order.c) finish it.
 * Any failure after 3 moves the order to FAILED (owing compensation) in one transaction
 * with the outcome on the key, then compensates (release stock, void/refund). Transient
 * failures (a dependency down) drop the key in that transaction instead, so the client's
 * retry starts over. The orders database is leased twice on the way to 201: once for 1-3
 * (across the in-process catalog reads, never across a provider call), once for 6. On
 * PostgreSQL the writes of 3 and 6 share their commits with other orders'
 * (db_query_many_shared): the lease of 1-2 goes back before 3. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/svc/cart.h"
#include "emporium/svc/fraud.h"
#include "emporium/svc/inventory.h"
#include "emporium/svc/order.h"
#include "emporium/svc/payment.h"
#include "emporium/svc/product.h"
#include "emporium/svc/shipping.h"
#include "order_internal.h"

#define KEY_WAIT_MS 15000 /* a duplicate waits this long for the first request's result */

struct saga {
    struct app *app;
    const struct order_place_req *rq;
    struct order_outcome *out;
    int64_t order_id;
    unsigned shard;
    struct db *db;
    char hash[65];
    int n;
    char currency[4];
    int64_t subtotal, shipping, total;
    bool paid_committed; /* PAID is recorded: no failure may compensate from here on */
    char card_fp[FRAUD_FINGERPRINT_LEN + 1]; /* "" when the fraud service is not here */
    struct cart_line lines[CART_MAX_LINES];
    struct order_item items[CART_MAX_LINES];
    struct cart_line changed[CART_MAX_LINES]; /* price_changed: the lines at their new prices */
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int refuse(struct order_outcome *out, int rc, const char *code)
{
    snprintf(out->code, sizeof out->code, "%s", code);
    return rc;
}

/* The request hash covers what is asked for. The card enters only as its last four digits,
 * length and expiry: no hash of a card number is ever stored. */
static void request_hash(const struct order_place_req *rq, char out[65])
{
    const struct shipping_address *a = &rq->addr;
    char last4[5];
    payment_card_last4(rq->card.number, last4);
    size_t len = 0;
    for (const char *s = rq->card.number; *s; s++)
        len += *s >= '0' && *s <= '9';
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    /* Fields are NUL-separated, so no two requests hash alike by shifting text. */
    const char *parts[] = {a->name,        a->line1,   a->line2,   a->city, a->region,
                           a->postal_code, a->country, rq->method, last4};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        crypto_hash_sha256_update(&st, (const unsigned char *)parts[i], strlen(parts[i]) + 1);
    char tail[48];
    int n = snprintf(tail, sizeof tail, "%zu/%d/%d", len, rq->card.exp_month, rq->card.exp_year);
    crypto_hash_sha256_update(&st, (const unsigned char *)tail, (size_t)n);
    unsigned char h[32];
    crypto_hash_sha256_final(&st, h);
    sodium_bin2hex(out, 65, h, sizeof h);
}

/* --- 1: the key --- */

/* The recorded outcome as the return code and out. */
static int replay(struct saga *s, struct db_conn *c, const struct order_key *k)
{
    struct order_outcome *out = s->out;
    out->replayed = true;
    out->order_id = k->order_id;
    out->product_id = k->product_id;
    snprintf(out->code, sizeof out->code, "%s", k->code);
    if ((k->err == 0 || k->err == ERR_PAYMENT) && k->order_id) {
        int rc = order__store_load(c, k->order_id, false, &out->order);
        if (rc < 0)
            return rc;
        out->retryable = out->order.retryable;
        if (k->err == ERR_PAYMENT && !out->code[0])
            snprintf(out->code, sizeof out->code, "%s", out->order.failure_reason);
    }
    return k->err;
}

/* 1: no record (go on with *c still held); otherwise the final return code. *c is held
 * on return unless an error other than 1 came from taking it. */
static int key_lookup(struct saga *s, struct db_conn **c)
{
    int64_t deadline = mono_ms() + KEY_WAIT_MS;
    for (;;) {
        struct order_key k;
        int rc = order__store_key_get(*c, s->rq->user_id, s->rq->idem_key, &k);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return 1;
        if (strcmp(k.hash, s->hash) != 0)
            return refuse(s->out, ERR_CONFLICT, "idempotency_key_reused");
        if (k.done)
            return replay(s, *c, &k);
        /* Claimed by a saga of this process that died unrecorded: settle it now (on
         * another connection) and look again; the key is then free. */
        if (order__orphan_has(s->app, k.order_id)) {
            db_conn_give(*c);
            *c = NULL;
            bool settled = order__orphan_settle(s->app, k.order_id);
            if ((rc = db_conn_take(s->db, c)) < 0)
                return rc;
            if (settled)
                continue;
        }
        if (mono_ms() > deadline)
            return refuse(s->out, ERR_CONFLICT, "request_in_progress");
        /* The first request is still running: wait without holding a connection. */
        db_conn_give(*c);
        *c = NULL;
        sleep_ms(25);
        if ((rc = db_conn_take(s->db, c)) < 0)
            return rc;
    }
}

/* --- 2: cart, catalog, prices --- */

static int price_cart(struct saga *s)
{
    struct order_outcome *out = s->out;
    int rc = cart_get_lines(s->app, s->rq->user_id, s->lines, &s->n);
    if (rc < 0)
        return rc;
    if (s->n == 0)
        return refuse(out, ERR_INVALID, "cart_empty");
    s->subtotal = 0;
    struct shipping_item si[CART_MAX_LINES];
    struct cart_line *changed = s->changed;
    for (int i = 0; i < s->n; i++) {
        struct cart_line *l = &s->lines[i];
        struct product_info pi;
        /* The only visit to the catalog for this order: price, name and weight at once. */
        rc = product_get_info(s->app, l->product_id, &pi);
        if (rc == ERR_NOTFOUND || (rc == 0 && !pi.active)) {
            out->product_id = l->product_id;
            return refuse(out, ERR_CONFLICT, "product_unavailable");
        }
        if (rc < 0)
            return rc;
        if (i == 0)
            snprintf(s->currency, sizeof s->currency, "%s", pi.currency);
        else if (strcmp(s->currency, pi.currency) != 0) {
            out->product_id = l->product_id;
            return refuse(out, ERR_CONFLICT, "currency_mismatch");
        }
        if (pi.price != l->unit_price || strcmp(pi.currency, l->currency) != 0) {
            struct order_price_change *ch = &out->changed[out->n_changed];
            *ch = (struct order_price_change){
                .product_id = l->product_id, .old_price = l->unit_price, .new_price = pi.price};
            snprintf(ch->currency, sizeof ch->currency, "%s", pi.currency);
            changed[out->n_changed] = *l;
            changed[out->n_changed].unit_price = pi.price;
            snprintf(changed[out->n_changed].currency, sizeof changed[0].currency, "%s",
                     pi.currency);
            out->n_changed++;
        }
        s->items[i] = (struct order_item){
            .product_id = l->product_id, .quantity = l->quantity, .unit_price = pi.price};
        snprintf(s->items[i].name, sizeof s->items[i].name, "%s", pi.name);
        s->subtotal += pi.price * l->quantity;
        si[i] = (struct shipping_item){l->product_id, l->quantity, pi.weight_grams};
    }
    if (out->n_changed > 0) /* the cart takes the new prices in saga_run() */
        return refuse(out, ERR_CONFLICT, "price_changed");
    struct shipping_option opt;
    rc = shipping_price(s->app, si, s->n, s->rq->addr.country, s->rq->method, &opt, NULL);
    if (rc < 0)
        return rc;
    /* Shipping is priced in one currency: never add it to a total in another. */
    if (strcmp(opt.currency, s->currency) != 0)
        return refuse(out, ERR_CONFLICT, "currency_unsupported");
    s->shipping = opt.price;
    s->total = s->subtotal + s->shipping;
    return 0;
}

/* --- the end states --- */

/* The end states. Each is one intent of the shard's group-commit writer (db_write): on
 * SQLite the end states of many concurrent orders of one shard commit together. */
struct end_tx {
    struct saga *s;
    const char *reason, *code; /* fail: code NULL drops the key */
    bool retryable;
    int rc_out;
    const struct fraud_verdict *fv; /* held */
    int64_t shipment_id;            /* paid: the shipment to link (0: none yet) */
};

static struct order_known known_of(const struct saga *s)
{
    return (struct order_known){.user_id = s->rq->user_id,
                                .currency = s->currency,
                                .total = s->total,
                                .n = s->n,
                                .items = s->items};
}

static int fail_tx(struct db_conn *c, void *ctx)
{
    static const char *const from[] = {"pending", NULL};
    struct end_tx *e = ctx;
    struct saga *s = e->s;
    struct order_known k = known_of(s);
    int rc = order__store_transition_known(c, s->order_id, "failed", from, e->reason, e->retryable,
                                           true, now_ms(), &k);
    if (rc >= 0)
        rc = e->code ? order__store_key_done(c, s->rq->user_id, s->rq->idem_key, e->rc_out, e->code,
                                             s->out->product_id)
                     : order__store_key_drop(c, s->rq->user_id, s->rq->idem_key);
    return rc < 0 ? rc : 0;
}

/* Reads the order back on a connection of the shard (the 201's body). */
static int load_back(struct saga *s, int tries)
{
    struct db_conn *c;
    int rc = db_conn_take(s->db, &c);
    if (rc < 0)
        return rc;
    for (int i = 0; i < tries; i++)
        if ((rc = order__store_load(c, s->order_id, false, &s->out->order)) >= 0)
            break;
    db_conn_give(c);
    return rc;
}

/* FAILED in one transaction with the outcome on the key (code NULL: a transient failure,
 * the key is dropped instead), then compensation. Returns rc_out unless recording failed. */
static int fail(struct saga *s, const char *reason, bool retryable, int rc_out, const char *code)
{
    struct end_tx e = {
        .s = s, .reason = reason, .code = code, .retryable = retryable, .rc_out = rc_out};
    int rc = db_write(s->db, fail_tx, NULL, &e);
    if (rc < 0) /* the order stays pending and its key claimed: settled later */
        order__orphan_add(s->app, s->order_id, s->rq->user_id, s->rq->idem_key);
    if (rc >= 0 && rc_out == ERR_PAYMENT)
        rc = load_back(s, 1);
    /* Compensation is owed from the commit on; if it fails here the sweep finishes it. */
    order__compensate(s->app, s->order_id);
    if (rc < 0)
        return rc;
    if (code)
        snprintf(s->out->code, sizeof s->out->code, "%s", code);
    return rc_out;
}

static int paid_tx(struct db_conn *c, void *ctx)
{
    static const char *const from[] = {"pending", NULL};
    struct end_tx *e = ctx;
    struct saga *s = e->s;
    struct order_known k = known_of(s);
    int rc = order__store_transition_known(c, s->order_id, "paid", from, NULL, false, false,
                                           now_ms(), &k);
    if (rc == 0)
        rc = ERR_CONFLICT; /* the recovery sweep failed it meanwhile */
    if (rc > 0 && e->shipment_id > 0) {
        /* Always linked: the order is paid in this very transaction. */
        int arc = order__store_attach_shipment(c, s->order_id, e->shipment_id);
        if (arc < 0)
            rc = arc;
    }
    if (rc > 0)
        rc = order__store_key_done(c, s->rq->user_id, s->rq->idem_key, 0, NULL, 0);
    return rc < 0 ? rc : 0;
}

/* The shipment first (the label; created once per order, whoever asks), then PAID with the
 * shipment linked and the outcome in one transaction, the order read back for the 201 (on
 * PostgreSQL in the same round trip). Should PAID not commit, compensation cancels the
 * shipment with the rest; should the shipment fail, the sweep creates it later. */
static int paid(struct saga *s)
{
    struct shipment_info si;
    int src = shipping_create(s->app, s->order_id, s->rq->method, &s->rq->addr, &si);
    if (src < 0)
        log_warn("order %lld: creating the shipment failed (%s); the sweep retries",
                 (long long)s->order_id, err_str(src));
    struct end_tx e = {.s = s, .shipment_id = src == 0 ? si.id : 0};
    int rc;
    if (db_dialect(s->db) == DB_POSTGRES) {
        /* One pipeline: the move, history, event, key and link, then the read back. */
        struct order_known k = known_of(s);
        rc = order__store_settle_one(s->db, s->order_id, "paid", "pending", now_ms(), &k,
                                     s->rq->idem_key, e.shipment_id, &s->out->order);
        if (rc == 0) {
            order_view_free(&s->out->order);
            rc = ERR_CONFLICT; /* the recovery sweep failed it meanwhile */
        }
        if (rc < 0)
            return rc;
        s->paid_committed = true;
        return 0;
    }
    if ((rc = db_write(s->db, paid_tx, NULL, &e)) < 0)
        return rc;
    /* From here the order is PAID, with its outcome on the key: nothing below may fail or
     * compensate it. A failure only costs this answer; the retry gets the order. */
    s->paid_committed = true;
    /* Reading the order back is retried: it is the 201's body and order.paid's payload. */
    return load_back(s, 3);
}

static int held_tx(struct db_conn *c, void *ctx)
{
    struct end_tx *e = ctx;
    struct saga *s = e->s;
    int rc =
        order__store_hold(c, s->order_id, e->fv->score, e->fv->reasons, e->fv->n_reasons, now_ms());
    if (rc == 0)
        rc = ERR_CONFLICT; /* the recovery sweep failed it meanwhile */
    if (rc > 0)
        rc = order__store_key_done(c, s->rq->user_id, s->rq->idem_key, 0, NULL, 0);
    return rc < 0 ? rc : 0;
}

/* ON_HOLD + the outcome in one transaction (the 201 of a held order), then the order read
 * back for the answer. */
static int held(struct saga *s, const struct fraud_verdict *fv)
{
    struct end_tx e = {.s = s, .fv = fv};
    int rc = db_write(s->db, held_tx, NULL, &e);
    if (rc < 0)
        return rc;
    s->paid_committed = true; /* recorded: from here only the review decides */
    return load_back(s, 3);
}

/* The fraud rules' verdict before the capture. A fraud service that runs here but cannot
 * score (its database down) holds the order: an operator decides, nothing is captured
 * unchecked. Without a fraud service in this process the order is not scored. */
static bool fraud_hold(struct saga *s, struct fraud_verdict *fv)
{
    memset(fv, 0, sizeof *fv);
    if (!app_has_service(s->app, "fraud"))
        return false;
    struct fraud_order fo = {.order_id = s->order_id,
                             .user_id = s->rq->user_id,
                             .amount = s->total,
                             .currency = s->currency,
                             .card_fingerprint = s->card_fp,
                             .country = s->rq->addr.country};
    if (fraud_score(s->app, &fo, fv) < 0) {
        fv->hold = true;
        fv->n_reasons = 0;
        return true;
    }
    return fv->hold;
}

/* 1 when a concurrent duplicate won the claim on the key (look it up again), else the
 * final return code. c is held on entry and given back here. */
static int saga_run(struct saga *s, struct db_conn *c)
{
    const struct order_place_req *rq = s->rq;
    int rc = price_cart(s);
    if (rc < 0) {
        /* A duplicate that looked the key up just before the first request claimed it can
         * find the cart already emptied by that request's success: if the key exists now,
         * answer with its outcome (look it up again), not with this refusal. */
        struct order_key k;
        int krc = order__store_key_get(c, rq->user_id, rq->idem_key, &k);
        db_conn_give(c);
        if (krc > 0) {
            memset(s->out, 0, offsetof(struct order_outcome, changed));
            s->out->n_changed = 0;
            return 1;
        }
        if (s->out->n_changed > 0) {
            /* The customer agreed to the cart's prices, not to these: show them first. */
            if (krc < 0)
                return krc;
            int prc = cart_set_prices(s->app, rq->user_id, s->changed, s->out->n_changed);
            if (prc < 0)
                return prc;
            log_event("checkout.price_changed", LOG_I("user_id", rq->user_id),
                      LOG_I("lines", s->out->n_changed));
        }
        return rc;
    }
    char brand[16], last4[5];
    snprintf(brand, sizeof brand, "%s", payment_card_brand(rq->card.number));
    payment_card_last4(rq->card.number, last4);
    if (app_has_service(s->app, "fraud"))
        fraud_card_fingerprint(s->app, rq->card.number, s->card_fp);
    struct order_new o = {.id = s->order_id,
                          .user_id = rq->user_id,
                          .shard = s->shard,
                          .key = rq->idem_key,
                          .hash = s->hash,
                          .currency = s->currency,
                          .subtotal = s->subtotal,
                          .shipping = s->shipping,
                          .total = s->total,
                          .method = rq->method,
                          .addr = &rq->addr,
                          .brand = brand,
                          .last4 = last4,
                          .card_fp = s->card_fp,
                          .n = s->n,
                          .items = s->items};
    /* Its commit shared with other orders' (the connection held since 1 goes back first:
     * a shared call must not hold one). */
    db_conn_give(c);
    rc = order__store_create(s->db, &o);
    if (rc == ERR_CONFLICT)
        return 1;
    if (rc < 0) {
        /* Perhaps committed after all (a connection cut at the commit): the order would
         * stay pending and the key claimed, so it is settled later either way. */
        order__orphan_add(s->app, s->order_id, rq->user_id, rq->idem_key);
        return rc;
    }
    s->out->order_id = s->order_id;
    metrics_count("emporium_orders_total", "placed");
    log_event("order.placed", LOG_I("order_id", s->order_id), LOG_I("user_id", rq->user_id),
              LOG_I("amount", s->total), LOG_S("currency", s->currency), LOG_I("lines", s->n));

    struct inventory_item items[CART_MAX_LINES];
    for (int i = 0; i < s->n; i++)
        items[i] = (struct inventory_item){s->items[i].product_id, s->items[i].quantity};
    int64_t short_pid = 0;
    rc = inventory_reserve(s->app, s->order_id, items, s->n, order__settings.reservation_ttl_s,
                           &short_pid);
    if (rc == ERR_CONFLICT) {
        s->out->product_id = short_pid;
        return fail(s, "out_of_stock", true, ERR_CONFLICT, "out_of_stock");
    }
    if (rc < 0) {
        fail(s, "inventory_unavailable", true, rc, NULL);
        return rc;
    }

    /* The fraud rules first: an order they hold is only authorized; any other is authorized
     * and captured in one go (payment_charge: one commit less than the two calls). */
    struct fraud_verdict fv;
    bool hold = fraud_hold(s, &fv);
    char key[64], oid[21];
    snprintf(key, sizeof key, "order-%s-authorize", id_format(s->order_id, oid));
    struct payment_result pr;
    memset(&pr, 0, sizeof pr);
    rc = hold ? payment_authorize(s->app, key, s->order_id, s->total, s->currency, &rq->card, &pr)
              : payment_charge(s->app, key, s->order_id, s->total, s->currency, &rq->card, &pr);
    if (rc == ERR_PAYMENT && (hold || !strcmp(pr.status, "failed"))) { /* declined */
        const char *reason = pr.failure_reason[0] ? pr.failure_reason : "card_declined";
        s->out->retryable = pr.retryable;
        metrics_count("emporium_orders_total", "payment_failed");
        log_event("order.payment_failed", LOG_I("order_id", s->order_id),
                  LOG_I("user_id", rq->user_id), LOG_S("reason", reason),
                  LOG_B("retryable", pr.retryable));
        return fail(s, reason, pr.retryable, ERR_PAYMENT, reason);
    }
    if (rc < 0) { /* unreachable, or the capture failed (then the refund is compensation's) */
        fail(s, "payment_unavailable", true, rc, NULL);
        return rc;
    }
    if (hold) {
        /* Held for review: authorized, not captured; the stock stays with the order. */
        rc = inventory_confirm(s->app, s->order_id);
        if (rc == ERR_NOTFOUND)
            return fail(s, "reservation_expired", true, ERR_CONFLICT, "reservation_expired");
        if (rc < 0) {
            fail(s, "inventory_unavailable", true, rc, NULL);
            return rc;
        }
        if ((rc = held(s, &fv)) < 0 && s->paid_committed) {
            log_warn("order %lld: held, but reading it back failed: %s", (long long)s->order_id,
                     err_str(rc));
            return ERR_UNAVAILABLE;
        }
        if (rc < 0) {
            if (rc == ERR_CONFLICT)
                order__compensate(s->app, s->order_id);
            else
                fail(s, "internal_error", true, rc, NULL);
            return rc == ERR_CONFLICT ? ERR_UNAVAILABLE : rc;
        }
        metrics_count("emporium_orders_total", "on_hold");
        log_event("order.on_hold", LOG_I("order_id", s->order_id), LOG_I("user_id", rq->user_id),
                  LOG_I("amount", s->total), LOG_S("currency", s->currency),
                  LOG_I("score", fv.score));
        if ((rc = cart_remove_lines(s->app, rq->user_id, s->lines, s->n)) < 0)
            log_warn("order %lld: emptying the cart failed: %s", (long long)s->order_id,
                     err_str(rc));
        return 0;
    }
    rc = inventory_confirm(s->app, s->order_id);
    if (rc == ERR_NOTFOUND) /* the reservation expired first (a very slow payment) */
        return fail(s, "reservation_expired", true, ERR_CONFLICT, "reservation_expired");
    if (rc < 0) {
        fail(s, "inventory_unavailable", true, rc, NULL);
        return rc;
    }
    if ((rc = paid(s)) < 0 && s->paid_committed) {
        /* Paid, but the order could not be read back: answer 503; the client's retry with
         * the same key finds the recorded outcome. The cart keeps its lines (best effort). */
        log_warn("order %lld: paid, but reading it back failed: %s", (long long)s->order_id,
                 err_str(rc));
        return ERR_UNAVAILABLE;
    }
    if (rc < 0) {
        if (rc == ERR_CONFLICT) /* already failed by the sweep: make sure it is undone */
            order__compensate(s->app, s->order_id);
        else
            fail(s, "internal_error", true, rc, NULL);
        return rc == ERR_CONFLICT ? ERR_UNAVAILABLE : rc;
    }
    metrics_count("emporium_orders_total", "paid");
    log_event("order.paid", LOG_I("order_id", s->order_id), LOG_I("user_id", rq->user_id),
              LOG_I("amount", s->total), LOG_S("currency", s->currency));
    /* Only the ordered quantities leave the cart: items added while checkout ran stay. */
    if ((rc = cart_remove_lines(s->app, rq->user_id, s->lines, s->n)) < 0)
        log_warn("order %lld: emptying the cart failed: %s", (long long)s->order_id, err_str(rc));
    return 0;
}

int order_place(struct app *app, const struct order_place_req *rq, struct order_outcome *out)
{
    memset(out, 0, offsetof(struct order_outcome, changed));
    memset(&out->order, 0, sizeof out->order);
    size_t kl = rq->idem_key ? strlen(rq->idem_key) : 0;
    if (kl == 0 || kl > ORDER_KEY_MAX || !rq->method || !rq->card.number)
        return ERR_INVALID;
    struct saga *s = malloc(sizeof *s); /* ~45 KB: only the first n lines are ever read */
    if (!s)
        return ERR_NOMEM;
    memset(s, 0, offsetof(struct saga, lines));
    s->app = app;
    s->rq = rq;
    s->out = out;
    request_hash(rq, s->hash);
    s->shard = order__shard_of_user(rq->user_id);
    s->order_id = id_new(s->shard);
    /* One op (order_shards.c): the whole saga writes where the map it started with says;
     * while the user's bucket is being moved, ERR_UNAVAILABLE (503, retry). */
    order__op_enter(app);
    int rc = order__route_user(app, rq->user_id, true, &s->db);
    bool routed = rc == 0;
    /* A duplicate that loses the race for the key goes back to waiting for the winner; the
     * winner's claim only disappears again when it failed transiently. */
    for (int attempt = 0; routed && attempt < 50; attempt++) {
        struct db_conn *c = NULL;
        if ((rc = db_conn_take(s->db, &c)) < 0)
            break;
        /* The first attempt does not look the key up: a new key is the common case, and
         * claiming it (3) fails for a key already used, which sends the retry here. */
        rc = attempt == 0 ? 1 : key_lookup(s, &c);
        if (rc != 1) {
            db_conn_give(c);
            break;
        }
        out->n_changed = 0;
        if ((rc = saga_run(s, c)) != 1)
            break;
        rc = ERR_BUSY;
    }
    order__op_leave(app);
    free(s);
    return rc;
}
