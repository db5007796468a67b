/* SPDX-License-Identifier: MIT */
/* test_fraud.c — the fraud rules and the review queue, through the HTTP API of the real
 * binary: an order above EMPORIUM_FRAUD_REVIEW_AMOUNT answers 201 on_hold (authorized, not
 * captured, its stock kept), waits in GET /api/v1/admin/orders?status=on_hold; approve
 * captures it (paid, shipped, the customer mailed), reject voids it (cancelled, stock back,
 * the customer mailed); both are idempotent and admin-only, with 404/409 for wrong ids and
 * states. The velocity, card, failed-payment and country rules fire from what the consumer
 * learnt; the recovery sweeps never capture nor expire a held order; the sales report counts
 * exactly the net of what was placed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dirent.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

#define CARD_OK "4242424242424242"
#define CARD_DECLINED "4000000000000002"

static struct th_server srv;
static char *admin;

/* Velocity limits low enough to trip in a test; everything else at its default. */
static const char *const env_fraud[] = {"EMPORIUM_RATE_LIMITS=off",
                                        "EMPORIUM_FRAUD_USER_VELOCITY=3",
                                        "EMPORIUM_FRAUD_CARD_VELOCITY=3", NULL};

static int setup(void **state)
{
    (void)state;
    if (th_start(&srv, env_fraud, NULL) != 0)
        return -1;
    admin = th_admin_token(&srv);
    return admin ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return th_suite_stop(&srv, admin);
}

static int seq; /* unique names and keys */

/* A product at `price` with `stock` units; its id into id. */
static void product(struct th_server *s, const char *adm, long price, long stock, char id[32])
{
    struct th_resp r;
    int n = ++seq;
    assert_int_equal(th_call(s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"FR-%d-%ld\",\"name\":\"Fraud item %d\",\"description\":"
                             "\"d\",\"category\":\"fraud\",\"price\":{\"amount\":%ld,\"currency\":"
                             "\"USD\"}}",
                             n, (long)time(NULL), n, price),
                     0);
    if (r.status != 201)
        fail_msg("product: %ld %s", r.status, r.body);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(s, "PUT", path, adm, &r, "{\"available\":%ld}", stock), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static char *customer(struct th_server *s)
{
    char email[80];
    snprintf(email, sizeof email, "fraud-%d-%ld@example.com", ++seq, (long)time(NULL));
    char *tok = th_register(s, email, "customer password");
    assert_non_null(tok);
    return tok;
}

/* Fills the cart with qty of pid and checks out with card to country; the order id into oid
 * (also of a declined order) and its status into status (or the error code). Returns the
 * HTTP status. */
static long buy(struct th_server *s, const char *tok, const char *pid, int qty, const char *card,
                const char *country, char oid[32], char status[32])
{
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":%d}", pid, qty),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    char auth[160], idem[48], body[512];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(idem, sizeof idem, "Idempotency-Key: fr-%d-%ld", ++seq, (long)time(NULL));
    const char *h[] = {auth, "Content-Type: application/json", idem, NULL};
    snprintf(body, sizeof body,
             "{\"shipping_address\":{\"name\":\"A\",\"line1\":\"1 Road\",\"city\":\"Town\","
             "\"postal_code\":\"12345\",\"country\":\"%s\"},\"payment\":{\"card_number\":\"%s\","
             "\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},\"shipping_method\":"
             "\"standard\"}",
             country, card);
    assert_int_equal(th_req(s, "POST", "/api/v1/orders", body, h, &r), 0);
    long st = r.status;
    const char *id = th_jstr(r.json, "id");
    if (!id)
        id = th_jstr(r.json, "error.order.id");
    const char *stt = th_jstr(r.json, "status");
    if (!stt)
        stt = th_jstr(r.json, "error.code");
    snprintf(oid, 32, "%s", id ? id : "");
    snprintf(status, 32, "%s", stt ? stt : "");
    th_resp_free(&r);
    if (st != 201) { /* the cart keeps the line: empty it for the next purchase */
        char path[96];
        snprintf(path, sizeof path, "/api/v1/cart/items/%s", pid);
        assert_int_equal(th_call(s, "DELETE", path, tok, &r, NULL), 0);
        th_resp_free(&r);
    }
    return st;
}

/* GET /api/v1/orders/{id} as tok: the status, the payment status and whether it has a
 * shipment. */
static void order_state(struct th_server *s, const char *tok, const char *oid, char status[32],
                        char pay[32], bool *shipment)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s", oid);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    snprintf(status, 32, "%s", th_jstr(r.json, "status"));
    const char *p = th_jstr(r.json, "payment.status");
    snprintf(pay, 32, "%s", p ? p : "");
    if (shipment)
        *shipment = th_jstr(r.json, "shipment.id") != NULL;
    th_resp_free(&r);
}

static void stock(struct th_server *s, const char *pid, long *available, long *reserved)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    *available = (long)th_jint(r.json, "available", -1);
    *reserved = (long)th_jint(r.json, "reserved", -1);
    th_resp_free(&r);
}

/* POST /api/v1/admin/orders/{id}/<action> as tok: the HTTP status; the order's status (or
 * the error code) into out. */
static long review(struct th_server *s, const char *tok, const char *oid, const char *action,
                   char out[32])
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/orders/%s/%s", oid, action);
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", path, tok, &r, NULL), 0);
    long st = r.status;
    const char *v = st == 200 ? th_jstr(r.json, "status") : th_jstr(r.json, "error.code");
    snprintf(out, 32, "%s", v ? v : "");
    if (st != 200 && !th_is_error(&r, st, NULL, NULL))
        fail_msg("%s: %ld without the error envelope: %s", action, st, r.body);
    th_resp_free(&r);
    return st;
}

/* Whether the on_hold queue lists oid (every page). */
static bool in_queue(struct th_server *s, const char *oid)
{
    char cursor[32] = "", path[160];
    bool found = false;
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/admin/orders?status=on_hold&limit=100%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        struct th_resp r;
        assert_int_equal(th_call(s, "GET", path, admin, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        size_t i;
        json_t *o;
        json_array_foreach (json_object_get(r.json, "items"), i, o) {
            assert_string_equal(th_jstr(o, "status"), "on_hold");
            found = found || !strcmp(th_jstr(o, "id"), oid);
        }
        const char *next = th_jstr(r.json, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        th_resp_free(&r);
        if (!cursor[0])
            return found;
    }
}

/* The fraud assessment of an order: its score, hold flag and reasons (comma-joined). */
static long assessment(struct th_server *s, const char *oid, int *score, bool *hold,
                       char reasons[128])
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/fraud/assessments/%s", oid);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, admin, &r, NULL), 0);
    long st = r.status;
    reasons[0] = 0;
    if (st == 200) {
        *score = (int)th_jint(r.json, "score", -1);
        *hold = json_is_true(json_object_get(r.json, "hold"));
        size_t i, len = 0;
        json_t *v;
        json_array_foreach (json_object_get(r.json, "reasons"), i, v)
            len += (size_t)snprintf(reasons + len, 128 - len, "%s%s", i ? "," : "",
                                    json_string_value(v));
    }
    th_resp_free(&r);
    return st;
}

/* Messages in the server's Maildir with needle in them. */
static int mails(struct th_server *s, const char *needle)
{
    char path[600];
    snprintf(path, sizeof path, "%s/mail/new", s->data_dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char f[1200], buf[8192];
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        FILE *fp = fopen(f, "r");
        if (!fp)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, fp);
        buf[len] = 0;
        fclose(fp);
        n += strstr(buf, needle) != NULL;
    }
    closedir(d);
    return n;
}

static int subject_mails(const char *oid, const char *what)
{
    char needle[160];
    snprintf(needle, sizeof needle, "Subject: Order %s: %s\n", oid, what);
    return mails(&srv, needle);
}

/* Whether the order's outbox holds an event of this type (admin audit route). */
static int events_of(struct th_server *s, const char *oid, const char *type)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/orders/%s/events", oid);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach (json_object_get(r.json, "items"), i, e)
        n += !strcmp(th_jstr(e, "type"), type);
    th_resp_free(&r);
    return n;
}

/* A big order is held: 201 on_hold, authorized, stock taken, in the queue; a customer cannot
 * approve it; approve captures it (paid, then shipped, the customer mailed), twice is once,
 * and a reject afterwards is refused. */
static void test_big_order_held_then_approved(void **state)
{
    (void)state;
    char pid[32], oid[32], st[32], pay[32];
    product(&srv, admin, 60000, 10, pid);
    char *tok = customer(&srv);
    assert_int_equal(buy(&srv, tok, pid, 2, CARD_OK, "US", oid, st), 201);
    assert_string_equal(st, "on_hold");
    bool shipment = true;
    order_state(&srv, tok, oid, st, pay, &shipment);
    assert_string_equal(st, "on_hold");
    assert_string_equal(pay, "authorized"); /* not captured */
    assert_false(shipment);
    long avail, resv;
    stock(&srv, pid, &avail, &resv);
    assert_int_equal(avail, 8); /* the stock stays with the held order */
    assert_true(in_queue(&srv, oid));
    int score;
    bool hold;
    char reasons[128];
    assert_int_equal(assessment(&srv, oid, &score, &hold, reasons), 200);
    assert_true(hold);
    assert_true(score >= 100);
    assert_non_null(strstr(reasons, "amount"));
    assert_int_equal(events_of(&srv, oid, "order.on_hold"), 1);
    assert_int_equal(events_of(&srv, oid, "order.paid"), 0);

    /* Only an admin decides. */
    char out[32];
    assert_int_equal(review(&srv, tok, oid, "approve", out), 403);
    assert_int_equal(review(&srv, tok, oid, "reject", out), 403);
    order_state(&srv, tok, oid, st, pay, NULL);
    assert_string_equal(st, "on_hold");

    assert_int_equal(review(&srv, admin, oid, "approve", out), 200);
    assert_string_equal(out, "paid");
    order_state(&srv, tok, oid, st, pay, &shipment);
    assert_string_equal(st, "paid");
    assert_string_equal(pay, "captured");
    assert_true(shipment); /* ships as usual */
    assert_false(in_queue(&srv, oid));
    /* Idempotent: approving again changes nothing; rejecting now is a conflict. */
    assert_int_equal(review(&srv, admin, oid, "approve", out), 200);
    assert_string_equal(out, "paid");
    assert_int_equal(review(&srv, admin, oid, "reject", out), 409);
    assert_string_equal(out, "order_not_on_hold");
    assert_int_equal(events_of(&srv, oid, "order.paid"), 1);
    stock(&srv, pid, &avail, &resv);
    assert_int_equal(avail, 8);
    assert_int_equal(resv, 0);

    assert_true(th_events_settled(&srv, 90));
    assert_int_equal(subject_mails(oid, "under review"), 1);
    assert_int_equal(subject_mails(oid, "confirmed"), 1);
    assert_int_equal(subject_mails(oid, "cancelled"), 0);
    free(tok);
}

/* Reject voids the authorization, gives the stock back, cancels, mails the customer; twice is
 * once, and an approve afterwards is refused. */
static void test_big_order_held_then_rejected(void **state)
{
    (void)state;
    char pid[32], oid[32], st[32], pay[32];
    product(&srv, admin, 150000, 5, pid);
    char *tok = customer(&srv);
    assert_int_equal(buy(&srv, tok, pid, 1, CARD_OK, "US", oid, st), 201);
    assert_string_equal(st, "on_hold");
    long avail, resv;
    stock(&srv, pid, &avail, &resv);
    assert_int_equal(avail, 4);
    char out[32];
    assert_int_equal(review(&srv, admin, oid, "reject", out), 200);
    assert_string_equal(out, "cancelled");
    order_state(&srv, tok, oid, st, pay, NULL);
    assert_string_equal(st, "cancelled");
    assert_string_equal(pay, "voided");
    stock(&srv, pid, &avail, &resv);
    assert_int_equal(avail, 5); /* the stock is back */
    assert_int_equal(resv, 0);
    assert_int_equal(review(&srv, admin, oid, "reject", out), 200); /* twice is once */
    assert_string_equal(out, "cancelled");
    assert_int_equal(review(&srv, admin, oid, "approve", out), 409);
    assert_string_equal(out, "order_not_on_hold");
    stock(&srv, pid, &avail, &resv);
    assert_int_equal(avail, 5);
    assert_int_equal(events_of(&srv, oid, "order.cancelled"), 1);
    assert_int_equal(events_of(&srv, oid, "order.paid"), 0);
    assert_false(in_queue(&srv, oid));
    assert_true(th_events_settled(&srv, 90));
    assert_int_equal(subject_mails(oid, "under review"), 1);
    assert_int_equal(subject_mails(oid, "cancelled"), 1);
    assert_int_equal(subject_mails(oid, "confirmed"), 0);
    free(tok);
}

/* Wrong ids and states: 404 for an unknown order, 409 for an order that is not held, with
 * the error envelope; nothing changes. */
static void test_review_errors(void **state)
{
    (void)state;
    char out[32], pid[32], oid[32], st[32], pay[32];
    assert_int_equal(review(&srv, admin, "123456789", "approve", out), 404);
    assert_int_equal(review(&srv, admin, "not-a-number", "reject", out), 404);
    struct th_resp r;
    assert_int_equal(
        th_call(&srv, "GET", "/api/v1/admin/fraud/assessments/123456789", admin, &r, NULL), 0);
    assert_true(th_is_error(&r, 404, NULL, NULL));
    th_resp_free(&r);
    product(&srv, admin, 1000, 10, pid);
    char *tok = customer(&srv);
    assert_int_equal(buy(&srv, tok, pid, 1, "5555555555554444", "US", oid, st), 201);
    assert_string_equal(st, "paid");
    assert_int_equal(review(&srv, admin, oid, "approve", out), 409);
    assert_string_equal(out, "order_not_on_hold");
    assert_int_equal(review(&srv, admin, oid, "reject", out), 409);
    assert_string_equal(out, "order_not_on_hold");
    order_state(&srv, tok, oid, st, pay, NULL);
    assert_string_equal(st, "paid");
    assert_string_equal(pay, "captured");
    /* A small order passes with a clean assessment. */
    int score;
    bool hold;
    char reasons[128];
    assert_int_equal(assessment(&srv, oid, &score, &hold, reasons), 200);
    assert_false(hold);
    assert_int_equal(score, 0);
    assert_string_equal(reasons, "");
    /* Bad status filter on the queue: 400 naming the field. */
    assert_int_equal(th_call(&srv, "GET", "/api/v1/admin/orders?status=held", admin, &r, NULL), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "status"));
    th_resp_free(&r);
    free(tok);
}

/* Velocity: the fourth order of one user on one card within the window is held (velocity
 * limits are 3 here); a card used by many users scores on its own, and with failed payments
 * of the user it is held. */
static void test_velocity_rules(void **state)
{
    (void)state;
    char pid[32], oid[32], st[32];
    product(&srv, admin, 500, 100, pid);
    char *tok = customer(&srv);
    const char *card = "4111111111111111";
    for (int i = 0; i < 3; i++) {
        assert_int_equal(buy(&srv, tok, pid, 1, card, "US", oid, st), 201);
        assert_string_equal(st, "paid");
    }
    assert_int_equal(buy(&srv, tok, pid, 1, card, "US", oid, st), 201);
    assert_string_equal(st, "on_hold");
    int score;
    bool hold;
    char reasons[128];
    assert_int_equal(assessment(&srv, oid, &score, &hold, reasons), 200);
    assert_true(hold);
    assert_string_equal(reasons, "velocity,card_velocity");
    assert_int_equal(score, 120);
    assert_true(in_queue(&srv, oid));
    free(tok);

    /* One card, many users: the card rule alone (60) does not hold... */
    const char *shared = "5105105105105100";
    for (int i = 0; i < 3; i++) {
        char *u = customer(&srv);
        assert_int_equal(buy(&srv, u, pid, 1, shared, "US", oid, st), 201);
        assert_string_equal(st, "paid");
        free(u);
    }
    char *u = customer(&srv);
    assert_int_equal(buy(&srv, u, pid, 1, shared, "US", oid, st), 201);
    assert_string_equal(st, "paid");
    assert_int_equal(assessment(&srv, oid, &score, &hold, reasons), 200);
    assert_false(hold);
    assert_string_equal(reasons, "card_velocity");
    /* ...but with three failed payments of the user (learnt from order.failed) it does. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(buy(&srv, u, pid, 1, CARD_DECLINED, "US", oid, st), 402);
    assert_true(th_events_settled(&srv, 90)); /* the consumer learnt the failures */
    assert_int_equal(buy(&srv, u, pid, 1, shared, "US", oid, st), 201);
    assert_string_equal(st, "on_hold");
    assert_int_equal(assessment(&srv, oid, &score, &hold, reasons), 200);
    assert_true(hold);
    assert_string_equal(reasons, "card_velocity,failed_payments");
    free(u);
}

/* Shipping to a country the account never shipped to scores (not enough to hold alone). */
static void test_new_country(void **state)
{
    (void)state;
    char pid[32], oid[32], st[32];
    product(&srv, admin, 700, 100, pid);
    char *tok = customer(&srv);
    assert_int_equal(buy(&srv, tok, pid, 1, "6011111111111117", "US", oid, st), 201);
    int score;
    bool hold;
    char reasons[128];
    assert_int_equal(assessment(&srv, oid, &score, &hold, reasons), 200);
    assert_string_equal(reasons, ""); /* a first order has no past to differ from */
    assert_int_equal(buy(&srv, tok, pid, 1, "6011111111111117", "DE", oid, st), 201);
    assert_string_equal(st, "paid");
    assert_int_equal(assessment(&srv, oid, &score, &hold, reasons), 200);
    assert_string_equal(reasons, "new_country");
    assert_int_equal(score, 30);
    assert_false(hold);
    free(tok);
}

/* Today's revenue (minor units) and order count from the sales report, after the consumers
 * caught up. */
static void sales_today(long *revenue, long *orders)
{
    char today[11], path[160];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    snprintf(path, sizeof path, "/api/v1/admin/analytics/sales?from=%s&to=%s", today, today);
    assert_true(th_events_settled(&srv, 90));
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    json_t *day = json_array_get(json_object_get(r.json, "items"), 0);
    *revenue = day ? (long)th_jint(day, "revenue.amount", 0) : 0;
    *orders = day ? (long)th_jint(day, "orders", 0) : 0;
    th_resp_free(&r);
}

/* The sales report equals the net of what was placed: paid orders count, a cancelled one
 * and a rejected one do not, a held one counts once approved. */
static void test_analytics_net(void **state)
{
    (void)state;
    long rev0, n0, rev1, n1;
    sales_today(&rev0, &n0);
    char small[32], big[32], oid[32], st[32], out[32], path[96];
    product(&srv, admin, 1200, 100, small);
    product(&srv, admin, 110000, 10, big);
    char *tok = customer(&srv);
    const char *card = "378282246310005";
    assert_int_equal(buy(&srv, tok, small, 2, card, "US", oid, st), 201); /* 2400 */
    assert_int_equal(buy(&srv, tok, small, 1, card, "US", oid, st), 201); /* cancelled */
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", oid);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    char *tok2 = customer(&srv);
    assert_int_equal(buy(&srv, tok2, big, 1, "4012888888881881", "US", oid, st), 201);
    assert_string_equal(st, "on_hold");
    assert_int_equal(review(&srv, admin, oid, "approve", out), 200); /* 110000 */
    assert_int_equal(buy(&srv, tok2, big, 1, "4012888888881881", "US", oid, st), 201);
    assert_string_equal(st, "on_hold");
    assert_int_equal(review(&srv, admin, oid, "reject", out), 200);
    assert_int_equal(buy(&srv, tok2, small, 3, "4012888888881881", "US", oid, st), 201); /* 3600 */
    sales_today(&rev1, &n1);
    assert_int_equal(rev1 - rev0, 2400 + 110000 + 3600);
    assert_int_equal(n1 - n0, 3);
    free(tok);
    free(tok2);
}

/* The recovery sweeps run (every second here, with a 3 s reservation lifetime and a 1 s
 * pending timeout) and a held order stays held: not captured, not failed, its stock kept. */
static void test_recovery_leaves_held_orders(void **state)
{
    (void)state;
    struct th_server s;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_RESERVATION_TTL_SECONDS=3",
                         "EMPORIUM_ORDER_SWEEP_SECONDS=1",
                         "EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS=1", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    char *saved = admin;
    admin = adm; /* the helpers act as this server's admin */
    char pid[32], oid[32], st[32], pay[32];
    product(&s, adm, 200000, 3, pid);
    char email[64];
    snprintf(email, sizeof email, "held-%ld@example.com", (long)time(NULL));
    char *tok = th_register(&s, email, "customer password");
    assert_non_null(tok);
    assert_int_equal(buy(&s, tok, pid, 1, CARD_OK, "US", oid, st), 201);
    assert_string_equal(st, "on_hold");
    double inv0 = th_metric(&s, "emporium_timer_runs_total{job=\"inventory.reservation_sweep\"}");
    double ord0 = th_metric(&s, "emporium_timer_runs_total{job=\"order.recovery\"}");
    assert_true(inv0 >= 0 && ord0 >= 0);
    /* Wait (deadline 90 s) until both sweeps ran 5 more times: past the reservation's
     * lifetime and the pending timeout. */
    bool ran = false;
    for (time_t end = time(NULL) + 90; !ran && time(NULL) < end;) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        ran = th_metric(&s, "emporium_timer_runs_total{job=\"inventory.reservation_sweep\"}") >=
                  inv0 + 5 &&
              th_metric(&s, "emporium_timer_runs_total{job=\"order.recovery\"}") >= ord0 + 5;
    }
    assert_true(ran);
    order_state(&s, tok, oid, st, pay, NULL);
    assert_string_equal(st, "on_hold");
    assert_string_equal(pay, "authorized");
    long avail, resv;
    stock(&s, pid, &avail, &resv);
    assert_int_equal(avail, 2);
    /* And it can still be approved: the stock was never given back. */
    char out[32];
    assert_int_equal(review(&s, adm, oid, "approve", out), 200);
    assert_string_equal(out, "paid");
    stock(&s, pid, &avail, &resv);
    assert_int_equal(avail, 2);
    admin = saved;
    free(tok);
    free(adm);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_big_order_held_then_approved),
        cmocka_unit_test(test_big_order_held_then_rejected),
        cmocka_unit_test(test_review_errors),
        cmocka_unit_test(test_velocity_rules),
        cmocka_unit_test(test_new_country),
        cmocka_unit_test(test_analytics_net),
        cmocka_unit_test(test_recovery_leaves_held_orders),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
