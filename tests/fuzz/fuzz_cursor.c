/* SPDX-License-Identifier: MIT */
/* fuzz_cursor.c — the `cursor` of every paginated listing. Product cursors are base64url
 * text ("n:<id>", "a:<price>:<id>", …), so the input is sent both base64url-encoded (to reach
 * the decoder behind the base64 layer) and raw; order cursors are raw. Input: a selector
 * byte (listing and sort), then the cursor bytes. */
#include <stdio.h>

#include <sodium.h>

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
    if (size < 1 || size > 1024)
        return 0;
    static const char *const sorts[] = {
        "",       "&sort=newest", "&sort=price_asc", "&sort=price_desc", "&sort=relevance&q=lamp",
        "&q=fuzz"};
    char b64[1500], cur[4200], url[4400];
    unsigned sel = data[0];
    const uint8_t *c = data + 1;
    size_t n = size - 1;
    if (sel % 4 == 0) { /* products, base64url-encoded cursor text */
        sodium_bin2base64(b64, sizeof b64, c, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        snprintf(url, sizeof url, "/api/v1/products?limit=2&cursor=%s%s", b64,
                 sorts[(sel / 4) % 6]);
        fz_do("GET", url, NULL, NULL, NULL, 0);
        return 0;
    }
    fz_urlencode(c, n, cur, sizeof cur);
    switch (sel % 4) {
    case 1:
        snprintf(url, sizeof url, "/api/v1/products?cursor=%s%s", cur, sorts[(sel / 4) % 6]);
        fz_do("GET", url, NULL, NULL, NULL, 0);
        break;
    case 2:
        snprintf(url, sizeof url, "/api/v1/orders?limit=1&cursor=%s", cur);
        fz_do("GET", url, s->customer, NULL, NULL, 0);
        break;
    default:
        snprintf(url, sizeof url, "/api/v1/admin/orders?cursor=%s%s", cur,
                 sel & 4 ? "&status=paid" : "");
        fz_do("GET", url, s->admin, NULL, NULL, 0);
        break;
    }
    return 0;
}
