/* SPDX-License-Identifier: MIT */
/* outbox.c — writes domain events into the caller's transaction (see emporium/outbox.h). */
#include "emporium/outbox.h"

#include <stdlib.h>

#include "emporium/err.h"
#include "emporium/id.h"

int outbox_add(struct db_conn *c, unsigned shard, const char *topic, const char *aggregate_type,
               int64_t aggregate_id, const char *event_type, json_t *payload)
{
    int64_t id = id_new(shard), now = now_ms();
    char idbuf[21], aggbuf[21], ts[32];
    id_format(id, idbuf);
    id_format(aggregate_id, aggbuf);
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:O}", "event_id", idbuf, "type", event_type,
                            "aggregate_type", aggregate_type, "aggregate_id", aggbuf, "at",
                            time_format(now, ts), "data", payload ? payload : json_null());
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return ERR_NOMEM;
    struct db_val args[] = {DB_INT(id),        DB_TEXT(topic), DB_TEXT(aggregate_type),
                            DB_TEXT(aggbuf),   DB_TEXT(event_type), DB_TEXT(text),
                            DB_INT(now)};
    int rc = db_query(c,
                      "INSERT INTO outbox (id, topic, aggregate_type, aggregate_id, event_type, "
                      "payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                      7, args, NULL);
    free(text);
    return rc < 0 ? rc : 0;
}
