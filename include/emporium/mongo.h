/* SPDX-License-Identifier: MIT */
/* mongo.h — the document-store port on MongoDB (libmongoc, src/adapters/mongo.c).
 *
 * A `struct mongo` is one client pool for the database named by the URI's path ("emporium"
 * when it names none). Documents and filters are given as MongoDB extended JSON text (canonical
 * or relaxed: {"$numberLong": "…"}, {"$date": {"$numberLong": "…"}}), so the services that
 * build them need no BSON types. Every write is one upsert, the shape that makes a consumer
 * idempotent per event id.
 *
 * Opening never connects: a server that is down or unreachable shows on the first write,
 * after at most the URI's serverSelectionTimeoutMS (2000 ms unless the URI says otherwise),
 * as ERR_UNAVAILABLE, so a consumer gives the event back and the bus delivers it again later.
 * Every function is thread-safe. */
#ifndef EMPORIUM_MONGO_H
#define EMPORIUM_MONGO_H
#include <stddef.h>
#include <stdint.h>

struct mongo;

/* Parses uri ("mongodb://…" or "mongodb+srv://…") and makes the client pool. ERR_INVALID with
 * the reason in why (never the URI: it may hold a password) when it is not a valid URI. *out
 * is yours to mongo_close(). */
int mongo_open(const char *uri, struct mongo **out, char *why, size_t whycap);
void mongo_close(struct mongo *m); /* NULL is a no-op */

/* One update of the document matching filter_json with update_json (update operators:
 * $set, $setOnInsert, $inc, $push, …), inserted when none matches. Returns 1 when a document
 * was inserted, 0 when one matched; ERR_CONFLICT on a duplicate key (an upsert whose filter
 * excludes a document that exists under that _id: "already applied"); ERR_UNAVAILABLE when no
 * server answered in time; ERR_INVALID when a JSON text is not a document; ERR_INTERNAL for
 * another server error (logged). */
int mongo_upsert(struct mongo *m, const char *collection, const char *filter_json,
                 const char *update_json);
/* Creates the index key_json (e.g. {"user_id": 1, "created_at": 1}) on collection, and on a
 * sharded cluster (a mongos) shards the collection on it; on a plain server or replica set the
 * index alone. 0 or as mongo_upsert(). */
int mongo_ensure_collection(struct mongo *m, const char *collection, const char *key_json);
/* Documents of collection matching filter_json, or an error as mongo_upsert(). */
int mongo_count(struct mongo *m, const char *collection, const char *filter_json, int64_t *out);
/* 0 when a server answers ping. */
int mongo_ping(struct mongo *m);

/* 0 when text is one JSON document that converts to BSON; ERR_INVALID otherwise. */
int mongo_json_check(const char *text);

#endif
