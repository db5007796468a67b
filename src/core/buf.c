/* SPDX-License-Identifier: MIT */
/* buf.c — growable buffer with a cap (see emporium/buf.h). */
#include "emporium/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"

static int buf_reserve(struct buf *b, size_t extra)
{
    if (b->err)
        return b->err;
    size_t need = b->len + extra + 1;
    if (b->max && need > b->max + 1)
        return b->err = ERR_TOOBIG;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return b->err = ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len))
        return;
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = 0;
}

void buf_puts(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_printf(struct buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        buf_append(b, small, (size_t)n);
        return;
    }
    if (buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_json_escape(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(b, run, (size_t)(s - run));
        run = s + 1;
        char esc[6] = {'\\', (char)c, 0};
        size_t n = 2;
        if (c == '\n')
            esc[1] = 'n';
        else if (c == '\t')
            esc[1] = 't';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c < 0x20) {
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        buf_append(b, esc, n);
    }
    buf_append(b, run, (size_t)(s - run));
}

char *buf_steal(struct buf *b, size_t *len)
{
    if (b->err) {
        buf_free(b);
        return NULL;
    }
    if (!b->p && buf_reserve(b, 0))
        return NULL;
    char *p = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}
