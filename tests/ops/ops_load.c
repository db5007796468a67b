/* SPDX-License-Identifier: MIT */
/* ops_load.c — the mixed shopper load and the after-drill checks (see ops_load.h). */
#include "ops_load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define OPS_PRICE 1000 /* every product costs the same: units = subtotal / OPS_PRICE */
#define OPS_CARD "4242424242424242"
#define OPS_CHECKOUT_BODY                                                                          \
    "{\"shipping_address\":{\"name\":\"Grace Hopper\",\"line1\":\"1 Harbour St\","                 \
    "\"city\":\"Arlington\",\"postal_code\":\"22201\",\"country\":\"US\"},"                        \
    "\"payment\":{\"card_number\":\"" OPS_CARD "\",\"exp_month\":12,\"exp_year\":2031,"            \
    "\"cvc\":\"123\"},\"shipping_method\":\"standard\"}"

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ops_shop_setup(struct ops_shop *shop, struct th_server *srv, int buyers)
{
    static int seq;
    memset(shop, 0, sizeof *shop);
    shop->srv = srv;
    shop->admin = th_admin_token(srv);
    if (!shop->admin)
        return -1;
    for (int i = 0; i < OPS_PRODUCTS; i++) {
        struct th_resp r;
        char sku[48];
        snprintf(sku, sizeof sku, "OPS-%d-%d", (int)getpid(), ++seq);
        if (th_call(srv, "POST", "/api/v1/products", shop->admin, &r,
                    "{\"sku\":\"%s\",\"name\":\"Drill %s\",\"description\":\"d\","
                    "\"category\":\"drills\",\"price\":{\"amount\":%d,\"currency\":\"USD\"},"
                    "\"weight_grams\":100}",
                    sku, sku, OPS_PRICE) != 0)
            return -1;
        bool ok = r.status == 201 && th_jstr(r.json, "id");
        if (ok)
            snprintf(shop->product[i], sizeof shop->product[i], "%s", th_jstr(r.json, "id"));
        else
            fprintf(stderr, "ops: create product: %ld %s\n", r.status, r.body);
        th_resp_free(&r);
        if (!ok)
            return -1;
        char path[96];
        snprintf(path, sizeof path, "/api/v1/inventory/%s", shop->product[i]);
        if (th_call(srv, "PUT", path, shop->admin, &r, "{\"available\":%d}", OPS_STOCK) != 0)
            return -1;
        ok = r.status == 200;
        th_resp_free(&r);
        if (!ok)
            return -1;
    }
    for (int i = 0; i < buyers && i < OPS_MAX_BUYERS; i++) {
        char email[64];
        snprintf(email, sizeof email, "drill-%d-%d-%d@example.com", (int)getpid(), seq, i);
        shop->token[i] = th_register(srv, email, "correct horse battery staple");
        if (!shop->token[i])
            return -1;
        shop->n_buyers = i + 1;
    }
    return 0;
}

void ops_shop_free(struct ops_shop *shop)
{
    for (int i = 0; i < shop->n_buyers; i++)
        free(shop->token[i]);
    free(shop->admin);
    memset(shop, 0, sizeof *shop);
}

struct shopper {
    struct ops_load *l;
    int buyer;
};
static struct shopper shoppers[OPS_MAX_BUYERS];

static void note_failure(struct ops_load *l, enum ops_op op, const char *what, long status,
                         const char *body)
{
    atomic_fetch_add(&l->failed[op], 1);
    pthread_mutex_lock(&l->mu);
    if (!l->first_failure[0])
        snprintf(l->first_failure, sizeof l->first_failure, "%.200s: %ld %.160s", what, status,
                 body ? body : "(no response)");
    pthread_mutex_unlock(&l->mu);
}

/* One request of the load; false when the shopper should end (transport error in a crash
 * drill). ok_status: the expected status. */
static bool step(struct ops_load *l, enum ops_op op, const char *method, const char *path,
                 const char *body, const char *const *headers, long ok_status, struct th_resp *out)
{
    struct th_resp r;
    long t0 = now_ms();
    int rc = th_req(l->target, method, path, body, headers, &r);
    long dt = now_ms() - t0;
    if (rc != 0 && l->stop_on_transport_error) {
        atomic_fetch_add(&l->cut[op], 1); /* the server was killed: the drill expects it */
        return false;
    }
    atomic_fetch_add(&l->total[op], 1);
    long worst = atomic_load(&l->worst_ms);
    while (dt > worst && !atomic_compare_exchange_weak(&l->worst_ms, &worst, dt))
        ;
    if (rc != 0 || r.status != ok_status) {
        char what[160];
        snprintf(what, sizeof what, "%s %s", method, path);
        note_failure(l, op, what, rc != 0 ? -1 : r.status, rc != 0 ? NULL : r.body);
    }
    if (rc == 0 && out)
        *out = r;
    else if (rc == 0)
        th_resp_free(&r);
    else if (out)
        memset(out, 0, sizeof *out);
    return true;
}

static void *shopper_main(void *arg)
{
    struct shopper *sh = arg;
    struct ops_load *l = sh->l;
    struct ops_shop *shop = l->shop;
    char auth[600];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", shop->token[sh->buyer]);
    const char *tier = sh->buyer < l->premium ? "user-type: premium" : NULL;
    const char *h_auth[] = {auth, tier, NULL};
    const char *h_anon[] = {tier, NULL};
    for (unsigned i = 0; !atomic_load(&l->stop); i++) {
        const char *pid = shop->product[(sh->buyer + i) % OPS_PRODUCTS];
        char path[160], body[128], key[160], hkey[200];
        struct th_resp r;
        if (!step(l, OPS_BROWSE, "GET", "/api/v1/products?limit=5", NULL, h_anon, 200, NULL))
            break;
        snprintf(path, sizeof path, "/api/v1/products/%s", pid);
        if (!step(l, OPS_BROWSE, "GET", path, NULL, h_anon, 200, NULL))
            break;
        snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":%u}", pid, 1 + i % 2);
        if (!step(l, OPS_CART, "POST", "/api/v1/cart/items", body, h_auth, 200, NULL))
            break;
        if (!step(l, OPS_CART, "GET", "/api/v1/cart", NULL, h_auth, 200, NULL))
            break;
        snprintf(key, sizeof key, "%s-%d-%d-%u", l->key_prefix, l->generation, sh->buyer, i);
        snprintf(hkey, sizeof hkey, "Idempotency-Key: %s", key);
        const char *h_place[] = {auth, hkey, tier, NULL};
        if (!step(l, OPS_CHECKOUT, "POST", "/api/v1/orders", OPS_CHECKOUT_BODY, h_place, 201, &r))
            break;
        if (r.status == 201 && th_jstr(r.json, "id")) {
            pthread_mutex_lock(&l->mu);
            if (l->n_acks < OPS_MAX_ACKS) {
                struct ops_ack *a = &l->acks[l->n_acks++];
                a->buyer = sh->buyer;
                a->checked = false;
                snprintf(a->id, sizeof a->id, "%s", th_jstr(r.json, "id"));
            }
            pthread_mutex_unlock(&l->mu);
            atomic_fetch_add(&l->acked, 1);
        }
        th_resp_free(&r);
        if (l->pace_ms > 0 && !atomic_load(&l->stop))
            usleep((useconds_t)l->pace_ms * 1000);
    }
    return NULL;
}

void ops_load_init(struct ops_load *l, struct ops_shop *shop, struct th_server *target, int threads,
                   const char *key_prefix, bool stop_on_transport_error)
{
    memset(l, 0, sizeof *l);
    l->shop = shop;
    l->target = target;
    l->threads = threads;
    l->key_prefix = key_prefix;
    l->stop_on_transport_error = stop_on_transport_error;
    l->pace_ms = 150; /* 6 shoppers: at most about 150 requests/s, on a 2-core machine */
    pthread_mutex_init(&l->mu, NULL);
}

int ops_load_start(struct ops_load *l)
{
    l->generation++;
    if (l->threads > l->shop->n_buyers)
        l->threads = l->shop->n_buyers;
    atomic_store(&l->stop, false);
    for (int i = 0; i < l->threads; i++) {
        shoppers[i].l = l;
        shoppers[i].buyer = i;
        if (pthread_create(&l->tid[i], NULL, shopper_main, &shoppers[i]) != 0)
            return -1;
    }
    return 0;
}

void ops_load_stop(struct ops_load *l)
{
    atomic_store(&l->stop, true);
    for (int i = 0; i < l->threads; i++)
        pthread_join(l->tid[i], NULL);
}

long ops_load_acked(struct ops_load *l) { return atomic_load(&l->acked); }

bool ops_load_wait_acked(struct ops_load *l, long n, int timeout_s)
{
    long deadline = now_ms() + timeout_s * 1000L;
    while (atomic_load(&l->acked) < n && now_ms() < deadline)
        usleep(20 * 1000);
    return atomic_load(&l->acked) >= n;
}

long ops_load_total(struct ops_load *l)
{
    long n = 0;
    for (int i = 0; i < OPS_N_OPS; i++)
        n += atomic_load(&l->total[i]);
    return n;
}

long ops_load_failed(struct ops_load *l)
{
    long n = 0;
    for (int i = 0; i < OPS_N_OPS; i++)
        n += atomic_load(&l->failed[i]);
    return n;
}

void ops_load_budget(struct ops_load *l, const char *drill)
{
    static const char *const names[OPS_N_OPS] = {"browse", "cart", "checkout"};
    for (int i = 0; i < OPS_N_OPS; i++) {
        /* A request cut off by a kill -9 is a failure for its client: counted here. */
        long c = atomic_load(&l->cut[i]);
        long t = atomic_load(&l->total[i]) + c, f = atomic_load(&l->failed[i]) + c;
        double avail = t ? 100.0 * (double)(t - f) / (double)t : 100.0;
        /* The 99.95 % objective allows 5 failures in 10,000 requests. */
        fprintf(stderr,
                "ops budget: drill=%s op=%s requests=%ld failed=%ld (cut by kill %ld) "
                "availability=%.3f%% budget_spent=%.1f%% (objective 99.95%%)\n",
                drill, names[i], t, f, c, avail, t ? 100.0 * (double)f / (double)t / 0.0005 : 0.0);
    }
    if (l->first_failure[0])
        fprintf(stderr, "ops budget: drill=%s first failure: %s\n", drill, l->first_failure);
}

static bool is_paid_status(const char *st)
{
    return st && (!strcmp(st, "paid") || !strcmp(st, "fulfilling") || !strcmp(st, "shipped") ||
                  !strcmp(st, "delivered"));
}

/* Whether the order's order.placed and order.paid events were published by the relay
 * (1 each when so, 0 not yet); -1 on an error. */
static int events_published(struct th_server *srv, const char *adm, const char *id, int *placed,
                            int *paid)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/orders/%s/events", id);
    struct th_resp r;
    if (th_call(srv, "GET", path, adm, &r, NULL) != 0)
        return -1;
    int rc = r.status == 200 ? 0 : -1;
    *placed = *paid = rc;
    json_t *e;
    size_t i;
    json_array_foreach (json_object_get(r.json, "items"), i, e) {
        const char *t = json_string_value(json_object_get(e, "type"));
        if (!t || !json_is_true(json_object_get(e, "published")))
            continue;
        if (!strcmp(t, "order.placed"))
            *placed = 1;
        else if (!strcmp(t, "order.paid"))
            *paid = 1;
    }
    th_resp_free(&r);
    return rc;
}

static int captures(struct th_server *srv, const char *adm, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/payments?order_id=%s", id);
    struct th_resp r;
    if (th_call(srv, "GET", path, adm, &r, NULL) != 0)
        return -1;
    int n = 0;
    json_t *p, *op;
    size_t i, j;
    json_array_foreach (json_object_get(r.json, "items"), i, p) {
        json_array_foreach (json_object_get(p, "operations"), j, op) {
            const char *k = json_string_value(json_object_get(op, "kind"));
            const char *s = json_string_value(json_object_get(op, "status"));
            if (k && s && !strcmp(k, "capture") && !strcmp(s, "succeeded"))
                n++;
        }
    }
    th_resp_free(&r);
    return n;
}

int ops_check_acks(struct ops_load *l, struct th_server *srv, bool deep, char *why, size_t cap)
{
    struct ops_shop *shop = l->shop;
    int bad = 0;
    why[0] = 0;
    /* The relay publishes on its own schedule: wait for it, 60 s for the whole list. Entries
     * below n never change (shoppers only append). */
    long deadline = now_ms() + 60000;
    pthread_mutex_lock(&l->mu);
    int n = l->n_acks;
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < n; i++) {
        struct ops_ack *a = &l->acks[i];
        char path[96], msg[200] = "";
        snprintf(path, sizeof path, "/api/v1/orders/%s", a->id);
        struct th_resp r;
        if (th_call(srv, "GET", path, shop->token[a->buyer], &r, NULL) != 0) {
            snprintf(msg, sizeof msg, "order %s: no answer", a->id);
        } else {
            if (r.status != 200 || !is_paid_status(th_jstr(r.json, "status")))
                snprintf(msg, sizeof msg, "order %s: %ld %.100s", a->id, r.status, r.body);
            th_resp_free(&r);
        }
        if (!msg[0] && deep && !a->checked) {
            int placed = 0, paid = 0;
            for (;;) {
                events_published(srv, shop->admin, a->id, &placed, &paid);
                if ((placed == 1 && paid == 1) || now_ms() > deadline)
                    break;
                usleep(100 * 1000);
            }
            int cap_n = captures(srv, shop->admin, a->id);
            if (placed != 1 || paid != 1 || cap_n != 1)
                snprintf(msg, sizeof msg,
                         "order %s: order.placed published %d, order.paid published %d, "
                         "captures %d",
                         a->id, placed, paid, cap_n);
            else
                a->checked = true;
        }
        if (msg[0]) {
            if (!bad)
                snprintf(why, cap, "%s", msg);
            bad++;
        }
    }
    return bad;
}

/* Units in paid orders and the count of pending ones, from the admin order list. */
static int sold_units(struct ops_shop *shop, struct th_server *srv, long *units, long *pending)
{
    char cursor[64] = "";
    *units = *pending = 0;
    for (;;) {
        char path[160];
        snprintf(path, sizeof path, "/api/v1/admin/orders?limit=100%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        struct th_resp r;
        if (th_call(srv, "GET", path, shop->admin, &r, NULL) != 0)
            return -1;
        if (r.status != 200) {
            th_resp_free(&r);
            return -1;
        }
        json_t *o;
        size_t i;
        json_array_foreach (json_object_get(r.json, "items"), i, o) {
            const char *st = th_jstr(o, "status");
            if (is_paid_status(st))
                *units += th_jint(o, "subtotal.amount", 0) / OPS_PRICE;
            else if (st && !strcmp(st, "pending"))
                (*pending)++;
        }
        const char *next = th_jstr(r.json, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        th_resp_free(&r);
        if (!cursor[0])
            return 0;
    }
}

bool ops_check_stock(struct ops_shop *shop, struct th_server *srv, int timeout_s, long *sold,
                     char *why, size_t cap)
{
    long deadline = now_ms() + timeout_s * 1000L;
    for (;;) {
        long avail = 0, reserved = 0, units = -1, pending = -1;
        bool ok = true;
        for (int p = 0; p < OPS_PRODUCTS && ok; p++) {
            char path[96];
            snprintf(path, sizeof path, "/api/v1/inventory/%s", shop->product[p]);
            struct th_resp r;
            if (th_call(srv, "GET", path, shop->admin, &r, NULL) != 0)
                return false;
            ok = r.status == 200;
            avail += th_jint(r.json, "available", 0);
            reserved += th_jint(r.json, "reserved", 0);
            th_resp_free(&r);
        }
        ok = ok && sold_units(shop, srv, &units, &pending) == 0;
        long initial = (long)OPS_STOCK * OPS_PRODUCTS;
        snprintf(why, cap,
                 "initial %ld, available %ld, sold %ld (sum %ld), reserved %ld, pending orders %ld",
                 initial, avail, units, avail + units, reserved, pending);
        if (ok && reserved == 0 && pending == 0 && avail + units == initial) {
            *sold = units;
            return true;
        }
        if (now_ms() > deadline)
            return false;
        usleep(200 * 1000);
    }
}
