/* SPDX-License-Identifier: MIT */
/* svc/order.h — the order service's client interface: checkout, cancel, reads.
 *
 * Plain structs in, plain structs and ERR_* codes out; nothing here knows about HTTP. A
 * refusal carries a typed outcome (struct order_outcome): the machine code ("out_of_stock",
 * "price_changed", "card_declined", …) and what goes with it (the product id, the changed
 * lines, whether a decline is retryable, the failed order). The HTTP layer
 * (src/services/order/order_http.c) turns code + outcome into the one error envelope.
 *
 * Shipment progress reaches orders one way: the order service subscribes to the shipping
 * service's topic (SHIPPING_TOPIC in svc/shipping.h) and reads shipment state through
 * svc/shipping.h; shipping never calls the order service. */
#ifndef EMPORIUM_SVC_ORDER_H
#define EMPORIUM_SVC_ORDER_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/svc/cart.h"
#include "emporium/svc/payment.h"
#include "emporium/svc/shipping.h"

#define ORDER_KEY_MAX 128

/* A checkout. Everything is borrowed for the call; the card only lives in memory. */
struct order_place_req {
    int64_t user_id;
    const char *idem_key; /* 1..ORDER_KEY_MAX printable ASCII characters */
    struct shipping_address addr;
    const char *method;       /* "standard" or "express" */
    struct payment_card card; /* already checked with payment_card_check() */
};

/* --- reads --- */

struct order_item {
    int64_t product_id;
    char name[201];
    int quantity;
    int64_t unit_price;
};

struct order_history_entry {
    char status[16];
    int64_t at;
    char note[64]; /* "" when none */
};

/* One order as stored. items/history are malloc'd (order_view_free); summaries (lists)
 * have neither. */
struct order_view {
    int64_t id, user_id;
    char status[16];
    char currency[4];
    int64_t subtotal, shipping, total;
    char shipping_method[16];
    struct shipping_address addr;
    bool has_payment;
    char payment_brand[16], payment_last4[5];
    char payment_status[16]; /* full views: "" when unknown */
    bool has_failure;
    char failure_reason[32];
    bool retryable;
    int64_t created_at, updated_at;
    int n_items;
    struct order_item *items;
    int n_history;
    struct order_history_entry *history;
    bool full; /* shipment, payment status and history were read */
    bool has_shipment;
    struct shipment_info shipment;
};
/* A cart line whose price changed since it was added (price_changed). */
struct order_price_change {
    int64_t product_id;
    int64_t old_price, new_price; /* minor units, in currency */
    char currency[4];
};

/* What a checkout (or a cancel) came to, beside its return code. */
struct order_outcome {
    int64_t order_id;   /* the order made or acted on; 0 when none was made */
    char code[32];      /* machine code of a refusal ("" on success) */
    bool retryable;     /* a declined payment: whether trying again may work */
    int64_t product_id; /* out_of_stock, product_unavailable, currency_mismatch */
    bool replayed;      /* answered from the Idempotency-Key's record */
    int n_changed;      /* price_changed: the lines, with old and new prices */
    struct order_price_change changed[CART_MAX_LINES];
    /* order_place: the order when one is to be shown (placed, or failed with a declined
     * payment); order.id == 0 otherwise. Free with order_view_free(&out->order). */
    struct order_view order;
};

/* Places an order from the user's cart (POST /api/v1/orders). Returns 0 with
 * out->order_id (status paid, or on_hold when the fraud rules (svc/fraud.h) held it for
 * review: authorized, not captured, its stock kept until approved or rejected), or:
 *  ERR_INVALID   "cart_empty";
 *  ERR_CONFLICT  "idempotency_key_reused", "request_in_progress" (retry later),
 *                "price_changed" (out->changed: the cart now holds the new prices, a retry
 *                with the same key places the order at them), "out_of_stock" /
 *                "product_unavailable" / "currency_mismatch" (out->product_id),
 *                "currency_unsupported", "reservation_expired";
 *  ERR_PAYMENT   code = the decline reason, out->retryable, out->order_id (status failed);
 *  another ERR_* when a dependency is down (nothing recorded: the retry starts over).
 * A finished key answers again with the recorded outcome (out->replayed), the order as it
 * is now. out->order is set as described there; free it whatever the return code. */
int order_place(struct app *app, const struct order_place_req *req, struct order_outcome *out);

/* Cancels an order before it ships (owner, or an admin with admin = true). 0 when it is
 * cancelled (now or before: cancelling twice is the same as once), ERR_NOTFOUND for an
 * unknown order or another user's, ERR_CONFLICT with out->code "order_shipped" or
 * "order_not_cancellable". Stock is released and the payment voided or refunded; the
 * in-process bus gets an order.cancelled message (RECOMMENDATION_TOPIC) after the commit. */
int order_cancel(struct app *app, int64_t order_id, int64_t user_id, bool admin,
                 struct order_outcome *out);

/* Fraud review (admin): an on_hold order is approved (the payment captured, the order paid
 * and then shipped as usual) or rejected (the authorization voided, the stock released, the
 * order cancelled; the customer hears of it through order.cancelled). 0 when done, now or
 * before (approving or rejecting twice is the same as once); ERR_NOTFOUND for an unknown
 * order; ERR_CONFLICT with out->code "order_not_on_hold" when the order is not (or was never)
 * held in the asked direction; another ERR_* when a dependency is down (nothing changed). */
int order_approve(struct app *app, int64_t order_id, struct order_outcome *out);
int order_reject(struct app *app, int64_t order_id, struct order_outcome *out);

void order_view_free(struct order_view *v); /* NULL-safe; leaves a zeroed view */

/* The order for its owner or an admin (another user's: ERR_NOTFOUND). full adds the
 * shipment, the payment status and the history. */
int order_get(struct app *app, int64_t order_id, int64_t user_id, bool admin, bool full,
              struct order_view *out);

/* A page of summaries, newest first: ids below cursor (INT64_MAX for the first page),
 * status NULL for any. user_id 0 lists every user's (admin, merged across shards).
 * *n receives how many of out[0..limit] were filled; *more whether there are further. */
int order_list(struct app *app, int64_t user_id, const char *status, int64_t cursor, int limit,
               struct order_view *out, int *n, bool *more);

/* The order's outbox events (admin audit), oldest first. payload is JSON text. */
struct order_outbox_event {
    int64_t id;
    char type[40];
    char *payload; /* malloc'd */
    int64_t created_at;
    bool published;
};
int order_outbox(struct app *app, int64_t order_id, struct order_outbox_event **out, int *n);
void order_outbox_free(struct order_outbox_event *ev, int n);

/* Whether `s` is one of the order statuses. */
bool order_status_valid(const char *s);

#endif
