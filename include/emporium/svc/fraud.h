/* SPDX-License-Identifier: MIT */
/* svc/fraud.h — the fraud service's client interface: scores an order before its payment
 * is captured (used by the order service's checkout saga).
 *
 * Rules (docs/events.md, docs/operations.md for the settings), each adding points:
 *   amount      the order's total is above EMPORIUM_FRAUD_REVIEW_AMOUNT (minor units)  100
 *   velocity    the user placed more than EMPORIUM_FRAUD_USER_VELOCITY orders in the window  60
 *   card        the card placed more than EMPORIUM_FRAUD_CARD_VELOCITY orders in the window  60
 *   failures    the user or the card had EMPORIUM_FRAUD_FAILED_PAYMENTS or more failed
 *               payments in the window                                                   50
 *   country     the account has orders, none of them shipped to this country             30
 * The order is held for review (status on_hold: authorized, not captured) when the score
 * reaches EMPORIUM_FRAUD_HOLD_SCORE. The window is EMPORIUM_FRAUD_VELOCITY_WINDOW_SECONDS.
 *
 * What the rules count is learnt from the order events (consumer group "fraud" on
 * order-events: order.placed carries the card's fingerprint and the country, order.failed
 * the payment failures); an order scored here is also counted at once, so a burst of
 * checkouts faster than the consumer still trips the velocity rules.
 *
 * Card numbers never reach storage or events: the card is known by its fingerprint, a keyed
 * hash (HMAC-SHA-256 under a random key kept in the fraud database), which cannot be turned
 * back into the number without the key. */
#ifndef EMPORIUM_SVC_FRAUD_H
#define EMPORIUM_SVC_FRAUD_H
#include <stdbool.h>
#include <stdint.h>

struct app;

#define FRAUD_FINGERPRINT_LEN 32 /* hex characters of a card fingerprint */
#define FRAUD_MAX_REASONS 5

/* The order to score. Borrowed for the call. */
struct fraud_order {
    int64_t order_id, user_id;
    int64_t amount;               /* the total, minor units */
    const char *currency;         /* ISO code */
    const char *card_fingerprint; /* fraud_card_fingerprint(); may be "" (unknown) */
    const char *country;          /* the shipping address's ISO country code */
};

struct fraud_verdict {
    int score;
    bool hold; /* score >= the hold threshold */
    int n_reasons;
    const char *reasons[FRAUD_MAX_REASONS]; /* static strings: "amount", "velocity", … */
};

/* The card's fingerprint (FRAUD_FINGERPRINT_LEN hex characters + NUL) from its number
 * (spaces and dashes ignored). ERR_UNAVAILABLE when the fraud service does not run here. */
int fraud_card_fingerprint(struct app *app, const char *card_number,
                           char out[FRAUD_FINGERPRINT_LEN + 1]);

/* Scores the order, records the assessment (and the fraud.assessed event) and counts the
 * order for the velocity rules. Idempotent per order id: scoring an order again returns
 * the recorded verdict. ERR_UNAVAILABLE when the fraud service does not run here or its
 * database is down (the caller decides whether to go on without a score). */
int fraud_score(struct app *app, const struct fraud_order *o, struct fraud_verdict *out);

/* The recorded assessment of an order (admin review). ERR_NOTFOUND when none. The reasons
 * are written comma-separated into reasons. */
struct fraud_assessment {
    int64_t order_id, user_id;
    int score;
    bool hold;
    char reasons[96];
    int64_t at; /* Unix ms */
};
int fraud_assessment_get(struct app *app, int64_t order_id, struct fraud_assessment *out);

#endif
