/* SPDX-License-Identifier: MIT */
/* test_bus.c — the consumer runner on the durable log (bus_log.c + consumers.c), through the
 * library API: every produced event reaches its handler, a handler that fails makes its event
 * come again instead of being skipped, and once the group is idle its offsets are committed
 * (lag 0). Offsets are committed per batch of applied messages, so these are the guarantees
 * that batching must keep. SQLite, and PostgreSQL when EMPORIUM_TEST_BACKEND=postgres. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "emporium/bus.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "harness.h"

#define N_EVENTS 1500
#define TOPIC "test-events"

static atomic_int seen[N_EVENTS];
static atomic_int failures_left[N_EVENTS];

static int on_event(void *ctx, const struct bus_event *ev)
{
    (void)ctx;
    int n = atoi(ev->id + 2); /* "e-<n>" */
    if (n < 0 || n >= N_EVENTS)
        return 0;
    /* Quotes and backslashes in a value come back byte for byte. */
    json_t *str = json_object_get(ev->data, "s");
    if (str && strcmp(json_string_value(str), "q\"b\\s") != 0)
        return 0;
    if (atomic_load(&failures_left[n]) > 0) {
        atomic_fetch_sub(&failures_left[n], 1);
        return ERR_UNAVAILABLE; /* e.g. the consumer's database is down: retried later */
    }
    atomic_fetch_add(&seen[n], 1);
    return 0;
}

static void produce_all(struct bus *b)
{
    enum { CHUNK = 100 };
    static char values[CHUNK][256], ids[CHUNK][24], keys[CHUNK][24];
    struct bus_msg m[CHUNK];
    for (int base = 0; base < N_EVENTS; base += CHUNK) {
        for (int i = 0; i < CHUNK; i++) {
            int n = base + i;
            snprintf(ids[i], sizeof ids[i], "e-%d", n);
            snprintf(keys[i], sizeof keys[i], "k%d", n % 37);
            int len = snprintf(values[i], sizeof values[i],
                               "{\"specversion\":\"1.0\",\"id\":\"%s\",\"type\":\"test.happened\","
                               "\"source\":\"/test\",\"time\":\"2026-12-06T10:00:00Z\","
                               "\"datacontenttype\":\"application/json\","
                               "\"data\":{\"n\":%d,\"s\":\"q\\\"b\\\\s\"}}",
                               ids[i], n);
            m[i] = (struct bus_msg){.topic = TOPIC,
                                    .id = ids[i],
                                    .key = keys[i],
                                    .key_len = strlen(keys[i]),
                                    .value = values[i],
                                    .len = (size_t)len};
        }
        assert_int_equal(b->ops->produce(b, m, CHUNK, 10000), 0);
    }
}

static bool all_applied(void)
{
    for (int i = 0; i < N_EVENTS; i++)
        if (atomic_load(&seen[i]) == 0)
            return false;
    return true;
}

static void test_every_event_applied_and_committed(void **state)
{
    (void)state;
    char dir[] = "/tmp/emp-bus-XXXXXX", url[512];
    assert_non_null(mkdtemp(dir));
    int pg = th_backend_db_url("bu", url, sizeof url);
    assert_true(pg >= 0);
    struct db_options o = {.url = pg ? url : NULL, .data_dir = dir};
    struct db *db = NULL;
    assert_int_equal(db_open(&db, "events", &o), 0);
    const struct db_migration mig[] = {{.sql = BUS_LOG_MIGRATION}};
    assert_int_equal(db_migrate(db, mig, 1), 0);
    struct bus *b = NULL;
    assert_int_equal(bus_log_new(db, 4, 24, &b), 0);

    /* Three events fail once, one twice: each must come again, none may be skipped. */
    atomic_store(&failures_left[0], 1);
    atomic_store(&failures_left[137], 1);
    atomic_store(&failures_left[700], 2);
    atomic_store(&failures_left[N_EVENTS - 1], 1);
    assert_int_equal(bus_subscribe("tbatch", TOPIC, on_event, NULL), 0);
    produce_all(b);
    struct bus_runner *r = NULL;
    assert_int_equal(bus_runner_start(b, "tbatch", &r), 0);

    int64_t deadline = mono_ms() + 120000;
    while (!(all_applied() && b->ops->lag(b, "tbatch", TOPIC) == 0) && mono_ms() < deadline)
        usleep(20000);
    assert_true(all_applied());
    assert_int_equal(b->ops->lag(b, "tbatch", TOPIC), 0);
    for (int i = 0; i < N_EVENTS; i++)
        assert_int_equal(atomic_load(&failures_left[i]), 0);
    assert_true(bus_runner_applied(r, "tbatch") >= N_EVENTS);

    /* Idle now: a later event is applied and committed too (the batch closes on an empty
     * poll, not only when it is full). */
    atomic_store(&seen[5], 0);
    char v[256];
    int len = snprintf(v, sizeof v,
                       "{\"specversion\":\"1.0\",\"id\":\"e-5\",\"type\":\"test.again\","
                       "\"source\":\"/test\",\"time\":\"2026-12-06T10:00:01Z\",\"data\":{}}");
    struct bus_msg again = {.topic = TOPIC,
                            .id = "e-5-again",
                            .key = "k5",
                            .key_len = 2,
                            .value = v,
                            .len = (size_t)len};
    assert_int_equal(b->ops->produce(b, &again, 1, 10000), 0);
    deadline = mono_ms() + 60000;
    while (!(atomic_load(&seen[5]) > 0 && b->ops->lag(b, "tbatch", TOPIC) == 0) &&
           mono_ms() < deadline)
        usleep(20000);
    assert_true(atomic_load(&seen[5]) > 0);
    assert_int_equal(b->ops->lag(b, "tbatch", TOPIC), 0);
    bus_runner_stop(r);

    /* The log dedupes on the event id: messages sent again (a relay that crashed before
     * marking them published) add nothing, and an id twice in one batch goes in once. With
     * nobody consuming, the group's lag counts exactly what was added. */
    struct bus_msg dup[4] = {again, again, again, again};
    dup[0].id = "e-5-again"; /* in the log already */
    dup[1].id = "e-7";       /* likewise, from the first batches */
    dup[2].id = "e-new";
    dup[3].id = "e-new"; /* the same new id twice in this batch */
    assert_int_equal(b->ops->produce(b, dup, 4, 10000), 0);
    assert_int_equal(b->ops->lag(b, "tbatch", TOPIC), 1);
    assert_int_equal(b->ops->produce(b, dup, 4, 10000), 0);
    assert_int_equal(b->ops->lag(b, "tbatch", TOPIC), 1);

    bus_free(b);
    db_close(db);
    bus_reset();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* bus_event_type: the top-level "type" of an envelope, whatever comes before it. */
static void test_event_type_peek(void **state)
{
    (void)state;
    struct {
        const char *json, *want; /* want NULL: ERR_INVALID */
    } cases[] = {
        {"{\"specversion\":\"1.0\",\"id\":\"x\",\"type\":\"order.paid\",\"data\":{}}",
         "order.paid"},
        {" { \"data\" : {\"type\":\"inner\",\"a\":[1,{\"type\":\"deep\"},\"]}\"]} ,"
         " \"n\": -1.5e3, \"t\": true, \"z\": null, \"type\" : \"outer\" }",
         "outer"},
        {"{\"s\":\"a \\\"type\\\":\\\"fake\\\" b\",\"type\":\"real\"}", "real"},
        {"{\"type\":\"\"}", ""},
        {"{\"typ\\u0065\":\"escaped key\",\"type\":\"after\"}", "after"},
        {"{\"type\":\"esc\\u0061ped\"}", NULL},                 /* escaped value: not decoded */
        {"{\"type\":42}", NULL},                                /* not a string */
        {"{\"id\":\"x\",\"data\":{\"type\":\"inner\"}}", NULL}, /* only a nested one */
        {"{}", NULL},
        {"[\"type\",\"order.paid\"]", NULL},
        {"{\"id\":\"x\"", NULL},
        {"{\"data\":{\"a\":1", NULL},
        {"{\"id\" \"x\",\"type\":\"y\"}", NULL}, /* no colon */
        {"{\"id\":\"x\" \"type\":\"y\"}", NULL}, /* no comma */
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *t = NULL;
        size_t n = 0;
        int rc = bus_event_type(cases[i].json, strlen(cases[i].json), &t, &n);
        if (!cases[i].want) {
            assert_int_equal(rc, ERR_INVALID);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(t, cases[i].want, n);
    }
    /* The length bounds the scan: a type past it is not found. */
    const char *j = "{\"id\":\"x\",\"type\":\"y\"}";
    const char *t;
    size_t n;
    assert_int_equal(bus_event_type(j, 10, &t, &n), ERR_INVALID);
}

static atomic_int typed_seen, all_seen;
static int on_typed(void *ctx, const struct bus_event *ev)
{
    (void)ctx;
    assert_string_equal(ev->type, "want.it");
    atomic_fetch_add(&typed_seen, 1);
    return 0;
}
static int on_all(void *ctx, const struct bus_event *ev)
{
    (void)ctx;
    (void)ev;
    atomic_fetch_add(&all_seen, 1);
    return 0;
}

static int dispatch_typed(const char *consumer, const char *type)
{
    char v[256];
    int len = snprintf(v, sizeof v,
                       "{\"specversion\":\"1.0\",\"id\":\"t-1\",\"source\":\"/test\","
                       "\"data\":{\"type\":\"want.it\"},\"type\":\"%s\"}",
                       type);
    struct bus_msg m = {.topic = "typed-events", .value = v, .len = (size_t)len};
    return bus_dispatch(consumer, &m);
}

/* bus_subscribe_types: a handler sees only the types it named; a consumer with a handler for
 * every type on the same topic still gets them all there. */
static void test_subscribe_types(void **state)
{
    (void)state;
    static const char *const types[] = {"other.one", "want.it", NULL};
    assert_int_equal(bus_subscribe_types("tpick", "typed-events", types, on_typed, NULL), 0);
    assert_int_equal(bus_subscribe_types("tmix", "typed-events", types, on_typed, NULL), 0);
    assert_int_equal(bus_subscribe("tmix", "typed-events", on_all, NULL), 0);
    atomic_store(&typed_seen, 0);
    atomic_store(&all_seen, 0);
    assert_int_equal(dispatch_typed("tpick", "want.it"), 0);
    assert_int_equal(dispatch_typed("tpick", "not.this"), 0); /* skipped, counts as applied */
    assert_int_equal(dispatch_typed("tpick", "want.its"), 0);
    assert_int_equal(atomic_load(&typed_seen), 1);
    assert_int_equal(atomic_load(&all_seen), 0);
    assert_int_equal(dispatch_typed("tmix", "want.it"), 0);
    assert_int_equal(dispatch_typed("tmix", "not.this"), 0);
    assert_int_equal(atomic_load(&typed_seen), 2);
    assert_int_equal(atomic_load(&all_seen), 2);
    bus_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_event_applied_and_committed),
        cmocka_unit_test(test_event_type_peek),
        cmocka_unit_test(test_subscribe_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
