/* SPDX-License-Identifier: MIT */
/* fuzz_query.c — query strings of every listing and report: products (search, filters,
 * sort, limit, cursor), orders, the admin order queue, payments, sales, recommendations,
 * categories, the cart. Input: a selector byte, then the raw query string (what a client
 * puts after '?'; %XX escapes are decoded as libmicrohttpd decodes them). */
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
    if (size < 1 || size > 4096)
        return 0;
    char q[4100], url[4300], rec[96];
    fz_text(data + 1, size - 1, q, sizeof q);
    snprintf(rec, sizeof rec, "/api/v1/products/%s/recommendations", s->product);
    const struct {
        const char *path, *token;
    } ep[] = {
        {"/api/v1/products", NULL},           {"/api/v1/orders", s->customer},
        {"/api/v1/admin/orders", s->admin},   {"/api/v1/admin/analytics/sales", s->admin},
        {"/api/v1/admin/payments", s->admin}, {rec, NULL},
        {"/api/v1/categories", NULL},         {"/api/v1/cart", s->customer},
    };
    unsigned i = data[0] % (sizeof ep / sizeof ep[0]);
    snprintf(url, sizeof url, "%s?%s", ep[i].path, q);
    fz_do("GET", url, ep[i].token, NULL, NULL, 0);
    return 0;
}
