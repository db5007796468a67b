/* SPDX-License-Identifier: MIT */
/* arena.h — a region allocator for things that live exactly as long as one request.
 *
 * A bump allocator over a list of chunks (h2o's mem pool, nginx's ngx_pool_t): allocating is
 * a pointer increment, nothing is freed one by one, and arena_free() releases everything at
 * once. Besides memory, an arena owns *cleanups* registered with arena_defer(): functions run
 * by arena_free(), last registered first, which is how non-memory resources (a leased
 * database connection, a jansson object, a file) are tied to the request and cannot be
 * forgotten on an error path.
 *
 * The HTTP core creates one arena per request (http_arena() in http.h) and frees it when the
 * response has been sent, or the connection was dropped. An arena is used by one thread at a
 * time (the thread running the handler); it takes no lock.
 *
 * Ownership: every pointer returned by arena_* is owned by the arena and valid until
 * arena_free(); never free() it. Allocation failure returns NULL (or ERR_NOMEM) and leaves
 * the arena usable and unchanged. */
#ifndef EMPORIUM_ARENA_H
#define EMPORIUM_ARENA_H
#include <stdarg.h>
#include <stddef.h>

struct arena;

/* A new, empty arena (no memory is taken until the first allocation beyond the arena's
 * header); NULL when out of memory. Yours to arena_free(). */
struct arena *arena_new(void);
/* Runs the cleanups (last registered first), then releases all memory. NULL is a no-op. */
void arena_free(struct arena *a);

/* n zeroed bytes aligned for any type; NULL on OOM (n == 0 gives a valid unique pointer). */
void *arena_alloc(struct arena *a, size_t n);
/* A copy of s (NUL-terminated); NULL when s is NULL or on OOM. */
char *arena_strdup(struct arena *a, const char *s);
/* A NUL-terminated copy of the first n bytes of s; NULL on OOM. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* printf into the arena; NULL on OOM or a bad format. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vprintf(struct arena *a, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Registers fn(arg) to run when the arena is freed (cleanups run last first). Returns 0, or
 * ERR_NOMEM when it could not be registered — then fn was NOT called and will not be: the
 * caller still owns what arg refers to and must release it itself. */
int arena_defer(struct arena *a, void (*fn)(void *), void *arg);

/* Bytes of chunk memory the arena holds (for tests and limits). */
size_t arena_bytes(const struct arena *a);

#endif
