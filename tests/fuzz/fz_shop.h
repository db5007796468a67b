/* SPDX-License-Identifier: MIT */
/* fz_shop.h — what every libFuzzer target shares: one in-process shop on a temporary
 * SQLite data dir (no demo catalog, no rate limits), reached through http_inject().
 *
 * fz_shop() opens it on first use and keeps it for the process (removed at exit): an admin,
 * two customers, a premium customer, two products with stock, a guest cart token, and one
 * paid order of the first customer. fz_call() runs a request and checks the answer the way
 * the API promises it: a status from 200 to 599, never 500 for anything a client sent, and
 * every 4xx/5xx carries {"error":{"code","message"}}; a broken promise aborts, which
 * libFuzzer reports as a crash with the input. */
#ifndef EMPORIUM_FZ_SHOP_H
#define EMPORIUM_FZ_SHOP_H
#include <stddef.h>
#include <stdint.h>

#include "http/inject.h"

struct app;

struct fz_shop {
    struct app *app;
    char admin[96], customer[96], other[96], premium[96]; /* bearer tokens */
    char product[24], product2[24];                       /* ids */
    char cart_token[96];                                  /* a guest cart's token */
    char order[24];                                       /* the customer's paid order */
};

struct fz_shop *fz_shop(void);

/* token may be NULL (anonymous); extra: NULL-terminated "Name: value" list or NULL. Fills
 * *out (http_inject_resp_free it) after checking it; aborts on a broken promise. */
void fz_call(const char *method, const char *url, const char *token, const char *const *extra,
             const uint8_t *body, size_t len, struct http_inject_resp *out);
/* fz_call and free the response; returns the status. */
int fz_do(const char *method, const char *url, const char *token, const char *const *extra,
          const uint8_t *body, size_t len);

/* Copies data into a NUL-terminated string with bytes a header or URL cannot carry (NUL,
 * CR, LF) dropped; at most cap-1 bytes. */
void fz_text(const uint8_t *data, size_t len, char *out, size_t cap);
/* Percent-encodes every byte that is not unreserved (RFC 3986). */
void fz_urlencode(const uint8_t *data, size_t len, char *out, size_t cap);

#endif
