/* SPDX-License-Identifier: MIT */
/* test_rolling_restart.c — the rolling restart drill (issue 17): 2 (`make chaos`: 3) `emporium
 * serve` processes on one PostgreSQL database (through PgBouncer) behind nginx, a steady
 * mixed load through nginx, and every instance restarted one at a time the way a deploy tool
 * does it:
 *
 *   1. take the instance out of the gateway (config rewritten, `nginx -s reload`, the new
 *      generation seen answering: a condition);
 *   2. SIGTERM: /ready answers 503 while it still serves (EMPORIUM_DRAIN_DELAY_SECONDS), the
 *      requests in flight finish, then the listener closes and the process exits 0;
 *   3. start the new process; it goes back into the gateway only once its /ready is 200;
 *   4. the load makes progress through the new config before the next instance goes.
 *
 * Asserts 0 failed requests (every answer the expected one: no 502, no transport error) and 0
 * lost orders (every acknowledged order readable and paid through every new instance), and
 * prints the requests served during the roll and the worst latency. The load opens a new
 * connection per request, and a checkout POST carries an Idempotency-Key, which is what
 * lets nginx retry it on another instance after a connection error (ops_nginx.c); a cart POST
 * without one is never retried once sent, so its zero is the drain's merit alone.
 *
 * PostgreSQL only: several processes on one SQLite data directory are not supported
 * (docs/operations.md, "More than one process"); on SQLite the program says so and skips. */
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

static const char *const env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_DRAIN_DELAY_SECONDS=3",
                                  "EMPORIUM_DRAIN_SECONDS=30", OPS_FRAUD_ENV, NULL};

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

static void test_rolling_restart(void **state)
{
    (void)state;
    bool full = getenv("EMP_CHAOS_FULL") && *getenv("EMP_CHAOS_FULL") == '1';
    int n = full ? 3 : 2, rolls = full ? 2 : 1;
    struct th_server inst[3];
    struct ops_shop shop;
    struct ops_group grp;
    struct ops_gateway gw;
    assert_int_equal(th_start(&inst[0], env, NULL), 0);
    for (int i = 1; i < n; i++) { /* the same database, another process */
        inst[i] = inst[0];
        inst[i].pid = 0;
        assert_int_equal(th_restart(&inst[i], env, NULL), 0);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(ops_wait_ready(&inst[i], 200, 60), 200);
    assert_int_equal(ops_shop_setup(&shop, &inst[0], 6), 0);
    group_of(&grp, inst, n, -1);
    assert_int_equal(ops_gateway_start(&gw, &grp, 1, 0, 0), 0);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "roll-%d", (int)getpid());
    ops_load_init(&load, &shop, &gw.front, 6, prefix, false);
    assert_int_equal(ops_load_start(&load), 0);
    assert_true(ops_load_wait_acked(&load, 5, 120)); /* the load runs */

    long total0 = ops_load_total(&load), acked0 = ops_load_acked(&load);
    atomic_store(&load.worst_ms, 0);
    int restarts = 0;
    for (int roll = 0; roll < rolls; roll++) {
        for (int i = 0; i < n; i++) {
            group_of(&grp, inst, n, i);
            assert_int_equal(ops_gateway_reload(&gw, &grp, 1, 0, 0), 0);
            kill(inst[i].pid, SIGTERM);
            /* Readiness turns 503 before the listener closes (it stays open 3 s). */
            long st = ops_wait_ready(&inst[i], 503, 30);
            if (st != 503)
                fprintf(stderr, "rolling restart: instance %d: /ready answered %ld, not 503\n", i,
                        st);
            assert_int_equal(st, 503);
            assert_int_equal(th_stop(&inst[i]), 0); /* drained, exit status 0 */
            assert_int_equal(th_restart(&inst[i], env, NULL), 0);
            assert_int_equal(ops_wait_ready(&inst[i], 200, 60), 200);
            group_of(&grp, inst, n, -1);
            assert_int_equal(ops_gateway_reload(&gw, &grp, 1, 0, 0), 0);
            restarts++;
            /* The shop takes orders through the new config before the next one goes. */
            assert_true(ops_load_wait_acked(&load, ops_load_acked(&load) + 2, 120));
        }
    }
    long served = ops_load_total(&load) - total0, worst = atomic_load(&load.worst_ms);
    long roll_acked = ops_load_acked(&load) - acked0;
    ops_load_stop(&load);

    int lost = 0;
    char why[300] = "";
    for (int i = 0; i < n; i++) { /* every order readable through every new process */
        int bad = ops_check_acks(&load, &inst[i], i == 0, why, sizeof why);
        if (bad)
            fprintf(stderr, "rolling restart: instance %d: %d orders wrong, first: %s\n", i, bad,
                    why);
        lost = bad > lost ? bad : lost;
    }
    long sold = 0;
    bool stock_ok = ops_check_stock(&shop, &inst[0], 90, &sold, why, sizeof why);
    fprintf(stderr,
            "rolling restart: instances %d, restarts %d, requests served during the roll %ld "
            "(orders %ld), failed %ld, worst latency %ld ms, orders acknowledged %ld, lost %d, "
            "stock %s (%s)\n",
            n, restarts, served, roll_acked, ops_load_failed(&load), worst, ops_load_acked(&load),
            lost, stock_ok ? "adds up" : "WRONG", why);
    ops_load_budget(&load, "rolling-restart");
    assert_int_equal(ops_load_failed(&load), 0);
    assert_int_equal(lost, 0);
    assert_true(stock_ok);

    ops_gateway_stop(&gw);
    ops_shop_free(&shop);
    int bad_exit = 0;
    for (int i = n - 1; i >= 0; i--)
        bad_exit += th_stop(&inst[i]) != 0;
    assert_int_equal(bad_exit, 0);
    th_cleanup(&inst[0]); /* the others share its directory and database */
}

int main(void)
{
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    if (!backend || strcmp(backend, "postgres") != 0) {
        printf("SKIPPED: several serve processes share one database only on PostgreSQL "
               "(docs/operations.md, \"More than one process\")\n");
        return 77;
    }
    if (!ops_nginx_available()) {
        printf("SKIPPED: no nginx (scripts/bootstrap.sh test installs it)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rolling_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
