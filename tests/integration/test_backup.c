/* SPDX-License-Identifier: MIT */
/* test_backup.c — `emporium backup` / `emporium restore` through the CLI and the HTTP API of
 * the real binary: a backup taken while orders keep being placed, restored into a fresh data
 * dir, holds every order acknowledged before the backup began; restore refuses a damaged
 * backup and a data dir that holds a shop, changing nothing. PostgreSQL mode: both commands
 * refuse with exit 2 and name the way to go (pg_dump / point-in-time recovery). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

#define CARD_OK "4242424242424242"
#define ADDR                                                                                       \
    "{\"name\":\"Ada Lovelace\",\"line1\":\"1 Analytical "                                         \
    "St\",\"city\":\"London\",\"postal_code\":\"N1 9GU\",\"country\":\"GB\"}"
#define MAX_ORDERS 4000

static const char *const base_env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};

static bool pg_backend(void)
{
    const char *b = getenv("EMPORIUM_TEST_BACKEND");
    return b && !strcmp(b, "postgres");
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The harness dir of a server: its data dir without the trailing "/data". */
static void root_of(const struct th_server *s, char *buf, size_t cap)
{
    const char *slash = strrchr(s->data_dir, '/');
    assert_non_null(slash);
    size_t n = (size_t)(slash - s->data_dir);
    assert_true(n < cap);
    memcpy(buf, s->data_dir, n);
    buf[n] = '\0';
}

/* Places orders one after another until told to stop; keeps the ids of those acknowledged
 * (201), in the order the acknowledgements arrived. */
struct loader {
    struct th_server *s;
    const char *token, *product;
    atomic_bool stop;
    pthread_mutex_t mu;
    char (*ids)[32];
    int n_acked, n_errors;
};

static void *loader_main(void *arg)
{
    struct loader *l = arg;
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", l->token);
    for (int i = 0; i < MAX_ORDERS && !atomic_load(&l->stop); i++) {
        struct th_resp r;
        if (th_call(l->s, "POST", "/api/v1/cart/items", l->token, &r,
                    "{\"product_id\":\"%s\",\"quantity\":1}", l->product) != 0) {
            l->n_errors++;
            continue;
        }
        long st = r.status;
        th_resp_free(&r);
        if (st != 200) {
            l->n_errors++;
            continue;
        }
        char key[96];
        snprintf(key, sizeof key, "Idempotency-Key: backup-%d-%d", (int)getpid(), i);
        const char *h[] = {auth, key, NULL};
        if (th_req(l->s, "POST", "/api/v1/orders",
                   "{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"" CARD_OK
                   "\",\"exp_month\":12,\"exp_year\":2030,\"cvc\":\"123\"},"
                   "\"shipping_method\":\"standard\"}",
                   h, &r) != 0) {
            l->n_errors++;
            continue;
        }
        const char *id = r.status == 201 ? th_jstr(r.json, "id") : NULL;
        pthread_mutex_lock(&l->mu);
        if (id)
            snprintf(l->ids[l->n_acked++], 32, "%s", id);
        else
            l->n_errors++;
        pthread_mutex_unlock(&l->mu);
        th_resp_free(&r);
    }
    return NULL;
}

static int acked(struct loader *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->n_acked;
    pthread_mutex_unlock(&l->mu);
    return n;
}

static void make_product(struct th_server *s, const char *admin, char id[32])
{
    struct th_resp r;
    char sku[48];
    snprintf(sku, sizeof sku, "BACKUP-%d", (int)getpid());
    assert_int_equal(th_call(s, "POST", "/api/v1/products", admin, &r,
                             "{\"sku\":\"%s\",\"name\":\"Backup thing\",\"description\":\"d\","
                             "\"category\":\"things\",\"price\":{\"amount\":1299,\"currency\":"
                             "\"USD\"},\"weight_grams\":100}",
                             sku),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(s, "PUT", path, admin, &r, "{\"available\":100000}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static void test_backup_under_load_and_restore(void **state)
{
    (void)state;
    if (pg_backend())
        skip(); /* test_backup_refused_on_postgres covers that mode */
    struct th_server s;
    char *admin = NULL;
    assert_int_equal(th_suite_start(&s, &admin), 0);
    char product[32];
    make_product(&s, admin, product);
    char *token = th_register(&s, "backup-buyer@example.com", "buyer password");
    assert_non_null(token);

    struct loader l = {.s = &s, .token = token, .product = product};
    pthread_mutex_init(&l.mu, NULL);
    l.ids = calloc(MAX_ORDERS, sizeof *l.ids);
    assert_non_null(l.ids);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, loader_main, &l), 0);

    /* Orders flowing: wait for a few acknowledgements (generous deadline, no fixed sleep). */
    time_t deadline = time(NULL) + 90;
    while (acked(&l) < 10 && time(NULL) < deadline)
        sleep_ms(20);
    int before = acked(&l);
    assert_true(before >= 10);

    char root[200], bdir[256], out_dir[256];
    root_of(&s, root, sizeof root);
    snprintf(bdir, sizeof bdir, "%s/backup", root);
    char *out = NULL;
    const char *backup_args[] = {"backup", "--to", bdir, NULL};
    int rc = th_cli(&s, backup_args, &out);
    if (rc != 0)
        fprintf(stderr, "backup: %s\n", out ? out : "");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "backed up"));
    free(out);
    /* The load went on during the backup: orders after it too. */
    deadline = time(NULL) + 90;
    int after = acked(&l);
    while (acked(&l) < after + 3 && time(NULL) < deadline)
        sleep_ms(20);
    atomic_store(&l.stop, true);
    pthread_join(t, NULL);
    assert_true(acked(&l) > before);
    assert_int_equal(th_stop(&s), 0);

    struct stat st;
    assert_int_equal(stat(bdir, &st), 0);
    assert_int_equal(st.st_mode & 077, 0); /* the backup is private to its owner */

    /* Restore into a fresh data dir and serve it. */
    struct th_server r = s;
    r.pid = 0;
    snprintf(r.data_dir, sizeof r.data_dir, "%s/restored", root);
    snprintf(out_dir, sizeof out_dir, "%s", r.data_dir);
    const char *restore_args[] = {"restore", "--from", bdir, NULL};
    rc = th_cli(&r, restore_args, &out);
    if (rc != 0)
        fprintf(stderr, "restore: %s\n", out ? out : "");
    assert_int_equal(rc, 0);
    free(out);
    assert_int_equal(th_restart(&r, base_env, NULL), 0);
    for (int i = 0; i < before; i++) {
        char path[96];
        snprintf(path, sizeof path, "/api/v1/orders/%s", l.ids[i]);
        struct th_resp resp;
        assert_int_equal(th_call(&r, "GET", path, token, &resp, NULL), 0);
        if (resp.status != 200)
            fprintf(stderr, "order %d/%d (%s) acknowledged before the backup: %ld %s\n", i + 1,
                    before, l.ids[i], resp.status, resp.body);
        assert_int_equal(resp.status, 200);
        assert_string_equal(th_jstr(resp.json, "id"), l.ids[i]);
        th_resp_free(&resp);
    }

    /* A data dir that holds a shop is not overwritten without --force, and stays as it is. */
    rc = th_cli(&r, restore_args, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "already holds a shop"));
    free(out);
    struct th_resp resp;
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s", l.ids[0]);
    assert_int_equal(th_call(&r, "GET", path, token, &resp, NULL), 0);
    assert_int_equal(resp.status, 200);
    th_resp_free(&resp);
    assert_int_equal(th_stop(&r), 0);

    /* A damaged backup is refused before anything is written. */
    char victim[400], fresh[256];
    snprintf(victim, sizeof victim, "%s/orders_0.db", bdir);
    FILE *f = fopen(victim, "r+");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    assert_int_equal(fwrite("garbage, not SQLite", 1, 19, f), 19);
    assert_int_equal(fclose(f), 0);
    snprintf(fresh, sizeof fresh, "%s/never", root);
    struct th_server r2 = r;
    snprintf(r2.data_dir, sizeof r2.data_dir, "%s", fresh);
    rc = th_cli(&r2, restore_args, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "damaged"));
    free(out);
    assert_int_not_equal(stat(fresh, &st), 0); /* nothing was created */

    free(l.ids);
    pthread_mutex_destroy(&l.mu);
    free(token);
    free(admin);
    th_cleanup(&s);
}

/* Usage errors: exit 2 with the reason, nothing written. */
static void test_backup_usage(void **state)
{
    (void)state;
    struct th_server s;
    assert_int_equal(th_start(&s, base_env, NULL), 0);
    assert_int_equal(th_stop(&s), 0);
    char *out = NULL;
    const char *no_dir[] = {"backup", NULL};
    assert_int_equal(th_cli(&s, no_dir, &out), 2);
    assert_non_null(strstr(out, "--to DIR is required"));
    free(out);
    const char *bad_flag[] = {"restore", "--from", "/nonexistent", "--nope", NULL};
    assert_int_equal(th_cli(&s, bad_flag, &out), 2);
    assert_non_null(strstr(out, "unknown argument '--nope'"));
    free(out);
    const char *help[] = {"restore", "--help", NULL};
    assert_int_equal(th_cli(&s, help, &out), 0);
    assert_non_null(strstr(out, "usage: emporium restore --from DIR"));
    free(out);
    if (!pg_backend()) {
        /* Not a backup: refused, the data dir untouched. */
        char root[200], notbackup[256];
        root_of(&s, root, sizeof root);
        snprintf(notbackup, sizeof notbackup, "%s", root);
        const char *args[] = {"restore", "--from", notbackup, "--force", NULL};
        assert_int_equal(th_cli(&s, args, &out), 1);
        assert_non_null(strstr(out, "is not a backup"));
        free(out);
        assert_int_equal(th_restart(&s, base_env, NULL), 0);
        struct th_resp r;
        assert_int_equal(th_req(&s, "GET", "/ready", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
        assert_int_equal(th_stop(&s), 0);
    }
    th_cleanup(&s);
}

static void test_backup_refused_on_postgres(void **state)
{
    (void)state;
    if (!pg_backend())
        skip();
    struct th_server s;
    assert_int_equal(th_start(&s, base_env, NULL), 0);
    char root[200], bdir[256];
    root_of(&s, root, sizeof root);
    snprintf(bdir, sizeof bdir, "%s/backup", root);
    char *out = NULL;
    const char *args[] = {"backup", "--to", bdir, NULL};
    assert_int_equal(th_cli(&s, args, &out), 2);
    assert_non_null(strstr(out, "pg_dump"));
    free(out);
    struct stat st;
    assert_int_not_equal(stat(bdir, &st), 0);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_under_load_and_restore),
        cmocka_unit_test(test_backup_usage),
        cmocka_unit_test(test_backup_refused_on_postgres),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
