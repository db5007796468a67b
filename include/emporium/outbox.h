/* SPDX-License-Identifier: MIT */
/* outbox.h — the transactional outbox: domain events written in the same transaction as the
 * state change they describe, in the service's own database.
 *
 * A database that holds an outbox lists OUTBOX_MIGRATION among its migrations. Rows are
 * ordered by id (time-ordered, see id.h) and carry the aggregate they belong to, so a relay
 * (relay.c) can publish them in order per aggregate, then mark them published or delete
 * them (OUTBOX_HISTORY_MIGRATION, OUTBOX_QUEUE_MIGRATION below). */
#ifndef EMPORIUM_OUTBOX_H
#define EMPORIUM_OUTBOX_H
#include <jansson.h>
#include <stdint.h>

#include "emporium/db.h"

#define OUTBOX_MIGRATION                                                                           \
    "CREATE TABLE outbox ("                                                                        \
    " id BIGINT PRIMARY KEY,"                                                                      \
    " topic TEXT NOT NULL,"                                                                        \
    " aggregate_type TEXT NOT NULL,"                                                               \
    " aggregate_id TEXT NOT NULL,"                                                                 \
    " event_type TEXT NOT NULL,"                                                                   \
    " payload TEXT NOT NULL,"                                                                      \
    " created_at BIGINT NOT NULL,"                                                                 \
    " published_at BIGINT);"                                                                       \
    "CREATE INDEX outbox_unpublished ON outbox (published_at, id);"                                \
    "CREATE INDEX outbox_aggregate ON outbox (aggregate_type, aggregate_id, id);"

/* One of these follows OUTBOX_MIGRATION (expand migrations: a program that knows neither runs
 * as before on the result, only its relay's polls walk the primary key).
 *
 * OUTBOX_QUEUE_MIGRATION: an outbox nobody reads back once the bus has a row. The relay then
 * deletes each row the bus acknowledged instead of marking it sent, so the table holds only
 * what is still to go and needs no index beside its primary key (an insert updates one
 * index, not three; a removal writes no new row version). Rows already sent go now.
 *
 * OUTBOX_HISTORY_MIGRATION: an outbox kept as its aggregates' event history (the orders: the
 * admin's /orders/{id}/events). Rows stay, marked sent; the unsent rows' index is partial, so
 * a row marked sent leaves it instead of adding an entry, and it stays as small as the
 * backlog instead of growing with every event ever sent. */
#define OUTBOX_QUEUE_MIGRATION                                                                     \
    "DROP INDEX outbox_unpublished;"                                                               \
    "DROP INDEX outbox_aggregate;"                                                                 \
    "DELETE FROM outbox WHERE published_at IS NOT NULL;"
#define OUTBOX_HISTORY_MIGRATION                                                                   \
    "DROP INDEX outbox_unpublished;"                                                               \
    "CREATE INDEX outbox_unsent ON outbox (id) WHERE published_at IS NULL;"

/* Appends one event on connection c (which should be inside db_begin()/db_commit()).
 * payload is borrowed; the stored document is the CloudEvents 1.0 envelope the relay ships
 * as is: {"specversion":"1.0","id","source":"/emporium/<service>","type","subject": the
 * aggregate id,"time","datacontenttype","traceparent","aggregatetype","dataschemaversion",
 * "data": payload} (docs/events.md). shard: the id's shard bits (use the aggregate's shard).
 * Returns 0 or an ERR_* from the database. */
int outbox_add(struct db_conn *c, unsigned shard, const char *topic, const char *aggregate_type,
               int64_t aggregate_id, const char *event_type, json_t *payload);

/* outbox_add() in two halves, for a caller that sends the insert with other statements
 * (db_query_many(), or a data-modifying CTE that inserts only when its UPDATE moved a row):
 * outbox_row_make() builds the row (the same envelope) into r->args, which borrow topic,
 * aggregate_type and event_type; OUTBOX_INSERT with OUTBOX_NARGS of r->args is the
 * statement, OUTBOX_COLUMNS its column list. outbox_row_free() releases the payload. */
#define OUTBOX_COLUMNS "id, topic, aggregate_type, aggregate_id, event_type, payload, created_at"
#define OUTBOX_INSERT "INSERT INTO outbox (" OUTBOX_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
#define OUTBOX_NARGS 7
struct outbox_row {
    struct db_val args[OUTBOX_NARGS];
    char aggregate_id[21];
    char *payload;
};
int outbox_row_make(struct outbox_row *r, unsigned shard, const char *topic,
                    const char *aggregate_type, int64_t aggregate_id, const char *event_type,
                    json_t *payload);
void outbox_row_free(struct outbox_row *r);

/* Sets this thread's current W3C traceparent (trace_context_set(): a request's server span,
 * a consumer's span), which the events it then writes carry as their traceparent, so their
 * consumers' spans are its children; NULL or a malformed value clears it (new traces). */
void outbox_trace_set(const char *traceparent);

/* --- the relay (relay.c): outbox rows onto the bus --- */
struct app;
struct bus;
struct outbox_relay;
/* Starts the relay thread over every outbox database of the services running in app.
 * *out is yours to outbox_relay_stop(). */
int outbox_relay_start(struct app *app, struct bus *b, struct outbox_relay **out);
void outbox_relay_stop(struct outbox_relay *r); /* NULL is a no-op */
struct outbox_relay_stats {
    int64_t pending;       /* unsent rows, all outboxes (at the last pass) */
    int64_t oldest_age_ms; /* age of the oldest unsent row, 0 when none */
    int64_t published;     /* rows published since the start */
    int64_t failures;      /* produce attempts that failed (broker unreachable…) */
};
void outbox_relay_stats(struct outbox_relay *r, struct outbox_relay_stats *out);
/* Outbox rows built in this process so far (outbox_row_make): an idle relay polls its
 * databases less and less often, and at once again when this moves. */
uint64_t outbox_rows_made(void);

#endif
