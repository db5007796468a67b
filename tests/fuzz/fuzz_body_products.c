/* SPDX-License-Identifier: MIT */
/* fuzz_body_products.c — request bodies of POST /products and PATCH /products/{id} (admin).
 * Input: one selector byte, then the body. */
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
    char url[96];
    if (data[0] % 2 == 0) {
        fz_do("POST", "/api/v1/products", s->admin, NULL, data + 1, size - 1);
    } else {
        snprintf(url, sizeof url, "/api/v1/products/%s", s->product2);
        fz_do("PATCH", url, s->admin, NULL, data + 1, size - 1);
    }
    return 0;
}
