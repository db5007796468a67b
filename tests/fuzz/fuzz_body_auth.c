/* SPDX-License-Identifier: MIT */
/* fuzz_body_auth.c — request bodies of POST /auth/register and /auth/login. Input: a
 * selector byte, then the body. */
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
    fz_shop();
    if (size < 1)
        return 0;
    fz_do("POST", data[0] % 2 ? "/api/v1/auth/login" : "/api/v1/auth/register", NULL, NULL,
          data + 1, size - 1);
    return 0;
}
