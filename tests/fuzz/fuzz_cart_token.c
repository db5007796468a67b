/* SPDX-License-Identifier: MIT */
/* fuzz_cart_token.c — the X-Cart-Token header: reading a guest cart and adding to it. A
 * token the server did not issue must simply start a new cart. (The merge at login checks a
 * token with the same function; a login costs an argon2id hash, too slow to fuzz through.)
 * Input: a selector byte, then the header value. */
#include <stdio.h>
#include <string.h>

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
    if (size < 1 || size > 2048)
        return 0;
    char hdr[2100], body[128];
    memcpy(hdr, "X-Cart-Token: ", 14);
    fz_text(data + 1, size - 1, hdr + 14, sizeof hdr - 14);
    if (data[0] & 8) { /* near-valid: the shop's real token with the input's bytes at its end */
        size_t tl = strlen(s->cart_token), fl = strlen(hdr + 14);
        char mixed[2100];
        snprintf(mixed, sizeof mixed, "%.*s%s", (int)(fl < tl ? tl - fl : 0), s->cart_token,
                 hdr + 14);
        snprintf(hdr + 14, sizeof hdr - 14, "%s", mixed);
    }
    const char *h[] = {hdr, NULL};
    int n;
    if (data[0] % 4 == 0) {
        n = snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", s->product2);
        fz_do("POST", "/api/v1/cart/items", NULL, h, (const uint8_t *)body, (size_t)n);
    } else {
        fz_do("GET", "/api/v1/cart", NULL, h, NULL, 0);
    }
    return 0;
}
