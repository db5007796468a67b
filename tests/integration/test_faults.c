/* SPDX-License-Identifier: MIT */
/* test_faults.c — allocation and database failure injection (the curl "torture" / SQLite
 * *fault.test idea): register, add-to-cart and checkout are run again and again, the n-th
 * allocation or the n-th database call failing in turn (n = 1, 2, … until the request no
 * longer reaches an n-th call). After each injected failure:
 *   - the client got a clean answer: a 2xx (the failure was tolerated) or a 4xx/5xx with the
 *     JSON error envelope {"error":{"code","message"}};
 *   - nothing half-committed: a failed registration left no account, a failed add-to-cart
 *     left the cart as it was, a failed checkout left the stock, the reservations and the
 *     cart as they were and no order that is still pending or paid; a successful one did
 *     all of it;
 *   - no database lease is left taken, and the same request then succeeds without faults;
 *   - nothing leaks: LeakSanitizer checks the whole run at exit (sanitizer build).
 *
 * The shop runs in process (http_inject, SQLite in a temporary directory). Allocations are
 * failed through -Wl,--wrap (CMakeLists.txt) for malloc, calloc, realloc, strdup and strndup
 * called from the code linked into this program (emporium_core), and through
 * json_set_alloc_funcs() for every jansson allocation. Allocations made inside other shared
 * libraries (SQLite, libsodium, libmicrohttpd, libc itself) are not failed. Database failures
 * come from db_fault_set() in src/adapters/db.c (take, query, begin, commit). Both counters
 * are per thread and only the test thread arms them, so the shop's background threads are
 * never affected. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/db.h"
#include "emporium/log.h"
#include "http/inject.h"

/* ---- the fault switches ----------------------------------------------------------------- */

void db_fault_set(long n); /* src/adapters/db.c */
long db_fault_pending(void);

static _Thread_local long alloc_countdown;

/* FAULTS_TRACE=1 prints where each injected allocation failure happens (sanitizer build). */
void __sanitizer_print_stack_trace(void) __attribute__((weak));
static int alloc_fails(void)
{
    if (!(alloc_countdown > 0 && --alloc_countdown == 0))
        return 0;
    if (__sanitizer_print_stack_trace && getenv("FAULTS_TRACE"))
        __sanitizer_print_stack_trace();
    return 1;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n) { return alloc_fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return alloc_fails() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return alloc_fails() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return alloc_fails() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n)
{
    return alloc_fails() ? NULL : __real_strndup(s, n);
}
/* jansson's parser (2.14) drops the byte it was appending when an allocation fails and goes
 * on: json_loadb() then returns a document with a character missing ("example.com" became
 * "exmple.com" and an account was created under that address). No caller can detect that,
 * so allocations are not failed while jansson parses; everything else of jansson (packing,
 * dumping, building objects) is. */
static _Thread_local int in_json_parse;
json_t *__real_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error);
json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error);
json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error)
{
    in_json_parse++;
    json_t *j = __real_json_loadb(buf, len, flags, error);
    in_json_parse--;
    return j;
}
static void *json_alloc(size_t n)
{
    if (in_json_parse)
        return __real_malloc(n);
    return alloc_fails() ? NULL : __real_malloc(n);
}

enum fault { FAULT_DB, FAULT_ALLOC };
static const char *const fault_names[] = {"database call", "allocation"};

static void arm(enum fault f, long n)
{
    if (f == FAULT_DB)
        db_fault_set(n);
    else
        alloc_countdown = n;
}

/* Disarms; true when the armed failure happened. */
static bool disarm(enum fault f)
{
    bool fired = f == FAULT_DB ? db_fault_pending() == 0 : alloc_countdown == 0;
    db_fault_set(0);
    alloc_countdown = 0;
    return fired;
}

/* ---- the shop --------------------------------------------------------------------------- */

static struct app *app;
static struct config cfg;
static char root[64];
static char customer[96], admin[96], product[24];
static int injected;      /* failures injected over the whole run */
static int late_failures; /* 5xx answers for a change that did commit */

static json_t *call(const char *method, const char *url, const char *token, const char *idem,
                    const char *body, int *status)
{
    char auth[160], key[96];
    const char *h[4];
    int n = 0;
    h[n++] = "Content-Type: application/json";
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h[n++] = auth;
    }
    if (idem) {
        snprintf(key, sizeof key, "Idempotency-Key: %s", idem);
        h[n++] = key;
    }
    h[n] = NULL;
    struct http_inject_resp r;
    if (http_inject_req(app, method, url, h, body, body ? strlen(body) : 0, &r) < 0) {
        /* only when the injected failure hit the injector itself */
        *status = 0;
        return NULL;
    }
    *status = r.status;
    json_t *j = r.len ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    http_inject_resp_free(&r);
    return j;
}

/* A request made without faults that must answer `expect`; returns its JSON. */
static json_t *must(const char *method, const char *url, const char *token, const char *body,
                    int expect)
{
    int status;
    char idem[32];
    static unsigned k;
    snprintf(idem, sizeof idem, "must-%u", ++k);
    json_t *j = call(method, url, token, idem, body, &status);
    if (status != expect) {
        char *s = j ? json_dumps(j, 0) : NULL;
        fail_msg("%s %s: expected %d, got %d %s", method, url, expect, status, s ? s : "");
    }
    return j;
}

static void check_envelope(const char *what, long n, int status, json_t *j)
{
    if (status == 0)
        return; /* the injector's own allocation failed: no request was made */
    if (status >= 200 && status < 300)
        return;
    json_t *e = json_object_get(j, "error");
    if (status < 400 || !json_is_string(json_object_get(e, "code")) ||
        !json_is_string(json_object_get(e, "message"))) {
        char *s = j ? json_dumps(j, 0) : NULL;
        fail_msg("%s, failure %ld: status %d without the error envelope: %s", what, n, status,
                 s ? s : "(no JSON body)");
    }
}

/* Every lease is given back. The shop's background threads (sweepers, checkpoints) take
 * connections too, so a lease still out is waited for (5 s) before it counts as leaked. */
static void check_no_lease(const char *what, long n)
{
    for (int i = 0; i < app_db_count(app); i++) {
        int used = 0, idle = 0;
        for (int tries = 0; tries < 500; tries++) {
            db_pool_stats(app_db_at(app, i), &used, &idle);
            if (used == 0)
                break;
            usleep(10000);
        }
        if (used != 0)
            fail_msg("%s, failure %ld: %d connection(s) of %s still taken", what, n, used,
                     db_name(app_db_at(app, i)));
    }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

static void copy_member(json_t *j, const char *name, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(j, name));
    assert_non_null(v);
    assert_true(strlen(v) < cap);
    strcpy(out, v);
    json_decref(j);
}

static int setup(void **state)
{
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    if (backend && !strcmp(backend, "postgres")) {
        /* The faults are injected above the storage adapter, so one backend shows them; the
         * PostgreSQL adapter's own failure handling is test_db's. */
        fprintf(stderr, "test_faults: runs in-process on SQLite only; skipped for postgres\n");
        return 0;
    }
    json_set_alloc_funcs(json_alloc, free);
    if (sodium_init() < 0)
        return -1;
    if (!getenv("EMPORIUM_LOG_LEVEL"))
        log_set_level(LOG_ERROR); /* thousands of injected failures are expected here */
    snprintf(root, sizeof root, "%s/emp-faults-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(root) || config_from_env(&cfg) < 0)
        return -1;
    cfg.data_dir = root;
    cfg.database_url = NULL; /* in-process SQLite (the PostgreSQL run tests the same code) */
    cfg.services = NULL;
    cfg.demo = false;
    cfg.rate_limits = false;
    /* one customer checks out ~150 times here on one card: the fraud velocity rules would
     * hold those orders for review (test_fraud tests them); the fail-safe hold when the
     * rules' own database call fails is still exercised (test_checkout) */
    cfg.fraud_user_velocity = 1000000;
    cfg.fraud_card_velocity = 1000000;
    cfg.fraud_failed_payments = 1000000;
    cfg.access_log = false;
    if (app_new(&app, &cfg) < 0 || http_inject_open(app) < 0)
        return -1;
    copy_member(must("POST", "/api/v1/auth/register", NULL,
                     "{\"email\":\"faults-admin@example.com\",\"password\":\"faults password\","
                     "\"name\":\"A\"}",
                     201),
                "token", admin, sizeof admin);
    struct db_conn *c;
    struct db_val a[] = {DB_TEXT("faults-admin@example.com")};
    if (db_conn_take(app_db(app, "users"), &c) < 0 ||
        db_query(c, "UPDATE users SET role = 'admin' WHERE email = $1", 1, a, NULL) != 1)
        return -1;
    db_conn_give(c);
    /* A session carries the role it was opened with (a copy in Redis, when configured, holds
     * it): sign in again as the admin the account now is. */
    copy_member(must("POST", "/api/v1/auth/login", NULL,
                     "{\"email\":\"faults-admin@example.com\",\"password\":\"faults "
                     "password\"}",
                     200),
                "token", admin, sizeof admin);
    copy_member(must("POST", "/api/v1/auth/register", NULL,
                     "{\"email\":\"faults-customer@example.com\",\"password\":\"faults "
                     "password\",\"name\":\"C\"}",
                     201),
                "token", customer, sizeof customer);
    copy_member(must("POST", "/api/v1/products", admin,
                     "{\"sku\":\"FAULT-1\",\"name\":\"Fault lamp\",\"category\":\"faults\","
                     "\"price\":{\"amount\":1999,\"currency\":\"USD\"}}",
                     201),
                "id", product, sizeof product);
    char url[96];
    snprintf(url, sizeof url, "/api/v1/inventory/%s", product);
    json_decref(must("PUT", url, admin, "{\"available\":100000}", 200));
    return 0;
}

static int teardown(void **state)
{
    if (!app)
        return 0;
    http_inject_close();
    app_free(app);
    if (root[0])
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- the scenarios ---------------------------------------------------------------------- */

static long count_users(const char *email)
{
    struct db_rows *rows = NULL;
    struct db_val a[] = {DB_TEXT(email)};
    assert_int_equal(db_query_once(app_db(app, "users"),
                                   "SELECT count(*) FROM users WHERE email = $1", 1, a, &rows),
                     0);
    long n = (long)db_get_i64(rows, 0, 0);
    db_rows_free(rows);
    return n;
}

/* Registration: a failed one leaves no account; a successful one gave a working token. */
static void test_register(void **state)
{
    if (!app) {
        skip();
        return;
    }
    for (int f = FAULT_DB; f <= FAULT_ALLOC; f++) {
        long n;
        for (n = 1;; n++) {
            char email[64], body[200], what[64];
            snprintf(email, sizeof email, "faults-%d-%ld@example.com", f, n);
            snprintf(body, sizeof body,
                     "{\"email\":\"%s\",\"password\":\"faults password\",\"name\":\"R\"}", email);
            snprintf(what, sizeof what, "register, %s", fault_names[f]);
            int status;
            arm(f, n);
            json_t *j = call("POST", "/api/v1/auth/register", NULL, NULL, body, &status);
            bool fired = disarm(f);
            check_envelope(what, n, status, j);
            check_no_lease(what, n);
            long users = count_users(email);
            if (status == 201) {
                if (users != 1) {
                    char *b = json_dumps(j, 0);
                    fail_msg("%s, failure %ld: answered 201 but there is no account: %s", what, n,
                             b);
                }
                json_decref(must("GET", "/api/v1/users/me",
                                 json_string_value(json_object_get(j, "token")), NULL, 200));
            } else if (users != 0) {
                /* only an answer lost after the commit (5xx, or none at all) may leave the
                 * account, and then it is whole: its password works */
                if (status != 0 && status < 500)
                    fail_msg("%s, failure %ld: answered %d but the account exists", what, n,
                             status);
                char login[200];
                snprintf(login, sizeof login, "{\"email\":\"%s\",\"password\":\"faults password\"}",
                         email);
                json_decref(must("POST", "/api/v1/auth/login", NULL, login, 200));
                late_failures++;
            }
            json_decref(j);
            if (!fired) {
                assert_int_equal(status, 201);
                break;
            }
            injected++;
        }
        fprintf(stderr, "register: %ld %s failures injected\n", n - 1, fault_names[f]);
        assert_true(n > 2);
    }
}

static int cart_quantity(void)
{
    json_t *j = must("GET", "/api/v1/cart", customer, NULL, 200);
    int q = 0;
    size_t i;
    json_t *it;
    json_array_foreach (json_object_get(j, "items"), i, it)
        if (!strcmp(json_string_value(json_object_get(it, "product_id")), product))
            q = (int)json_integer_value(json_object_get(it, "quantity"));
    json_decref(j);
    return q;
}

static void set_cart(int q)
{
    char url[96], body[64];
    snprintf(url, sizeof url, "/api/v1/cart/items/%s", product);
    if (cart_quantity() == 0) {
        snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":%d}", product, q);
        json_decref(must("POST", "/api/v1/cart/items", customer, body, 200));
    } else {
        snprintf(body, sizeof body, "{\"quantity\":%d}", q);
        json_decref(must("PATCH", url, customer, body, 200));
    }
}

/* Add-to-cart: the line grows by one exactly when the answer is 200. */
static void test_add_to_cart(void **state)
{
    if (!app) {
        skip();
        return;
    }
    char body[96];
    snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", product);
    for (int f = FAULT_DB; f <= FAULT_ALLOC; f++) {
        long n;
        set_cart(1);
        for (n = 1;; n++) {
            char what[64];
            snprintf(what, sizeof what, "add-to-cart, %s", fault_names[f]);
            int before = cart_quantity(), status;
            if (before > 90)
                set_cart(1), before = 1;
            arm(f, n);
            json_t *j = call("POST", "/api/v1/cart/items", customer, NULL, body, &status);
            bool fired = disarm(f);
            check_envelope(what, n, status, j);
            check_no_lease(what, n);
            int after = cart_quantity();
            /* A 5xx may come after the change committed (the cart is rendered after the
             * commit): then the line moved by exactly one. Anything else: exactly as told. */
            bool lost = status == 0 || status >= 500; /* the answer, maybe not the change */
            bool ok = status == 200 ? after == before + 1
                      : lost        ? (after == before || after == before + 1)
                                    : after == before;
            if (!ok)
                fail_msg("%s, failure %ld: answered %d, the line went from %d to %d", what, n,
                         status, before, after);
            if (lost && after == before + 1)
                late_failures++;
            json_decref(j);
            if (!fired) {
                assert_int_equal(status, 200);
                break;
            }
            injected++;
        }
        fprintf(stderr, "add-to-cart: %ld %s failures injected\n", n - 1, fault_names[f]);
        assert_true(n > 2);
    }
}

struct stock {
    long long available, reserved;
};

static struct stock stock_now(void)
{
    char url[96];
    snprintf(url, sizeof url, "/api/v1/inventory/%s", product);
    json_t *j = must("GET", url, admin, NULL, 200);
    struct stock s = {json_integer_value(json_object_get(j, "available")),
                      json_integer_value(json_object_get(j, "reserved"))};
    json_decref(j);
    return s;
}

/* Orders of the customer not seen before, by status: a failed checkout may leave a failed
 * order (with nothing held), never a pending or paid one. */
static void new_orders(json_t *seen, int *paid, int *held, int *other)
{
    *paid = *held = *other = 0;
    json_t *j = must("GET", "/api/v1/orders?limit=100", customer, NULL, 200);
    size_t i;
    json_t *o;
    json_array_foreach (json_object_get(j, "items"), i, o) {
        const char *id = json_string_value(json_object_get(o, "id"));
        const char *st = json_string_value(json_object_get(o, "status"));
        if (!id || !st || json_object_get(seen, id))
            continue;
        json_object_set_new(seen, id, json_true());
        if (!strcmp(st, "paid"))
            (*paid)++;
        else if (!strcmp(st, "pending") || !strcmp(st, "on_hold") || !strcmp(st, "fulfilling"))
            (*held)++;
        else
            (*other)++;
    }
    json_decref(j);
}

/* A defect this test found (2026-12-06): a checkout whose database call or allocation
 * failed after PAID committed (reading the order back) compensated the paid order: its
 * stock went back, the order stayed `paid` (an oversell). Fixed in order_saga.c; at 1 such
 * a round would be counted and printed ("KNOWN DEFECT: …") instead of failing the test. */
#define KNOWN_PAID_WITHOUT_STOCK 0
static int known_defects;
/* checkouts held for review because the fraud rules' database call failed (the fail-safe) */
static int held_for_review;

static const char *th_id(json_t *o) { return json_string_value(json_object_get(o, "id")); }

static const char checkout_body[] =
    "{\"shipping_address\":{\"name\":\"F\",\"line1\":\"1 Main St\",\"city\":\"Springfield\","
    "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":"
    "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2035,\"cvc\":\"123\"},"
    "\"shipping_method\":\"standard\"}";

/* Checkout: a paid order took exactly its item out of the stock and emptied the cart; any
 * other outcome changed neither the stock, nor the reservations, nor the cart. */
static void test_checkout(void **state)
{
    if (!app) {
        skip();
        return;
    }
    json_t *seen = json_object();
    int paid, held, other;
    new_orders(seen, &paid, &held, &other);
    for (int f = FAULT_DB; f <= FAULT_ALLOC; f++) {
        long n;
        for (n = 1;; n++) {
            char what[64], key[48];
            snprintf(what, sizeof what, "checkout, %s", fault_names[f]);
            snprintf(key, sizeof key, "faults-%d-%ld", f, n);
            set_cart(1);
            struct stock before = stock_now();
            int status;
            arm(f, n);
            json_t *j = call("POST", "/api/v1/orders", customer, key, checkout_body, &status);
            bool fired = disarm(f);
            check_envelope(what, n, status, j);
            check_no_lease(what, n);
            struct stock after = stock_now();
            new_orders(seen, &paid, &held, &other);
            int in_cart = cart_quantity();
            const char *ost = j ? json_string_value(json_object_get(j, "status")) : NULL;
            if (status == 201 && held == 1 && paid == 0 && ost && !strcmp(ost, "on_hold") &&
                fired) {
                /* The fail-safe of order_saga.c: the fraud rules could not score (their
                 * database call failed), so the order is held for review instead of being
                 * captured unchecked — its stock set aside, nothing captured. The admin rejects
                 * it, which must give the stock back. */
                if (after.available != before.available - 1 || after.reserved != before.reserved)
                    fail_msg("%s, failure %ld: held for review but stock %lld/%lld -> %lld/%lld",
                             what, n, before.available, before.reserved, after.available,
                             after.reserved);
                char url[128];
                snprintf(url, sizeof url, "/api/v1/admin/orders/%s/reject", th_id(j));
                json_decref(must("POST", url, admin, NULL, 200));
                struct stock back = stock_now();
                if (back.available != before.available || back.reserved != before.reserved)
                    fail_msg("%s, failure %ld: the rejected held order left stock %lld/%lld "
                             "(was %lld/%lld)",
                             what, n, back.available, back.reserved, before.available,
                             before.reserved);
                held_for_review++;
                json_decref(j);
                injected++;
                continue;
            }
            if (held)
                fail_msg("%s, failure %ld: answered %d (status %s) and left an order pending", what,
                         n, status, ost ? ost : "-");
            /* Emptying the cart after the order is paid is best effort (the order is the
             * record): a failure there leaves the item in the cart of a 201. */
            if (status == 201 && in_cart != 0)
                late_failures++;
            bool lost = status == 0 || status >= 500; /* the answer, maybe not the order */
            if (KNOWN_PAID_WITHOUT_STOCK && lost && paid == 1 &&
                after.available == before.available && after.reserved == before.reserved) {
                /* the known defect (see KNOWN_PAID_WITHOUT_STOCK): counted, reported, and
                 * the order is cancelled so the next round starts from a clean state */
                json_t *l = must("GET", "/api/v1/orders?limit=1", customer, NULL, 200);
                fprintf(stderr,
                        "KNOWN DEFECT: %s, failure %ld: answered %d, order %s is paid "
                        "but its stock was never taken\n",
                        what, n, status, th_id(json_array_get(json_object_get(l, "items"), 0)));
                json_decref(l);
                known_defects++;
                json_decref(j);
                injected++;
                continue;
            }
            if (status == 201 || (lost && paid == 1)) {
                if (paid != 1 || after.available != before.available - 1 ||
                    after.reserved != before.reserved || in_cart > 1) {
                    /* what the order went through, for the report */
                    json_t *l = must("GET", "/api/v1/orders?limit=1", customer, NULL, 200);
                    char url[128];
                    snprintf(url, sizeof url, "/api/v1/admin/orders/%s/events",
                             th_id(json_array_get(json_object_get(l, "items"), 0)));
                    json_t *ev = must("GET", url, admin, NULL, 200);
                    char *evs = json_dumps(ev, JSON_COMPACT);
                    fprintf(stderr, "the order's events: %s\n", evs ? evs : "");
                    free(evs);
                    json_decref(ev);
                    json_decref(l);
                    fail_msg("%s, failure %ld: %d but paid orders %d, stock %lld/%lld -> "
                             "%lld/%lld, cart %d",
                             what, n, status, paid, before.available, before.reserved,
                             after.available, after.reserved, in_cart);
                }
                if (status != 201) {
                    /* the client retries with the same key: the same order, not a second */
                    late_failures++;
                    int st2;
                    json_t *again =
                        call("POST", "/api/v1/orders", customer, key, checkout_body, &st2);
                    struct stock s2 = stock_now();
                    int p2, h2, o2;
                    new_orders(seen, &p2, &h2, &o2);
                    if (st2 != 201 || p2 + h2 + o2 != 0 || s2.available != after.available) {
                        char *b = again ? json_dumps(again, 0) : NULL;
                        fail_msg("%s, failure %ld: the retry with the same key answered %d "
                                 "(%s), new orders %d, stock %lld -> %lld",
                                 what, n, st2, b ? b : "", p2 + h2 + o2, after.available,
                                 s2.available);
                    }
                    json_decref(again);
                }
            } else if (paid != 0 || after.available != before.available ||
                       after.reserved != before.reserved || in_cart != 1) {
                fail_msg("%s, failure %ld: answered %d but paid orders %d, stock %lld/%lld -> "
                         "%lld/%lld, cart %d",
                         what, n, status, paid, before.available, before.reserved, after.available,
                         after.reserved, in_cart);
            }
            json_decref(j);
            if (!fired) {
                assert_int_equal(status, 201);
                break;
            }
            injected++;
        }
        fprintf(stderr,
                "checkout: %ld %s failures injected (%d known defects, %d held for review)\n",
                n - 1, fault_names[f], known_defects, held_for_review);
        assert_true(n > 2);
    }
    json_decref(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_to_cart),
        cmocka_unit_test(test_checkout),
        cmocka_unit_test(test_register),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    fprintf(stderr,
            "faults: %d failures injected in all; %d answered 5xx after the change had "
            "committed\n",
            injected, late_failures);
    return rc;
}
