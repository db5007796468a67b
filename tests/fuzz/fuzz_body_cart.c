/* SPDX-License-Identifier: MIT */
/* fuzz_body_cart.c — request bodies of POST /cart/items and PATCH /cart/items/{id}, as a
 * guest (with a valid cart token) and as a customer. Input: a selector byte, then the body. */
#include <stdio.h>

#include "fz_shop.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_shop();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_shop *s = fz_shop();
    if (size < 1)
        return 0;
    char url[96], tok[128];
    snprintf(tok, sizeof tok, "X-Cart-Token: %s", s->cart_token);
    const char *guest[] = {tok, NULL};
    const uint8_t *b = data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0:
        fz_do("POST", "/api/v1/cart/items", NULL, guest, b, n);
        break;
    case 1:
        fz_do("POST", "/api/v1/cart/items", s->customer, NULL, b, n);
        break;
    case 2:
        snprintf(url, sizeof url, "/api/v1/cart/items/%s", s->product);
        fz_do("PATCH", url, s->customer, NULL, b, n);
        break;
    default:
        snprintf(url, sizeof url, "/api/v1/cart/items/%s", s->product);
        fz_do("PATCH", url, NULL, guest, b, n);
        break;
    }
    return 0;
}
