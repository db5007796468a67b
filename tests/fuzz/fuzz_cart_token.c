/* SPDX-License-Identifier: MIT */
/* fuzz_cart_token.c — the X-Cart-Token header: reading a guest cart, adding to it, and the
 * merge into a user's cart at login. A token the server did not issue must simply start a
 * new cart. Input: a selector byte, then the header value. */
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
    const char *h[] = {hdr, NULL};
    int n;
    switch (data[0] % 16) {
    case 0: /* login merges the guest cart (argon2id: rarely, it is slow) */
        n = snprintf(body, sizeof body,
                     "{\"email\":\"fuzz-other@example.com\",\"password\":\"fuzz-password-1\"}");
        fz_do("POST", "/api/v1/auth/login", NULL, h, (const uint8_t *)body, (size_t)n);
        break;
    case 1: case 2: case 3: case 4: case 5: case 6:
        n = snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", s->product2);
        fz_do("POST", "/api/v1/cart/items", NULL, h, (const uint8_t *)body, (size_t)n);
        break;
    default:
        fz_do("GET", "/api/v1/cart", NULL, h, NULL, 0);
        break;
    }
    return 0;
}
