/* SPDX-License-Identifier: MIT */
/* test_ratelimit.c — unit tests of the in-process rate limiter (src/core/ratelimit_mem.c).
 *
 * Time is passed in, so every expectation is exact: a bucket of burst B at rate R allows B
 * takes at one instant, then one more per 1/R seconds. The bound test pushes 100k distinct
 * keys through a 1000-key store and reads the bucket count through the module-internal
 * rl__mem_count(); the thread test checks the shard lock by having 4 threads race for the
 * tokens of one bucket that (practically) never refills. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "emporium/err.h"
#include "emporium/ratelimit.h"

/* Module-internal (defined in ratelimit_mem.c): buckets currently stored. */
unsigned rl__mem_count(const struct ratelimit *rl);

#define RL_EPS 1e-9

static int rl_setup(void **state)
{
    struct ratelimit *rl = ratelimit_mem_new(1000);
    if (!rl)
        return -1;
    *state = rl;
    return 0;
}

static int rl_teardown(void **state)
{
    ratelimit_free(*state);
    return 0;
}

static void test_burst_then_deny(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;

    for (int i = 0; i < 5; i++) {
        assert_int_equal(ratelimit_take(rl, "ip:1", 1.0, 5, 1000, &r), 0);
        assert_true(r.allowed);
        assert_float_equal(r.limit, 5, RL_EPS);
        assert_float_equal(r.remaining, 4 - i, RL_EPS);
        assert_float_equal(r.reset_seconds, i + 1, RL_EPS);
        assert_float_equal(r.retry_after, 0, RL_EPS);
    }
    assert_int_equal(ratelimit_take(rl, "ip:1", 1.0, 5, 1000, &r), 0);
    assert_false(r.allowed);
    assert_float_equal(r.remaining, 0, RL_EPS);
    assert_float_equal(r.reset_seconds, 5, RL_EPS);
    /* Denials cost nothing: still denied, nothing goes negative. */
    assert_int_equal(ratelimit_take(rl, "ip:1", 1.0, 5, 1000, &r), 0);
    assert_false(r.allowed);
    assert_float_equal(r.remaining, 0, RL_EPS);
}

static void test_refill_over_time(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;

    for (int i = 0; i < 3; i++)
        assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 0, &r), 0);
    assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 0, &r), 0);
    assert_false(r.allowed);
    /* 250 ms at 2/s is half a token: still denied. */
    assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 250, &r), 0);
    assert_false(r.allowed);
    assert_float_equal(r.remaining, 0.5, RL_EPS);
    /* 500 ms: one token, taken. */
    assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 500, &r), 0);
    assert_true(r.allowed);
    assert_float_equal(r.remaining, 0, RL_EPS);
    /* A long pause refills to burst, never beyond. */
    assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 100000, &r), 0);
    assert_true(r.allowed);
    assert_float_equal(r.remaining, 2, RL_EPS);
    /* A clock stepping back refills nothing and breaks nothing. */
    assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 50, &r), 0);
    assert_true(r.allowed);
    assert_float_equal(r.remaining, 1, RL_EPS);
}

static void test_retry_after(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;

    /* 1 token per 10 s. */
    assert_int_equal(ratelimit_take(rl, "login", 0.1, 1, 0, &r), 0);
    assert_true(r.allowed);
    assert_int_equal(ratelimit_take(rl, "login", 0.1, 1, 0, &r), 0);
    assert_false(r.allowed);
    assert_float_equal(r.retry_after, 10, RL_EPS);
    assert_int_equal(ratelimit_take(rl, "login", 0.1, 1, 4000, &r), 0);
    assert_false(r.allowed);
    assert_float_equal(r.retry_after, 6, 1e-6);
    assert_float_equal(r.reset_seconds, 6, 1e-6);
    assert_int_equal(ratelimit_take(rl, "login", 0.1, 1, 10000, &r), 0);
    assert_true(r.allowed);
}

static void test_peek_does_not_take(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;

    /* Peeking an unknown key reports a full bucket and stores nothing. */
    assert_int_equal(ratelimit_peek(rl, "p", 1.0, 2, 0, &r), 0);
    assert_true(r.allowed);
    assert_float_equal(r.remaining, 2, RL_EPS);
    assert_int_equal(rl__mem_count(rl), 0);

    assert_int_equal(ratelimit_take(rl, "p", 1.0, 2, 0, &r), 0);
    assert_int_equal(ratelimit_take(rl, "p", 1.0, 2, 0, &r), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ratelimit_peek(rl, "p", 1.0, 2, 0, &r), 0);
        assert_false(r.allowed);
        assert_float_equal(r.retry_after, 1, RL_EPS);
    }
    assert_int_equal(ratelimit_peek(rl, "p", 1.0, 2, 1500, &r), 0);
    assert_true(r.allowed);
    assert_float_equal(r.remaining, 1.5, RL_EPS);
    assert_int_equal(ratelimit_take(rl, "p", 1.0, 2, 1500, &r), 0);
    assert_true(r.allowed);
    assert_float_equal(r.remaining, 0.5, RL_EPS);
}

static void test_independent_keys(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;

    assert_int_equal(ratelimit_take(rl, "user:a", 1.0, 1, 0, &r), 0);
    assert_true(r.allowed);
    assert_int_equal(ratelimit_take(rl, "user:a", 1.0, 1, 0, &r), 0);
    assert_false(r.allowed);
    assert_int_equal(ratelimit_take(rl, "user:b", 1.0, 1, 0, &r), 0);
    assert_true(r.allowed);
    /* A key that is a prefix of another is another key. */
    assert_int_equal(ratelimit_take(rl, "user:", 1.0, 1, 0, &r), 0);
    assert_true(r.allowed);
    assert_int_equal(rl__mem_count(rl), 3);
}

static void test_long_keys(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;
    char a[600], b[600];

    /* Same 500-byte prefix, different ends: folded to bounded size, still two buckets. */
    memset(a, 'x', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[sizeof b - 2] = 'y';
    assert_int_equal(ratelimit_take(rl, a, 1.0, 1, 0, &r), 0);
    assert_true(r.allowed);
    assert_int_equal(ratelimit_take(rl, a, 1.0, 1, 0, &r), 0);
    assert_false(r.allowed);
    assert_int_equal(ratelimit_take(rl, b, 1.0, 1, 0, &r), 0);
    assert_true(r.allowed);
}

static void test_invalid_args(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;

    assert_int_equal(ratelimit_take(rl, "k", 0, 5, 0, &r), ERR_INVALID);
    assert_int_equal(ratelimit_take(rl, "k", -1, 5, 0, &r), ERR_INVALID);
    assert_int_equal(ratelimit_take(rl, "k", 1, 0, 0, &r), ERR_INVALID);
    assert_int_equal(ratelimit_take(rl, "k", NAN, 5, 0, &r), ERR_INVALID);
    assert_int_equal(ratelimit_take(rl, "k", 1, INFINITY, 0, &r), ERR_INVALID);
    assert_int_equal(ratelimit_peek(rl, NULL, 1, 5, 0, &r), ERR_INVALID);
    ratelimit_free(NULL);
}

static void test_eviction_bounds_memory(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;
    char key[32];

    /* The hot key is exhausted and touched often: LRU eviction must not forget it, since
     * forgetting an exhausted bucket would hand its owner a fresh burst. */
    assert_int_equal(ratelimit_take(rl, "hot", 1e-3, 1, 0, &r), 0);
    assert_true(r.allowed);
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "flood:%d", i);
        assert_int_equal(ratelimit_take(rl, key, 1e-3, 10, 0, &r), 0);
        assert_true(r.allowed);
        if (i % 10 == 0) {
            assert_int_equal(ratelimit_take(rl, "hot", 1e-3, 1, 0, &r), 0);
            assert_false(r.allowed);
        }
        if (i % 10000 == 0)
            assert_true(rl__mem_count(rl) <= 1000);
    }
    assert_true(rl__mem_count(rl) <= 1000);
    assert_true(rl__mem_count(rl) >= 900); /* the budget is used, not wasted */
}

static void test_eviction_prefers_full_buckets(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;
    char key[32];

    /* 999 buckets that take one token at t=0, refilled (full again) by t=100 ms, then one
     * exhausted bucket (last, so that shards overflowing at t=0, when nothing is full yet,
     * evict older ones by LRU); then 5000 newer keys arrive. Full buckets are dropped first,
     * so the exhausted one stays although it soon is older than everything else. */
    for (int i = 0; i < 999; i++) {
        snprintf(key, sizeof key, "a:%d", i);
        assert_int_equal(ratelimit_take(rl, key, 10.0, 5, 0, &r), 0);
    }
    assert_int_equal(ratelimit_take(rl, "old-exhausted", 1e-6, 1, 0, &r), 0);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "b:%d", i);
        assert_int_equal(ratelimit_take(rl, key, 10.0, 5, 1000 + i, &r), 0);
    }
    assert_true(rl__mem_count(rl) <= 1000);
    assert_int_equal(ratelimit_peek(rl, "old-exhausted", 1e-6, 1, 6000, &r), 0);
    /* Kept: b:* buckets refill within 100 ms, so they are always the cheaper victims. */
    assert_false(r.allowed);
}

static void test_tiny_store(void **state)
{
    struct ratelimit *rl = ratelimit_mem_new(1);
    struct rl_result r;
    (void)state;

    assert_non_null(rl);
    assert_int_equal(ratelimit_take(rl, "a", 1, 1, 0, &r), 0);
    assert_int_equal(ratelimit_take(rl, "b", 1, 1, 0, &r), 0);
    assert_int_equal(rl__mem_count(rl), 1);
    ratelimit_free(rl);

    rl = ratelimit_mem_new(0); /* 0: the default budget */
    assert_non_null(rl);
    assert_int_equal(ratelimit_take(rl, "a", 1, 1, 0, &r), 0);
    ratelimit_free(rl);
}

enum { RL_THREADS = 4, RL_TRIES = 20000, RL_BURST = 1000 };

struct rl_worker {
    struct ratelimit *rl;
    int allowed;
    int failed;
};

static void *rl_hammer(void *arg)
{
    struct rl_worker *w = arg;
    struct rl_result r;

    for (int i = 0; i < RL_TRIES; i++) {
        if (ratelimit_take(w->rl, "shared", 1e-12, RL_BURST, i, &r) != 0)
            w->failed++;
        else if (r.allowed)
            w->allowed++;
    }
    return NULL;
}

static void test_threads_take_exactly_burst(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_worker w[RL_THREADS];
    pthread_t t[RL_THREADS];
    int total = 0;

    for (int i = 0; i < RL_THREADS; i++) {
        w[i] = (struct rl_worker){.rl = rl};
        assert_int_equal(pthread_create(&t[i], NULL, rl_hammer, &w[i]), 0);
    }
    for (int i = 0; i < RL_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failed, 0);
        total += w[i].allowed;
    }
    assert_int_equal(total, RL_BURST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_burst_then_deny, rl_setup, rl_teardown),
        cmocka_unit_test_setup_teardown(test_refill_over_time, rl_setup, rl_teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, rl_setup, rl_teardown),
        cmocka_unit_test_setup_teardown(test_peek_does_not_take, rl_setup, rl_teardown),
        cmocka_unit_test_setup_teardown(test_independent_keys, rl_setup, rl_teardown),
        cmocka_unit_test_setup_teardown(test_long_keys, rl_setup, rl_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_args, rl_setup, rl_teardown),
        cmocka_unit_test_setup_teardown(test_eviction_bounds_memory, rl_setup, rl_teardown),
        cmocka_unit_test_setup_teardown(test_eviction_prefers_full_buckets, rl_setup, rl_teardown),
        cmocka_unit_test(test_tiny_store),
        cmocka_unit_test_setup_teardown(test_threads_take_exactly_burst, rl_setup, rl_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
