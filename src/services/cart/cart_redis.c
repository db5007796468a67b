/* SPDX-License-Identifier: MIT */
/* cart_redis.c — carts in Redis, the database behind them (EMPORIUM_REDIS_URL / _CLUSTER).
 *
 * A cart is a Redis hash `<prefix>cart:{u<user id>}` or `<prefix>cart:{g<token sha256>}` (the
 * owner is the {tag}: one slot per cart): field "v" is the cart's revision, each line a field
 * "p<product id>" = "quantity\tunit price\tcurrency\tadded_at\tname". A change is one
 * round trip: one Lua script checks it (the per-line 99, 100 lines, one currency — atomically,
 * whichever process runs it), applies it, bumps "v", renews the key's TTL (CART_TTL_MS) and
 * returns the cart. The database is the durable copy: the cart as the script returned it is
 * then written as revision v (PostgreSQL: snapshot_pg, one round trip; SQLite:
 * cart__store_snapshot through the carts database's group-commit writer), and the request
 * is answered only once that write has committed — so an
 * acknowledged change is in the database even if Redis loses it (a failover that had not
 * replicated it, a restart without persistence, an evicted or expired key).
 *
 * Which copy wins: the database's carts.rev. A snapshot is written only when it is newer
 * than the database's revision, so writes of concurrent changes may land in any order. When
 * the database already holds a later revision, either a later change (whose snapshot holds
 * this one too) committed first — Redis then holds that revision or a later one — or Redis
 * went back in time (it lost writes the database has): then the Redis copy is deleted and the
 * change answers 503 (retryable; it was not acknowledged), and the next use reads the cart
 * from the database again. A missing key is read from the database (`load`). Reads check the
 * database's revision too, so a cart read never misses an acknowledged line. The client
 * interface's writes (checkout, merge, cart.c) change the database, move its revision a
 * million past the Redis copy's, and delete that copy.
 *
 * Redis down (or the cluster without a master for the slot): ERR_UNAVAILABLE, HTTP 503 with
 * Retry-After; nothing is written to the database then. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "emporium/app.h"
#include "emporium/buf.h"
#include "emporium/config.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/redis.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "cart_internal.h"

#define CART_TTL_MS "86400000" /* a day idle: then the cart is read from the database again */

struct cart_redis {
    struct app *app;
    struct redis *redis;
    char prefix[64]; /* "<EMPORIUM_REDIS_PREFIX>cart:" */
};

/* KEYS[1] the cart; ARGV[1] the operation, ARGV[2] the TTL (ms), then per operation:
 *   load  rev, field, value, …  (only when the key is missing)
 *   get
 *   add   pid, quantity, unit price, currency, now, name, max quantity, max lines
 *   set   pid, quantity (0 removes)
 *   del   pid
 * Returns {"miss"} when the key is missing (but for load), {"refuse", why[, have]}, or
 * {"ok"|"same", field, value, …} (the whole hash after the change; "same": nothing changed). */
static const char cart_script[] =
    "local k = KEYS[1]\n"
    "local op = ARGV[1]\n"
    "if op == 'load' then\n"
    "  if redis.call('EXISTS', k) == 1 then return {'ok'} end\n"
    "  redis.call('HSET', k, 'v', ARGV[3])\n"
    "  for i = 4, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end\n"
    "  redis.call('PEXPIRE', k, ARGV[2])\n"
    "  return {'ok'}\n"
    "end\n"
    "if redis.call('EXISTS', k) == 0 then return {'miss'} end\n"
    "local function state(s)\n"
    "  local r = redis.call('HGETALL', k)\n"
    "  table.insert(r, 1, s)\n"
    "  return r\n"
    "end\n"
    "if op == 'get' then return state('ok') end\n"
    "local f = 'p' .. ARGV[3]\n"
    "local cur = redis.call('HGET', k, f)\n"
    "if op == 'add' then\n"
    "  local q = tonumber(ARGV[4])\n"
    "  local have, cy, added = 0, ARGV[6], ARGV[7]\n"
    "  if cur then\n"
    "    local a, c, d = string.match(cur, '^(%d+)\\t%-?%d+\\t([^\\t]*)\\t(%-?%d+)\\t')\n"
    "    have, cy, added = tonumber(a), c, d\n"
    "    if have + q > tonumber(ARGV[9]) then return {'refuse', 'line_max', tostring(have)} end\n"
    "  end\n"
    "  local all = redis.call('HGETALL', k)\n"
    "  local lines = 0\n"
    "  for i = 1, #all, 2 do\n"
    "    if string.sub(all[i], 1, 1) == 'p' then\n"
    "      lines = lines + 1\n"
    "      if string.match(all[i + 1], '^%d+\\t%-?%d+\\t([^\\t]*)\\t') ~= ARGV[6] then\n"
    "        return {'refuse', 'currency'}\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if not cur and lines >= tonumber(ARGV[10]) then return {'refuse', 'cart_full'} end\n"
    "  redis.call('HSET', k, f, (have + q) .. '\\t' .. ARGV[5] .. '\\t' .. cy .. '\\t' .. added "
    "..\n"
    "    '\\t' .. ARGV[8])\n"
    "elseif op == 'set' then\n"
    "  if not cur then return {'refuse', 'not_in_cart'} end\n"
    "  if tonumber(ARGV[4]) == 0 then redis.call('HDEL', k, f)\n"
    "  else redis.call('HSET', k, f, (string.gsub(cur, '^%d+', ARGV[4], 1))) end\n"
    "elseif op == 'del' then\n"
    "  if not cur then return state('same') end\n"
    "  redis.call('HDEL', k, f)\n"
    "end\n"
    "redis.call('HINCRBY', k, 'v', 1)\n"
    "redis.call('PEXPIRE', k, ARGV[2])\n"
    "return state('ok')\n";

int cart__redis_new(struct app *app, struct cart_redis **out)
{
    struct cart_redis *r = calloc(1, sizeof *r);
    if (!r)
        return ERR_NOMEM;
    r->app = app;
    r->redis = app_redis(app);
    snprintf(r->prefix, sizeof r->prefix, "%scart:", app_config(app)->redis_prefix);
    *out = r;
    log_info("cart: carts in Redis, written behind to the carts database");
    return 0;
}

void cart__redis_free(struct cart_redis *r) { free(r); }

static void key_of(const struct cart_redis *r, const struct cart_owner *o, char *key, size_t cap)
{
    if (o->user_id)
        snprintf(key, cap, "%s{u%lld}", r->prefix, (long long)o->user_id);
    else
        snprintf(key, cap, "%s{g%s}", r->prefix, o->token_hash);
}

static int run(struct cart_redis *r, const char *key, int nargs, const char **args,
               redisReply **rep)
{
    const char *keys[] = {key};
    int rc = redis_script(r->redis, cart_script, 1, keys, nargs, args, rep);
    if (rc < 0)
        return rc;
    if ((*rep)->type != REDIS_REPLY_ARRAY || (*rep)->elements < 1 ||
        (*rep)->element[0]->type != REDIS_REPLY_STRING) {
        if ((*rep)->type == REDIS_REPLY_ERROR)
            log_warn("cart: the Redis cart script failed: %.160s", (*rep)->str);
        redis_reply_free(*rep);
        *rep = NULL;
        return ERR_UNAVAILABLE;
    }
    return 0;
}

static int by_order(const void *a, const void *b)
{
    const struct cart_item *x = a, *y = b;
    if (x->added_at != y->added_at)
        return x->added_at < y->added_at ? -1 : 1;
    return x->product_id < y->product_id ? -1 : x->product_id > y->product_id;
}

/* The hash (fields from element `from` on) into a view, oldest line first; *rev its "v". */
static int parse_hash(const redisReply *rep, size_t from, struct cart_view *out, int64_t *rev)
{
    cart__view_clear(out);
    *rev = 0;
    size_t pairs = (rep->elements - from) / 2;
    if (pairs && !(out->items = calloc(pairs, sizeof *out->items)))
        return ERR_NOMEM;
    for (size_t i = from; i + 1 < rep->elements; i += 2) {
        const char *f = rep->element[i]->str, *val = rep->element[i + 1]->str;
        if (!f || !val)
            continue;
        if (!strcmp(f, "v")) {
            *rev = strtoll(val, NULL, 10);
            continue;
        }
        if (f[0] != 'p' || out->n >= CART_MAX_LINES)
            continue;
        struct cart_item *it = &out->items[out->n];
        long long qty, price, added;
        char cur[4];
        int name_at = 0;
        if (sscanf(val, "%lld\t%lld\t%3[^\t]\t%lld\t%n", &qty, &price, cur, &added, &name_at) !=
                4 ||
            !name_at)
            continue;
        it->product_id = strtoll(f + 1, NULL, 10);
        it->quantity = (int)qty;
        it->unit_price = price;
        snprintf(it->currency, sizeof it->currency, "%s", cur);
        it->added_at = added;
        snprintf(it->name, sizeof it->name, "%s", val + name_at);
        out->n++;
    }
    qsort(out->items, (size_t)out->n, sizeof *out->items, by_order);
    return 0;
}

/* Copies the database's cart into Redis (unless the key exists meanwhile). */
static int load(struct cart_redis *r, const char *key, const struct cart_owner *o)
{
    struct cart_view v = {0};
    int64_t rev = 0, cart_id;
    struct db_conn *c;
    int rc = db_conn_take(app_db(r->app, "carts"), &c);
    if (rc < 0)
        return rc;
    rc = cart__store_find(c, o, &cart_id);
    if (rc == 0 && (rc = cart__store_load(c, cart_id, &v)) == 0 &&
        (rc = cart__store_rev(c, o, &rev)) == 0 && rev < 0)
        rev = 0;
    else if (rc == ERR_NOTFOUND)
        rc = 0;
    db_conn_give(c);
    int nargs = 3 + 2 * v.n;
    const char **args = rc == 0 ? calloc((size_t)nargs, sizeof *args) : NULL;
    char *bufs = rc == 0 ? malloc((size_t)v.n * (24 + 300) + 24) : NULL;
    if (rc == 0 && (!args || !bufs))
        rc = ERR_NOMEM;
    if (rc == 0) {
        char *p = bufs;
        args[0] = "load";
        args[1] = CART_TTL_MS;
        args[2] = p;
        p += sprintf(p, "%lld", (long long)rev) + 1;
        for (int i = 0; i < v.n; i++) {
            const struct cart_item *it = &v.items[i];
            args[3 + 2 * i] = p;
            p += sprintf(p, "p%lld", (long long)it->product_id) + 1;
            args[4 + 2 * i] = p;
            p += sprintf(p, "%d\t%lld\t%s\t%lld\t%s", it->quantity, (long long)it->unit_price,
                         it->currency, (long long)it->added_at, it->name) +
                 1;
        }
        redisReply *rep = NULL;
        rc = run(r, key, nargs, args, &rep);
        redis_reply_free(rep);
    }
    free(args);
    free(bufs);
    cart__view_clear(&v);
    return rc;
}

void cart__redis_forget(struct cart_redis *r, const struct cart_owner *o)
{
    char key[200];
    key_of(r, o, key, sizeof key);
    const char *argv[] = {"DEL", key};
    redisReply *rep = NULL;
    int rc = redis_command(r->redis, key, strlen(key), 2, argv, NULL, &rep);
    redis_reply_free(rep);
    /* The copy left behind has an older revision than the database: the next change is
     * refused by the database's revision and deletes it (then 503, retryable). */
    if (rc < 0)
        log_warn("cart: the Redis copy of a cart was not deleted: %s", err_str(rc));
}

/* Runs the script for an operation, reading the cart from the database into Redis when the
 * key is missing. 0 with *rep an "ok"/"same"/"refuse" reply, or an ERR_*. */
static int script(struct cart_redis *r, const struct cart_owner *o, int nargs, const char **args,
                  redisReply **rep)
{
    char key[200];
    key_of(r, o, key, sizeof key);
    for (int attempt = 0; attempt < 4; attempt++) {
        int rc = run(r, key, nargs, args, rep);
        if (rc < 0)
            return rc;
        if (strcmp((*rep)->element[0]->str, "miss") != 0)
            return 0;
        redis_reply_free(*rep);
        *rep = NULL;
        if ((rc = load(r, key, o)) < 0)
            return rc;
    }
    return ERR_UNAVAILABLE; /* the key keeps going away */
}

int cart__redis_get(struct app *app, struct cart_redis *r, const struct cart_owner *o,
                    struct cart_view *out)
{
    out->n = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *args[] = {"get", CART_TTL_MS};
        redisReply *rep = NULL;
        int rc = script(r, o, 2, args, &rep);
        int64_t rev = 0, db_rev = 0;
        if (rc == 0)
            rc = parse_hash(rep, 1, out, &rev);
        redis_reply_free(rep);
        if (rc < 0)
            return rc;
        /* Redis may have lost acknowledged changes (a failover): the database says. */
        struct db_conn *c;
        if ((rc = db_conn_take(app_db(app, "carts"), &c)) < 0)
            return rc;
        rc = cart__store_rev(c, o, &db_rev);
        db_conn_give(c);
        /* Behind the database, or a cart the database no longer has (swept, merged). */
        if (rc < 0 || (db_rev <= rev && (db_rev >= 0 || rev == 0)))
            return rc;
        cart__redis_forget(r, o);
    }
    return cart__get_db(app, o, out);
}

static int snapshot_tx(struct db_conn *c, void *vop)
{
    struct cart_op *op = vop;
    return cart__store_snapshot(c, &op->owner, op->rev, &op->snap, now_ms(), &op->applied,
                                &op->db_rev);
}

/* The snapshot on PostgreSQL in one round trip: cart__store_snapshot's transaction (insert
 * the cart row, move its revision forward, replace its lines, else read the revision the
 * database holds) as two statements of one pipeline, which is one implicit transaction. The
 * second statement decides in SQL: its `up` names the cart only when this revision is newer
 * than the database's, and the lines are changed only through it (lines no longer in the
 * cart deleted, the others upserted: disjoint rows). Its result is whether the revision moved
 * and the revision the database held before (the statement's own snapshot). Redis mode adds
 * one Redis round trip to a cart change, not five PostgreSQL ones. */
static int snapshot_pg(struct app *app, struct cart_op *op)
{
    const struct cart_owner *o = &op->owner;
    const struct cart_view *v = &op->snap;
    const char *col = o->user_id ? "user_id" : "token_hash";
    int64_t now = now_ms();
    enum { FIXED = 4, PER_LINE = 6 };
    struct buf sql = BUF_INIT(0), ids = BUF_INIT(0);
    struct db_val *a = calloc(FIXED + PER_LINE * (size_t)v->n, sizeof *a);
    buf_puts(&ids, "{");
    for (int i = 0; i < v->n; i++)
        buf_printf(&ids, "%s%lld", i ? "," : "", (long long)v->items[i].product_id);
    buf_puts(&ids, "}");
    buf_printf(&sql,
               "WITH up AS (UPDATE carts SET rev = $2, updated_at = $3 WHERE %s = $1 "
               "AND rev < $2 RETURNING id), "
               "gone AS (DELETE FROM cart_items i USING up WHERE i.cart_id = up.id "
               "AND i.product_id <> ALL ($4::bigint[]))",
               col);
    if (v->n > 0) {
        buf_puts(&sql, ", put AS (INSERT INTO cart_items (cart_id, product_id, name, "
                       "quantity, unit_price, currency, added_at, updated_at) SELECT up.id, "
                       "x.p, x.n, x.q, x.u, x.c, x.a, x.a FROM up, (VALUES ");
        for (int i = 0; i < v->n; i++) {
            int b = FIXED + PER_LINE * i;
            buf_printf(&sql,
                       "%s($%d::bigint, $%d::text, $%d::int, $%d::bigint, $%d::text, "
                       "$%d::bigint)",
                       i ? ", " : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6);
        }
        buf_puts(&sql, ") x (p, n, q, u, c, a) ON CONFLICT (cart_id, product_id) DO UPDATE "
                       "SET name = excluded.name, quantity = excluded.quantity, unit_price = "
                       "excluded.unit_price, currency = excluded.currency, added_at = "
                       "excluded.added_at, updated_at = excluded.updated_at)");
    }
    buf_printf(&sql, " SELECT (SELECT count(*) FROM up), (SELECT rev FROM carts WHERE %s = $1)",
               col);
    int rc = a && !sql.err && !ids.err ? 0 : ERR_NOMEM;
    if (rc == 0) {
        a[0] = o->user_id ? DB_INT(o->user_id) : DB_TEXT(o->token_hash);
        a[1] = DB_INT(op->rev);
        a[2] = DB_INT(now);
        a[3] = DB_TEXT(ids.p);
        for (int i = 0; i < v->n; i++) {
            const struct cart_item *it = &v->items[i];
            int b = FIXED + PER_LINE * i;
            a[b] = DB_INT(it->product_id);
            a[b + 1] = DB_TEXT(it->name);
            a[b + 2] = DB_INT(it->quantity);
            a[b + 3] = DB_INT(it->unit_price);
            a[b + 4] = DB_TEXT(it->currency);
            a[b + 5] = DB_INT(it->added_at);
        }
    }
    struct db_conn *c = NULL;
    if (rc == 0)
        rc = db_conn_take(app_db(app, "carts"), &c);
    if (rc == 0) {
        struct db_val ia[] = {DB_INT(id_new(0)), o->user_id ? DB_INT(o->user_id) : DB_NULLV,
                              o->user_id ? DB_NULLV : DB_TEXT(o->token_hash), DB_INT(now)};
        struct db_rows *r = NULL, *now_rev = NULL;
        /* The revision the database holds is read by a statement of its own: the snapshot
         * statement's own read is as of its start, so when its UPDATE waited for a
         * concurrent writer of a later revision (and then did not apply), it still saw the
         * earlier one, and the change was taken for a Redis copy gone back in time (503). */
        char rev_sql[96];
        snprintf(rev_sql, sizeof rev_sql, "SELECT rev FROM carts WHERE %s = $1", col);
        struct db_stmt st[] = {
            {.sql = "INSERT INTO carts (id, user_id, token_hash, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
             .n = 4,
             .args = ia},
            {.sql = sql.p, .n = FIXED + PER_LINE * v->n, .args = a, .out = &r},
            {.sql = rev_sql, .n = 1, .args = a, .out = &now_rev},
        };
        rc = db_query_many(c, st, 3, true);
        db_conn_give(c);
        if (rc >= 0 && (db_rows_count(r) != 1 || db_rows_count(now_rev) != 1))
            rc = ERR_INTERNAL;
        if (rc >= 0) {
            op->applied = db_get_i64(r, 0, 0) == 1;
            op->db_rev = op->applied ? op->rev : db_get_i64(now_rev, 0, 0);
            rc = 0;
        }
        db_rows_free(r);
        db_rows_free(now_rev);
    }
    buf_free(&sql);
    buf_free(&ids);
    free(a);
    return rc;
}

/* After the database write: whether the change stands (see the file comment). */
static int settle(struct cart_redis *r, struct cart_op *op, int rc)
{
    cart__view_clear(&op->snap);
    if (rc < 0 || op->applied)
        return rc;
    if (op->db_rev > op->rev) {
        char key[200];
        key_of(r, &op->owner, key, sizeof key);
        const char *argv[] = {"HGET", key, "v"};
        redisReply *rep = NULL;
        if (redis_command(r->redis, key, strlen(key), 3, argv, NULL, &rep) == 0 &&
            rep->type == REDIS_REPLY_STRING && strtoll(rep->str, NULL, 10) >= op->db_rev) {
            redis_reply_free(rep);
            return 0; /* a later change, holding this one, is written */
        }
        redis_reply_free(rep);
    }
    log_warn("cart: the Redis copy of a cart is older than the database's (revision %lld, "
             "database %lld): read again",
             (long long)op->rev, (long long)op->db_rev);
    cart__redis_forget(r, &op->owner);
    return ERR_UNAVAILABLE;
}

static void redis_done(struct db_write_req *w, int rc)
{
    struct cart_op *op = (struct cart_op *)w;
    struct cart_ctx *x = op->entry;
    cart__change_done(op, settle(x->redis, op, rc));
}

int cart__redis_change(struct app *app, struct cart_redis *r, struct cart_op *op, bool wait)
{
    char pid[24], qty[16], price[24], now[24];
    snprintf(pid, sizeof pid, "%lld", (long long)op->product_id);
    snprintf(qty, sizeof qty, "%d", op->quantity);
    snprintf(price, sizeof price, "%lld", (long long)op->info.price);
    snprintf(now, sizeof now, "%lld", (long long)now_ms());
    char maxq[8], maxl[8];
    snprintf(maxq, sizeof maxq, "%d", CART_MAX_QTY);
    snprintf(maxl, sizeof maxl, "%d", CART_MAX_LINES);
    const char *kind = op->kind == CART_OP_ADD ? "add" : op->kind == CART_OP_SET ? "set" : "del";
    const char *args[] = {kind, CART_TTL_MS,   pid,  qty, price, op->info.currency,
                          now,  op->info.name, maxq, maxl};
    int nargs = op->kind == CART_OP_ADD ? 10 : op->kind == CART_OP_SET ? 4 : 3;
    op->why->why = CART_REFUSE_NONE;
    redisReply *rep = NULL;
    int rc = script(r, &op->owner, nargs, args, &rep);
    bool write = false;
    if (rc == 0) {
        const char *status = rep->element[0]->str;
        if (!strcmp(status, "refuse")) {
            const char *why = rep->elements > 1 ? rep->element[1]->str : "";
            if (!strcmp(why, "line_max")) {
                op->why->why = CART_REFUSE_LINE_MAX;
                op->why->have = rep->elements > 2 ? atoi(rep->element[2]->str) : 0;
                rc = ERR_INVALID;
            } else if (!strcmp(why, "currency")) {
                op->why->why = CART_REFUSE_CURRENCY;
                rc = ERR_CONFLICT;
            } else if (!strcmp(why, "cart_full")) {
                op->why->why = CART_REFUSE_CART_FULL;
                rc = ERR_CONFLICT;
            } else {
                op->why->why = CART_REFUSE_NOT_IN_CART;
                rc = ERR_NOTFOUND;
            }
        } else {
            write = !strcmp(status, "ok");
            rc = parse_hash(rep, 1, op->v, &op->rev);
            if (rc == 0 && write)
                rc = cart__view_copy(&op->snap, op->v);
        }
    }
    redis_reply_free(rep);
    if (rc < 0 || !write) {
        if (wait)
            cart__change_counted(op, rc);
        else
            cart__change_done(op, rc);
        return wait ? (rc < 0 ? rc : 0) : 0;
    }
    if (db_dialect(app_db(app, "carts")) == DB_POSTGRES) { /* one round trip, on this thread */
        rc = settle(r, op, snapshot_pg(app, op));
        if (wait) {
            cart__change_counted(op, rc);
            return rc < 0 ? rc : 0;
        }
        cart__change_done(op, rc);
        return 0;
    }
    if (wait) {
        rc = settle(r, op, db_write(app_db(app, "carts"), snapshot_tx, NULL, op));
        cart__change_counted(op, rc);
        return rc < 0 ? rc : 0;
    }
    op->entry = cart__ctx(app);
    op->w = (struct db_write_req){.fn = snapshot_tx, .ctx = op, .done = redis_done};
    if ((rc = db_write_submit(app_db(app, "carts"), &op->w)) < 0) {
        cart__view_clear(&op->snap);
        cart__change_done(op, rc);
    }
    return 0;
}
