/* SPDX-License-Identifier: MIT */
/* bus_kafka.c — the Kafka bus adapter, on librdkafka (see bus.h).
 *
 * Producer: idempotent (enable.idempotence, so acks=all and ordered retries per partition),
 * LZ4, keyed by the aggregate id (librdkafka's default partitioner hashes the key, so one
 * aggregate stays in one partition). produce() hands the batch over and waits for every
 * delivery report: it answers 0 only when each message was acknowledged by the in-sync
 * replicas, else an error — then the relay marks nothing and sends the batch again later
 * (message.timeout.ms bounds the wait, so a dead cluster fails a batch instead of hanging).
 * Topics (the seed's, plus shipping-events) are created at start with the configured number
 * of partitions, replication factor min(3, brokers) and 30-day retention, unless they exist.
 *
 * Consumers: one librdkafka consumer per group member, offsets committed by hand (never
 * automatically) after the handler's effect is durable, synchronously; a rewind seeks the
 * partition back to the failed message. Lag is computed from the member's assignment: the
 * cached high watermark minus the position, summed over the topic's assigned partitions. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/log.h"

#define MAX_MEMBERS 32

struct kafka_bus {
    struct bus base;
    char *brokers;
    int parts;
    rd_kafka_t *producer;
    pthread_mutex_t mu; /* members */
    struct bus_consumer *members[MAX_MEMBERS];
    int n_members;
};

struct bus_consumer {
    struct kafka_bus *b;
    char group[64];
    rd_kafka_t *rk;
    rd_kafka_message_t *cur; /* the last polled message, kept until the next poll */
};

struct batch {
    int pending;
    int failed;
    rd_kafka_resp_err_t err;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct batch *b = m->_private;
    if (!b)
        return;
    if (m->err) {
        b->failed++;
        b->err = m->err;
    }
    b->pending--;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 4)
        log_warn("kafka: %s: %s", fac, buf);
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        log_error("kafka: %s: %s", k, err);
        return ERR_INVALID;
    }
    return 0;
}

static rd_kafka_conf_t *base_conf(struct kafka_bus *b)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (set(conf, "bootstrap.servers", b->brokers) < 0 || set(conf, "client.id", "emporium") < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;
}

static int kafka_produce(struct bus *base, const struct bus_msg *msgs, int n, int timeout_ms)
{
    struct kafka_bus *b = (struct kafka_bus *)base;
    struct batch bt = {0};
    int rc = 0;
    for (int i = 0; i < n; i++) {
        rd_kafka_resp_err_t err;
        for (;;) {
            err = rd_kafka_producev(b->producer, RD_KAFKA_V_TOPIC(msgs[i].topic),
                                    RD_KAFKA_V_KEY((void *)msgs[i].key, msgs[i].key_len),
                                    RD_KAFKA_V_VALUE((void *)msgs[i].value, msgs[i].len),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_OPAQUE(&bt), RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(b->producer, 50);
        }
        if (err) {
            log_warn("kafka: produce to %s: %s", msgs[i].topic, rd_kafka_err2str(err));
            rc = ERR_UNAVAILABLE;
            break;
        }
        bt.pending++;
    }
    /* Every handed-over message gets its report (delivered, or failed after
     * message.timeout.ms): wait for all of them, so none is still in flight on return. */
    while (bt.pending > 0)
        rd_kafka_poll(b->producer, 100);
    (void)timeout_ms;
    if (bt.failed) {
        log_warn("kafka: %d of %d messages not acknowledged: %s", bt.failed, n,
                 rd_kafka_err2str(bt.err));
        rc = ERR_UNAVAILABLE;
    }
    return rc;
}

static int kafka_consumer_open(struct bus *base, const char *group, const char *const *topics,
                               int n, struct bus_consumer **out)
{
    struct kafka_bus *b = (struct kafka_bus *)base;
    *out = NULL;
    struct bus_consumer *c = calloc(1, sizeof *c);
    if (!c)
        return ERR_NOMEM;
    c->b = b;
    snprintf(c->group, sizeof c->group, "%s", group);
    rd_kafka_conf_t *conf = base_conf(b);
    char err[256];
    if (!conf || set(conf, "group.id", group) < 0 || set(conf, "enable.auto.commit", "false") < 0 ||
        set(conf, "enable.auto.offset.store", "false") < 0 ||
        set(conf, "auto.offset.reset", "earliest") < 0 ||
        set(conf, "session.timeout.ms", "10000") < 0 ||
        set(conf, "heartbeat.interval.ms", "1000") < 0) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        free(c);
        return ERR_INVALID;
    }
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!c->rk) {
        log_error("kafka: consumer %s: %s", group, err);
        rd_kafka_conf_destroy(conf);
        free(c);
        return ERR_UNAVAILABLE;
    }
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(tl, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (e) {
        log_error("kafka: consumer %s: subscribe: %s", group, rd_kafka_err2str(e));
        rd_kafka_destroy(c->rk);
        free(c);
        return ERR_UNAVAILABLE;
    }
    pthread_mutex_lock(&b->mu);
    if (b->n_members < MAX_MEMBERS)
        b->members[b->n_members++] = c;
    pthread_mutex_unlock(&b->mu);
    *out = c;
    return 0;
}

static int kafka_poll(struct bus_consumer *c, int timeout_ms, struct bus_msg *out)
{
    if (c->cur) {
        rd_kafka_message_destroy(c->cur);
        c->cur = NULL;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (!m)
        return 0;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("kafka: consumer %s: %s", c->group, rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return 0;
    }
    c->cur = m;
    *out = (struct bus_msg){
        .topic = rd_kafka_topic_name(m->rkt),
        .key = m->key ? m->key : "",
        .key_len = m->key ? m->key_len : 0,
        .value = m->payload ? m->payload : "",
        .len = m->payload ? m->len : 0,
        .partition = m->partition,
        .offset = m->offset,
    };
    return 1;
}

static int kafka_commit(struct bus_consumer *c, const struct bus_msg *m, int n)
{
    /* One synchronous commit request for every partition of the batch. */
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(tl, m[i].topic, m[i].partition)->offset = m[i].offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, tl, 0); /* synchronous */
    rd_kafka_topic_partition_list_destroy(tl);
    if (e) {
        log_warn("kafka: consumer %s: commit: %s", c->group, rd_kafka_err2str(e));
        return ERR_UNAVAILABLE;
    }
    return 0;
}

static int kafka_rewind(struct bus_consumer *c, const struct bus_msg *m)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, m->topic, m->partition)->offset = m->offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, tl, 5000);
    rd_kafka_topic_partition_list_destroy(tl);
    if (e) {
        log_warn("kafka: consumer %s: seek: %s", c->group, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return ERR_UNAVAILABLE;
    }
    return 0;
}

static void kafka_consumer_close(struct bus_consumer *c)
{
    if (!c)
        return;
    struct kafka_bus *b = c->b;
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->n_members; i++)
        if (b->members[i] == c) {
            b->members[i] = b->members[--b->n_members];
            break;
        }
    pthread_mutex_unlock(&b->mu);
    if (c->cur)
        rd_kafka_message_destroy(c->cur);
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    free(c);
}

static int64_t kafka_lag(struct bus *base, const char *group, const char *topic)
{
    struct kafka_bus *b = (struct kafka_bus *)base;
    int64_t lag = -1;
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->n_members; i++) {
        struct bus_consumer *c = b->members[i];
        rd_kafka_topic_partition_list_t *as = NULL;
        if (strcmp(c->group, group) != 0 || rd_kafka_assignment(c->rk, &as) || !as)
            continue;
        rd_kafka_position(c->rk, as);
        for (int k = 0; k < as->cnt; k++) {
            rd_kafka_topic_partition_t *p = &as->elems[k];
            int64_t lo, hi;
            if (strcmp(p->topic, topic) != 0 ||
                rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi))
                continue;
            int64_t pos = p->offset >= 0 ? p->offset : lo;
            lag = (lag < 0 ? 0 : lag) + (hi > pos ? hi - pos : 0);
        }
        rd_kafka_topic_partition_list_destroy(as);
    }
    pthread_mutex_unlock(&b->mu);
    return lag;
}

static void kafka_free(struct bus *base)
{
    struct kafka_bus *b = (struct kafka_bus *)base;
    if (b->producer) {
        rd_kafka_flush(b->producer, 10000);
        rd_kafka_destroy(b->producer);
    }
    pthread_mutex_destroy(&b->mu);
    free(b->brokers);
    free(b);
}

static const struct bus_ops kafka_ops = {
    .name = "kafka",
    .produce = kafka_produce,
    .consumer_open = kafka_consumer_open,
    .poll = kafka_poll,
    .commit = kafka_commit,
    .rewind = kafka_rewind,
    .consumer_close = kafka_consumer_close,
    .lag = kafka_lag,
    .maintain = NULL,
    .free = kafka_free,
};

static const char *const topics_all[] = {
    BUS_TOPIC_ORDER,    BUS_TOPIC_PAYMENT,        BUS_TOPIC_INVENTORY,
    BUS_TOPIC_SHIPPING, BUS_TOPIC_NOTIFICATION,   BUS_TOPIC_ANALYTICS,
    BUS_TOPIC_FRAUD,    BUS_TOPIC_RECOMMENDATION, BUS_TOPIC_CACHE,
};
#define N_TOPICS (int)(sizeof topics_all / sizeof topics_all[0])

/* Creates the missing topics; an unreachable cluster is not fatal (the relay retries and a
 * broker with auto-creation still works), so this only logs. */
static void topics_ensure(struct kafka_bus *b)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(b->producer, 1, NULL, &md, 10000);
    if (e) {
        log_warn("kafka: metadata: %s (topics not checked)", rd_kafka_err2str(e));
        return;
    }
    int rf = md->broker_cnt < 3 ? md->broker_cnt : 3;
    rd_kafka_NewTopic_t *nt[N_TOPICS];
    int n = 0;
    for (int t = 0; t < N_TOPICS; t++) {
        bool have = false;
        for (int i = 0; i < md->topic_cnt && !have; i++)
            have = !strcmp(md->topics[i].topic, topics_all[t]) && !md->topics[i].err;
        if (have)
            continue;
        char err[256];
        nt[n] = rd_kafka_NewTopic_new(topics_all[t], b->parts, rf < 1 ? 1 : rf, err, sizeof err);
        if (!nt[n])
            continue;
        rd_kafka_NewTopic_set_config(nt[n], "retention.ms", "2592000000");
        rd_kafka_NewTopic_set_config(nt[n], "compression.type", "lz4");
        n++;
    }
    rd_kafka_metadata_destroy(md);
    if (n == 0)
        return;
    rd_kafka_queue_t *q = rd_kafka_queue_new(b->producer);
    rd_kafka_CreateTopics(b->producer, nt, (size_t)n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (!res) {
        log_warn("kafka: creating topics: %s",
                 ev ? rd_kafka_event_error_string(ev) : "no answer in 15 s");
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t te = rd_kafka_topic_result_error(tr[i]);
            if (te && te != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                log_warn("kafka: topic %s: %s", rd_kafka_topic_result_name(tr[i]),
                         rd_kafka_topic_result_error_string(tr[i]));
            else if (!te)
                log_info("kafka: topic %s created (%d partitions)",
                         rd_kafka_topic_result_name(tr[i]), b->parts);
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy_array(nt, (size_t)n);
}

int bus_kafka_new(const char *brokers, int partitions, struct bus **out)
{
    *out = NULL;
    if (!brokers || !*brokers || partitions < 1)
        return ERR_INVALID;
    struct kafka_bus *b = calloc(1, sizeof *b);
    if (!b || !(b->brokers = strdup(brokers))) {
        free(b);
        return ERR_NOMEM;
    }
    b->base.ops = &kafka_ops;
    b->parts = partitions;
    pthread_mutex_init(&b->mu, NULL);
    rd_kafka_conf_t *conf = base_conf(b);
    char err[256];
    if (!conf || set(conf, "enable.idempotence", "true") < 0 || set(conf, "acks", "all") < 0 ||
        set(conf, "compression.codec", "lz4") < 0 || set(conf, "linger.ms", "5") < 0 ||
        set(conf, "message.timeout.ms", "15000") < 0) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        kafka_free(&b->base);
        return ERR_INVALID;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    b->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!b->producer) {
        log_error("kafka: producer: %s", err);
        rd_kafka_conf_destroy(conf);
        kafka_free(&b->base);
        return ERR_UNAVAILABLE;
    }
    topics_ensure(b);
    *out = &b->base;
    return 0;
}
