/* SPDX-License-Identifier: MIT */
/* arena.c — the request arena (see emporium/arena.h).
 *
 * One malloc per request in the common case: the arena header and its first 4 KiB bump region
 * are a single allocation. When a region runs out, a new 16 KiB chunk becomes the bump region
 * (the rest of the old one is abandoned: requests are short). A request for more than a
 * quarter of a chunk gets a chunk of its own, so one big body copy does not waste a region.
 * Every chunk is on one list and freed together. Cleanups are list nodes allocated from the
 * arena itself and run by arena_free() from the head, i.e. last registered first; a cleanup
 * may register further cleanups, which then run too. */
#include "emporium/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"

#define ARENA_FIRST 4096
#define ARENA_CHUNK 16384
#define ARENA_ALIGN alignof(max_align_t)

struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    alignas(max_align_t) unsigned char data[];
};

struct arena_cleanup {
    struct arena_cleanup *next;
    void (*fn)(void *);
    void *arg;
};

struct arena {
    unsigned char *pos, *end; /* the bump region */
    struct arena_chunk *chunks;
    struct arena_cleanup *cleanups;
    size_t bytes;
    alignas(max_align_t) unsigned char first[];
};

struct arena *arena_new(void)
{
    struct arena *a = malloc(sizeof *a + ARENA_FIRST);
    if (!a)
        return NULL;
    a->pos = a->first;
    a->end = a->first + ARENA_FIRST;
    a->chunks = NULL;
    a->cleanups = NULL;
    a->bytes = ARENA_FIRST;
    return a;
}

void arena_free(struct arena *a)
{
    if (!a)
        return;
    while (a->cleanups) {
        struct arena_cleanup *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->arg);
    }
    for (struct arena_chunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

static struct arena_chunk *chunk_new(struct arena *a, size_t size)
{
    if (size > SIZE_MAX - sizeof(struct arena_chunk))
        return NULL;
    struct arena_chunk *c = malloc(sizeof *c + size);
    if (!c)
        return NULL;
    c->size = size;
    c->next = a->chunks;
    a->chunks = c;
    a->bytes += size;
    return c;
}

void *arena_alloc(struct arena *a, size_t n)
{
    if (n > SIZE_MAX - ARENA_ALIGN)
        return NULL;
    n = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (n == 0)
        n = ARENA_ALIGN;
    if (n > (size_t)(a->end - a->pos)) {
        if (n > ARENA_CHUNK / 4) {
            struct arena_chunk *c = chunk_new(a, n);
            if (!c)
                return NULL;
            memset(c->data, 0, n);
            return c->data;
        }
        struct arena_chunk *c = chunk_new(a, ARENA_CHUNK);
        if (!c)
            return NULL;
        a->pos = c->data;
        a->end = c->data + ARENA_CHUNK;
    }
    void *p = a->pos;
    a->pos += n;
    memset(p, 0, n);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = arena_alloc(a, n + 1);
    if (p)
        memcpy(p, s, n); /* arena_alloc zeroed the terminator */
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return s ? arena_strndup(a, s, strlen(s)) : NULL;
}

char *arena_vprintf(struct arena *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    char *p = NULL;
    if (n >= 0 && (size_t)n < sizeof small) {
        p = arena_strndup(a, small, (size_t)n);
    } else if (n >= 0 && (p = arena_alloc(a, (size_t)n + 1)) != NULL) {
        vsnprintf(p, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    return p;
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

int arena_defer(struct arena *a, void (*fn)(void *), void *arg)
{
    struct arena_cleanup *c = arena_alloc(a, sizeof *c);
    if (!c)
        return ERR_NOMEM;
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

size_t arena_bytes(const struct arena *a) { return a ? a->bytes : 0; }
