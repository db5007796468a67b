/* SPDX-License-Identifier: MIT */
/* fuzz_body_shipping.c — request bodies of POST /shipping/quotes (anyone) and POST
 * /shipments/{id}/events (admin). Input: a selector byte, then the body. */
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
    switch (data[0] % 3) {
    case 0:
        fz_do("POST", "/api/v1/shipping/quotes", NULL, NULL, data + 1, size - 1);
        break;
    case 1:
        snprintf(url, sizeof url, "/api/v1/shipments/%s/events", s->order);
        fz_do("POST", url, s->admin, NULL, data + 1, size - 1);
        break;
    default:
        fz_do("POST", "/api/v1/shipments/1/events", s->admin, NULL, data + 1, size - 1);
        break;
    }
    return 0;
}
