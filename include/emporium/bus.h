/* SPDX-License-Identifier: MIT */
/* bus.h — the event bus port: topics of keyed messages, consumer groups, and the registry of
 * the process's consumers.
 *
 * Domain events never go through this header's producer side directly: a service writes them
 * with outbox_add() (outbox.h) in the transaction of the state change, and the outbox relay
 * (relay.c) moves them onto the bus. The bus has two adapters behind one ops table:
 *   - bus_log.c: a durable log in the "events" logical database (SQLite by default): topics,
 *     partitions by key hash, offsets, consumer groups with committed offsets, retention;
 *   - bus_kafka.c: Kafka through librdkafka when EMPORIUM_KAFKA_BROKERS is set.
 * Topics (ARCHITECTURE.md §4): order-events, payment-events, inventory-events,
 * notification-events, analytics-events, fraud-detection-events, recommendation-events,
 * cache-invalidation (plus shipping-events). The message key is the aggregate id, so one
 * aggregate's events stay in one partition, in order. Values are CloudEvents 1.0 structured
 * JSON (docs/events.md).
 *
 * Consumers: a service registers a handler with bus_subscribe(consumer, topic, fn, ctx) from
 * its init(). Every consumer name is one consumer group and runs on its own thread (consumers.c)
 * under `emporium serve` (in-process, never on a request thread) or `emporium worker`.
 * Delivery is at least once: a handler must be idempotent (record the event id it applied in
 * the transaction of its effect) and returns 0 when the event is applied or not for it, a
 * negative ERR_* to have the same event delivered again later (after a backoff). The group's
 * offset is committed only after the handler returned 0.
 *
 * Broadcasts: bus_broadcast()/bus_listen() are in-process notifications that need no
 * durability (an L1 cache drop, the catalog's stock figure): the listeners run on the
 * caller's thread and must be quick. */
#ifndef EMPORIUM_BUS_H
#define EMPORIUM_BUS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define BUS_TOPIC_ORDER "order-events"
#define BUS_TOPIC_PAYMENT "payment-events"
#define BUS_TOPIC_INVENTORY "inventory-events"
#define BUS_TOPIC_SHIPPING "shipping-events"
#define BUS_TOPIC_NOTIFICATION "notification-events"
#define BUS_TOPIC_ANALYTICS "analytics-events"
#define BUS_TOPIC_FRAUD "fraud-detection-events"
#define BUS_TOPIC_RECOMMENDATION "recommendation-events"
#define BUS_TOPIC_CACHE "cache-invalidation"

/* One message. Pointers are borrowed: from the caller (produce) or from the consumer until
 * its next poll (consume). key and value are not NUL-terminated in general: use the lengths. */
struct bus_msg {
    const char *topic;
    const char *id; /* produce: the event id (the log dedupes on it); may be NULL */
    const char *key;
    size_t key_len;
    const char *value;
    size_t len;
    int partition; /* consume: where it came from */
    int64_t offset;
};

struct bus;          /* an adapter instance */
struct bus_consumer; /* one consumer group member */

struct bus_ops {
    const char *name; /* "log", "kafka" */
    /* Publishes msgs in order; 0 once every one is acknowledged (durable), else a negative
     * ERR_* (then any subset may have been written: the caller retries, consumers dedupe). */
    int (*produce)(struct bus *b, const struct bus_msg *msgs, int n, int timeout_ms);
    int (*consumer_open)(struct bus *b, const char *group, const char *const *topics, int n,
                         struct bus_consumer **out);
    /* 1 and *out filled, 0 when nothing arrived within timeout_ms, or a negative ERR_*.
     * A caller may apply several messages and commit them afterwards; it must commit (or
     * rewind) before it polls with a timeout again. With timeout 0 a poll may answer 0 while
     * messages are waiting but cannot be read before a commit (the log adapter at the end of
     * a fetched page). */
    int (*poll)(struct bus_consumer *c, int timeout_ms, struct bus_msg *out);
    /* Commits, for each of the n messages (at most one per partition), "m[i] and everything
     * before it in its partition is done": all of them, or (an ERR_*) none. */
    int (*commit)(struct bus_consumer *c, const struct bus_msg *m, int n);
    /* Puts the consumer back before m, so that the next poll of m's partition returns m. */
    int (*rewind)(struct bus_consumer *c, const struct bus_msg *m);
    void (*consumer_close)(struct bus_consumer *c);
    /* Messages of topic not yet committed by group (-1 when unknown). */
    int64_t (*lag)(struct bus *b, const char *group, const char *topic);
    void (*maintain)(struct bus *b); /* retention; may be NULL */
    void (*free)(struct bus *b);
};

struct bus {
    const struct bus_ops *ops;
};

static inline int bus_produce(struct bus *b, const struct bus_msg *m, int n, int timeout_ms)
{
    return b->ops->produce(b, m, n, timeout_ms);
}
static inline void bus_free(struct bus *b)
{
    if (b)
        b->ops->free(b);
}

struct db;
/* The durable log on database db (its tables: BUS_LOG_MIGRATION). partitions 1..256;
 * retention_hours: messages older than that are deleted by maintain(). */
int bus_log_new(struct db *db, int partitions, int retention_hours, struct bus **out);
#define BUS_LOG_MIGRATION                                                                          \
    "CREATE TABLE bus_log (topic TEXT NOT NULL, part INTEGER NOT NULL, off BIGINT NOT NULL,"       \
    " event_id TEXT NOT NULL, msg_key TEXT NOT NULL, value TEXT NOT NULL,"                         \
    " created_at BIGINT NOT NULL, PRIMARY KEY (topic, part, off));"                                \
    "CREATE UNIQUE INDEX bus_log_event ON bus_log (topic, event_id);"                              \
    "CREATE INDEX bus_log_age ON bus_log (created_at);"                                            \
    "CREATE TABLE bus_heads (topic TEXT NOT NULL, part INTEGER NOT NULL,"                          \
    " next_off BIGINT NOT NULL, PRIMARY KEY (topic, part));"                                       \
    "CREATE TABLE bus_offsets (grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,"     \
    " next_off BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (grp, topic, part));"

/* Kafka through librdkafka: brokers is the bootstrap list; topics are created with
 * `partitions` partitions when missing. */
int bus_kafka_new(const char *brokers, int partitions, struct bus **out);

/* --- the partition of a key (both adapters' choice when they pick it) --- */
int bus_partition_of(const char *key, size_t len, int partitions);

/* --- CloudEvents envelopes --- */
struct bus_event {
    const char *id, *type, *source, *subject, *time, *traceparent; /* borrowed from doc */
    json_t *data;                                                  /* borrowed from doc */
    int64_t at_ms;                                                 /* time, parsed */
    json_t *doc; /* the whole envelope: bus_event_parse's caller json_decref()s it */
    const struct bus_msg *msg;
};
/* "2026-12-06T05:01:02.345Z" (RFC 3339 UTC, fraction optional) to Unix ms; 0 when not one. */
int64_t bus_time_parse(const char *s);
/* Parses a CloudEvents 1.0 structured JSON value. ERR_INVALID when it is not one. */
int bus_event_parse(const struct bus_msg *m, struct bus_event *out);

/* --- consumers (consumers.c) --- */
typedef int (*bus_handler_fn)(void *ctx, const struct bus_event *ev);
/* Registers handler fn for topic under consumer group `consumer` (a short lowercase name:
 * "analytics"). At start-up only, at most 64. ERR_NOMEM when full, ERR_INVALID on a bad name. */
int bus_subscribe(const char *consumer, const char *topic, bus_handler_fn fn, void *ctx);
/* bus_subscribe() for the event types in `types` only (a NULL-terminated list in static
 * storage; NULL: every type). When none of a consumer's handlers for a message's topic wants
 * its type, the message is not parsed, only read for its type (bus_event_type), and counts
 * as applied: a consumer that acts on one type of a busy topic does not decode the others. */
int bus_subscribe_types(const char *consumer, const char *topic, const char *const *types,
                        bus_handler_fn fn, void *ctx);
/* The "type" member of a CloudEvents structured JSON object, found without parsing the rest:
 * 0 and *type / *len (into json, not NUL-terminated), or ERR_INVALID when it is not there, not
 * a plain string (escapes are not decoded: such a type is not found) or json is malformed
 * before it. */
int bus_event_type(const char *json, size_t len, const char **type, size_t *type_len);
/* A broadcast consumer: every process sees every event of topic. The group is
 * "<consumer>" BUS_BROADCAST_MARK "<instance>", the instance a random id of this process
 * (consumer: at most 11 characters), so each process has its own group and offsets. It runs
 * in every `serve` and `worker` process whatever EMPORIUM_CONSUMERS / --consumers say. A new
 * process's group starts at the oldest retained message: the handler should skip events
 * from before the process started (nothing it caches can predate them). Groups of processes
 * that are gone stop committing; the log adapter deletes their offsets after a day without a
 * commit (maintain()), Kafka expires them (offsets.retention.minutes). Lag metrics only ever
 * cover the groups running in the scraped process. At start-up only. */
#define BUS_BROADCAST_MARK ".i-"
int bus_subscribe_broadcast(const char *consumer, const char *topic, bus_handler_fn fn, void *ctx);
/* A consumer's batch end: fn runs on the consumer's thread before the offsets of the messages
 * its handlers applied since the last call are committed (the runner commits every 256
 * messages or 100 ms, and when the group goes idle). A handler may leave part of its work
 * for it, to do once for many messages (one sync for many files, one transaction for many
 * records): the message counts as applied, and fn returns 0 only once that work is durable.
 * When fn fails, the batch's messages come again from the first one (handlers are
 * idempotent). At most one per consumer; at start-up only. */
typedef int (*bus_flush_fn)(void *ctx);
int bus_subscribe_flush(const char *consumer, bus_flush_fn fn, void *ctx);
/* Hands m to the handlers of `consumer` (NULL: of every consumer) registered for m's topic,
 * on the caller's thread, as the runner does: 0 when all applied it (or it is not a
 * CloudEvents envelope, which is logged), else the first handler's error; then runs the
 * batch end of those consumers (bus_subscribe_flush). For tests and tools; a running shop
 * delivers through bus_runner_start(). */
int bus_dispatch(const char *consumer, const struct bus_msg *m);
/* Whether `consumer` is a registered consumer name. */
bool bus_consumer_known(const char *consumer);
/* Writes every registered consumer name, comma-separated, into buf. */
void bus_consumer_names(char *buf, size_t cap);

struct bus_runner;
/* Starts one thread per registered consumer named in list (comma-separated; NULL or "all":
 * every one). *out is yours to bus_runner_stop(). */
int bus_runner_start(struct bus *b, const char *list, struct bus_runner **out);
/* Stops the threads (a handler running finishes first) and frees. NULL is a no-op. */
void bus_runner_stop(struct bus_runner *r);
/* Events applied by consumer (for /metrics and tests), -1 when not running here. */
int64_t bus_runner_applied(struct bus_runner *r, const char *consumer);

struct buf;
/* Writes emporium_consumer_lag{group,topic} and emporium_consumer_events_total{group}. */
void bus_runner_write_metrics(struct bus_runner *r, struct buf *out);

/* --- in-process broadcasts (no durability) --- */
typedef void (*bus_local_fn)(void *ctx, const char *topic, const char *key, const char *payload,
                             size_t len);
int bus_listen(const char *topic, bus_local_fn fn, void *ctx);
int bus_broadcast(const char *topic, const char *key, const char *payload, size_t len);
/* Removes every subscription and listener (shutdown, tests). */
void bus_reset(void);

#endif
