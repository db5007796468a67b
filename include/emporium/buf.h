/* SPDX-License-Identifier: MIT */
/* buf.h — a growable byte buffer with a hard cap.
 *
 * Appends past `max` (0 = no cap) or a failed allocation set `err` (ERR_TOOBIG / ERR_NOMEM)
 * and make every later append a no-op, so callers check once at the end. The memory is the
 * caller's: buf_free() it, or take it with buf_steal(). */
#ifndef EMPORIUM_BUF_H
#define EMPORIUM_BUF_H
#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *p;
    size_t len, cap, max;
    int err;
};

#define BUF_INIT(maxbytes) ((struct buf){.max = (maxbytes)})
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the content of a JSON string (escaped, without quotes). */
void buf_json_escape(struct buf *b, const char *s);
/* Returns the NUL-terminated data (yours to free()) and resets b; NULL on error. */
char *buf_steal(struct buf *b, size_t *len);
void buf_free(struct buf *b);

#endif
