/* SPDX-License-Identifier: MIT */
/* test_user_unit.c — the user library API (svc/user.h) in-process: user_get_many() answers
 * every asked account in the order asked, an unknown id as an empty account, a repeated id
 * each time, and refuses more than USER_GET_MANY_MAX. Runs on SQLite (temp data dir) or
 * PostgreSQL (EMPORIUM_TEST_BACKEND=postgres, a fresh database prefix under
 * EMPORIUM_TEST_PG_URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/svc/user.h"
#include "harness.h"
#include "unit_app.h"

static struct th_unit_app ua;
static struct app *app;

static int setup(void **state)
{
    (void)state;
    if (th_unit_app_config(&ua, "uu", "user") < 0)
        return -1;
    if (th_unit_app_open(&ua) < 0)
        return -1;
    app = ua.app;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return th_unit_app_close(&ua);
}

static void account(const char *email, const char *name, struct user *out)
{
    struct user_new in = {.email = email, .password = "correct horse battery", .name = name};
    struct user_problem why = {0};
    assert_int_equal(user_create(app, &in, out, NULL, &why), 0);
}

static void test_get_many(void **state)
{
    (void)state;
    struct user a, b;
    account("ada@example.com", "Ada", &a);
    account("bob@example.com", "Bob <b>", &b);
    int64_t ids[] = {b.id, a.id + b.id + 7, a.id, b.id};
    struct user out[4];
    memset(out, 0xff, sizeof out);
    assert_int_equal(user_get_many(app, ids, 4, out), 0);
    assert_int_equal(out[0].id, b.id);
    assert_string_equal(out[0].email, "bob@example.com");
    assert_string_equal(out[0].name, "Bob <b>");
    assert_int_equal(out[1].id, 0); /* no such account */
    assert_string_equal(out[1].email, "");
    assert_int_equal(out[2].id, a.id);
    assert_string_equal(out[2].email, "ada@example.com");
    assert_string_equal(out[2].name, "Ada");
    assert_int_equal(out[3].id, b.id);
    assert_string_equal(out[3].email, "bob@example.com");
    /* The same account as user_get() sees it. */
    struct user one;
    assert_int_equal(user_get(app, a.id, &one), 0);
    assert_int_equal(one.created_at, out[2].created_at);
    assert_int_equal(one.role, out[2].role);
}

static void test_get_many_bounds(void **state)
{
    (void)state;
    struct user out[1];
    assert_int_equal(user_get_many(app, NULL, 0, out), 0);
    assert_int_equal(user_get_many(app, NULL, -1, out), ERR_INVALID);
    int64_t *many = calloc(USER_GET_MANY_MAX + 1, sizeof *many);
    assert_non_null(many);
    assert_int_equal(user_get_many(app, many, USER_GET_MANY_MAX + 1, NULL), ERR_INVALID);
    free(many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_many),
        cmocka_unit_test(test_get_many_bounds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
