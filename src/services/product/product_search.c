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
#include "product_internal.h"

#define LIST_TTL_MS (30 * 1000)
#define CC_LIST "public, max-age=10"
#define MAX_WORDS 16
#define WORD_MAX 64


enum sort { SORT_NEWEST = 'n', SORT_PRICE_ASC = 'a', SORT_PRICE_DESC = 'd', SORT_RELEVANCE = 'r' };

struct query {
    char words[MAX_WORDS][WORD_MAX + 1];
    int nwords;
    char category[PRODUCT_SLUG_MAX + 1];
    int64_t min_price, max_price; /* -1: none */
    bool in_stock;
    enum sort sort;
    int limit;
    bool has_cursor;
    int64_t cur_key, cur_id;
    double cur_rank;
};

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
        {0x0080, 0x00A9}, {0x00AB, 0x00B1}, {0x00B4, 0x00B4}, {0x00B6, 0x00B8},
        {0x00BB, 0x00BB}, {0x00BF, 0x00BF}, {0x00D7, 0x00D7}, {0x00F7, 0x00F7},
        {0x037E, 0x037E}, {0x0387, 0x0387}, {0x055A, 0x055F}, {0x0589, 0x058A},
        {0x05BE, 0x05BE}, {0x060C, 0x060D}, {0x061B, 0x061F}, {0x066A, 0x066D},
        {0x06D4, 0x06D4}, {0x0964, 0x0965}, {0x0E4F, 0x0E4F}, {0x0E5A, 0x0E5B},
        {0x1680, 0x1680}, {0x180E, 0x180E}, {0x2000, 0x206F}, {0x20A0, 0x20CF},
        {0x2190, 0x245F}, {0x2500, 0x2775}, {0x2794, 0x2BFF}, {0x2E00, 0x2E7F},
        {0x3000, 0x3004}, {0x3008, 0x3020}, {0x3030, 0x3030}, {0x303D, 0x303F},
        {0x30FB, 0x30FB}, {0xFE00, 0xFE1F}, {0xFE30, 0xFE6F}, {0xFEFF, 0xFEFF},
        {0xFF01, 0xFF0F}, {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65},
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

static void tokenize(const char *q, struct query *o)
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

static int parse_money_param(struct http_req *req, const char *name, int64_t *out)
{
    const char *v = http_query(req, name);
    *out = -1;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < 0 || n > PRODUCT_PRICE_MAX || !isdigit((unsigned char)v[0]))
        return http_fail(req, ERR_INVALID, name,
                         "must be a whole number of minor units, 0 to %lld", PRODUCT_PRICE_MAX);
    *out = n;
    return 0;
}

static int bad_cursor(struct http_req *req)
{
    return http_fail(req, ERR_INVALID, "cursor", "is not a cursor from this listing");
}

static int parse_cursor(struct http_req *req, const char *s, struct query *o)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return bad_cursor(req);
    unsigned char raw[100];
    size_t len = 0;
    if (sodium_base642bin(raw, sizeof raw - 1, s, n, NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return bad_cursor(req);
    raw[len] = 0;
    const char *t = (const char *)raw;
    if (strlen(t) != len || len < 3 || t[0] != (char)o->sort || t[1] != ':')
        return bad_cursor(req);
    char *end;
    errno = 0;
    if (o->sort == SORT_NEWEST) {
        long long id = strtoll(t + 2, &end, 10);
        if (*end || errno || id <= 0 || !isdigit((unsigned char)t[2]))
            return bad_cursor(req);
        o->cur_id = id;
    } else if (o->sort == SORT_RELEVANCE) {
        double r = strtod(t + 2, &end);
        if (end == t + 2 || *end != ':' || errno || !isfinite(r))
            return bad_cursor(req);
        o->cur_rank = r;
        const char *ids = end + 1;
        long long id = strtoll(ids, &end, 10);
        if (*end || errno || id <= 0 || !isdigit((unsigned char)ids[0]))
            return bad_cursor(req);
        o->cur_id = id;
    } else {
        long long k = strtoll(t + 2, &end, 10);
        if (end == t + 2 || *end != ':' || errno || k < 0 || !isdigit((unsigned char)t[2]))
            return bad_cursor(req);
        const char *ids = end + 1;
        long long id = strtoll(ids, &end, 10);
        if (*end || errno || id <= 0 || !isdigit((unsigned char)ids[0]))
            return bad_cursor(req);
        o->cur_key = k;
        o->cur_id = id;
    }
    o->has_cursor = true;
    return 0;
}

static int parse_query(struct http_req *req, struct query *o)
{
    memset(o, 0, sizeof *o);
    const char *q = http_query(req, "q");
    if (q && strlen(q) > PRODUCT_Q_MAX)
        return http_fail(req, ERR_INVALID, "q", "at most %d characters", PRODUCT_Q_MAX);
    if (q && !utf8_ok((const unsigned char *)q))
        return http_fail(req, ERR_INVALID, "q", "must be UTF-8 text");
    if (q)
        tokenize(q, o);
    const char *cat = http_query(req, "category");
    if (cat && *cat) {
        if (!product__slug_ok(cat))
            return http_fail(req, ERR_INVALID, "category", "is not a category slug");
        snprintf(o->category, sizeof o->category, "%s", cat);
    }
    int rc;
    if ((rc = parse_money_param(req, "min_price", &o->min_price)) < 0)
        return rc;
    if ((rc = parse_money_param(req, "max_price", &o->max_price)) < 0)
        return rc;
    if (o->min_price >= 0 && o->max_price >= 0 && o->max_price < o->min_price)
        return http_fail(req, ERR_INVALID, "max_price", "must not be below min_price");
    const char *st = http_query(req, "in_stock");
    if (st) {
        if (!strcmp(st, "true") || !strcmp(st, "1"))
            o->in_stock = true;
        else if (strcmp(st, "false") && strcmp(st, "0"))
            return http_fail(req, ERR_INVALID, "in_stock", "must be true or false");
    }
    const char *sort = http_query(req, "sort");
    if (!sort || !*sort)
        o->sort = o->nwords ? SORT_RELEVANCE : SORT_NEWEST;
    else if (!strcmp(sort, "relevance"))
        o->sort = o->nwords ? SORT_RELEVANCE : SORT_NEWEST; /* empty q: newest first */
    else if (!strcmp(sort, "newest"))
        o->sort = SORT_NEWEST;
    else if (!strcmp(sort, "price_asc"))
        o->sort = SORT_PRICE_ASC;
    else if (!strcmp(sort, "price_desc"))
        o->sort = SORT_PRICE_DESC;
    else
        return http_fail(req, ERR_INVALID, "sort",
                         "must be relevance, price_asc, price_desc or newest");
    if ((rc = http_query_limit(req, 20, 100, &o->limit)) < 0)
        return rc;
    const char *cur = http_query(req, "cursor");
    if (cur && (rc = parse_cursor(req, cur, o)) < 0)
        return rc;
    return 0;
}

/* The cache key: every input that shapes the page, normalised. */
static void query_key(const struct query *o, struct buf *b)
{
    buf_printf(b, "l:%llu:%c:%d:%s:%lld:%lld:%d:", (unsigned long long)product__generation(),
               (char)o->sort, o->limit, o->category, (long long)o->min_price,
               (long long)o->max_price, o->in_stock);
    if (o->has_cursor)
        buf_printf(b, "%lld:%lld:%.17g:", (long long)o->cur_key, (long long)o->cur_id,
                   o->cur_rank);
    for (int i = 0; i < o->nwords; i++) {
        buf_puts(b, o->words[i]);
        buf_puts(b, " ");
    }
}

/* ---- SQL ----------------------------------------------------------------------------- */

struct sql {
    struct buf text;
    struct db_val args[16];
    int n;
};

static const char *arg(struct sql *s, struct db_val v)
{
    static const char *const names[] = {"$1", "$2",  "$3",  "$4",  "$5",  "$6",  "$7",  "$8",
                                        "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"};
    s->args[s->n] = v;
    return names[s->n++];
}

/* The text handed to the full-text engine, built only from our own word list. */
static void match_text(const struct query *o, enum db_dialect d, struct buf *b)
{
    for (int i = 0; i < o->nwords; i++) {
        bool last = i == o->nwords - 1;
        if (d == DB_SQLITE) {
            /* FTS5: "w" is a phrase of one token; the last word also as a prefix. */
            if (i)
                buf_puts(b, " AND ");
            if (last) /* FTS5 stems a prefix term too: "lamps"* finds lamp, lamps */
                buf_printf(b, "\"%s\"*", o->words[i]);
            else
                buf_printf(b, "\"%s\"", o->words[i]);
        } else {
            /* to_tsquery: 'w' is a quoted lexeme; words hold no quote or backslash. */
            if (i)
                buf_puts(b, " & ");
            if (last) /* to_tsquery stems 'w':* as well */
                buf_printf(b, "'%s':*", o->words[i]);
            else
                buf_printf(b, "'%s'", o->words[i]);
        }
    }
}

static void add_filters(struct sql *s, const struct query *o)
{
    buf_puts(&s->text, " AND p.active = 1");
    if (o->category[0])
        buf_printf(&s->text, " AND p.category = %s", arg(s, DB_TEXT(o->category)));
    if (o->min_price >= 0)
        buf_printf(&s->text, " AND p.price >= %s", arg(s, DB_INT(o->min_price)));
    if (o->max_price >= 0)
        buf_printf(&s->text, " AND p.price <= %s", arg(s, DB_INT(o->max_price)));
    if (o->in_stock)
        buf_puts(&s->text, " AND p.stock_available > 0");
}

/* Listing without words: an index-ordered keyset query. */
static void build_sql(struct sql *s, const struct query *o)
{
    struct buf *t = &s->text;
    buf_puts(t, "SELECT " PRODUCT_COLS " FROM products p WHERE 1 = 1");
    add_filters(s, o);
    switch (o->sort) {
    case SORT_NEWEST:
        if (o->has_cursor)
            buf_printf(t, " AND p.id < %s", arg(s, DB_INT(o->cur_id)));
        buf_puts(t, " ORDER BY p.id DESC");
        break;
    case SORT_PRICE_ASC:
        if (o->has_cursor) {
            const char *k = arg(s, DB_INT(o->cur_key));
            buf_printf(t, " AND (p.price, p.id) > (%s, %s)", k, arg(s, DB_INT(o->cur_id)));
        }
        buf_puts(t, " ORDER BY p.price, p.id");
        break;
    case SORT_PRICE_DESC:
        if (o->has_cursor) {
            const char *k = arg(s, DB_INT(o->cur_key));
            buf_printf(t, " AND (p.price, p.id) < (%s, %s)", k, arg(s, DB_INT(o->cur_id)));
        }
        buf_puts(t, " ORDER BY p.price DESC, p.id DESC");
        break;
    case SORT_RELEVANCE: /* only with words: search_page() */
        break;
    }
    buf_printf(t, " LIMIT %d", o->limit + 1);
}

static void cursor_for(const struct query *o, const struct db_rows *r, int row, char *out,
                       size_t cap)
{
    char raw[96];
    long long id = (long long)db_get_i64(r, row, PC_ID);
    switch (o->sort) {
    case SORT_NEWEST:
        snprintf(raw, sizeof raw, "n:%lld", id);
        break;
    case SORT_PRICE_ASC:
    case SORT_PRICE_DESC:
        snprintf(raw, sizeof raw, "%c:%lld:%lld", (char)o->sort,
                 (long long)db_get_i64(r, row, PC_PRICE), id);
        break;
    case SORT_RELEVANCE: /* only with words: search_page() */
        snprintf(raw, sizeof raw, "n:%lld", id);
        break;
    }
    sodium_bin2base64(out, cap, (const unsigned char *)raw, strlen(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

struct list_load {
    struct app *app;
    const struct query *q;
};

/* The cached value of a page: ETag, '\n', the JSON. */
static int finish_page(struct buf *json, struct buf *out)
{
    if (json->err) {
        buf_free(json);
        return ERR_NOMEM;
    }
    char etag[24];
    product__etag(json->p, json->len, etag);
    buf_puts(out, etag);
    buf_puts(out, "\n");
    buf_append(out, json->p, json->len);
    buf_free(json);
    return out->err;
}

static void put_cursor(struct buf *json, const char *raw)
{
    char cur[160];
    sodium_bin2base64(cur, sizeof cur, (const unsigned char *)raw, strlen(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    buf_printf(json, "\"%s\"}", cur);
}

/* Listing without words. */
static int load_listing(struct app *app, const struct query *o, struct buf *out)
{
    struct db *db = product__db(app);
    struct sql s = {.text = BUF_INIT(0)};
    build_sql(&s, o);
    if (s.text.err) {
        buf_free(&s.text);
        return ERR_NOMEM;
    }
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    struct db_rows *rows = NULL;
    if (rc == 0) {
        rc = db_query(c, s.text.p, s.n, s.args, &rows);
        db_conn_give(c);
    }
    buf_free(&s.text);
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
    return finish_page(&json, out);
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

static int query_ids(struct db_conn *c, const char *sql, const char *arg1, struct db_rows **out)
{
    struct db_val args[] = {DB_TEXT(arg1)};
    return db_query(c, sql, 1, args, out);
}

static int load_matches(void *ctx, const char *key, struct buf *out)
{
    struct list_load *l = ctx;
    const struct query *o = l->q;
    struct db *db = product__db(l->app);
    enum db_dialect d = db_dialect(db);
    struct buf mt = BUF_INIT(1024);
    match_text(o, d, &mt);
    if (mt.err)
        return mt.err;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0) {
        buf_free(&mt);
        return rc;
    }
    struct db_rows *all = NULL, *named = NULL;
    if (d == DB_SQLITE) {
        rc = product__attrs_sync(c, d);
        if (rc == 0)
            rc = query_ids(c,
                           "SELECT rowid FROM products_fts WHERE products_fts MATCH $1 "
                           "ORDER BY rowid",
                           mt.p, &all);
        if (rc >= 0) {
            struct buf nm = BUF_INIT(1024);
            buf_puts(&nm, "{name} : (");
            buf_puts(&nm, mt.p);
            buf_puts(&nm, ")");
            rc = nm.err ? nm.err
                        : query_ids(c,
                                    "SELECT rowid FROM products_fts WHERE products_fts MATCH $1 "
                                    "ORDER BY rowid",
                                    nm.p, &named);
            buf_free(&nm);
        }
    } else {
        rc = query_ids(c,
                       "SELECT id, -(ts_rank(search, to_tsquery('english', $1))::float8) "
                       "FROM products WHERE search @@ to_tsquery('english', $1) ORDER BY id",
                       mt.p, &all);
    }
    db_conn_give(c);
    buf_free(&mt);
    if (rc < 0) {
        db_rows_free(all);
        db_rows_free(named);
        return rc;
    }
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
        product__attrs_rdlock();
        for (int i = 0; i < n; i++) {
            int64_t id = db_get_i64(all, i, 0);
            while (k < nn && nid[k] < id)
                k++;
            m[i].id = id;
            if (k < nn && nid[k] == id) {
                const struct product_attr *a = product__attr_find(id);
                m[i].rank = -2.0 + (a ? a->name_len : 255) / 1024.0;
            } else {
                m[i].rank = -1.0;
            }
        }
        product__attrs_unlock();
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

struct cand {
    int64_t id, price;
    double rank;
};

/* < 0 when a comes before b in the page order. */
static int cand_cmp(enum sort s, const struct cand *a, const struct cand *b)
{
#define CMP(x, y) ((x) < (y) ? -1 : (x) > (y) ? 1 : 0)
    int c;
    switch (s) {
    case SORT_RELEVANCE:
        return (c = CMP(a->rank, b->rank)) ? c : CMP(a->id, b->id);
    case SORT_PRICE_ASC:
        return (c = CMP(a->price, b->price)) ? c : CMP(a->id, b->id);
    case SORT_PRICE_DESC:
        return (c = CMP(b->price, a->price)) ? c : CMP(b->id, a->id);
    case SORT_NEWEST:
    default:
        return CMP(b->id, a->id);
    }
#undef CMP
}

/* Keeps the k first candidates in order: top[0..*n). */
static void top_insert(enum sort s, struct cand *top, int *n, int k, const struct cand *c)
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

static int search_page(struct list_load *l, struct buf *out)
{
    const struct query *o = l->q;
    struct db *db = product__db(l->app);
    enum db_dialect d = db_dialect(db);
    struct cache *cache = product__cache();
    struct buf ms = BUF_INIT(0);
    int rc;
    if (cache) {
        struct buf key = BUF_INIT(1200);
        buf_printf(&key, "m:%llu:", (unsigned long long)product__generation());
        for (int i = 0; i < o->nwords; i++) {
            buf_puts(&key, o->words[i]);
            buf_puts(&key, " ");
        }
        rc = key.err ? key.err
                     : cache_get_or_load(cache, key.p, load_matches, l, MATCH_TTL_MS, &ms);
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
    rc = product__attrs_sync(c, d);
    /* matches the copy does not know yet (written by another process): all of them, or
     * the ones past the first few hundred would silently drop out of the result */
    if (rc == 0) {
        int64_t *unknown = NULL;
        int nu = 0;
        product__attrs_rdlock();
        for (int i = 0; i < nm; i++) {
            if (product__attr_find(m[i].id))
                continue;
            if (!unknown && !(unknown = malloc((size_t)nm * sizeof *unknown))) {
                rc = ERR_NOMEM;
                break;
            }
            unknown[nu++] = m[i].id;
        }
        product__attrs_unlock();
        for (int off = 0; rc == 0 && off < nu; off += UNKNOWN_CHUNK)
            rc = product__attrs_fetch(c, d, unknown + off,
                                      nu - off < UNKNOWN_CHUNK ? nu - off : UNKNOWN_CHUNK);
        free(unknown);
    }
    struct cand top[101], cur = {o->cur_id, o->cur_key, o->cur_rank};
    int k = o->limit + 1, nt = 0;
    if (rc == 0) {
        product__attrs_rdlock();
        int cat = o->category[0] ? product__attr_cat(o->category) : -1;
        if (!o->category[0] || cat >= 0) {
            for (int i = 0; i < nm; i++) {
                const struct product_attr *a = product__attr_find(m[i].id);
                if (!a || !(a->flags & PA_ACTIVE))
                    continue;
                if ((cat >= 0 && a->cat != cat) || (o->min_price >= 0 && a->price < o->min_price) ||
                    (o->max_price >= 0 && a->price > o->max_price) ||
                    (o->in_stock && !(a->flags & PA_IN_STOCK)))
                    continue;
                struct cand cd = {m[i].id, a->price, m[i].rank};
                if (o->has_cursor && cand_cmp(o->sort, &cd, &cur) <= 0)
                    continue;
                top_insert(o->sort, top, &nt, k, &cd);
            }
        }
        product__attrs_unlock();
    }
    buf_free(&ms);
    bool more = nt > o->limit;
    int n = more ? o->limit : nt;
    struct db_rows *rows = NULL;
    if (rc == 0 && n > 0) {
        int64_t ids[100];
        for (int i = 0; i < n; i++)
            ids[i] = top[i].id;
        struct buf p = BUF_INIT(0), sql = BUF_INIT(0);
        product__ids_param(&p, d, ids, n);
        buf_puts(&sql, "SELECT " PRODUCT_COLS " FROM products p WHERE p.");
        buf_puts(&sql, product__ids_in(d));
        struct db_val args[] = {DB_TEXT(p.p)};
        rc = p.err || sql.err ? ERR_NOMEM : db_query(c, sql.p, 1, args, &rows);
        buf_free(&p);
        buf_free(&sql);
    }
    db_conn_give(c);
    if (rc < 0)
        return rc;
    int nr = db_rows_count(rows);
    struct buf json = BUF_INIT(0);
    buf_puts(&json, "{\"items\":[");
    bool first = true;
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < nr; r++) {
            if (db_get_i64(rows, r, PC_ID) != top[i].id)
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
        const struct cand *t = &top[n - 1];
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
    return finish_page(&json, out);
}

static int load_list(void *ctx, const char *key, struct buf *out)
{
    struct list_load *l = ctx;
    return l->q->nwords ? search_page(l, out) : load_listing(l->app, l->q, out);
}

int product__list(struct http_req *req)
{
    struct query q;
    int rc = parse_query(req, &q);
    if (rc < 0)
        return rc;
    struct list_load l = {http_app(req), &q};
    struct buf b = BUF_INIT(0);
    struct cache *cache = product__cache();
    if (cache) {
        struct buf key = BUF_INIT(2048);
        query_key(&q, &key);
        rc = key.err ? key.err : cache_get_or_load(cache, key.p, load_list, &l, LIST_TTL_MS, &b);
        buf_free(&key);
    } else {
        rc = load_list(&l, NULL, &b);
    }
    if (rc == 0) {
        const char *nl = memchr(b.p, '\n', b.len);
        if (!nl) {
            rc = ERR_INTERNAL;
        } else {
            char etag[24];
            size_t el = (size_t)(nl - b.p);
            memcpy(etag, b.p, el < 23 ? el : 23);
            etag[el < 23 ? el : 23] = 0;
            http_add_header(req, "ETag", etag);
            http_add_header(req, "Cache-Control", CC_LIST);
            if (product__etag_matches(http_header(req, "If-None-Match"), etag))
                rc = ERR_NOT_MODIFIED;
            else
                rc = http_reply_raw(req, 200, "application/json", nl + 1,
                                    b.len - el - 1, true);
        }
    }
    buf_free(&b);
    return rc;
}
