/* SPDX-License-Identifier: MIT */
/* buf.h — a growable byte buffer with a hard cap, and the one JSON string escaper.
 *
 * Appends past `max` (0 = no cap) or a failed allocation set `err` (ERR_TOOBIG / ERR_NOMEM)
 * and make every later append a no-op, so callers check once at the end. The memory is the
 * caller's: buf_free() it, or take it with buf_steal().
 *
 * BUF_FIXED(array) wraps caller storage (a stack line buffer, say) instead: it never
 * allocates, holds at most sizeof(array) - 1 bytes plus the NUL, and buf_free() only resets
 * it; buf_steal() is not for fixed buffers. */
#ifndef EMPORIUM_BUF_H
#define EMPORIUM_BUF_H
#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *p;
    size_t len, cap, max;
    int err;
    int fixed; /* p is caller storage of cap bytes: never reallocated or freed */
};

#define BUF_INIT(maxbytes) ((struct buf){.max = (maxbytes)})
#define BUF_FIXED(array)                                                                           \
    ((struct buf){.p = (array), .cap = sizeof(array), .max = sizeof(array) - 1, .fixed = 1})
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the content of a JSON string (escaped, without quotes): '"', '\\' and every
 * control character (U+0000..U+001F, and DEL) are escaped; other bytes, UTF-8 included,
 * are copied. This is the project's one JSON string escaper (log lines, access lines,
 * hand-built JSON). */
void buf_json_escape(struct buf *b, const char *s);
/* The same, but appends at most `limit` bytes: the input is cut before the escape sequence
 * or UTF-8 character that would not fit (never in the middle of one), and that is not an
 * error. For bounded log fields. Returns the number of input bytes consumed. */
size_t buf_json_escape_max(struct buf *b, const char *s, size_t limit);
/* Returns the NUL-terminated data (yours to free()) and resets b; NULL on error. */
char *buf_steal(struct buf *b, size_t *len);
void buf_free(struct buf *b);

#endif
