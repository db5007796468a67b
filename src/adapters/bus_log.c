/* SPDX-License-Identifier: MIT */
/* bus_log.c — the embedded bus adapter: a durable log in a logical database (see bus.h).
 *
 * Tables (BUS_LOG_MIGRATION, in the "events" database; SQLite by default, PostgreSQL when the
 * shop runs there): bus_log holds every message at (topic, partition, offset), the partition
 * being the key's hash; bus_heads the next offset of each partition; bus_offsets the next
 * offset each consumer group has to process in each partition. A produce batch is one
 * transaction: its commit is the acknowledgement. A message whose event id is already in the
 * topic is skipped, so a relay that re-sends a batch after a crash (published, not yet marked)
 * does not write it twice. Offsets are allocated under the head row's lock (the UPDATE), so
 * concurrent producers in several processes stay consistent.
 *
 * A consumer reads from its group's committed offsets: a fetch returns up to FETCH messages
 * past them, in offset order per partition, and each commit moves one partition's offset.
 * Rewinding drops the fetched buffer, so the next fetch starts again at the committed offsets.
 * Because a fetch starts there, a poll with timeout 0 at the end of a page whose messages
 * were handed out but not all committed answers 0 instead of fetching them again: the
 * caller commits its batch and polls on.
 * Consumers in this process are woken when a produce commits; others (`emporium worker`)
 * poll. Retention deletes messages older than the configured age, whatever the groups. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/buf.h"
#include "emporium/bus.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"

#define FETCH 256
#define FETCH_PARTS 8 /* partitions read by one fetch */
#define MAX_TOPICS 8
#define MAX_GENS 32 /* topics whose produces wake consumers at once (others: within 100 ms) */

struct log_bus {
    struct bus base;
    struct db *db;
    int parts;
    int retention_h;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Per topic, bumped at every produce commit that wrote to it (under mu): a consumer
     * wakes for its own topics only. */
    struct {
        char name[64];
        uint64_t gen;
    } gens[MAX_GENS];
    int n_gens;
};

struct bus_consumer {
    struct log_bus *b;
    char group[64];
    char *topics[MAX_TOPICS];
    int n_topics;
    struct db_rows *rows;
    int pos, n;
    bool uncommitted; /* messages were handed out since the last commit or rewind */
    uint64_t seen_gen;
};

struct produce_ctx {
    struct log_bus *b;
    const struct bus_msg *msgs;
    int n;
};

/* One message of a produce: its key, event id and partition, and where it goes. */
struct produce_one {
    char key[128], eid[64];
    int part;
    bool skip; /* already in the topic (or earlier in this batch) */
    int64_t off;
    char *value;
    struct db_rows *r;
};

/* A message's key (cut to 127 bytes) and event id: its own, or for a message without one
 * the produce's time and the message's position in the batch (unique within the topic). */
static void key_and_id(const struct bus_msg *m, int64_t now, int pos, char key[128], char eid[64])
{
    snprintf(key, 128, "%.*s", (int)(m->key_len < 127 ? m->key_len : 127), m->key ? m->key : "");
    if (m->id)
        snprintf(eid, 64, "%s", m->id);
    else
        snprintf(eid, 64, "anon-%lld-%d", (long long)now, pos);
}

/* SQLite: up to DB_STMT_MAX messages in three round trips: whether each is in the topic already,
 * the offsets (the partitions' heads moved under their row locks, in batch order), the
 * rows. A partition's first message inserts its head. */
static int produce_chunk(struct db_conn *c, struct log_bus *b, const struct bus_msg *msgs, int n,
                         int first, int64_t now)
{
    struct produce_one one[DB_STMT_MAX];
    struct db_stmt st[DB_STMT_MAX];
    struct db_val args[DB_STMT_MAX][7];
    memset(one, 0, sizeof one);
    for (int i = 0; i < n; i++) {
        const struct bus_msg *m = &msgs[i];
        struct produce_one *o = &one[i];
        key_and_id(m, now, first + i, o->key, o->eid);
        o->part = bus_partition_of(o->key, strlen(o->key), b->parts);
        for (int j = 0; j < i && !o->skip; j++)
            o->skip = !strcmp(msgs[j].topic, m->topic) && !strcmp(one[j].eid, o->eid);
        args[i][0] = DB_TEXT(m->topic);
        args[i][1] = DB_TEXT(o->eid);
        st[i] = (struct db_stmt){.sql = "SELECT 1 FROM bus_log WHERE topic = $1 AND event_id = $2",
                                 .n = 2,
                                 .args = args[i],
                                 .out = &one[i].r};
    }
    int rc = db_query_many(c, st, n, true);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (rc >= 0 && db_rows_count(one[i].r) > 0)
            one[i].skip = true;
        db_rows_free(one[i].r);
        one[i].r = NULL;
        if (rc >= 0 && !one[i].skip) {
            args[i][1] = DB_INT(one[i].part);
            st[k++] = (struct db_stmt){.sql = "UPDATE bus_heads SET next_off = next_off + 1 "
                                              "WHERE topic = $1 AND part = $2 RETURNING next_off",
                                       .n = 2,
                                       .args = args[i],
                                       .out = &one[i].r};
        }
    }
    if (rc < 0 || k == 0)
        return rc < 0 ? rc : 0;
    rc = db_query_many(c, st, k, true);
    bool placed[DB_STMT_MAX] = {0};
    for (int i = 0; i < n && rc >= 0; i++) {
        if (one[i].skip || placed[i])
            continue;
        if (db_rows_count(one[i].r) > 0) {
            one[i].off = db_get_i64(one[i].r, 0, 0) - 1;
            placed[i] = true;
            continue;
        }
        /* No head yet: this message and the batch's later ones of the partition (whose
         * updates found none either) take 0, 1, ... */
        int64_t next = 0;
        for (int j = i; j < n; j++)
            if (!one[j].skip && !placed[j] && db_rows_count(one[j].r) == 0 &&
                one[j].part == one[i].part && !strcmp(msgs[j].topic, msgs[i].topic)) {
                one[j].off = next++;
                placed[j] = true;
            }
        struct db_val h[] = {DB_TEXT(msgs[i].topic), DB_INT(one[i].part), DB_INT(next)};
        rc = db_query(c, "INSERT INTO bus_heads (topic, part, next_off) VALUES ($1, $2, $3)", 3, h,
                      NULL);
    }
    k = 0;
    for (int i = 0; i < n && rc >= 0; i++) {
        if (one[i].skip)
            continue;
        /* value as text: envelopes are JSON (UTF-8) */
        if (!(one[i].value = strndup(msgs[i].value, msgs[i].len))) {
            rc = ERR_NOMEM;
            break;
        }
        struct db_val *a = args[i];
        a[0] = DB_TEXT(msgs[i].topic);
        a[1] = DB_INT(one[i].part);
        a[2] = DB_INT(one[i].off);
        a[3] = DB_TEXT(one[i].eid);
        a[4] = DB_TEXT(one[i].key);
        a[5] = DB_TEXT(one[i].value);
        a[6] = DB_INT(now);
        st[k++] = (struct db_stmt){.sql = "INSERT INTO bus_log (topic, part, off, event_id, "
                                          "msg_key, value, created_at) VALUES ($1, $2, $3, $4, "
                                          "$5, $6, $7)",
                                   .n = 7,
                                   .args = a};
    }
    if (rc >= 0 && k > 0)
        rc = db_query_many(c, st, k, true);
    for (int i = 0; i < n; i++) {
        db_rows_free(one[i].r);
        free(one[i].value);
    }
    return rc < 0 ? rc : 0;
}

/* PostgreSQL: up to SET_MAX messages in one statement. The messages that are not in their
 * topic yet (m) are counted per partition (c), the partitions' heads move by those counts
 * under their row locks, taken in (topic, part) order so that concurrent producers cannot
 * deadlock on them (h; a missing head is inserted), and each message takes its head's old
 * value plus its rank in the batch. One statement instead of three per message: on
 * PostgreSQL each statement's start-up and end cost more than its own work here. The
 * dedupe is a scalar subquery, one probe of bus_log_event per message: as NOT EXISTS it
 * becomes an anti join, which a plan made while the log was small runs as a scan of the
 * whole log. */
#define SET_MAX 512
#define PRODUCE_SET_SQL                                                                            \
    "WITH m AS (SELECT t.* FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], "            \
    "$5::text[]) WITH ORDINALITY AS t(topic, part, eid, k, v, i) WHERE (SELECT 1 FROM bus_log l "  \
    "WHERE l.topic = t.topic AND l.event_id = t.eid LIMIT 1) IS NULL), "                           \
    "c AS (SELECT topic, part, count(*) AS n FROM m GROUP BY topic, part), "                       \
    "h AS (INSERT INTO bus_heads (topic, part, next_off) SELECT topic, part, n FROM c "            \
    "ORDER BY topic, part ON CONFLICT (topic, part) DO UPDATE SET next_off = "                     \
    "bus_heads.next_off + excluded.next_off RETURNING topic, part, next_off) "                     \
    "INSERT INTO bus_log (topic, part, off, event_id, msg_key, value, created_at) "                \
    "SELECT m.topic, m.part, h.next_off - c.n - 1 + row_number() OVER (PARTITION BY m.topic, "     \
    "m.part ORDER BY m.i), m.eid, m.k, m.v, $6 FROM m JOIN c USING (topic, part) "                 \
    "JOIN h USING (topic, part)"

static int produce_set(struct db_conn *c, struct log_bus *b, const struct bus_msg *msgs, int n,
                       int first, int64_t now)
{
    enum { TOPIC, PART, EID, KEY, VALUE, NCOLS };
    struct buf col[NCOLS];
    for (int j = 0; j < NCOLS; j++)
        col[j] = BUF_INIT(0);
    char(*eids)[64] = calloc((size_t)n, sizeof *eids);
    int rc = eids ? 0 : ERR_NOMEM;
    for (int i = 0; i < n && rc == 0; i++) {
        const struct bus_msg *m = &msgs[i];
        char key[128];
        key_and_id(m, now, first + i, key, eids[i]);
        bool dup = false;
        for (int j = 0; j < i && !dup; j++)
            dup = !strcmp(msgs[j].topic, m->topic) && !strcmp(eids[j], eids[i]);
        if (dup)
            continue;
        char *value = strndup(m->value, m->len); /* as text: envelopes are JSON (UTF-8) */
        if (!value) {
            rc = ERR_NOMEM;
            break;
        }
        db_array_text(&col[TOPIC], m->topic);
        db_array_int(&col[PART], bus_partition_of(key, strlen(key), b->parts));
        db_array_text(&col[EID], eids[i]);
        db_array_text(&col[KEY], key);
        db_array_text(&col[VALUE], value);
        free(value);
    }
    struct db_val args[NCOLS + 1];
    for (int j = 0; j < NCOLS && rc == 0; j++) {
        const char *lit = db_array_end(&col[j]);
        if (!lit)
            rc = col[j].err;
        args[j] = DB_TEXT(lit);
    }
    args[NCOLS] = DB_INT(now);
    if (rc == 0)
        rc = db_query(c, PRODUCE_SET_SQL, NCOLS + 1, args, NULL);
    for (int j = 0; j < NCOLS; j++)
        buf_free(&col[j]);
    free(eids);
    return rc < 0 ? rc : 0;
}

static int produce_tx(struct db_conn *c, void *vctx)
{
    struct produce_ctx *p = vctx;
    int64_t now = now_ms();
    bool set = db_dialect(p->b->db) == DB_POSTGRES;
    int chunk = set ? SET_MAX : DB_STMT_MAX, rc = 0;
    for (int i = 0; i < p->n && rc >= 0; i += chunk) {
        int n = p->n - i < chunk ? p->n - i : chunk;
        rc = set ? produce_set(c, p->b, p->msgs + i, n, i, now)
                 : produce_chunk(c, p->b, p->msgs + i, n, i, now);
    }
    return rc < 0 ? rc : 0;
}

static int log_produce(struct bus *base, const struct bus_msg *msgs, int n, int timeout_ms)
{
    struct log_bus *b = (struct log_bus *)base;
    struct produce_ctx p = {b, msgs, n};
    int rc = db_transact(b->db, produce_tx, NULL, &p);
    if (rc == 0) {
        pthread_mutex_lock(&b->mu);
        for (int i = 0; i < n; i++) {
            if (i > 0 && !strcmp(msgs[i].topic, msgs[i - 1].topic))
                continue;
            int g = 0;
            while (g < b->n_gens && strcmp(b->gens[g].name, msgs[i].topic) != 0)
                g++;
            if (g == b->n_gens && g < MAX_GENS && strlen(msgs[i].topic) < sizeof b->gens[g].name)
                snprintf(b->gens[b->n_gens++].name, sizeof b->gens[g].name, "%s", msgs[i].topic);
            if (g < b->n_gens)
                b->gens[g].gen++;
        }
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
    return rc;
}

/* The sum of the generations of c's topics (b->mu held): it moves when any of them does. */
static uint64_t topics_gen(const struct log_bus *b, const struct bus_consumer *c)
{
    uint64_t sum = 0;
    for (int g = 0; g < b->n_gens; g++)
        for (int t = 0; t < c->n_topics; t++)
            if (!strcmp(b->gens[g].name, c->topics[t]))
                sum += b->gens[g].gen;
    return sum;
}

static void consumer_free(struct bus_consumer *c)
{
    if (!c)
        return;
    db_rows_free(c->rows);
    for (int i = 0; i < c->n_topics; i++)
        free(c->topics[i]);
    free(c);
}

static int log_consumer_open(struct bus *base, const char *group, const char *const *topics, int n,
                             struct bus_consumer **out)
{
    *out = NULL;
    if (n < 1 || n > MAX_TOPICS || strlen(group) >= 64)
        return ERR_INVALID;
    struct bus_consumer *c = calloc(1, sizeof *c);
    if (!c)
        return ERR_NOMEM;
    c->b = (struct log_bus *)base;
    snprintf(c->group, sizeof c->group, "%s", group);
    for (int i = 0; i < n; i++) {
        if (!(c->topics[c->n_topics] = strdup(topics[i]))) {
            consumer_free(c);
            return ERR_NOMEM;
        }
        c->n_topics++;
    }
    *out = c;
    return 0;
}

/* Fetches up to FETCH messages past the group's committed offsets, in (topic, partition,
 * offset) order. First the partitions with something to read (the small heads and offsets
 * tables), then each of those partitions' next messages through the primary key: a fetch
 * costs the same however long the retained log is. On PostgreSQL both in one statement (a
 * lateral join); on SQLite two. */
static int fetch(struct bus_consumer *c)
{
    db_rows_free(c->rows);
    c->rows = NULL;
    c->pos = c->n = 0;
    char sql[2048];
    int len = snprintf(sql, sizeof sql,
                       "SELECT h.topic, h.part, COALESCE(o.next_off, 0) FROM bus_heads h "
                       "LEFT JOIN bus_offsets o ON o.grp = $1 AND o.topic = h.topic AND "
                       "o.part = h.part WHERE h.next_off > COALESCE(o.next_off, 0) AND "
                       "h.topic IN (");
    struct db_val a[MAX_TOPICS + 1] = {DB_TEXT(c->group)};
    for (int i = 0; i < c->n_topics; i++) {
        a[i + 1] = DB_TEXT(c->topics[i]);
        len += snprintf(sql + len, sizeof sql - (size_t)len, "%s$%d", i ? ", " : "", i + 2);
    }
    len += snprintf(sql + len, sizeof sql - (size_t)len, ") ORDER BY h.topic, h.part LIMIT %d",
                    FETCH_PARTS);
    if (db_dialect(c->b->db) == DB_POSTGRES) {
        /* One statement: each due partition's next messages through a lateral join. */
        char whole[2560];
        snprintf(whole, sizeof whole,
                 "SELECT l.topic, l.part, l.off, l.msg_key, l.value FROM (%s) d(topic, part, nx) "
                 "CROSS JOIN LATERAL (SELECT topic, part, off, msg_key, value FROM bus_log "
                 "WHERE topic = d.topic AND part = d.part AND off >= d.nx ORDER BY off "
                 "LIMIT %d) l ORDER BY 1, 2, 3 LIMIT %d",
                 sql, FETCH, FETCH);
        int rc = db_query_once(c->b->db, whole, c->n_topics + 1, a, &c->rows);
        if (rc < 0)
            return rc;
        c->n = db_rows_count(c->rows);
        return 0;
    }
    struct db_rows *due = NULL;
    int rc = db_query_once(c->b->db, sql, c->n_topics + 1, a, &due);
    int n = rc < 0 ? 0 : db_rows_count(due);
    if (n > 0) {
        struct db_val p[FETCH_PARTS * 3];
        len = 0;
        for (int i = 0; i < n; i++) {
            p[3 * i] = DB_TEXT(db_get(due, i, 0));
            p[3 * i + 1] = DB_INT(db_get_i64(due, i, 1));
            p[3 * i + 2] = DB_INT(db_get_i64(due, i, 2));
            len += snprintf(sql + len, sizeof sql - (size_t)len,
                            "%sSELECT * FROM (SELECT topic, part, off, msg_key, value FROM "
                            "bus_log WHERE topic = $%d AND part = $%d AND off >= $%d ORDER BY "
                            "off LIMIT %d) p%d",
                            i ? " UNION ALL " : "", 3 * i + 1, 3 * i + 2, 3 * i + 3, FETCH, i);
        }
        snprintf(sql + len, sizeof sql - (size_t)len, " ORDER BY 1, 2, 3 LIMIT %d", FETCH);
        rc = db_query_once(c->b->db, sql, 3 * n, p, &c->rows);
    }
    db_rows_free(due);
    if (rc < 0)
        return rc;
    c->n = db_rows_count(c->rows);
    return 0;
}

static int log_poll(struct bus_consumer *c, int timeout_ms, struct bus_msg *out)
{
    struct log_bus *b = c->b;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    for (;;) {
        if (c->pos < c->n) {
            int i = c->pos++;
            out->topic = db_get(c->rows, i, 0);
            out->partition = (int)db_get_i64(c->rows, i, 1);
            out->offset = db_get_i64(c->rows, i, 2);
            out->key = db_get(c->rows, i, 3);
            out->key_len = strlen(out->key);
            out->value = db_get(c->rows, i, 4);
            out->len = strlen(out->value);
            out->id = NULL;
            c->uncommitted = true;
            return 1;
        }
        if (c->uncommitted && timeout_ms == 0)
            return 0; /* a fetch would start at the committed offsets: commit first */
        pthread_mutex_lock(&b->mu);
        uint64_t gen = topics_gen(b, c);
        pthread_mutex_unlock(&b->mu);
        int rc = fetch(c);
        if (rc < 0)
            return rc;
        c->seen_gen = gen;
        if (c->n > 0)
            continue;
        /* Nothing: wait for a produce to one of c's topics in this process, or poll another's
         * every 100 ms. */
        struct timespec now, step;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > until.tv_sec ||
            (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec))
            return 0;
        step = now;
        step.tv_nsec += 100 * 1000000L;
        if (step.tv_nsec >= 1000000000L) {
            step.tv_sec++;
            step.tv_nsec -= 1000000000L;
        }
        if (step.tv_sec > until.tv_sec ||
            (step.tv_sec == until.tv_sec && step.tv_nsec > until.tv_nsec))
            step = until;
        pthread_mutex_lock(&b->mu);
        while (topics_gen(b, c) == c->seen_gen &&
               pthread_cond_timedwait(&b->cv, &b->mu, &step) == 0)
            ;
        pthread_mutex_unlock(&b->mu);
    }
}

#define OFFSET_UPSERT                                                                              \
    " ON CONFLICT (grp, topic, part) DO UPDATE SET next_off = excluded.next_off, "                 \
    "updated_at = excluded.updated_at"

struct commit_ctx {
    struct bus_consumer *c;
    const struct bus_msg *m;
    int n;
};

/* SQLite: a statement per partition, in one transaction. */
static int commit_tx(struct db_conn *conn, void *vctx)
{
    struct commit_ctx *x = vctx;
    int64_t now = now_ms();
    for (int i = 0; i < x->n; i++) {
        struct db_val a[] = {DB_TEXT(x->c->group), DB_TEXT(x->m[i].topic),
                             DB_INT(x->m[i].partition), DB_INT(x->m[i].offset + 1), DB_INT(now)};
        int rc = db_query(conn,
                          "INSERT INTO bus_offsets (grp, topic, part, next_off, updated_at) "
                          "VALUES ($1, $2, $3, $4, $5)" OFFSET_UPSERT,
                          5, a, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int cmp_msg_part(const void *a, const void *b)
{
    const struct bus_msg *x = a, *y = b;
    int t = strcmp(x->topic, y->topic);
    return t ? t : (x->partition > y->partition) - (x->partition < y->partition);
}

/* Every partition's offset in one transaction; on PostgreSQL one set statement, its rows
 * in (topic, partition) order. */
static int log_commit(struct bus_consumer *c, const struct bus_msg *m, int n)
{
    if (n <= 0)
        return 0;
    int rc;
    if (db_dialect(c->b->db) == DB_POSTGRES) {
        struct bus_msg *sorted = malloc((size_t)n * sizeof *sorted);
        struct buf t = BUF_INIT(0), p = BUF_INIT(0), o = BUF_INIT(0);
        if (sorted) {
            memcpy(sorted, m, (size_t)n * sizeof *sorted);
            qsort(sorted, (size_t)n, sizeof *sorted, cmp_msg_part);
            for (int i = 0; i < n; i++) {
                db_array_text(&t, sorted[i].topic);
                db_array_int(&p, sorted[i].partition);
                db_array_int(&o, sorted[i].offset + 1);
            }
        }
        const char *ta = db_array_end(&t), *pa = db_array_end(&p), *oa = db_array_end(&o);
        if (!sorted || !ta || !pa || !oa) {
            rc = ERR_NOMEM;
        } else {
            struct db_val a[] = {DB_TEXT(c->group), DB_TEXT(ta), DB_TEXT(pa), DB_TEXT(oa),
                                 DB_INT(now_ms())};
            rc = db_query_once(c->b->db,
                               "INSERT INTO bus_offsets (grp, topic, part, next_off, updated_at) "
                               "SELECT $1, t, p, o, $5 FROM unnest($2::text[], $3::int[], "
                               "$4::bigint[]) AS x(t, p, o)" OFFSET_UPSERT,
                               5, a, NULL);
        }
        free(sorted);
        buf_free(&t);
        buf_free(&p);
        buf_free(&o);
    } else {
        struct commit_ctx x = {c, m, n};
        rc = db_transact(c->b->db, commit_tx, NULL, &x);
    }
    if (rc < 0)
        return rc;
    c->uncommitted = false; /* the caller commits every partition of its batch before polling */
    return 0;
}

static int log_rewind(struct bus_consumer *c, const struct bus_msg *m)
{
    /* The next fetch starts at the committed offsets again: m was not committed. */
    c->pos = c->n;
    c->uncommitted = false;
    return 0;
}

static void log_consumer_close(struct bus_consumer *c) { consumer_free(c); }

static int64_t log_lag(struct bus *base, const char *group, const char *topic)
{
    struct log_bus *b = (struct log_bus *)base;
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_TEXT(group), DB_TEXT(topic)};
    int rc = db_query_once(b->db,
                           "SELECT h.next_off - COALESCE(o.next_off, 0) FROM bus_heads h "
                           "LEFT JOIN bus_offsets o ON o.grp = $1 AND o.topic = h.topic AND "
                           "o.part = h.part WHERE h.topic = $2",
                           2, a, &r);
    int64_t lag = 0;
    for (int i = 0; rc >= 0 && i < db_rows_count(r); i++)
        lag += db_get_i64(r, i, 0);
    db_rows_free(r);
    return rc < 0 ? -1 : lag;
}

static void log_maintain(struct bus *base)
{
    struct log_bus *b = (struct log_bus *)base;
    struct db_val a[] = {DB_INT(now_ms() - (int64_t)b->retention_h * 3600 * 1000)};
    int rc = db_query_once(b->db, "DELETE FROM bus_log WHERE created_at < $1", 1, a, NULL);
    if (rc > 0)
        log_info("bus: %d messages past the retention deleted", rc);
    /* Offsets of broadcast groups (one per process, bus_subscribe_broadcast) that have not
     * committed for a day: their process is gone. A live one that was idle that long only
     * reads the retained messages again (its handler skips what predates its start). */
    struct db_val g[] = {DB_INT(now_ms() - 24LL * 3600 * 1000)};
    rc = db_query_once(b->db,
                       "DELETE FROM bus_offsets WHERE grp LIKE '%" BUS_BROADCAST_MARK
                       "%' AND updated_at < $1",
                       1, g, NULL);
    if (rc > 0)
        log_info("bus: %d offsets of gone broadcast groups deleted", rc);
}

static void log_free(struct bus *base)
{
    struct log_bus *b = (struct log_bus *)base;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

static const struct bus_ops log_ops = {
    .name = "log",
    .produce = log_produce,
    .consumer_open = log_consumer_open,
    .poll = log_poll,
    .commit = log_commit,
    .rewind = log_rewind,
    .consumer_close = log_consumer_close,
    .lag = log_lag,
    .maintain = log_maintain,
    .free = log_free,
};

int bus_log_new(struct db *db, int partitions, int retention_hours, struct bus **out)
{
    *out = NULL;
    if (!db || partitions < 1 || partitions > 256 || retention_hours < 1)
        return ERR_INVALID;
    struct log_bus *b = calloc(1, sizeof *b);
    if (!b)
        return ERR_NOMEM;
    b->base.ops = &log_ops;
    b->db = db;
    b->parts = partitions;
    b->retention_h = retention_hours;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    *out = &b->base;
    return 0;
}
