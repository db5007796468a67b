/* SPDX-License-Identifier: MIT */
/* product_search.c — GET /api/v1/products: full-text search, filters, sorts and keyset
 * (cursor) pagination.
 *
 * q is never passed to a query parser as typed: it is cut into words (runs of ASCII letters
 * and digits, and any non-ASCII UTF-8 bytes), lower-cased, and each word is quoted by us, so
 * quotes, `*`, NEAR, AND/OR and parentheses in the input are only separators. The last word
 * also matches as a prefix (search as you type).
 *
 * Sort keys (every order ends with the id, so it is total):
 *   newest      id DESC (ids are time-ordered)        cursor n:<id>
 *   price_asc   (price, id)                           cursor a:<price>:<id>
 *   price_desc  (price DESC, id DESC)                 cursor d:<price>:<id>
 *   relevance   (rank, id), rank = -score             cursor r:<rank>:<id>
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

static void tokenize(const char *q, struct query *o)
{
    o->nwords = 0;
    const unsigned char *p = (const unsigned char *)q;
    while (*p && o->nwords < MAX_WORDS) {
        while (*p && !(isalnum(*p) || *p >= 0x80))
            p++;
        int n = 0;
        char *w = o->words[o->nwords];
        while (*p && (isalnum(*p) || *p >= 0x80)) {
            if (n < WORD_MAX)
                w[n++] = (char)(*p < 0x80 ? tolower(*p) : *p);
            p++;
        }
        /* never cut a UTF-8 sequence in half */
        while (n > 0 && (unsigned char)w[n - 1] >= 0x80 && n == WORD_MAX &&
               ((unsigned char)w[n - 1] & 0xC0) != 0x80)
            n--;
        w[n] = 0;
        if (n)
            o->nwords++;
    }
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

/* Relevance: the ranking runs over (id, rank) pairs only, and the full rows of the one page
 * are joined afterwards, so the sort never carries descriptions around. */
static void build_relevance_sql(struct sql *s, const struct query *o, enum db_dialect d,
                                const char *match, char *rankbuf)
{
    struct buf *t = &s->text;
    buf_puts(t, "SELECT " PRODUCT_COLS ", k.rank FROM (SELECT s.id, s.rank FROM (");
    if (d == DB_SQLITE) {
        buf_puts(t, "SELECT p.id AS id, bm25(products_fts, 10.0, 1.0) AS rank FROM products_fts "
                    "JOIN products p ON p.id = products_fts.rowid WHERE products_fts MATCH ");
        buf_puts(t, arg(s, DB_TEXT(match)));
    } else {
        const char *m = arg(s, DB_TEXT(match));
        buf_printf(t,
                   "SELECT p.id AS id, -(ts_rank(p.search, to_tsquery('english', %s))::float8) "
                   "AS rank FROM products p WHERE p.search @@ to_tsquery('english', %s)",
                   m, m);
    }
    add_filters(s, o);
    buf_puts(t, ") s");
    if (o->has_cursor) {
        snprintf(rankbuf, 40, "%.17g", o->cur_rank);
        const char *k = arg(s, DB_TEXT(rankbuf));
        const char *i = arg(s, DB_INT(o->cur_id));
        buf_printf(t,
                   " WHERE (s.rank > CAST(%s AS DOUBLE PRECISION) OR "
                   "(s.rank = CAST(%s AS DOUBLE PRECISION) AND s.id > %s))",
                   k, k, i);
    }
    /* one extra row tells whether there is a next page */
    buf_printf(t, " ORDER BY s.rank, s.id LIMIT %d) k JOIN products p ON p.id = k.id "
                  "ORDER BY k.rank, k.id", o->limit + 1);
}

static void build_sql(struct sql *s, const struct query *o, enum db_dialect d, const char *match,
                      char *rankbuf)
{
    if (o->sort == SORT_RELEVANCE) {
        build_relevance_sql(s, o, d, match, rankbuf);
        return;
    }
    struct buf *t = &s->text;
    buf_puts(t, "SELECT " PRODUCT_COLS ", 0 AS rank FROM products p WHERE ");
    if (o->nwords > 0 && d == DB_SQLITE) {
        buf_printf(t, "p.id IN (SELECT rowid FROM products_fts WHERE products_fts MATCH %s)",
                   arg(s, DB_TEXT(match)));
    } else if (o->nwords > 0) {
        buf_printf(t, "p.search @@ to_tsquery('english', %s)", arg(s, DB_TEXT(match)));
    } else {
        buf_puts(t, "1 = 1");
    }
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
    case SORT_RELEVANCE:
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
    case SORT_RELEVANCE: {
        const char *rank = db_get(r, row, PC_NCOLS);
        double v = rank ? strtod(rank, NULL) : 0;
        snprintf(raw, sizeof raw, "r:%.17g:%lld", v, id);
        break;
    }
    }
    sodium_bin2base64(out, cap, (const unsigned char *)raw, strlen(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

struct list_load {
    struct app *app;
    const struct query *q;
};

/* Cached value: ETag, '\n', the JSON page. */
static int load_list(void *ctx, const char *key, struct buf *out)
{
    struct list_load *l = ctx;
    const struct query *o = l->q;
    struct db *db = product__db(l->app);
    enum db_dialect d = db_dialect(db);
    struct buf match = BUF_INIT(4096);
    match_text(o, d, &match);
    if (match.err)
        return match.err;
    struct sql s = {.text = BUF_INIT(0)};
    char rankbuf[40];
    build_sql(&s, o, d, match.p ? match.p : "", rankbuf);
    if (s.text.err) {
        buf_free(&match);
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
    buf_free(&match);
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
    if (json.err) {
        buf_free(&json);
        return json.err;
    }
    char etag[24];
    product__etag(json.p, json.len, etag);
    buf_puts(out, etag);
    buf_puts(out, "\n");
    buf_append(out, json.p, json.len);
    buf_free(&json);
    return out->err;
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
