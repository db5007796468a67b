/* SPDX-License-Identifier: MIT */
/* fuzz_body_orders.c — request bodies of POST /orders (checkout: address, card, method) with
 * a fresh and with a reused Idempotency-Key, and of POST /orders/{id}/cancel. After a
 * successful checkout the cart is filled again so the next input reaches the same depth.
 * Input: a selector byte, then the body. */
#include <stdio.h>
#include <string.h>

#include "fz_shop.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void refill(struct fz_shop *s)
{
    char body[96];
    int n = snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", s->product);
    fz_do("POST", "/api/v1/cart/items", s->customer, NULL, (const uint8_t *)body, (size_t)n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    refill(fz_shop());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long counter;
    struct fz_shop *s = fz_shop();
    if (size < 1)
        return 0;
    char key[64], url[96];
    const uint8_t *b = data + 1;
    size_t n = size - 1;
    int status;
    switch (data[0] % 3) {
    case 0:
        snprintf(key, sizeof key, "Idempotency-Key: fuzz-%lu", ++counter);
        status = fz_do("POST", "/api/v1/orders", s->customer, (const char *[]){key, NULL}, b, n);
        break;
    case 1: /* the same key every time: replays and idempotency_key_reused */
        status = fz_do("POST", "/api/v1/orders", s->customer,
                       (const char *[]){"Idempotency-Key: fuzz-fixed", NULL}, b, n);
        break;
    default:
        snprintf(url, sizeof url, "/api/v1/orders/%s/cancel", s->order);
        status = fz_do("POST", url, s->customer, NULL, b, n);
        break;
    }
    if (status == 201)
        refill(s);
    return 0;
}
