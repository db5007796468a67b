/* SPDX-License-Identifier: MIT */
/* fuzz_route.c — route matching and path parameters: any method and path, as an anonymous
 * caller, a customer and an admin, through the whole chain (404/405/401/403 or the
 * handler with whatever {id} the path carried). Input: a selector byte (method, caller),
 * then the path. */
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
    if (size < 1 || size > 4096)
        return 0;
    static const char *const methods[] = {"GET",    "POST", "PUT",     "PATCH",
                                          "DELETE", "HEAD", "OPTIONS", "get"};
    char path[4100];
    fz_text(data + 1, size - 1, path + 1, sizeof path - 1);
    path[0] = '/';
    const char *url = path[1] == '/' ? path + 1 : path; /* paths always start with '/' */
    const char *who[] = {NULL, s->customer, s->admin};
    const char *method = methods[data[0] % 8];
    /* Admin deletes would empty the shop the other inputs need: admins only read. */
    unsigned caller = (data[0] / 8) % 3;
    if (caller == 2 && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        caller = 1;
    fz_do(method, url, who[caller], NULL, NULL, 0);
    return 0;
}
