/* SPDX-License-Identifier: MIT */
/* svc/payment.h — the payment service's client interface (used by the order service).
 *
 * One payment per order: authorize creates it, capture/void/refund move it on. Every call
 * carries an idempotency key that the caller derives from something stable (the order id),
 * so a retried saga step returns the stored result and never charges twice. Card numbers
 * and CVCs are only ever held in memory for the provider call: the service stores the brand
 * and the last four digits, and never logs either. */
#ifndef EMPORIUM_SVC_PAYMENT_H
#define EMPORIUM_SVC_PAYMENT_H
#include <stdbool.h>
#include <stdint.h>

struct app;

/* Borrowed for the call. number: digits (spaces and dashes are ignored). */
struct payment_card {
    const char *number;
    int exp_month; /* 1..12 */
    int exp_year;  /* four digits */
    const char *cvc;
};

struct payment_result {
    int64_t payment_id;
    char status[16]; /* processing, authorized, capturing, captured, voided, refunded, failed */
    char failure_reason[32]; /* card_declined, insufficient_funds, processing_error; "" */
    bool retryable;
    char brand[16]; /* see payment_card_brand() */
    char last4[5];
};

/* Checks a card without touching anything: Luhn, expiry (against the current UTC month),
 * CVC of 3-4 digits. Returns 0, or ERR_INVALID with *field set to "card_number",
 * "exp_month", "exp_year" or "cvc" and *message to a static text; *expired is set when the
 * card is otherwise valid but past its expiry month. */
int payment_card_check(const struct payment_card *card, const char **field, const char **message,
                       bool *expired);

/* The card's brand from its number (spaces and dashes ignored): "visa", "mastercard",
 * "amex", "discover", "jcb", "diners" or "unknown". The one brand function: the order
 * service records what this says. Static string. */
const char *payment_card_brand(const char *number);
/* The last four digits of the number into out ("" when it has fewer than four digits). */
void payment_card_last4(const char *number, char out[5]);

/* Authorizes `amount` for `order_id`. `key` (1..128 bytes) identifies the attempt: a second
 * call with the same key returns the stored outcome (while the first is still running it
 * waits a little, then ERR_BUSY). Returns 0 when authorized; ERR_PAYMENT when the provider
 * declined (out->failure_reason, out->retryable say why); ERR_INVALID for a bad card;
 * another ERR_* when the payment database is unreachable. out may be NULL. */
int payment_authorize(struct app *app, const char *key, int64_t order_id, int64_t amount,
                      const char *currency, const struct payment_card *card,
                      struct payment_result *out);
/* payment_authorize() and payment_capture() in one: for a checkout whose fraud rules passed.
 * The approved authorization is recorded as capturing at once (one commit less than the two
 * calls). Returns as payment_authorize() while nothing was authorized (ERR_PAYMENT with
 * out->status "failed": declined); after an authorization, what the capture returns (0:
 * out->status "captured"). */
int payment_charge(struct app *app, const char *key, int64_t order_id, int64_t amount,
                   const char *currency, const struct payment_card *card,
                   struct payment_result *out);
/* Captures the authorization of order_id in full. Idempotent (0 when already captured);
 * ERR_NOTFOUND when there is no authorized payment; ERR_CONFLICT when it was voided. */
int payment_capture(struct app *app, int64_t order_id);
/* Gives the money back whatever state the order's payment is in: voids an authorization,
 * refunds a capture; 0 when there is nothing to undo (no payment, failed, already voided or
 * refunded). Idempotent: safe to call from every compensation path and from recovery. */
int payment_cancel(struct app *app, int64_t order_id);
/* The current state of the order's payment (brand, last4, status). ERR_NOTFOUND if none. */
int payment_get(struct app *app, int64_t order_id, struct payment_result *out);

#endif
