/* SPDX-License-Identifier: MIT */
/* shipping_store.c — every SQL statement of the shipping service, and its schema.
 * Functions run on a connection (and inside a transaction) the caller holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/outbox.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "shipping_internal.h"

#define SHIPMENT_SELECT                                                                            \
    "SELECT id, order_id, method, carrier, tracking_number, status, created_at, updated_at "       \
    "FROM shipments "

static void info_load(const struct db_rows *r, struct shipment_info *out)
{
    memset(out, 0, sizeof *out);
    out->id = db_get_i64(r, 0, 0);
    snprintf(out->method, sizeof out->method, "%s", db_get(r, 0, 2));
    snprintf(out->carrier, sizeof out->carrier, "%s", db_get(r, 0, 3));
    snprintf(out->tracking_number, sizeof out->tracking_number, "%s", db_get(r, 0, 4));
    snprintf(out->status, sizeof out->status, "%s", db_get(r, 0, 5));
}

int shipping__store_find(struct db_conn *c, const char *where, int64_t v, struct shipment_info *out,
                         int64_t *order_id)
{
    char sql[400];
    snprintf(sql, sizeof sql, SHIPMENT_SELECT "%s", where);
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(v)};
    int rc = db_query(c, sql, 1, a, &r);
    if (rc < 0)
        return rc;
    if (db_rows_count(r) == 0) {
        db_rows_free(r);
        return ERR_NOTFOUND;
    }
    info_load(r, out);
    if (order_id)
        *order_id = db_get_i64(r, 0, 1);
    db_rows_free(r);
    return 0;
}

int shipping__store_event(struct db_conn *c, int64_t id, int64_t order_id, const char *type,
                          const char *status, int64_t at)
{
    char oid[21], ts[32];
    json_t *data = json_pack("{s:s,s:s,s:s}", "order_id", id_format(order_id, oid), "status",
                             status, "at", time_format(at, ts));
    if (!data)
        return ERR_NOMEM;
    int rc = outbox_add(c, id_shard(id), "shipping-events", "shipment", id, type, data);
    json_decref(data);
    if (rc < 0)
        return rc;
    struct db_val a[] = {DB_INT(id_new(id_shard(id))), DB_INT(id), DB_TEXT(status), DB_INT(at),
                         DB_INT(now_ms())};
    rc = db_query(c,
                  "INSERT INTO shipment_events (id, shipment_id, status, at, created_at) "
                  "VALUES ($1, $2, $3, $4, $5)",
                  5, a, NULL);
    return rc < 0 ? rc : 0;
}

int shipping__store_insert(struct db_conn *c, int64_t id, int64_t order_id, const char *method,
                           const char *carrier, const char *tracking, const char *address,
                           int64_t now)
{
    struct db_val a[] = {DB_INT(id),        DB_INT(order_id), DB_TEXT(method), DB_TEXT(carrier),
                         DB_TEXT(tracking), DB_TEXT(address), DB_INT(now)};
    return db_query(c,
                    "INSERT INTO shipments (id, order_id, method, carrier, tracking_number, "
                    "status, address, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, 'label_created', $6, $7, $7)",
                    7, a, NULL);
}

int shipping__store_move(struct db_conn *c, int64_t id, const char *from, const char *to,
                         int64_t now)
{
    struct db_val a[] = {DB_TEXT(to), DB_INT(now), DB_INT(id), DB_TEXT(from)};
    return db_query(
        c, "UPDATE shipments SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4", 4, a,
        NULL);
}

int shipping__store_events(struct db_conn *c, int64_t id, struct shipment_event_view **out, int *n)
{
    struct db_rows *ev = NULL;
    struct db_val a[] = {DB_INT(id)};
    int rc = db_query(
        c, "SELECT status, at FROM shipment_events WHERE shipment_id = $1 ORDER BY id", 1, a, &ev);
    if (rc < 0)
        return rc;
    *n = db_rows_count(ev);
    *out = calloc((size_t)*n + 1, sizeof **out);
    for (int i = 0; *out && i < *n; i++) {
        snprintf((*out)[i].status, sizeof(*out)[i].status, "%s", db_get(ev, i, 0));
        (*out)[i].at = db_get_i64(ev, i, 1);
    }
    db_rows_free(ev);
    if (!*out) {
        *n = 0;
        return ERR_NOMEM;
    }
    return 0;
}

/* --- schema --- */

static const struct db_migration shipping_migrations[] = {
    {.sql = "CREATE TABLE shipments ("
            " id BIGINT PRIMARY KEY,"
            " order_id BIGINT NOT NULL UNIQUE,"
            " method TEXT NOT NULL,"
            " carrier TEXT NOT NULL,"
            " tracking_number TEXT NOT NULL UNIQUE,"
            " status TEXT NOT NULL,"
            " address TEXT NOT NULL,"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE TABLE shipment_events ("
            " id BIGINT PRIMARY KEY,"
            " shipment_id BIGINT NOT NULL REFERENCES shipments(id),"
            " status TEXT NOT NULL,"
            " at BIGINT NOT NULL,"
            " created_at BIGINT NOT NULL);"
            "CREATE INDEX shipment_events_shipment ON shipment_events (shipment_id, id);"},
    {.sql = OUTBOX_MIGRATION},
    {.sql = OUTBOX_QUEUE_MIGRATION},
};

const struct service_db shipping__dbs[] = {
    {"shipping", 0, shipping_migrations,
     sizeof shipping_migrations / sizeof shipping_migrations[0]},
    {NULL, 0, NULL, 0},
};
