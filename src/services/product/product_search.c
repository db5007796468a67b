/* SPDX-License-Identifier: MIT */
/* product_search.c — GET /api/v1/products: full-text search, filters, sorts and keyset
 * (cursor) pagination.
 *
 * q is never passed to a query parser as typed: it is cut into words (runs of ASCII letters
 * and digits and of non-ASCII characters other than punctuation, symbols and spaces: see
 * cp_is_separator()), lower-cased, and each word is quoted by us, so
 * quotes, `*`, NEAR, AND/OR and parentheses in the input are only separators. The last word
 * also matches as a prefix (search as you type).
 *
 * Sort keys (every order ends with the id, so it is total):
 *   newest      id DESC (ids are time-ordered)        cursor n:<id>
 *   price_asc   (price, id)                           cursor a:<price>:<id>
 *   price_desc  (price DESC, id DESC)                 cursor d:<price>:<id>
 *   relevance   (rank, id), rank: see load_matches()  cursor r:<rank>:<id>
 * The cursor is base64url of that text; the next page starts strictly after it, so rows
 * inserted or deleted elsewhere never shift a page (no OFFSET). A relevance rank is
 * recomputed from corpus statistics, so relevance paging is exact for a static result set. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/metrics.h"
#include "product_internal.h"

#define LIST_TTL_MS (30 * 1000)
#define LIST_SHARED_L1_MS (5 * 1000)
#define MAX_WORDS PRODUCT_MAX_WORDS
#define WORD_MAX PRODUCT_WORD_MAX

/* short names inside this file */
#define SORT_NEWEST PRODUCT_SORT_NEWEST
#define SORT_PRICE_ASC PRODUCT_SORT_PRICE_ASC
#define SORT_PRICE_DESC PRODUCT_SORT_PRICE_DESC
#define SORT_RELEVANCE PRODUCT_SORT_RELEVANCE
typedef struct product_query query_t;

/* ---- input --------------------------------------------------------------------------- */

/* Code points that are never part of a word: Unicode punctuation, symbols, spaces and
 * format characters outside ASCII (the blocks and points below, which is what FTS5's
 * unicode61 and PostgreSQL's parser treat as separators too). "lamp — desk" is two words,
 * like "lamp desk"; a dash alone is no word (it used to be one that matched nothing). */
static bool cp_is_separator(uint32_t cp)
{
    static const struct {
        uint32_t lo, hi;
    } seps[] = {
        {0x0080, 0x00A9}, {0x00AB, 0x00B1}, {0x00B4, 0x00B4},   {0x00B6, 0x00B8},
        {0x00BB, 0x00BB}, {0x00BF, 0x00BF}, {0x00D7, 0x00D7},   {0x00F7, 0x00F7},
        {0x037E, 0x037E}, {0x0387, 0x0387}, {0x055A, 0x055F},   {0x0589, 0x058A},
        {0x05BE, 0x05BE}, {0x060C, 0x060D}, {0x061B, 0x061F},   {0x066A, 0x066D},
        {0x06D4, 0x06D4}, {0x0964, 0x0965}, {0x0E4F, 0x0E4F},   {0x0E5A, 0x0E5B},
        {0x1680, 0x1680}, {0x180E, 0x180E}, {0x2000, 0x206F},   {0x20A0, 0x20CF},
        {0x2190, 0x245F}, {0x2500, 0x2775}, {0x2794, 0x2BFF},   {0x2E00, 0x2E7F},
        {0x3000, 0x3004}, {0x3008, 0x3020}, {0x3030, 0x3030},   {0x303D, 0x303F},
        {0x30FB, 0x30FB}, {0xFE00, 0xFE1F}, {0xFE30, 0xFE6F},   {0xFEFF, 0xFEFF},
        {0xFF01, 0xFF0F}, {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40},   {0xFF5B, 0xFF65},
        {0xFFE0, 0xFFEF}, {0xFFF0, 0xFFFF}, {0x1F000, 0x1FAFF}, {0xE0000, 0xE007F},
    };
    int lo = 0, hi = (int)(sizeof seps / sizeof seps[0]) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < seps[mid].lo)
            hi = mid - 1;
        else if (cp > seps[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* Length in bytes of the character at p (valid UTF-8: utf8_ok()) and whether it belongs to
 * a word: ASCII letters and digits, and non-ASCII characters that are not separators. */
static int word_char(const unsigned char *p, bool *is_word)
{
    unsigned char b = p[0];
    if (b < 0x80) {
        *is_word = isalnum(b) != 0;
        return 1;
    }
    int n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    uint32_t cp = b & (n == 4 ? 0x07 : n == 3 ? 0x0F : 0x1F);
    for (int i = 1; i < n; i++)
        cp = cp << 6 | (p[i] & 0x3F);
    *is_word = !cp_is_separator(cp);
    return n;
}

static void tokenize(const char *q, query_t *o)
{
    o->nwords = 0;
    const unsigned char *p = (const unsigned char *)q;
    bool w_char;
    while (*p && o->nwords < MAX_WORDS) {
        int len;
        while (*p && (len = word_char(p, &w_char), !w_char))
            p += len;
        int n = 0;
        char *w = o->words[o->nwords];
        /* whole characters only: a word cut at WORD_MAX never ends inside a UTF-8
         * sequence; what does not fit is dropped */
        bool full = false;
        while (*p && (len = word_char(p, &w_char), w_char)) {
            if (!full && n + len <= WORD_MAX) {
                for (int i = 0; i < len; i++)
                    w[n++] = (char)(len == 1 ? tolower(p[i]) : p[i]);
            } else {
                full = true;
            }
            p += len;
        }
        w[n] = 0;
        if (n)
            o->nwords++;
    }
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). The words go
 * to the database as text: PostgreSQL refuses invalid UTF-8 with an error. */
static bool utf8_ok(const unsigned char *p)
{
    while (*p) {
        unsigned char b = *p;
        int n;
        uint32_t cp;
        if (b < 0x80) {
            p++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            n = 1, cp = b & 0x1F;
        } else if (b >= 0xE0 && b <= 0xEF) {
            n = 2, cp = b & 0x0F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            n = 3, cp = b & 0x07;
        } else {
            return false;
        }
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n + 1;
    }
    return true;
}

/* ---- the query ------------------------------------------------------------------------ */

int product__query_words(query_t *q, const char *text)
{
    q->nwords = 0;
    if (!text)
        return 0;
    if (strlen(text) > PRODUCT_Q_MAX || !utf8_ok((const unsigned char *)text))
        return ERR_INVALID;
    tokenize(text, q);
    return 0;
}

int product__query_cursor(query_t *o, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return ERR_INVALID;
    unsigned char raw[100];
    size_t len = 0;
    if (sodium_base642bin(raw, sizeof raw - 1, s, n, NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return ERR_INVALID;
    raw[len] = 0;
    const char *t = (const char *)raw;
    if (strlen(t) != len || len < 3 || t[0] != (char)o->sort || t[1] != ':')
        return ERR_INVALID;
    char *end;
    errno = 0;
    if (o->sort == SORT_NEWEST) {
        long long id = strtoll(t + 2, &end, 10);
        if (*end || errno || id <= 0 || !isdigit((unsigned char)t[2]))
            return ERR_INVALID;
        o->cur_id = id;
    } else if (o->sort == SORT_RELEVANCE) {
        double r = strtod(t + 2, &end);
        if (end == t + 2 || *end != ':' || errno || !isfinite(r))
            return ERR_INVALID;
        o->cur_rank = r;
        const char *ids = end + 1;
        long long id = strtoll(ids, &end, 10);
        if (*end || errno || id <= 0 || !isdigit((unsigned char)ids[0]))
            return ERR_INVALID;
        o->cur_id = id;
    } else {
        long long k = strtoll(t + 2, &end, 10);
        if (end == t + 2 || *end != ':' || errno || k < 0 || !isdigit((unsigned char)t[2]))
            return ERR_INVALID;
        const char *ids = end + 1;
        long long id = strtoll(ids, &end, 10);
        if (*end || errno || id <= 0 || !isdigit((unsigned char)ids[0]))
            return ERR_INVALID;
        o->cur_key = k;
        o->cur_id = id;
    }
    o->has_cursor = true;
    return 0;
}

/* The cache key: every input that shapes the page, normalised. */
static void query_key(struct product_ctx *ctx, const query_t *o, struct buf *b)
{
    buf_printf(b, "l:%llu:%c:%d:%s:%lld:%lld:%d:", (unsigned long long)product__generation(ctx),
               (char)o->sort, o->limit, o->category, (long long)o->min_price,
               (long long)o->max_price, o->in_stock);
    if (o->has_cursor)
        buf_printf(b, "%lld:%lld:%.17g:", (long long)o->cur_key, (long long)o->cur_id, o->cur_rank);
    for (int i = 0; i < o->nwords; i++) {
        buf_puts(b, o->words[i]);
        buf_puts(b, " ");
    }
}

static void cursor_for(const query_t *o, const struct db_rows *r, int row, char *out, size_t cap)
{
    char raw[96];
    long long id = (long long)db_get_i64(r, row, PC_ID);
    switch (o->sort) {
    case SORT_PRICE_ASC:
    case SORT_PRICE_DESC:
        snprintf(raw, sizeof raw, "%c:%lld:%lld", (char)o->sort,
                 (long long)db_get_i64(r, row, PC_PRICE), id);
        break;
    case SORT_NEWEST:
    case SORT_RELEVANCE: /* only with words: search_page() */
    default:
        snprintf(raw, sizeof raw, "n:%lld", id);
        break;
    }
    sodium_bin2base64(out, cap, (const unsigned char *)raw, strlen(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

struct list_load {
    struct app *app;
    struct product_ctx *ctx;
    const query_t *q;
};

static void put_cursor(struct buf *json, const char *raw)
{
    char cur[160];
    sodium_bin2base64(cur, sizeof cur, (const unsigned char *)raw, strlen(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    buf_printf(json, "\"%s\"}", cur);
}

/* Listing without words: an index-ordered keyset query. */
static int load_listing(struct app *app, const query_t *o, struct buf *out)
{
    struct db_rows *rows = NULL;
    int rc = product__store_list(product__db(app), o, &rows);
    if (rc < 0)
        return rc;
    int n = db_rows_count(rows);
    bool more = n > o->limit;
    if (more)
        n = o->limit;
    struct buf json = BUF_INIT(0);
    buf_puts(&json, "{\"items\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            buf_puts(&json, ",");
        product__json_row(&json, rows, i);
    }
    buf_puts(&json, "],\"next_cursor\":");
    if (more) {
        char cur[160];
        cursor_for(o, rows, n - 1, cur, sizeof cur);
        buf_printf(&json, "\"%s\"}", cur);
    } else {
        buf_puts(&json, "null}");
    }
    db_rows_free(rows);
    return product__tagged(&json, out);
}

/* ---- search: match sets ---------------------------------------------------------------
 *
 * A search with words runs in two steps. The match set — every product whose text matches
 * the words, with its relevance rank — depends on the words only, so it is computed once per
 * generation and cached ("m:<gen>:<words>": {count, 0}, then struct match in id order); every
 * filter, sort and page of those words reuses it. The page is then picked in memory: each
 * match's price, category, stock and active flag come from the attribute copy
 * (product_attrs.c), the (key, id) order and the cursor are applied to the whole set, and
 * only the page's rows are read from the database.
 *
 * Relevance on SQLite: bm25 costs ~2 µs a match (a docsize lookup and position lists per
 * row) and common words match thousands of products, so the rank is instead tiered: a
 * product whose name holds every word (a name-only FTS query) ranks before one that matches
 * only through its description, shorter names first (the words are more of the name), then
 * by id. PostgreSQL ranks with ts_rank (name weight A, description B). */

#define MATCH_TTL_MS (120 * 1000)
#define UNKNOWN_CHUNK 1000

struct match {
    int64_t id;
    double rank;
};

static int load_matches(void *vctx, const char *key, struct buf *out)
{
    struct list_load *l = vctx;
    struct product_attrs *pa = &l->ctx->attrs;
    struct db *db = product__db(l->app);
    enum db_dialect d = db_dialect(db);
    /* The in-memory index answers exactly what the FTS5 queries below would (embedded mode);
     * when it cannot right now, FTS5 does. */
    int rc = product__index_match(l->ctx, db, l->q, out);
    if (rc != ERR_UNSUPPORTED) {
        if (rc == 0)
            metrics_count("emporium_search_matches_total", "memory");
        return rc;
    }
    metrics_count("emporium_search_matches_total", "fts");
    rc = 0;
    if (d == DB_SQLITE) { /* the ranks read name lengths from the copy */
        struct db_conn *c;
        if ((rc = db_conn_take(db, &c)) < 0)
            return rc;
        rc = product__attrs_sync(pa, c, d);
        db_conn_give(c);
        if (rc < 0)
            return rc;
    }
    struct db_rows *all = NULL, *named = NULL;
    if ((rc = product__store_match(db, l->q, &all, &named)) < 0)
        return rc;
    int n = db_rows_count(all), nn = db_rows_count(named), k = 0;
    struct match *m = n ? malloc((size_t)n * sizeof *m) : NULL;
    if (n && !m)
        rc = ERR_NOMEM;
    int64_t *nid = nn ? malloc((size_t)nn * sizeof *nid) : NULL;
    if (nn && !nid)
        rc = ERR_NOMEM;
    if (rc >= 0 && d == DB_SQLITE) {
        /* cells are text: parse each id once */
        for (int i = 0; i < nn; i++)
            nid[i] = db_get_i64(named, i, 0);
        product__attrs_rdlock(pa);
        for (int i = 0; i < n; i++) {
            int64_t id = db_get_i64(all, i, 0);
            while (k < nn && nid[k] < id)
                k++;
            m[i].id = id;
            if (k < nn && nid[k] == id) {
                const struct product_attr *a = product__attr_find(pa, id);
                m[i].rank = -2.0 + (a ? a->name_len : 255) / 1024.0;
            } else {
                m[i].rank = -1.0;
            }
        }
        product__attrs_unlock(pa);
    } else if (rc >= 0) {
        for (int i = 0; i < n; i++) {
            m[i].id = db_get_i64(all, i, 0);
            const char *r = db_get(all, i, 1);
            m[i].rank = r ? strtod(r, NULL) : 0;
        }
    }
    free(nid);
    db_rows_free(all);
    db_rows_free(named);
    /* never an empty value: a count first */
    struct match head = {n, 0};
    buf_append(out, &head, sizeof head);
    if (rc >= 0 && n)
        buf_append(out, m, (size_t)n * sizeof *m);
    free(m);
    return rc < 0 ? rc : out->err;
}

/* ---- search: the page ----------------------------------------------------------------- */

typedef struct product_cand cand_t;
#define cand_cmp product__cand_cmp

void product__top_insert(enum product_sort s, cand_t *top, int *n, int k, const cand_t *c)
{
    if (*n == k && cand_cmp(s, c, &top[k - 1]) >= 0)
        return;
    int lo = 0, hi = *n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cand_cmp(s, &top[mid], c) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    int move = (*n == k ? k - 1 : *n) - lo;
    if (move > 0)
        memmove(&top[lo + 1], &top[lo], (size_t)move * sizeof *top);
    top[lo] = *c;
    if (*n < k)
        (*n)++;
}

/* Reads into the copy every match it does not know yet (written by another process): all
 * of them, or the ones past the first few hundred would silently drop out of the result. */
static int fetch_unknown(struct product_attrs *pa, struct db_conn *c, enum db_dialect d,
                         const struct match *m, int nm)
{
    int64_t *unknown = NULL;
    int nu = 0, rc = 0;
    product__attrs_rdlock(pa);
    for (int i = 0; i < nm; i++) {
        if (product__attr_find(pa, m[i].id))
            continue;
        if (!unknown && !(unknown = malloc((size_t)nm * sizeof *unknown))) {
            rc = ERR_NOMEM;
            break;
        }
        unknown[nu++] = m[i].id;
    }
    product__attrs_unlock(pa);
    for (int off = 0; rc == 0 && off < nu; off += UNKNOWN_CHUNK)
        rc = product__attrs_fetch(pa, c, d, unknown + off,
                                  nu - off < UNKNOWN_CHUNK ? nu - off : UNKNOWN_CHUNK);
    free(unknown);
    return rc;
}

/* The page's candidates from the in-memory index, filters and order applied while walking
 * the words' posting lists (no match set, no lookup by id per match); ERR_UNSUPPORTED: the
 * index cannot answer now, match_candidates() does. */
static int index_candidates(struct list_load *l, cand_t *top, int k, int *nt)
{
    struct product_attrs *pa = &l->ctx->attrs;
    struct db *db = product__db(l->app);
    if (db_dialect(db) != DB_SQLITE)
        return ERR_UNSUPPORTED;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    int64_t unknown[PRODUCT_UNKNOWN_MAX];
    int nu = 0;
    rc = product__attrs_sync(pa, c, DB_SQLITE);
    if (rc == 0)
        rc = product__index_page(l->ctx, db, l->q, top, k, nt, unknown, &nu);
    if (rc == 0 && nu > 0) { /* written by another process: read, then walk again */
        rc = product__attrs_fetch(pa, c, DB_SQLITE, unknown, nu);
        *nt = 0;
        if (rc == 0)
            rc = product__index_page(l->ctx, db, l->q, top, k, nt, NULL, NULL);
    }
    db_conn_give(c);
    if (rc == 0)
        metrics_count("emporium_search_matches_total", "memory");
    return rc;
}

/* The page's candidates from the words' match set (cached per generation), filtered through
 * the attribute copy: FTS5 or PostgreSQL, or the index while it cannot walk a page. */
static int match_candidates(struct list_load *l, cand_t *top, int k, int *ntp)
{
    const query_t *o = l->q;
    struct product_attrs *pa = &l->ctx->attrs;
    struct db *db = product__db(l->app);
    enum db_dialect d = db_dialect(db);
    struct buf ms = BUF_INIT(0);
    int rc;
    if (l->ctx->matches) {
        struct buf key = BUF_INIT(1200);
        buf_printf(&key, "m:%llu:", (unsigned long long)product__generation(l->ctx));
        for (int i = 0; i < o->nwords; i++) {
            buf_puts(&key, o->words[i]);
            buf_puts(&key, " ");
        }
        rc = key.err
                 ? key.err
                 : cache_get_or_load(l->ctx->matches, key.p, load_matches, l, MATCH_TTL_MS, &ms);
        buf_free(&key);
    } else {
        rc = load_matches(l, NULL, &ms);
    }
    if (rc < 0) {
        buf_free(&ms);
        return rc;
    }
    if (ms.len < sizeof(struct match)) {
        buf_free(&ms);
        return ERR_INTERNAL;
    }
    const struct match *m = (const struct match *)ms.p + 1; /* after the count */
    int nm = (int)(ms.len / sizeof *m) - 1;

    struct db_conn *c;
    rc = db_conn_take(db, &c);
    if (rc < 0) {
        buf_free(&ms);
        return rc;
    }
    rc = product__attrs_sync(pa, c, d);
    if (rc == 0)
        rc = fetch_unknown(pa, c, d, m, nm);
    cand_t cur = {o->cur_id, o->cur_key, o->cur_rank};
    int nt = 0;
    if (rc == 0) {
        product__attrs_rdlock(pa);
        int cat = o->category[0] ? product__attr_cat(pa, o->category) : -1;
        if (!o->category[0] || cat >= 0) {
            for (int i = 0; i < nm; i++) {
                const struct product_attr *a = product__attr_find(pa, m[i].id);
                if (!a || !(a->flags & PA_ACTIVE))
                    continue;
                if ((cat >= 0 && a->cat != cat) || (o->min_price >= 0 && a->price < o->min_price) ||
                    (o->max_price >= 0 && a->price > o->max_price) ||
                    (o->in_stock && !(a->flags & PA_IN_STOCK)))
                    continue;
                cand_t cd = {m[i].id, a->price, m[i].rank};
                if (o->has_cursor && cand_cmp(o->sort, &cd, &cur) <= 0)
                    continue;
                product__top_insert(o->sort, top, &nt, k, &cd);
            }
        }
        product__attrs_unlock(pa);
    }
    buf_free(&ms);
    db_conn_give(c);
    *ntp = nt;
    return rc;
}

static int search_page(struct list_load *l, struct buf *out)
{
    const query_t *o = l->q;
    struct db *db = product__db(l->app);
    enum db_dialect d = db_dialect(db);
    struct db_conn *c;
    cand_t top[101];
    int k = o->limit + 1, nt = 0;
    int rc = index_candidates(l, top, k, &nt);
    if (rc == ERR_UNSUPPORTED) {
        nt = 0;
        rc = match_candidates(l, top, k, &nt);
    }
    /* The attribute copy is synced on the primary (a row dirtied by another process's write
     * must not be read back stale from a lagging replica and then count as synced); the
     * page's rows are a plain read, for a replica (an active flag found cleared there skips
     * the row, as below). */
    bool more = nt > o->limit;
    int n = more ? o->limit : nt;
    struct db_rows *rows = NULL;
    if (rc == 0 && n > 0 && (rc = db_conn_take_read(db, &c)) == 0) {
        int64_t ids[100];
        for (int i = 0; i < n; i++)
            ids[i] = top[i].id;
        rc = product__store_rows_by_ids(c, d, ids, n, &rows);
        db_conn_give(c);
    }
    if (rc < 0)
        return rc;
    int nr = db_rows_count(rows);
    int64_t row_id[100]; /* each row's id parsed once (at most n rows: ids are unique) */
    for (int r = 0; r < nr && r < 100; r++)
        row_id[r] = db_get_i64(rows, r, PC_ID);
    if (nr > 100)
        nr = 100;
    struct buf json = BUF_INIT(0);
    buf_puts(&json, "{\"items\":[");
    bool first = true;
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < nr; r++) {
            if (row_id[r] != top[i].id)
                continue;
            if (db_get_i64(rows, r, PC_ACTIVE)) { /* hidden since the copy was read: skip */
                if (!first)
                    buf_puts(&json, ",");
                first = false;
                product__json_row(&json, rows, r);
            }
            break;
        }
    }
    db_rows_free(rows);
    buf_puts(&json, "],\"next_cursor\":");
    if (more) {
        const cand_t *t = &top[n - 1];
        char raw[96];
        if (o->sort == SORT_RELEVANCE)
            snprintf(raw, sizeof raw, "r:%.17g:%lld", t->rank, (long long)t->id);
        else if (o->sort == SORT_NEWEST)
            snprintf(raw, sizeof raw, "n:%lld", (long long)t->id);
        else
            snprintf(raw, sizeof raw, "%c:%lld:%lld", (char)o->sort, (long long)t->price,
                     (long long)t->id);
        put_cursor(&json, raw);
    } else {
        buf_puts(&json, "null}");
    }
    return product__tagged(&json, out);
}

static int load_list(void *vctx, const char *key, struct buf *out)
{
    struct list_load *l = vctx;
    return l->q->nwords ? search_page(l, out) : load_listing(l->app, l->q, out);
}

/* L1 miss with the Redis L2 on: the page under the catalog's Redis generation ("<rgen>:" and
 * the L1 key after its local generation), single-flight across processes; Redis down or
 * bypassed: the database. */
static int load_list_shared(void *vctx, const char *key, struct buf *out)
{
    struct list_load *l = vctx;
    uint64_t g;
    const char *rest = key ? strchr(key + 2, ':') : NULL; /* key: "l:<gen>:…" */
    if (!rest || cache_redis_generation(l->ctx->lists, "catalog", &g) < 0)
        return load_list(l, key, out);
    struct buf k2 = BUF_INIT(strlen(rest) + 24);
    buf_printf(&k2, "%llu%s", (unsigned long long)g, rest);
    int rc = k2.err ? k2.err : cache_get_or_load(l->ctx->lists, k2.p, load_list, l, 0, out);
    buf_free(&k2);
    return rc;
}

int product__search(struct app *app, const query_t *q, struct buf *out)
{
    struct product_ctx *ctx = product__ctx(app);
    struct list_load l = {app, ctx, q};
    if (!ctx->l1)
        return load_list(&l, NULL, out);
    struct buf key = BUF_INIT(2048);
    query_key(ctx, q, &key);
    /* With the L2, a page lives at most LIST_SHARED_L1_MS here: a write in another process
     * reaches this one within that even if its invalidation event is late. */
    int rc = key.err ? key.err
             : ctx->lists
                 ? cache_get_or_load(ctx->l1, key.p, load_list_shared, &l, LIST_SHARED_L1_MS, out)
                 : cache_get_or_load(ctx->l1, key.p, load_list, &l, LIST_TTL_MS, out);
    buf_free(&key);
    return rc;
}
