/* SPDX-License-Identifier: MIT */
/* test_upgrade.c — the upgrade and rollback drill (issue 17): a shop of two `serve` processes
 * on one PostgreSQL database behind nginx, under a steady mixed load, is upgraded one process
 * at a time from the previous build to this one — the new build applies its migrations (the
 * previous build recorded in scripts/ops-prev.sh lacks orders migration 3 and schema_compat)
 * while the other process still runs the previous build on the same database — and then
 * rolled back the same way. Expand-only migrations are what make both steps possible.
 *
 * Asserts 0 failed requests through the gateway, and every acknowledged order readable (and
 * paid) through the previous build and through this one, at every stage: mixed, upgraded,
 * rolled back. `migrate --plan` of this build shows the migrations before the upgrade and
 * "up to date" after it.
 *
 * Needs the previous build: EMP_UPGRADE_PREV_BIN (scripts/ops-prev.sh builds it from the
 * recorded commit in a git worktree; make test and make chaos call it). Without it, or on
 * SQLite (one process per data directory), the program says why and skips (77). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ops_load.h"
#include "ops_nginx.h"

static struct ops_load load;
static const char *prev_bin;

/* The previous build does not know EMPORIUM_DRAIN_DELAY_SECONDS (and refuses unknown
 * settings): it gets none; both are taken out of the gateway before SIGTERM anyway. */
static const char *const env_prev[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_DRAIN_SECONDS=30",
                                       NULL};
static const char *const env_new[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_DRAIN_SECONDS=30",
                                      "EMPORIUM_DRAIN_DELAY_SECONDS=1", OPS_FRAUD_ENV, NULL};

static void group_of(struct ops_group *g, struct th_server *inst, int n, int left_out)
{
    memset(g, 0, sizeof *g);
    g->name = "shop";
    g->n = n;
    for (int i = 0; i < n; i++) {
        g->port[i] = inst[i].port;
        g->weight[i] = i == left_out ? 0 : 1;
    }
}

/* Replaces instance i by `bin` (NULL: this build) the way a deploy tool does. */
static void replace(struct ops_gateway *gw, struct th_server *inst, int n, int i, const char *bin,
                    const char *const *env)
{
    struct ops_group grp;
    group_of(&grp, inst, n, i);
    assert_int_equal(ops_gateway_reload(gw, &grp, 1, 0, 0), 0);
    assert_int_equal(th_stop(&inst[i]), 0);
    th_use_binary(bin);
    int rc = th_restart(&inst[i], env, NULL);
    th_use_binary(NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(ops_wait_ready(&inst[i], 200, 60), 200);
    group_of(&grp, inst, n, -1);
    assert_int_equal(ops_gateway_reload(gw, &grp, 1, 0, 0), 0);
    assert_true(ops_load_wait_acked(&load, ops_load_acked(&load) + 2, 120));
}

static int check_all(struct th_server *inst, int n, bool deep, const char *stage)
{
    int worst = 0;
    char why[300];
    for (int i = 0; i < n; i++) {
        int bad = ops_check_acks(&load, &inst[i], deep, why, sizeof why);
        if (bad)
            fprintf(stderr, "upgrade: %s: instance %d: %d orders wrong, first: %s\n", stage, i, bad,
                    why);
        worst = bad > worst ? bad : worst;
    }
    return worst;
}

static void test_upgrade_and_rollback(void **state)
{
    (void)state;
    enum { N = 2 };
    struct th_server inst[N];
    struct ops_shop shop;
    struct ops_group grp;
    struct ops_gateway gw;
    char *out = NULL;
    const char *plan[] = {"migrate", "--plan", NULL};

    th_use_binary(prev_bin); /* the shop as it runs today: the previous build */
    assert_int_equal(th_start(&inst[0], env_prev, NULL), 0);
    inst[1] = inst[0];
    inst[1].pid = 0;
    assert_int_equal(th_restart(&inst[1], env_prev, NULL), 0);
    th_use_binary(NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(ops_wait_ready(&inst[i], 200, 60), 200);
    /* What the upgrade will run, from this build, applying nothing. */
    assert_int_equal(th_cli(&inst[0], plan, &out), 0);
    fprintf(stderr, "upgrade: plan before the upgrade:\n%s", out);
    assert_non_null(strstr(out, "to apply"));
    free(out);

    assert_int_equal(ops_shop_setup(&shop, &inst[0], 6), 0);
    group_of(&grp, inst, N, -1);
    assert_int_equal(ops_gateway_start(&gw, &grp, 1, 0, 0), 0);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "upgrade-%d", (int)getpid());
    ops_load_init(&load, &shop, &gw.front, 6, prefix, false);
    assert_int_equal(ops_load_start(&load), 0);
    assert_true(ops_load_wait_acked(&load, 5, 120));

    int lost = 0;
    long t0 = ops_load_total(&load);
    atomic_store(&load.worst_ms, 0);
    replace(&gw, inst, N, 0, NULL, env_new); /* now one of each, on the migrated schema */
    int bad = check_all(inst, N, false, "mixed");
    lost = bad > lost ? bad : lost;
    replace(&gw, inst, N, 1, NULL, env_new);
    long upgraded = ops_load_total(&load) - t0, worst_up = atomic_load(&load.worst_ms);
    assert_int_equal(th_cli(&inst[0], plan, &out), 0);
    assert_null(strstr(out, "to apply"));
    free(out);
    bad = check_all(inst, 1, true, "upgraded"); /* events and payments, through this build */
    lost = bad > lost ? bad : lost;

    long t1 = ops_load_total(&load);
    atomic_store(&load.worst_ms, 0);
    replace(&gw, inst, N, 0, prev_bin, env_prev);
    replace(&gw, inst, N, 1, prev_bin, env_prev);
    long rolled = ops_load_total(&load) - t1, worst_back = atomic_load(&load.worst_ms);
    ops_load_stop(&load);
    bad = check_all(inst, N, false, "rolled back"); /* the previous build reads them all */
    lost = bad > lost ? bad : lost;
    long sold = 0;
    char why[300];
    bool stock_ok = ops_check_stock(&shop, &inst[0], 90, &sold, why, sizeof why);
    fprintf(stderr,
            "upgrade: requests during the upgrade %ld (worst latency %ld ms), during the rollback "
            "%ld (worst latency %ld ms), failed %ld, orders acknowledged %ld, lost %d, stock %s "
            "(%s)\n",
            upgraded, worst_up, rolled, worst_back, ops_load_failed(&load), ops_load_acked(&load),
            lost, stock_ok ? "adds up" : "WRONG", why);
    ops_load_budget(&load, "upgrade-rollback");
    assert_int_equal(ops_load_failed(&load), 0);
    assert_int_equal(lost, 0);
    assert_true(stock_ok);

    ops_gateway_stop(&gw);
    ops_shop_free(&shop);
    int bad_exit = 0;
    for (int i = N - 1; i >= 0; i--)
        bad_exit += th_stop(&inst[i]) != 0;
    assert_int_equal(bad_exit, 0);
    th_cleanup(&inst[0]);
}

int main(void)
{
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    prev_bin = getenv("EMP_UPGRADE_PREV_BIN");
    if (!backend || strcmp(backend, "postgres") != 0) {
        printf("SKIPPED: several serve processes share one database only on PostgreSQL "
               "(docs/operations.md, \"More than one process\")\n");
        return 77;
    }
    if (!prev_bin || !*prev_bin || access(prev_bin, X_OK) != 0) {
        printf("SKIPPED: no previous build (EMP_UPGRADE_PREV_BIN; scripts/ops-prev.sh builds it, "
               "and says why when it cannot)\n");
        return 77;
    }
    if (!ops_nginx_available()) {
        printf("SKIPPED: no nginx (scripts/bootstrap.sh test installs it)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_and_rollback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
