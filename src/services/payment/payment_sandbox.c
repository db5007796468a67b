/* SPDX-License-Identifier: MIT */
/* payment_sandbox.c — the built-in sandbox payment provider.
 *
 * Deterministic test cards like the big providers' (API.md): 4242424242424242 approves,
 * 4000000000000002 is declined, 4000000000009995 is declined for insufficient funds,
 * 4000000000000119 fails with a retryable processing error; any other Luhn-valid number
 * approves. It keeps no state: capture, void and refund always succeed. Every call sleeps
 * the configured latency to imitate a remote provider. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "emporium/err.h"
#include "payment_internal.h"

struct sandbox {
    int latency_ms;
};
static struct sandbox sandbox;

static void sandbox_sleep(const struct sandbox *sb)
{
    if (sb->latency_ms <= 0)
        return;
    struct timespec ts = {sb->latency_ms / 1000, (long)(sb->latency_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void approve(struct payment_provider_result *out)
{
    memset(out, 0, sizeof *out);
    out->ok = true;
}

static int sb_authorize(void *self, const char *key, const struct payment_card *card,
                        int64_t amount, const char *currency, struct payment_provider_result *out)
{
    sandbox_sleep(self);
    char digits[24];
    if (payment__digits(card->number, digits, sizeof digits) < 0)
        return ERR_INVALID;
    approve(out);
    if (!strcmp(digits, "4000000000000002")) {
        out->ok = false;
        snprintf(out->reason, sizeof out->reason, "card_declined");
    } else if (!strcmp(digits, "4000000000009995")) {
        out->ok = false;
        snprintf(out->reason, sizeof out->reason, "insufficient_funds");
    } else if (!strcmp(digits, "4000000000000119")) {
        out->ok = false;
        out->retryable = true;
        snprintf(out->reason, sizeof out->reason, "processing_error");
    }
    unsigned char h[8];
    /* The reference only needs to be unique per key: a hash of it, like a provider's id. */
    crypto_generichash(h, sizeof h, (const unsigned char *)key, strlen(key), NULL, 0);
    char hex[17];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(out->ref, sizeof out->ref, "sb_auth_%s", hex);
    return 0;
}

static int sb_capture(void *self, const char *key, const char *ref, int64_t amount,
                      struct payment_provider_result *out)
{
    sandbox_sleep(self);
    approve(out);
    return 0;
}

static int sb_void(void *self, const char *key, const char *ref,
                   struct payment_provider_result *out)
{
    sandbox_sleep(self);
    approve(out);
    return 0;
}

static int sb_refund(void *self, const char *key, const char *ref, int64_t amount,
                     struct payment_provider_result *out)
{
    sandbox_sleep(self);
    approve(out);
    return 0;
}

void payment__sandbox_init(struct payment_provider *p, int latency_ms)
{
    sandbox.latency_ms = latency_ms;
    *p = (struct payment_provider){
        .name = "sandbox",
        .authorize = sb_authorize,
        .capture = sb_capture,
        .void_auth = sb_void,
        .refund = sb_refund,
        .self = &sandbox,
    };
}
