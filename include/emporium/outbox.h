/* SPDX-License-Identifier: MIT */
/* outbox.h — the transactional outbox: domain events written in the same transaction as the
 * state change they describe, in the service's own database.
 *
 * A database that holds an outbox lists OUTBOX_MIGRATION among its migrations. Rows are
 * ordered by id (time-ordered, see id.h) and carry the aggregate they belong to, so a relay
 * (the events issue) can publish them in order per aggregate and mark them published. */
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

/* Appends one event on connection c (which should be inside db_begin()/db_commit()).
 * payload is borrowed; the stored document is {"event_id","type","aggregate_id","at",
 * "data": payload}. shard: the id's shard bits (use the aggregate's shard). Returns 0 or an
 * ERR_* from the database. */
int outbox_add(struct db_conn *c, unsigned shard, const char *topic, const char *aggregate_type,
               int64_t aggregate_id, const char *event_type, json_t *payload);

#endif
