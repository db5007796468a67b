/* SPDX-License-Identifier: MIT */
/* fuzz_body_inventory.c — request bodies of PUT /inventory/{product_id} (admin). Input: a
 * selector byte (which product), then the body. */
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
    snprintf(url, sizeof url, "/api/v1/inventory/%s", data[0] % 2 ? s->product2 : "1");
    fz_do("PUT", url, s->admin, NULL, data + 1, size - 1);
    return 0;
}
