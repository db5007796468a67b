/* SPDX-License-Identifier: MIT */
/* web_internal.h — shared between the web service's own files and the generated asset table.
 *
 * scripts/web-build.sh turns web/ into build/gen/web_assets.c: one entry per URL, each with
 * its bytes as is and, when smaller, gzip and brotli variants made at build time. Everything
 * is static data that lives as long as the program. No HTTP here: web_http.c answers. */
#ifndef EMPORIUM_WEB_INTERNAL_H
#define EMPORIUM_WEB_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct web_asset {
    const char *url;  /* "/", "/admin/", "/assets/shop.1a2b3c4d5e.css" */
    const char *type; /* Content-Type */
    const char *etag; /* hash of the identity bytes (no quotes) */
    int immutable;    /* content-hashed name: cacheable for a year */
    const unsigned char *raw;
    size_t raw_len;
    const unsigned char *gz; /* NULL when gzip would not be smaller */
    size_t gz_len;
    const unsigned char *br; /* NULL when brotli would not be smaller */
    size_t br_len;
};

/* Terminated by an entry with url == NULL. */
extern const struct web_asset web_assets[];

enum web_encoding { WEB_IDENTITY, WEB_GZIP, WEB_BR };

/* The best encoding of `a` the client accepts (Accept-Encoding header, may be NULL):
 * brotli, then gzip, then identity; a coding with q=0 is refused. */
enum web_encoding web__pick_encoding(const struct web_asset *a, const char *accept_encoding);
/* True when the If-None-Match header value (may be NULL) lists `etag` (quoted, weak
 * comparison) or is "*". */
bool web__etag_matches(const char *if_none_match, const char *etag);

/* Writes a deterministic SVG picture for a product into out (NUL-terminated); returns its
 * length, or 0 when cap is too small. name and category may be "" (unknown). */
size_t web__product_svg(char *out, size_t cap, const char *key, const char *name,
                        const char *category);

/* 64-bit FNV-1a of a string (picture seeds and ETags). */
uint64_t web__hash(const char *s);

#endif
