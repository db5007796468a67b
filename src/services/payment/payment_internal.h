/* SPDX-License-Identifier: MIT */
/* payment_internal.h — shared between the payment service's files only.
 *
 * The provider port: a table of functions over an opaque provider. Each call carries the
 * caller's idempotency key (real providers deduplicate on it); a call returns 0 when the
 * provider answered (approved or declined: see out->ok) and a negative ERR_* when it could
 * not be reached. The built-in sandbox (payment_sandbox.c) is the only provider so far. */
#ifndef EMPORIUM_PAYMENT_INTERNAL_H
#define EMPORIUM_PAYMENT_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/http.h"
#include "emporium/svc/payment.h"

struct payment_provider_result {
    bool ok;
    char reason[32];  /* when !ok: card_declined, insufficient_funds, processing_error */
    bool retryable;
    char ref[64];     /* the provider's id for the authorization (authorize only) */
};

struct payment_provider {
    const char *name;
    int (*authorize)(void *self, const char *key, const struct payment_card *card,
                     int64_t amount, const char *currency, struct payment_provider_result *out);
    int (*capture)(void *self, const char *key, const char *ref, int64_t amount,
                   struct payment_provider_result *out);
    int (*void_auth)(void *self, const char *key, const char *ref,
                     struct payment_provider_result *out);
    int (*refund)(void *self, const char *key, const char *ref, int64_t amount,
                  struct payment_provider_result *out);
    void *self;
};

/* The sandbox provider; latency_ms is slept on every call (EMPORIUM_PAYMENT_LATENCY_MS). */
void payment__sandbox_init(struct payment_provider *p, int latency_ms);

/* "visa", "mastercard", … from the digits. */
const char *payment__brand(const char *digits);
/* Copies the digits of number (spaces and dashes skipped) into out; -1 when another
 * character is present or there are more than cap-1 digits. */
int payment__digits(const char *number, char *out, size_t cap);

extern const struct http_route payment__routes[];

#endif
