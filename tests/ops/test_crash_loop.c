/* SPDX-License-Identifier: MIT */
/* test_crash_loop.c — the crash loop drill (issue 17): rounds of `kill -9` of the serving
 * process in the middle of a mixed load (browse, cart, checkout), each at a condition (K more
 * orders acknowledged since the round began), never after a clock. After every restart:
 * every order acknowledged so far is readable by its owner and paid, its order.placed and
 * order.paid events were published by the outbox relay and its payment captured once; stock
 * adds up (initial = available + units in paid orders) with nothing reserved and no order left
 * pending once the recovery sweep has compensated what the crash interrupted.
 *
 * EMP_CHAOS_ROUNDS (5; `make chaos` 20) and EMP_CHAOS_ACKS (4 per round). Runs on SQLite and,
 * with EMPORIUM_TEST_BACKEND=postgres, on PostgreSQL through PgBouncer. Prints rounds, orders
 * acknowledged and lost (the test fails unless lost is 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ops_load.h"

static struct ops_load load; /* big: static */

static int env_int(const char *name, int dflt, int lo, int hi)
{
    const char *v = getenv(name);
    int n = v && *v ? atoi(v) : dflt;
    return n < lo ? lo : n > hi ? hi : n;
}

/* A checkout interrupted by the kill stays pending until the sweep fails it and gives its
 * stock back: a short timeout and sweep period let the drill see that within its deadline.
 * The payment latency widens the window in which a kill lands mid-checkout. */
static const char *const env[] = {"EMPORIUM_RATE_LIMITS=off",
                                  "EMPORIUM_PAYMENT_LATENCY_MS=5",
                                  "EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS=3",
                                  "EMPORIUM_ORDER_SWEEP_SECONDS=1",
                                  "EMPORIUM_RESERVATION_TTL_SECONDS=60",
                                  OPS_FRAUD_ENV,
                                  NULL};

static void test_crash_loop(void **state)
{
    (void)state;
    int rounds = env_int("EMP_CHAOS_ROUNDS", 5, 1, 200);
    int per_round = env_int("EMP_CHAOS_ACKS", 4, 1, 100);
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    backend = backend && *backend ? backend : "sqlite";
    struct th_server s;
    struct ops_shop shop;
    assert_int_equal(th_start(&s, env, NULL), 0);
    assert_int_equal(ops_shop_setup(&shop, &s, 6), 0);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "crash-%d", (int)getpid());
    ops_load_init(&load, &shop, &s, 6, prefix, true);
    long sold = 0;
    int lost = 0;
    for (int round = 1; round <= rounds; round++) {
        long target = ops_load_acked(&load) + per_round;
        assert_int_equal(ops_load_start(&load), 0);
        /* The kill comes at a condition: per_round more orders acknowledged (120 s at most,
         * for sanitizer builds on a loaded machine). */
        bool reached = ops_load_wait_acked(&load, target, 120);
        th_kill(&s);
        ops_load_stop(&load);
        if (!reached)
            fprintf(stderr, "crash loop: round %d: only %ld of %ld orders acknowledged in 120 s\n",
                    round, ops_load_acked(&load), target);
        assert_true(reached);
        assert_int_equal(th_restart(&s, env, NULL), 0);
        char why[300];
        int bad = ops_check_acks(&load, &s, true, why, sizeof why);
        if (bad)
            fprintf(stderr, "crash loop: round %d: %d acknowledged orders wrong, first: %s\n",
                    round, bad, why);
        lost += bad;
        bool stock_ok = ops_check_stock(&shop, &s, 90, &sold, why, sizeof why);
        fprintf(stderr, "crash loop (%s): round %d/%d: acknowledged %ld, lost %d, stock %s (%s)\n",
                backend, round, rounds, ops_load_acked(&load), lost, stock_ok ? "adds up" : "WRONG",
                why);
        assert_int_equal(bad, 0);
        assert_true(stock_ok);
        assert_true(sold >= ops_load_acked(&load));
    }
    fprintf(stderr,
            "crash loop (%s): rounds %d, orders acknowledged %ld, lost %d, units sold %ld, "
            "requests %ld, failed while alive %ld\n",
            backend, rounds, ops_load_acked(&load), lost, sold, ops_load_total(&load),
            ops_load_failed(&load));
    ops_load_budget(&load, "crash-loop");
    /* While the process was up, nothing failed: kill -9 only cuts requests off (transport
     * errors, not counted); every answer the shop gave was the expected one. */
    assert_int_equal(ops_load_failed(&load), 0);
    ops_shop_free(&shop);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
