/* SPDX-License-Identifier: MIT */
/* test_bluegreen.c — blue-green and canary in one machine's terms (issue 17): two groups of
 * `serve` processes (blue = stable, green = new; one each, two each in `make chaos`) on one
 * PostgreSQL database behind nginx, under a steady mixed load, and the gateway config flipped
 * with `nginx -s reload` through the seed's canary plan, 10 -> 50 -> 100 % of the standard
 * traffic to green, with every `user-type: premium` request pinned to blue; then the
 * blue-green switches: everything back to blue in one reload (abort / rollback), and
 * everything to green in one reload.
 *
 * Every config has a generation, written into its access-log format: the requests served
 * under each generation are counted from nginx's own log, by group and tier. Asserts: 0
 * failed requests; premium always on blue; at 100 % every standard request on green, at 0 %
 * none; at 10 % and 50 % both groups serve a share within wide bounds (binomial, at least 200
 * requests: the bounds are 6+ standard deviations away); every order readable through both
 * groups. The shipped deploy/nginx/canary.conf must pass `nginx -t`.
 *
 * PostgreSQL only (several processes on one database); on SQLite the program skips (77). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ops_load.h"
#include "ops_nginx.h"

static struct ops_load load;

static const char *const env[] = {"EMPORIUM_RATE_LIMITS=off", OPS_FRAUD_ENV, NULL};

struct split {
    long premium_blue, premium_green, std_blue, std_green;
};

/* Counts the logged requests of one generation by group (upstream port) and tier. */
static void count(struct ops_gateway *gw, int gen, const struct ops_group *blue,
                  const struct ops_group *green, struct split *out)
{
    memset(out, 0, sizeof *out);
    char path[200], line[1024], tag[24];
    snprintf(path, sizeof path, "%s/access.log", gw->prefix);
    snprintf(tag, sizeof tag, "gen=%d ", gen);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, tag, strlen(tag)) != 0 || strstr(line, "/__generation"))
            continue;
        const char *up = strstr(line, "upstream=127.0.0.1:");
        if (!up)
            continue;
        int port = atoi(up + strlen("upstream=127.0.0.1:"));
        bool premium = strstr(line, "tier=premium") != NULL;
        int grp = -1;
        for (int i = 0; i < blue->n; i++)
            grp = blue->port[i] == port ? 0 : grp;
        for (int i = 0; i < green->n; i++)
            grp = green->port[i] == port ? 1 : grp;
        if (grp < 0)
            continue;
        long *c = premium ? (grp ? &out->premium_green : &out->premium_blue)
                          : (grp ? &out->std_green : &out->std_blue);
        (*c)++;
    }
    fclose(f);
}

/* Flips to `percent` and waits until that generation has served `want` standard requests. */
static void flip(struct ops_gateway *gw, struct ops_group *groups, int percent, long want,
                 struct split *sp)
{
    assert_int_equal(ops_gateway_reload(gw, groups, 2, percent, 0), 0);
    for (int i = 0; i < 1200; i++) { /* 120 s at most: a condition, polled */
        count(gw, gw->generation, &groups[0], &groups[1], sp);
        if (sp->std_blue + sp->std_green >= want && sp->premium_blue + sp->premium_green >= 20)
            break;
        usleep(100 * 1000);
    }
    fprintf(stderr,
            "canary: generation %d, %d%% to green: standard blue %ld green %ld, premium blue %ld "
            "green %ld\n",
            gw->generation, percent, sp->std_blue, sp->std_green, sp->premium_blue,
            sp->premium_green);
    assert_true(sp->std_blue + sp->std_green >= want);
    assert_int_equal(sp->premium_green, 0); /* premium pinned to blue */
    assert_true(sp->premium_blue >= 20);
}

static void nginx_t_shipped(void)
{
    char prefix[] = "/tmp/emp-canary-t-XXXXXX", cmd[600];
    assert_non_null(mkdtemp(prefix));
    snprintf(
        cmd, sizeof cmd,
        "mkdir -p %s/logs %s/temp && /usr/sbin/nginx -t -q -p %s -c %s/deploy/nginx/canary.conf "
        "-e %s/logs/error.log; rc=$?; rm -rf %s; exit $rc",
        prefix, prefix, prefix, EMP_SOURCE_DIR, prefix, prefix);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_bluegreen_canary(void **state)
{
    (void)state;
    nginx_t_shipped();
    bool full = getenv("EMP_CHAOS_FULL") && *getenv("EMP_CHAOS_FULL") == '1';
    int per = full ? 2 : 1;
    long want = full ? 600 : 200;
    struct th_server inst[4];
    struct ops_group groups[2] = {{.name = "blue"}, {.name = "green"}};
    assert_int_equal(th_start(&inst[0], env, NULL), 0);
    for (int i = 1; i < 2 * per; i++) {
        inst[i] = inst[0];
        inst[i].pid = 0;
        assert_int_equal(th_restart(&inst[i], env, NULL), 0);
    }
    for (int i = 0; i < 2 * per; i++) {
        assert_int_equal(ops_wait_ready(&inst[i], 200, 60), 200);
        struct ops_group *g = &groups[i < per ? 0 : 1];
        g->port[g->n] = inst[i].port;
        g->weight[g->n++] = 1;
    }
    struct ops_shop shop;
    assert_int_equal(ops_shop_setup(&shop, &inst[0], 6), 0);
    struct ops_gateway gw;
    assert_int_equal(ops_gateway_start(&gw, groups, 2, 0, 0), 0);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "canary-%d", (int)getpid());
    ops_load_init(&load, &shop, &gw.front, 6, prefix, false);
    load.premium = 2; /* 2 of the 6 shoppers are premium */
    assert_int_equal(ops_load_start(&load), 0);
    assert_true(ops_load_wait_acked(&load, 3, 120));

    struct split sp;
    long t0 = ops_load_total(&load);
    static const int plan[] = {10, 50, 100, 0, 100};
    for (size_t k = 0; k < sizeof plan / sizeof plan[0]; k++) {
        flip(&gw, groups, plan[k], want, &sp);
        long std = sp.std_blue + sp.std_green;
        if (plan[k] == 100)
            assert_int_equal(sp.std_blue, 0);
        else if (plan[k] == 0)
            assert_int_equal(sp.std_green, 0);
        else if (plan[k] == 10) /* mean 10 %, sd 2.1 % at n = 200 */
            assert_true(sp.std_green * 100 >= 1 * std && sp.std_green * 100 <= 30 * std);
        else /* 50 %: sd 3.5 % at n = 200 */
            assert_true(sp.std_green * 100 >= 25 * std && sp.std_green * 100 <= 75 * std);
    }
    long served = ops_load_total(&load) - t0, worst = atomic_load(&load.worst_ms);
    ops_load_stop(&load);

    int lost = 0;
    char why[300];
    int bad = ops_check_acks(&load, &inst[0], true, why, sizeof why);
    lost = bad > lost ? bad : lost;
    bad = ops_check_acks(&load, &inst[per], false, why, sizeof why); /* and through green */
    lost = bad > lost ? bad : lost;
    fprintf(stderr,
            "bluegreen/canary: flips %zu (10, 50, 100 %%, switch to blue, switch to green), "
            "requests served during the flips %ld, failed %ld, worst latency %ld ms, orders "
            "acknowledged %ld, lost %d%s%s\n",
            sizeof plan / sizeof plan[0], served, ops_load_failed(&load), worst,
            ops_load_acked(&load), lost, lost ? ", first: " : "", lost ? why : "");
    ops_load_budget(&load, "bluegreen-canary");
    assert_int_equal(ops_load_failed(&load), 0);
    assert_int_equal(lost, 0);

    ops_gateway_stop(&gw);
    ops_shop_free(&shop);
    int bad_exit = 0;
    for (int i = 2 * per - 1; i >= 0; i--)
        bad_exit += th_stop(&inst[i]) != 0;
    assert_int_equal(bad_exit, 0);
    th_cleanup(&inst[0]);
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
        cmocka_unit_test(test_bluegreen_canary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
