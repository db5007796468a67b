/* SPDX-License-Identifier: MIT */
/* buf.c — growable buffer with a cap (see emporium/buf.h). */
#include "emporium/buf.h"

#include <stdint.h>
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
    if (b->fixed)
        return b->err = ERR_TOOBIG;
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

/* Length of the escape for byte c, 1 when it is copied as is. */
static size_t esc_len(unsigned char c)
{
    if (c == '"' || c == '\\' || c == '\n' || c == '\t' || c == '\r')
        return 2;
    return c < 0x20 || c == 0x7f ? 6 : 1;
}

/* Length of the UTF-8 sequence starting with lead byte c (1 for anything else). */
static size_t utf8_seq_len(unsigned char c)
{
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

size_t buf_json_escape_max(struct buf *b, const char *s, size_t limit)
{
    static const char hex[] = "0123456789abcdef";
    const char *start = s, *run = s;
    size_t out = 0;
    while (*s) {
        unsigned char c = (unsigned char)*s;
        size_t n = esc_len(c);
        if (n == 1) {
            size_t seq = utf8_seq_len(c);
            if (seq > 1) {
                /* Copy a whole character or none of it. A malformed sequence (a NUL or a
                 * non-continuation byte inside) is copied byte by byte. */
                size_t k = 1;
                while (k < seq && ((unsigned char)s[k] & 0xc0) == 0x80)
                    k++;
                seq = k;
            }
            if (out + seq > limit)
                break;
            out += seq;
            s += seq;
            continue;
        }
        if (out + n > limit)
            break;
        buf_append(b, run, (size_t)(s - run));
        char esc[6] = {'\\', (char)c, 0};
        if (c == '\n')
            esc[1] = 'n';
        else if (c == '\t')
            esc[1] = 't';
        else if (c == '\r')
            esc[1] = 'r';
        else if (n == 6) {
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
        }
        buf_append(b, esc, n);
        out += n;
        s++;
        run = s;
    }
    buf_append(b, run, (size_t)(s - run));
    return (size_t)(s - start);
}

void buf_json_escape(struct buf *b, const char *s) { buf_json_escape_max(b, s, SIZE_MAX); }

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
    if (b->fixed) {
        b->len = 0;
        b->err = 0;
        if (b->cap)
            b->p[0] = 0;
        return;
    }
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}
