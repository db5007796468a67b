/* SPDX-License-Identifier: MIT */
/* product_index.c — the catalog's full-text index in memory (embedded mode): the match set
 * of a search's words without an FTS5 query.
 *
 * Terms are the FTS5 table's own: every name and description is cut by FTS5's tokenizer
 * ("porter unicode61", through db_tokenize()), so a term here is exactly a term of
 * products_fts, and a query word is cut the way FTS5 cuts a MATCH term. Each term keeps two
 * posting lists of document numbers, ascending: the documents holding it anywhere, and those
 * holding it in the name. A document is one version of one product: a changed product gets
 * a new number and its old one is marked dead, so lists only ever grow at their end.
 *
 * A query ("w1" AND "w2" AND "w3"*, as product_store.c writes it for FTS5) walks the
 * shortest exact list and checks each document against the other exact lists (cursors, the
 * lists are sorted) and against a bitmap of the prefix's terms (the terms are kept sorted,
 * so a prefix is a range). The rank is the one load_matches() gives: names holding every
 * word first, shorter names before longer ones, then the rest. Anything it cannot answer
 * exactly (a word FTS5 would cut into several tokens, an index not built yet, PostgreSQL)
 * returns ERR_UNSUPPORTED and the search asks FTS5 as before, so results never differ.
 *
 * A search page (product__index_page) needs no match set: the walk applies the filters from
 * the attribute copy (each document remembers its product's slot there, so no lookup by id
 * per match) and keeps the page's k first in the page order. Common terms (in 1 document of
 * 32 or more) also keep a bitmap: a query ANDs them (and a prefix of several terms) into one
 * mask, walked itself or tested per document of the shortest rare list. Relevance walks the
 * name lists first (they rank first and are short) and stops early when the page is full.
 *
 * Freshness: built on a background thread at service start (the whole table, 20,000 rows a
 * query; FTS5 answers meanwhile), then brought up to date before a search whenever the
 * catalog's generation moved (every catalog write of this process bumps it before it
 * returns) or, when MAX(updated_at) passed the newest row applied, once a second (writes of
 * another process): the rows whose updated_at is at most SYNC_MARGIN_MS older than the
 * newest one applied are read again (index products_updated), and only those whose text
 * changed are cut again. Deleted products leave dead postings behind; the search drops them
 * like any product its attribute copy does not know as active. A search that cannot take the
 * sync lock at once asks FTS5 instead of waiting. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "product_internal.h"

#define BUILD_CHUNK 20000
#define SYNC_MARGIN_MS 5000
#define POLL_MS 1000
#define DOC_TOKENS_MAX 4096
#define DOC_NO_SLOT UINT32_MAX

struct pix_list {
    uint32_t *v;
    uint32_t n, cap;
};

struct pix_term {
    char *text;
    uint32_t len;
    struct pix_list all, named;
    /* a common term's documents also as a bitmap (bits past bwords * 64: none) */
    uint64_t *bits;
    uint32_t bwords;
};

struct product_index {
    pthread_rwlock_t lk;     /* queries read; applying rows writes */
    pthread_mutex_t sync_mu; /* one build or sync at a time; owns tok */
    pthread_mutex_t qtok_mu; /* the query tokenizer */
    _Atomic bool ready;
    bool failed; /* the build failed: FTS5 answers (sync_mu) */
    struct db_tokenizer *tok, *qtok;
    /* documents */
    int64_t *doc_id;
    uint64_t *doc_hash; /* of the indexed text */
    uint8_t *doc_nlen;  /* characters of the name, at most 255 (length(name)) */
    uint8_t *doc_dead;
    uint32_t *doc_slot; /* the product's slot in the attribute copy; DOC_NO_SLOT: not known yet */
    uint32_t ndocs, capdocs;
    int64_t max_doc_id;
    bool id_order; /* doc_id ascends with the document number (no product re-indexed) */
    /* product id -> its live document: open addressing, id 0 = empty */
    struct pix_slot {
        int64_t id;
        uint32_t doc;
    } * ids;
    size_t idcap, idused;
    /* terms: hash of term numbers + 1 (0 = empty), and the numbers in byte order */
    struct pix_term *terms;
    uint32_t nterms, capterms;
    uint32_t *thash;
    size_t thcap;
    uint32_t *sorted;
    uint32_t nsorted;      /* sorted is stale when != nterms */
    pthread_t warm;        /* the startup build (product__index_warm) */
    bool warm_running;     /* joined by product__index_free */
    _Atomic bool stopping; /* product__index_free: a build in progress gives up */
    struct db *db;         /* the catalog's, for the startup build */
    struct product_ctx *ctx;
    _Atomic uint64_t synced_gen;
    _Atomic int64_t checked_ms;
    int64_t synced_upd; /* sync_mu */
};

static pthread_mutex_t pix_new_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t hash_bytes(const char *s, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

void product__index_free(struct product_index *x)
{
    if (!x)
        return;
    atomic_store(&x->stopping, true);
    if (x->warm_running)
        pthread_join(x->warm, NULL);
    for (uint32_t i = 0; i < x->nterms; i++) {
        free(x->terms[i].text);
        free(x->terms[i].all.v);
        free(x->terms[i].named.v);
        free(x->terms[i].bits);
    }
    free(x->terms);
    free(x->thash);
    free(x->sorted);
    free(x->ids);
    free(x->doc_id);
    free(x->doc_hash);
    free(x->doc_nlen);
    free(x->doc_dead);
    free(x->doc_slot);
    db_tokenizer_free(x->tok);
    db_tokenizer_free(x->qtok);
    pthread_rwlock_destroy(&x->lk);
    pthread_mutex_destroy(&x->sync_mu);
    pthread_mutex_destroy(&x->qtok_mu);
    free(x);
}

static struct product_index *pix_get(struct product_ctx *ctx)
{
    struct product_index *x = atomic_load(&ctx->index);
    if (x)
        return x;
    pthread_mutex_lock(&pix_new_mu);
    x = atomic_load(&ctx->index);
    if (!x && (x = calloc(1, sizeof *x)) != NULL) {
        pthread_rwlock_init(&x->lk, NULL);
        pthread_mutex_init(&x->sync_mu, NULL);
        pthread_mutex_init(&x->qtok_mu, NULL);
        atomic_store(&ctx->index, x);
    }
    pthread_mutex_unlock(&pix_new_mu);
    return x;
}

/* ---- building blocks (lk held for writing, or no reader yet) ------------------------- */

static int list_push(struct pix_list *l, uint32_t doc)
{
    if (l->n && l->v[l->n - 1] == doc)
        return 0;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        uint32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return ERR_NOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = doc;
    return 0;
}

static uint32_t term_slot(const struct product_index *x, const char *t, uint32_t len)
{
    size_t mask = x->thcap - 1;
    size_t i = (size_t)hash_bytes(t, len, 1469598103934665603ull) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t k = x->thash[i];
        if (!k)
            return (uint32_t)i;
        const struct pix_term *e = &x->terms[k - 1];
        if (e->len == len && memcmp(e->text, t, len) == 0)
            return (uint32_t)i;
    }
}

/* The term's number, or -1 when unknown. */
static int64_t term_find(const struct product_index *x, const char *t, uint32_t len)
{
    if (!x->thcap)
        return -1;
    uint32_t k = x->thash[term_slot(x, t, len)];
    return k ? (int64_t)k - 1 : -1;
}

static int64_t term_add(struct product_index *x, const char *t, uint32_t len)
{
    if ((x->nterms + 1) * 2 > x->thcap) {
        size_t cap = x->thcap ? x->thcap * 2 : 1024;
        uint32_t *h = calloc(cap, sizeof *h);
        if (!h)
            return ERR_NOMEM;
        uint32_t *old = x->thash;
        x->thash = h;
        x->thcap = cap;
        for (uint32_t i = 0; i < x->nterms; i++)
            h[term_slot(x, x->terms[i].text, x->terms[i].len)] = i + 1;
        free(old);
    }
    uint32_t slot = term_slot(x, t, len);
    if (x->thash[slot])
        return x->thash[slot] - 1;
    if (x->nterms == x->capterms) {
        uint32_t cap = x->capterms ? x->capterms * 2 : 1024;
        struct pix_term *v = realloc(x->terms, cap * sizeof *v);
        if (!v)
            return ERR_NOMEM;
        x->terms = v;
        x->capterms = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return ERR_NOMEM;
    memcpy(copy, t, len);
    copy[len] = 0;
    x->terms[x->nterms] = (struct pix_term){.text = copy, .len = len};
    x->thash[slot] = x->nterms + 1;
    return x->nterms++;
}

static size_t id_slot(const struct product_index *x, int64_t id)
{
    size_t mask = x->idcap - 1;
    size_t i = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 17) & mask;
    while (x->ids[i].id && x->ids[i].id != id)
        i = (i + 1) & mask;
    return i;
}

static int id_put(struct product_index *x, int64_t id, uint32_t doc)
{
    if ((x->idused + 1) * 2 > x->idcap) {
        size_t cap = x->idcap ? x->idcap * 2 : 4096;
        struct pix_slot *n = calloc(cap, sizeof *n), *old = x->ids;
        if (!n)
            return ERR_NOMEM;
        size_t oldcap = x->idcap;
        x->ids = n;
        x->idcap = cap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].id)
                x->ids[id_slot(x, old[i].id)] = old[i];
        free(old);
    }
    size_t i = id_slot(x, id);
    if (!x->ids[i].id)
        x->idused++;
    x->ids[i] = (struct pix_slot){id, doc};
    return 0;
}

/* Keeps a term's bitmap: made once the term is in at least 1 document of 32 (then the bitmap
 * is no larger than the list), dropped when it falls under 1 in 64. ndocs: documents so far. */
#define BITS_MIN_DOCS 1024
static int term_bits(struct pix_term *t, uint32_t doc, uint32_t ndocs)
{
    if (!t->bits && (ndocs < BITS_MIN_DOCS || (uint64_t)t->all.n * 32 < ndocs))
        return 0;
    if (doc / 64 >= t->bwords) {
        if (t->bits && (uint64_t)t->all.n * 64 < ndocs) { /* rare now: the list alone */
            free(t->bits);
            t->bits = NULL;
            t->bwords = 0;
            return 0;
        }
        uint32_t nw = t->bwords ? t->bwords : 64;
        while (nw <= doc / 64)
            nw *= 2;
        uint64_t *b = realloc(t->bits, (size_t)nw * sizeof *b);
        if (!b)
            return ERR_NOMEM;
        bool fresh = !t->bits;
        memset(b + t->bwords, 0, (size_t)(nw - t->bwords) * sizeof *b);
        t->bits = b;
        t->bwords = nw;
        if (fresh) /* made now: every document of the list */
            for (uint32_t j = 0; j < t->all.n; j++)
                b[t->all.v[j] >> 6] |= 1ull << (t->all.v[j] & 63);
    }
    t->bits[doc >> 6] |= 1ull << (doc & 63);
    return 0;
}

/* ---- documents ------------------------------------------------------------------------ */

/* A document's tokens, cut outside the lock: offsets into one buffer, name tokens first. */
struct doc_tokens {
    char buf[32768]; /* a name (200) and a description (5,000 characters) always fit */
    size_t used;
    uint32_t off[DOC_TOKENS_MAX], len[DOC_TOKENS_MAX];
    int n, nname;
};

static int collect(void *ctx, const char *t, int len)
{
    struct doc_tokens *d = ctx;
    if (d->n == DOC_TOKENS_MAX || len <= 0 || d->used + (size_t)len > sizeof d->buf)
        return ERR_TOOBIG; /* cannot happen with the catalog's length limits */
    memcpy(d->buf + d->used, t, (size_t)len);
    d->off[d->n] = (uint32_t)d->used;
    d->len[d->n] = (uint32_t)len;
    d->used += (size_t)len;
    d->n++;
    return 0;
}

static uint8_t name_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n > 255 ? 255 : (uint8_t)n;
}

/* Applies one product row (id, name, description) under the write lock. */
static int doc_apply(struct product_index *x, int64_t id, const char *name, uint64_t h,
                     const struct doc_tokens *d)
{
    size_t slot = x->idcap ? id_slot(x, id) : 0;
    if (x->idcap && x->ids[slot].id == id) {
        uint32_t old = x->ids[slot].doc;
        if (x->doc_hash[old] == h)
            return 0; /* the same text: nothing to do */
        x->doc_dead[old] = 1;
    }
    if (x->ndocs == x->capdocs) {
        uint32_t cap = x->capdocs ? x->capdocs * 2 : 4096;
        int64_t *di = realloc(x->doc_id, cap * sizeof *di);
        if (di)
            x->doc_id = di;
        uint64_t *dh = realloc(x->doc_hash, cap * sizeof *dh);
        if (dh)
            x->doc_hash = dh;
        uint8_t *dn = realloc(x->doc_nlen, cap);
        if (dn)
            x->doc_nlen = dn;
        uint8_t *dd = realloc(x->doc_dead, cap);
        if (dd)
            x->doc_dead = dd;
        uint32_t *ds = realloc(x->doc_slot, cap * sizeof *ds);
        if (ds)
            x->doc_slot = ds;
        if (!di || !dh || !dn || !dd || !ds)
            return ERR_NOMEM;
        x->capdocs = cap;
    }
    uint32_t doc = x->ndocs;
    for (int i = 0; i < d->n; i++) {
        int64_t t = term_add(x, d->buf + d->off[i], d->len[i]);
        if (t < 0)
            return (int)t;
        if (list_push(&x->terms[t].all, doc) < 0 ||
            (i < d->nname && list_push(&x->terms[t].named, doc) < 0) ||
            term_bits(&x->terms[t], doc, doc + 1) < 0)
            return ERR_NOMEM;
    }
    x->doc_id[doc] = id;
    x->doc_hash[doc] = h;
    x->doc_nlen[doc] = name_chars(name);
    x->doc_dead[doc] = 0;
    x->doc_slot[doc] = DOC_NO_SLOT;
    if (doc == 0)
        x->id_order = true;
    if (doc > 0 && id <= x->max_doc_id)
        x->id_order = false;
    if (id > x->max_doc_id)
        x->max_doc_id = id;
    x->ndocs++;
    return id_put(x, id, doc);
}

/* Cuts and applies rows (id, name, description, updated_at); sync_mu held. */
static int apply_rows(struct product_index *x, const struct db_rows *r, struct doc_tokens *d)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < db_rows_count(r); i++) {
        const char *name = db_get(r, i, 1) ? db_get(r, i, 1) : "";
        const char *desc = db_get(r, i, 2) ? db_get(r, i, 2) : "";
        size_t nl = strlen(name), dl = strlen(desc);
        uint64_t h = hash_bytes(desc, dl, hash_bytes(name, nl + 1, 1469598103934665603ull));
        int64_t id = db_get_i64(r, i, 0), upd = db_get_i64(r, i, 3);
        if (upd > x->synced_upd)
            x->synced_upd = upd;
        pthread_rwlock_rdlock(&x->lk);
        size_t slot = x->idcap ? id_slot(x, id) : 0;
        bool same = x->idcap && x->ids[slot].id == id && x->doc_hash[x->ids[slot].doc] == h;
        pthread_rwlock_unlock(&x->lk);
        if (same) /* read again but unchanged (the sync window): nothing to cut */
            continue;
        d->used = 0;
        d->n = 0;
        if ((rc = db_tokenize(x->tok, name, (int)nl, false, false, collect, d)) < 0)
            break;
        d->nname = d->n;
        if ((rc = db_tokenize(x->tok, desc, (int)dl, false, false, collect, d)) < 0)
            break;
        pthread_rwlock_wrlock(&x->lk);
        rc = doc_apply(x, id, name, h, d);
        pthread_rwlock_unlock(&x->lk);
    }
    return rc;
}

static int build(struct product_index *x, struct db *db, struct doc_tokens *d)
{
    int rc = db_tokenizer_new(db, "porter unicode61", &x->tok);
    if (rc == 0)
        rc = db_tokenizer_new(db, "porter unicode61", &x->qtok);
    int64_t after = 0;
    while (rc == 0) {
        struct db_rows *r = NULL;
        if ((rc = product__store_text_chunk(db, after, BUILD_CHUNK, &r)) < 0)
            break;
        int n = db_rows_count(r);
        rc = atomic_load(&x->stopping) ? ERR_UNAVAILABLE : apply_rows(x, r, d);
        if (n)
            after = db_get_i64(r, n - 1, 0);
        db_rows_free(r);
        if (n < BUILD_CHUNK)
            break;
    }
    return rc;
}

/* moved: whether the catalog's generation moved (a write of this process): then the rows of
 * the margin are read again whatever the newest updated_at says. */
static int sync_since(struct product_index *x, struct db *db, struct doc_tokens *d, bool moved)
{
    if (!moved) { /* a poll for other processes' writes: one index lookup when none */
        int64_t newest = 0;
        int rc = product__store_text_newest(db, &newest);
        if (rc < 0 || newest <= x->synced_upd)
            return rc;
    }
    struct db_rows *r = NULL;
    int rc = product__store_text_since(db, x->synced_upd - SYNC_MARGIN_MS, &r);
    if (rc == 0)
        rc = apply_rows(x, r, d);
    db_rows_free(r);
    return rc;
}

/* Makes the index current for a search starting now; ERR_UNSUPPORTED: ask FTS5. */
static int make_current(struct product_ctx *ctx, struct product_index *x, struct db *db)
{
    uint64_t gen = product__generation(ctx);
    bool ready = atomic_load(&x->ready);
    if (ready && gen == x->synced_gen && mono_ms() - x->checked_ms < POLL_MS)
        return 0; /* racy reads of a hint: the locked check below decides */
    if (pthread_mutex_trylock(&x->sync_mu) != 0)
        return ERR_UNSUPPORTED;
    int rc = 0;
    struct doc_tokens *d = NULL;
    if (x->failed) {
        rc = ERR_UNSUPPORTED;
    } else if (!(d = malloc(sizeof *d))) {
        rc = ERR_NOMEM;
    } else if (!atomic_load(&x->ready)) {
        int64_t t0 = mono_ms();
        x->synced_gen = gen;
        x->checked_ms = mono_ms();
        rc = build(x, db, d);
        if (rc == 0) {
            atomic_store(&x->ready, true);
            log_info("product: search index built: %u products, %u terms in %lld ms", x->ndocs,
                     x->nterms, (long long)(mono_ms() - t0));
        } else {
            x->failed = true;
            log_warn("product: no in-memory search index (%s); FTS5 answers", err_str(rc));
        }
    } else if (gen != x->synced_gen || mono_ms() - x->checked_ms >= POLL_MS) {
        bool moved = gen != x->synced_gen;
        x->synced_gen = gen; /* read before the rows: a later write moves it again */
        x->checked_ms = mono_ms();
        rc = sync_since(x, db, d, moved);
    }
    free(d);
    pthread_mutex_unlock(&x->sync_mu);
    return rc < 0 ? ERR_UNSUPPORTED : 0;
}

/* ---- queries -------------------------------------------------------------------------- */

struct one_token {
    char t[PRODUCT_WORD_MAX * 4 + 1];
    int len, n;
};

static int one_token(void *ctx, const char *t, int len)
{
    struct one_token *o = ctx;
    if (++o->n == 1 && len > 0 && (size_t)len < sizeof o->t) {
        memcpy(o->t, t, (size_t)len);
        o->t[len] = 0;
        o->len = len;
    }
    return 0;
}

static const struct product_index *sort_ix;
static int term_cmp(const void *a, const void *b)
{
    const struct pix_term *x = &sort_ix->terms[*(const uint32_t *)a];
    const struct pix_term *y = &sort_ix->terms[*(const uint32_t *)b];
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The sorted term list is rebuilt (sync_mu and the write lock held) when terms were added. */
static int sort_terms(struct product_index *x)
{
    if (x->nsorted == x->nterms)
        return 0;
    uint32_t *s = realloc(x->sorted, (x->nterms ? x->nterms : 1) * sizeof *s);
    if (!s)
        return ERR_NOMEM;
    for (uint32_t i = 0; i < x->nterms; i++)
        s[i] = i;
    static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER; /* qsort has no context */
    pthread_mutex_lock(&sort_mu);
    sort_ix = x;
    qsort(s, x->nterms, sizeof *s, term_cmp);
    pthread_mutex_unlock(&sort_mu);
    x->sorted = s;
    x->nsorted = x->nterms;
    return 0;
}

/* First position in sorted whose term is >= p. */
static uint32_t lower_bound(const struct product_index *x, const char *p, uint32_t plen)
{
    uint32_t lo = 0, hi = x->nsorted;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const struct pix_term *t = &x->terms[x->sorted[mid]];
        uint32_t n = t->len < plen ? t->len : plen;
        int c = memcmp(t->text, p, n);
        if (c < 0 || (c == 0 && t->len < plen))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Whether sorted list l holds doc, moving cursor *i forward (docs are asked in order). */
static inline bool list_has(const struct pix_list *l, uint32_t *i, uint32_t doc)
{
    uint32_t k = *i;
    for (int s = 0; s < 4 && k < l->n && l->v[k] < doc; s++) /* usually a step or two */
        k++;
    if (k < l->n && l->v[k] < doc) {
        /* gallop, then binary search */
        uint32_t step = 1, hi = k + 1;
        while (hi < l->n && l->v[hi] < doc) {
            k = hi;
            step *= 2;
            hi = k + step;
        }
        if (hi > l->n)
            hi = l->n;
        while (k < hi) {
            uint32_t mid = (k + hi) / 2;
            if (l->v[mid] < doc)
                k = mid + 1;
            else
                hi = mid;
        }
    }
    *i = k;
    return k < l->n && l->v[k] == doc;
}

/* A walk over the documents matching a query's words, in document order. The rare words'
 * lists (and the prefix's, when it is a single rare term) are walked with cursors, the
 * shortest driving; the common words' bitmaps and a prefix of several terms (as bitmaps of
 * their documents) are ANDed into one mask, tested per document or, when every word is
 * common, walked itself. */
struct pix_walk {
    int nl; /* rare lists */
    const struct pix_list *all[PRODUCT_MAX_WORDS];
    uint32_t cur_a[PRODUCT_MAX_WORDS];
    int nn; /* name lists of the exact words and a single-term prefix */
    const struct pix_list *named[PRODUCT_MAX_WORDS];
    uint32_t cur_n[PRODUCT_MAX_WORDS];
    const uint64_t *mask; /* NULL: none */
    size_t mwords;        /* words of mask; past them: no bit */
    uint64_t *own_mask, *pbits, *pnamed;
    size_t words;
    int drv; /* the driving list, -1: the mask */
    uint32_t pos, w;
    uint64_t bits;
    bool empty;
};

/* The query's words as FTS5 cuts them, each exactly one token (else ERR_UNSUPPORTED). */
static int query_tokens(struct product_index *x, const struct product_query *q,
                        struct one_token *tok)
{
    int rc = 0;
    pthread_mutex_lock(&x->qtok_mu);
    for (int i = 0; rc == 0 && i < q->nwords; i++) {
        bool last = i == q->nwords - 1;
        tok[i] = (struct one_token){.len = 0, .n = 0};
        rc = db_tokenize(x->qtok, q->words[i], (int)strlen(q->words[i]), true, last, one_token,
                         &tok[i]);
        if (rc == 0 && (tok[i].n != 1 || tok[i].len == 0))
            rc = ERR_UNSUPPORTED;
    }
    pthread_mutex_unlock(&x->qtok_mu);
    return rc < 0 ? ERR_UNSUPPORTED : 0;
}

/* Read lock held; takes the write lock for a moment when terms must be sorted again (then
 * returns with the read lock held again). */
static int walk_init(struct product_index *x, const struct one_token *tok, int nwords,
                     struct pix_walk *w)
{
    memset(w, 0, sizeof *w);
    w->drv = -1;
    int rc = 0;
    if (x->nsorted != x->nterms) { /* new terms since the last sort: take the write lock */
        pthread_rwlock_unlock(&x->lk);
        pthread_rwlock_wrlock(&x->lk);
        rc = sort_terms(x);
        pthread_rwlock_unlock(&x->lk);
        pthread_rwlock_rdlock(&x->lk);
        if (rc == 0 && x->nsorted != x->nterms)
            rc = ERR_UNSUPPORTED;
        if (rc < 0)
            return rc;
    }
    w->words = ((size_t)x->ndocs + 63) / 64;
    const struct pix_term *use[PRODUCT_MAX_WORDS];
    int nuse = 0;
    for (int i = 0; i < nwords - 1; i++) {
        int64_t t = term_find(x, tok[i].t, (uint32_t)tok[i].len);
        if (t < 0) {
            w->empty = true;
            return 0;
        }
        use[nuse++] = &x->terms[t];
    }
    /* The prefix: a range of the sorted terms. */
    const struct one_token *p = &tok[nwords - 1];
    uint32_t from = lower_bound(x, p->t, (uint32_t)p->len), to = from;
    while (to < x->nsorted) {
        const struct pix_term *t = &x->terms[x->sorted[to]];
        if (t->len < (uint32_t)p->len || memcmp(t->text, p->t, (size_t)p->len) != 0)
            break;
        to++;
    }
    if (from == to) {
        w->empty = true;
        return 0;
    }
    if (to - from == 1) {
        use[nuse++] = &x->terms[x->sorted[from]];
    } else {
        w->pbits = calloc(w->words ? w->words : 1, sizeof *w->pbits);
        w->pnamed = calloc(w->words ? w->words : 1, sizeof *w->pnamed);
        if (!w->pbits || !w->pnamed)
            return ERR_NOMEM;
        for (uint32_t k = from; k < to; k++) {
            const struct pix_term *t = &x->terms[x->sorted[k]];
            if (t->bits) {
                size_t n = t->bwords < w->words ? t->bwords : w->words;
                for (size_t j = 0; j < n; j++)
                    w->pbits[j] |= t->bits[j];
            } else {
                for (uint32_t j = 0; j < t->all.n; j++)
                    w->pbits[t->all.v[j] >> 6] |= 1ull << (t->all.v[j] & 63);
            }
            for (uint32_t j = 0; j < t->named.n; j++)
                w->pnamed[t->named.v[j] >> 6] |= 1ull << (t->named.v[j] & 63);
        }
    }
    /* The mask: the common words' bitmaps and the prefix's, ANDed (one alone: itself). */
    const uint64_t *src[PRODUCT_MAX_WORDS + 1];
    size_t srcw[PRODUCT_MAX_WORDS + 1];
    int nsrc = 0;
    if (w->pbits) {
        src[nsrc] = w->pbits;
        srcw[nsrc++] = w->words;
    }
    for (int i = 0; i < nuse; i++) {
        w->named[w->nn++] = &use[i]->named;
        if (use[i]->bits) {
            src[nsrc] = use[i]->bits;
            srcw[nsrc++] = use[i]->bwords < w->words ? use[i]->bwords : w->words;
        } else {
            w->all[w->nl++] = &use[i]->all;
        }
    }
    if (nsrc == 1) {
        w->mask = src[0];
        w->mwords = srcw[0];
    } else if (nsrc > 1) {
        size_t n = srcw[0];
        for (int i = 1; i < nsrc; i++)
            if (srcw[i] < n)
                n = srcw[i];
        if (!(w->own_mask = malloc((n ? n : 1) * sizeof *w->own_mask)))
            return ERR_NOMEM;
        memcpy(w->own_mask, src[0], n * sizeof *w->own_mask);
        for (int i = 1; i < nsrc; i++)
            for (size_t j = 0; j < n; j++)
                w->own_mask[j] &= src[i][j];
        w->mask = w->own_mask;
        w->mwords = n;
    }
    /* The driver: the shortest rare list, or the mask. */
    for (int i = 0; i < w->nl; i++)
        if (w->drv < 0 || w->all[i]->n < w->all[w->drv]->n)
            w->drv = i;
    return 0;
}

static void walk_free(struct pix_walk *w)
{
    free(w->own_mask);
    free(w->pbits);
    free(w->pnamed);
}

static inline bool mask_has(const struct pix_walk *w, uint32_t doc)
{
    return (doc >> 6) < w->mwords && (w->mask[doc >> 6] >> (doc & 63) & 1);
}

/* The next live document holding every word. */
static inline bool walk_next(const struct product_index *x, struct pix_walk *w, uint32_t *out)
{
    if (w->empty)
        return false;
    for (;;) {
        uint32_t doc;
        if (w->drv >= 0) {
            if (w->pos >= w->all[w->drv]->n)
                return false;
            doc = w->all[w->drv]->v[w->pos++];
            if (w->mask && !mask_has(w, doc))
                continue;
        } else {
            while (!w->bits && w->w < w->mwords)
                w->bits = w->mask[w->w++];
            if (!w->bits)
                return false;
            doc = (w->w - 1) * 64 + (uint32_t)__builtin_ctzll(w->bits);
            w->bits &= w->bits - 1;
        }
        if (x->doc_dead[doc])
            continue;
        bool ok = true;
        for (int i = 0; ok && i < w->nl; i++)
            if (i != w->drv)
                ok = list_has(w->all[i], &w->cur_a[i], doc);
        if (ok) {
            *out = doc;
            return true;
        }
    }
}

/* Whether the name holds every word (documents asked in ascending order). */
static inline bool walk_in_name(struct pix_walk *w, uint32_t doc)
{
    if (w->pnamed && !(w->pnamed[doc >> 6] >> (doc & 63) & 1))
        return false;
    for (int i = 0; i < w->nn; i++)
        if (!list_has(w->named[i], &w->cur_n[i], doc))
            return false;
    return true;
}

/* load_matches()'s rank for SQLite: names holding every word first, shorter names first. */
static inline double walk_rank(const struct product_index *x, struct pix_walk *w, uint32_t doc)
{
    return walk_in_name(w, doc) ? -2.0 + x->doc_nlen[doc] / 1024.0 : -1.0;
}

/* Index checks shared by both queries; ERR_UNSUPPORTED: ask FTS5. */
static struct product_index *usable(struct product_ctx *ctx, struct db *db,
                                    const struct product_query *q, struct one_token *tok)
{
    if (db_dialect(db) != DB_SQLITE || q->nwords < 1)
        return NULL;
    struct product_index *x = pix_get(ctx);
    if (!x || make_current(ctx, x, db) < 0 || query_tokens(x, q, tok) < 0)
        return NULL;
    return x;
}

struct match_out {
    int64_t id;
    double rank;
};

int product__index_match(struct product_ctx *ctx, struct db *db, const struct product_query *q,
                         struct buf *out)
{
    struct one_token tok[PRODUCT_MAX_WORDS];
    struct product_index *x = usable(ctx, db, q, tok);
    if (!x)
        return ERR_UNSUPPORTED;
    struct buf res = BUF_INIT(0);
    struct match_out head = {0, 0};
    buf_append(&res, &head, sizeof head);
    struct pix_walk w;
    pthread_rwlock_rdlock(&x->lk);
    int rc = walk_init(x, tok, q->nwords, &w), n = 0;
    uint32_t doc;
    while (rc == 0 && walk_next(x, &w, &doc)) {
        struct match_out m = {x->doc_id[doc], walk_rank(x, &w, doc)};
        buf_append(&res, &m, sizeof m);
        n++;
    }
    pthread_rwlock_unlock(&x->lk);
    walk_free(&w);
    if (rc == 0 && res.err)
        rc = ERR_NOMEM;
    if (rc < 0) {
        buf_free(&res);
        return rc == ERR_NOMEM ? rc : ERR_UNSUPPORTED;
    }
    ((struct match_out *)res.p)->id = n;
    buf_append(out, res.p, res.len);
    buf_free(&res);
    return out->err ? ERR_NOMEM : 0;
}

/* The filters of a page: what a document's product must be to count. */
struct page_filter {
    struct product_attrs *pa;
    uint8_t need; /* PA_* flags */
    int cat;      /* -1: any */
    int64_t lo, hi;
    int64_t *unknown;
    int *nunknown;
    bool overflow;
};

/* The document's product when it passes the filters, else NULL (unknown ones recorded). */
static inline const struct product_attr *page_pass(struct product_index *x, struct page_filter *f,
                                                   uint32_t doc)
{
    uint32_t slot = __atomic_load_n(&x->doc_slot[doc], __ATOMIC_RELAXED);
    if (slot == DOC_NO_SLOT) {
        int64_t s = product__attr_slot(f->pa, x->doc_id[doc]);
        if (s < 0) { /* written by another process: the caller reads it */
            if (f->unknown && *f->nunknown == PRODUCT_UNKNOWN_MAX)
                f->overflow = true;
            else if (f->unknown)
                f->unknown[(*f->nunknown)++] = x->doc_id[doc];
            return NULL;
        }
        slot = (uint32_t)s; /* stable: every reader stores the same value */
        __atomic_store_n(&x->doc_slot[doc], slot, __ATOMIC_RELAXED);
    }
    const struct product_attr *a = &f->pa->rows[slot];
    if ((a->flags & f->need) != f->need || (f->cat >= 0 && a->cat != f->cat) || a->price < f->lo ||
        a->price > f->hi)
        return NULL;
    return a;
}

/* Candidate c into the page when it comes after the cursor and before the page's last. */
static inline void page_offer(const struct product_query *q, const struct product_cand *cur,
                              struct product_cand *top, int *n, int k, const struct product_cand *c)
{
    if (q->has_cursor && product__cand_cmp(q->sort, c, cur) <= 0)
        return;
    if (*n == k && product__cand_cmp(q->sort, c, &top[k - 1]) >= 0)
        return;
    product__top_insert(q->sort, top, n, k, c);
}

int product__index_page(struct product_ctx *ctx, struct db *db, const struct product_query *q,
                        struct product_cand *top, int k, int *nt, int64_t *unknown, int *nunknown)
{
    struct one_token tok[PRODUCT_MAX_WORDS];
    struct product_index *x = usable(ctx, db, q, tok);
    if (!x)
        return ERR_UNSUPPORTED;
    struct product_attrs *pa = &ctx->attrs;
    const struct product_cand cur = {q->cur_id, q->cur_key, q->cur_rank};
    struct page_filter f = {
        .pa = pa,
        .need = PA_ACTIVE | (q->in_stock ? PA_IN_STOCK : 0),
        .lo = q->min_price >= 0 ? q->min_price : INT64_MIN,
        .hi = q->max_price >= 0 ? q->max_price : INT64_MAX,
        .unknown = unknown,
        .nunknown = nunknown,
    };
    struct pix_walk w;
    pthread_rwlock_rdlock(&x->lk);
    int rc = walk_init(x, tok, q->nwords, &w);
    product__attrs_rdlock(pa); /* lock order: the index, then the copy */
    f.cat = q->category[0] ? product__attr_cat(pa, q->category) : -1;
    if (q->category[0] && f.cat < 0)
        w.empty = true; /* no such category: nothing matches */
    int n = *nt;
    uint32_t doc;
    const struct product_attr *a;
    if (rc == 0 && q->sort == PRODUCT_SORT_RELEVANCE) {
        /* First the documents whose name holds every word (rank < -1, by name length): the
         * name lists are short. Unless the cursor is past them already. */
        if (!w.empty && !(q->has_cursor && q->cur_rank >= -1.0)) {
            struct pix_walk wn = {.nl = w.nn, .drv = -1};
            if (w.pnamed) {
                wn.mask = w.pnamed;
                wn.mwords = w.words;
            }
            for (int i = 0; i < w.nn; i++) {
                wn.all[i] = w.named[i];
                if (wn.drv < 0 || wn.all[i]->n < wn.all[wn.drv]->n)
                    wn.drv = i;
            }
            while (walk_next(x, &wn, &doc))
                if ((a = page_pass(x, &f, doc)) != NULL) {
                    struct product_cand c = {a->id, a->price, -2.0 + x->doc_nlen[doc] / 1024.0};
                    page_offer(q, &cur, top, &n, k, &c);
                }
        }
        /* Then the rest (rank -1, by id), unless the page is full of names already. When
         * documents are in id order, the walk stops at the first that cannot enter. */
        if (n == k && top[k - 1].rank < -1.0)
            w.empty = true;
        while (walk_next(x, &w, &doc)) {
            if ((a = page_pass(x, &f, doc)) == NULL || walk_in_name(&w, doc))
                continue;
            if (n == k && x->id_order && a->id > top[k - 1].id)
                break;
            struct product_cand c = {a->id, a->price, -1.0};
            page_offer(q, &cur, top, &n, k, &c);
        }
    } else {
        while (rc == 0 && walk_next(x, &w, &doc))
            if ((a = page_pass(x, &f, doc)) != NULL) {
                struct product_cand c = {a->id, a->price, 0};
                page_offer(q, &cur, top, &n, k, &c);
            }
    }
    product__attrs_unlock(pa);
    pthread_rwlock_unlock(&x->lk);
    walk_free(&w);
    *nt = n;
    if (rc == 0 && f.overflow)
        rc = ERR_UNSUPPORTED;
    return rc < 0 ? (rc == ERR_NOMEM ? rc : ERR_UNSUPPORTED) : 0;
}

/* ---- the startup build ------------------------------------------------------------------ */

static void *warm_main(void *arg)
{
    struct product_index *x = arg;
    make_current(x->ctx, x, x->db);
    /* The attribute copy too (product_attrs.c loads it on the first search otherwise: 80 ms
     * for 100,000 products, which every search of the first moment waited for; the bench's
     * search row had a p99 of 30-37 ms from its first second, 6-7 ms after it). */
    struct db_conn *c;
    if (!atomic_load(&x->stopping) && db_conn_take(x->db, &c) == 0) {
        product__attrs_sync(&x->ctx->attrs, c, DB_SQLITE);
        db_conn_give(c);
    }
    return NULL;
}

void product__index_warm(struct product_ctx *ctx, struct db *db)
{
    metrics_counter_declare("emporium_search_matches_total", "engine",
                            "Search match sets computed, by the in-memory index (memory) or "
                            "full-text queries (fts).");
    if (!db || db_dialect(db) != DB_SQLITE)
        return;
    struct product_index *x = pix_get(ctx);
    if (!x || x->warm_running)
        return;
    x->ctx = ctx;
    x->db = db;
    /* Searches meanwhile are answered by FTS5, as before there was an index. */
    x->warm_running = pthread_create(&x->warm, NULL, warm_main, x) == 0;
}
