/* SPDX-License-Identifier: MIT */
/* mongo.c — the document-store port (mongo.h) on libmongoc.
 *
 * One mongoc_client_pool_t per struct mongo: a call pops a client, runs one command and pushes
 * it back, so any thread may call. Errors are sorted into the project's codes by libmongoc's
 * error domain and the server's code: no server selectable or a broken stream is
 * ERR_UNAVAILABLE (the caller retries later), code 11000 is ERR_CONFLICT, JSON that is not a
 * document is ERR_INVALID. libmongoc's own log handler is replaced by one that goes through
 * log.h at debug level, so its messages never carry a URI's password to stdout unasked.
 *
 * No MongoDB server can be installed on the build machines of this project: the adapter's
 * error paths run in every test (a server that is not there), its writes only where
 * MONGODB_URI names a server (tests/integration/test_mongo_server.c). */
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/mongo.h"

#define MONGO_SELECT_MS 2000 /* serverSelectionTimeoutMS unless the URI sets it */

struct mongo {
    mongoc_client_pool_t *pool;
    char db[64];
};

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void quiet_log(mongoc_log_level_t level, const char *domain, const char *message, void *ud)
{
    (void)ud;
    if (level <= MONGOC_LOG_LEVEL_WARNING)
        log_debug("mongo %s: %s", domain, message);
}

static void init_once(void)
{
    mongoc_init();
    mongoc_log_set_handler(quiet_log, NULL);
}

static int from_error(const bson_error_t *e)
{
    if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
        e->domain == MONGOC_ERROR_CLIENT)
        return ERR_UNAVAILABLE;
    if (e->code == 11000 || e->code == 11001)
        return ERR_CONFLICT;
    log_warn("mongo: %s (domain %u, code %u)", e->message, e->domain, e->code);
    return ERR_INTERNAL;
}

int mongo_json_check(const char *text)
{
    bson_error_t e;
    bson_t *b = text ? bson_new_from_json((const uint8_t *)text, -1, &e) : NULL;
    if (!b)
        return ERR_INVALID;
    bson_destroy(b);
    return 0;
}

int mongo_open(const char *uri, struct mongo **out, char *why, size_t whycap)
{
    *out = NULL;
    pthread_once(&once, init_once);
    bson_error_t e;
    mongoc_uri_t *u = uri ? mongoc_uri_new_with_error(uri, &e) : NULL;
    if (!u) {
        snprintf(why, whycap, "not a MongoDB connection string");
        return ERR_INVALID;
    }
    if (!mongoc_uri_has_option(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, MONGO_SELECT_MS);
    if (!mongoc_uri_has_option(u, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(u, MONGOC_URI_CONNECTTIMEOUTMS, MONGO_SELECT_MS);
    struct mongo *m = calloc(1, sizeof *m);
    const char *db = mongoc_uri_get_database(u);
    if (m && db && strlen(db) >= sizeof m->db) {
        snprintf(why, whycap, "database name longer than %zu bytes", sizeof m->db - 1);
        free(m);
        mongoc_uri_destroy(u);
        return ERR_INVALID;
    }
    if (m) {
        snprintf(m->db, sizeof m->db, "%s", db && *db ? db : "emporium");
        m->pool = mongoc_client_pool_new(u);
    }
    mongoc_uri_destroy(u);
    if (!m || !m->pool) {
        free(m);
        snprintf(why, whycap, "out of memory");
        return ERR_NOMEM;
    }
    mongoc_client_pool_set_error_api(m->pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_set_appname(m->pool, "emporium");
    *out = m;
    return 0;
}

void mongo_close(struct mongo *m)
{
    if (!m)
        return;
    mongoc_client_pool_destroy(m->pool);
    free(m);
}

static bson_t *doc(const char *json)
{
    bson_error_t e;
    return json ? bson_new_from_json((const uint8_t *)json, -1, &e) : NULL;
}

int mongo_upsert(struct mongo *m, const char *collection, const char *filter_json,
                 const char *update_json)
{
    bson_t *filter = doc(filter_json), *update = doc(update_json);
    int rc = filter && update ? 0 : ERR_INVALID;
    if (rc == 0) {
        mongoc_client_t *cl = mongoc_client_pool_pop(m->pool);
        mongoc_collection_t *coll = mongoc_client_get_collection(cl, m->db, collection);
        bson_t opts = BSON_INITIALIZER, reply;
        BSON_APPEND_BOOL(&opts, "upsert", true);
        bson_error_t e;
        if (mongoc_collection_update_one(coll, filter, update, &opts, &reply, &e)) {
            bson_iter_t it;
            rc = bson_iter_init_find(&it, &reply, "upsertedCount") && bson_iter_as_int64(&it) > 0;
        } else {
            rc = from_error(&e);
        }
        bson_destroy(&reply);
        bson_destroy(&opts);
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(m->pool, cl);
    }
    if (filter)
        bson_destroy(filter);
    if (update)
        bson_destroy(update);
    return rc;
}

/* Runs cmd (a document) on database db; 0 or the sorted error (quiet: a server's refusal is
 * ERR_INTERNAL without a log line). */
static int command(struct mongo *m, const char *db, const bson_t *cmd, bool quiet)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(m->pool);
    bson_error_t e;
    bson_t reply;
    bool ok = mongoc_client_command_simple(cl, db, cmd, NULL, &reply, &e);
    bson_destroy(&reply);
    mongoc_client_pool_push(m->pool, cl);
    if (ok)
        return 0;
    if (quiet && e.domain != MONGOC_ERROR_SERVER_SELECTION && e.domain != MONGOC_ERROR_STREAM &&
        e.domain != MONGOC_ERROR_CLIENT)
        return ERR_INTERNAL;
    return from_error(&e);
}

int mongo_ensure_collection(struct mongo *m, const char *collection, const char *key_json)
{
    bson_t *key = doc(key_json);
    if (!key)
        return ERR_INVALID;
    bson_t cmd = BSON_INITIALIZER, indexes, index;
    BSON_APPEND_UTF8(&cmd, "createIndexes", collection);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
    BSON_APPEND_DOCUMENT(&index, "key", key);
    BSON_APPEND_UTF8(&index, "name", "shard_key");
    bson_append_document_end(&indexes, &index);
    bson_append_array_end(&cmd, &indexes);
    int rc = command(m, m->db, &cmd, false);
    bson_destroy(&cmd);
    if (rc == 0) {
        /* Only a mongos knows shardCollection: elsewhere the index is all there is to do. */
        char ns[200];
        snprintf(ns, sizeof ns, "%s.%s", m->db, collection);
        bson_t sh = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&sh, "shardCollection", ns);
        BSON_APPEND_DOCUMENT(&sh, "key", key);
        int src = command(m, "admin", &sh, true);
        if (src == ERR_UNAVAILABLE)
            rc = src;
        bson_destroy(&sh);
    }
    bson_destroy(key);
    return rc;
}

int mongo_count(struct mongo *m, const char *collection, const char *filter_json, int64_t *out)
{
    *out = 0;
    bson_t *filter = doc(filter_json);
    if (!filter)
        return ERR_INVALID;
    mongoc_client_t *cl = mongoc_client_pool_pop(m->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, m->db, collection);
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &e);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(m->pool, cl);
    bson_destroy(filter);
    if (n < 0)
        return from_error(&e);
    *out = n;
    return 0;
}

int mongo_ping(struct mongo *m)
{
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    int rc = command(m, "admin", &cmd, false);
    bson_destroy(&cmd);
    return rc;
}
