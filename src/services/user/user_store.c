/* SPDX-License-Identifier: MIT */
/* user_store.c — the user service's SQL: the users and sessions tables.
 *
 * Every statement is parameterised; the caller holds the connection (and any transaction).
 * Session tokens are stored as the hex SHA-256 only, so a leaked database holds no usable
 * token. */
#include <stdio.h>
#include <string.h>

#include "emporium/buf.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/outbox.h"
#define EMPORIUM_SERVICE_NO_HTTP /* the store knows nothing of HTTP */
#include "emporium/service.h"
#include "user_internal.h"

static const struct db_migration user_migrations[] = {
    {.sql = "CREATE TABLE users ("
            " id BIGINT PRIMARY KEY,"
            " email TEXT NOT NULL UNIQUE,"
            " name TEXT NOT NULL,"
            " password_hash TEXT NOT NULL,"
            " role TEXT NOT NULL DEFAULT 'customer',"
            " tier TEXT NOT NULL DEFAULT 'standard',"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE TABLE sessions ("
            " token_hash TEXT PRIMARY KEY,"
            " user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
            " created_at BIGINT NOT NULL,"
            " expires_at BIGINT NOT NULL);"
            "CREATE INDEX sessions_user ON sessions (user_id);"
            "CREATE INDEX sessions_expires ON sessions (expires_at);"},
    /* session.revoked events: the other processes drop the session from their cache. */
    {.sql = OUTBOX_MIGRATION},
    /* The generation of the Redis session copies (user_session.c). */
    {.sql = "CREATE TABLE session_store (id INTEGER PRIMARY KEY, generation BIGINT NOT NULL);"},
    {.sql = OUTBOX_QUEUE_MIGRATION},
};

const struct service_db user__dbs[] = {
    {"users", 0, user_migrations, sizeof user_migrations / sizeof user_migrations[0]},
    {NULL, 0, NULL, 0},
};

#define USER_COLUMNS "id, email, name, role, tier, created_at"

static const char *role_str(enum user_role r)
{
    return r == USER_ROLE_ADMIN ? "admin" : "customer";
}
static const char *tier_str(enum user_tier t)
{
    return t == USER_TIER_PREMIUM ? "premium" : "standard";
}

/* A USER_COLUMNS row into *out. */
static void read_user(const struct db_rows *rows, int row, struct user *out)
{
    memset(out, 0, sizeof *out);
    out->id = db_get_i64(rows, row, 0);
    snprintf(out->email, sizeof out->email, "%s", db_get(rows, row, 1));
    snprintf(out->name, sizeof out->name, "%s", db_get(rows, row, 2));
    out->role = !strcmp(db_get(rows, row, 3), "admin") ? USER_ROLE_ADMIN : USER_ROLE_CUSTOMER;
    out->tier = !strcmp(db_get(rows, row, 4), "premium") ? USER_TIER_PREMIUM : USER_TIER_STANDARD;
    out->created_at = db_get_i64(rows, row, 5);
}

int user_store_insert(struct db_conn *c, const struct user *u, const char *pw_hash)
{
    struct db_val args[] = {
        DB_INT(u->id),        DB_TEXT(u->email),          DB_TEXT(u->name),
        DB_TEXT(pw_hash),     DB_TEXT(role_str(u->role)), DB_TEXT(tier_str(u->tier)),
        DB_INT(u->created_at)};
    int rc = db_query(c,
                      "INSERT INTO users (id, email, name, password_hash, role, tier, created_at, "
                      "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                      7, args, NULL);
    return rc < 0 ? rc : 0;
}

int user_store_insert_or_get(struct db_conn *c, struct user *u, const char *pw_hash, bool *inserted)
{
    struct db_val args[] = {
        DB_INT(u->id),        DB_TEXT(u->email),          DB_TEXT(u->name),
        DB_TEXT(pw_hash),     DB_TEXT(role_str(u->role)), DB_TEXT(tier_str(u->tier)),
        DB_INT(u->created_at)};
    int rc = db_query(c,
                      "INSERT INTO users (id, email, name, password_hash, role, tier, created_at, "
                      "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) "
                      "ON CONFLICT (email) DO NOTHING",
                      7, args, NULL);
    if (rc < 0)
        return rc;
    *inserted = rc > 0;
    if (*inserted)
        return 0;
    struct user existing;
    rc = user_store_by_email(c, u->email, &existing, NULL);
    if (rc == 0)
        *u = existing;
    return rc;
}

static int select_one(struct db_conn *c, const char *sql, const struct db_val *arg,
                      struct user *out, char pw_hash[USER_HASH_MAX])
{
    struct db_rows *rows = NULL;
    int rc = db_query(c, sql, 1, arg, &rows);
    if (rc < 0)
        return rc;
    if (db_rows_count(rows) != 1) {
        db_rows_free(rows);
        return ERR_NOTFOUND;
    }
    read_user(rows, 0, out);
    if (pw_hash)
        snprintf(pw_hash, USER_HASH_MAX, "%s", db_get(rows, 0, 6));
    db_rows_free(rows);
    return 0;
}

int user_store_by_email(struct db_conn *c, const char *email, struct user *out,
                        char pw_hash[USER_HASH_MAX])
{
    struct db_val args[] = {DB_TEXT(email)};
    return select_one(c, "SELECT " USER_COLUMNS ", password_hash FROM users WHERE email = $1", args,
                      out, pw_hash);
}

int user_store_by_id(struct db_conn *c, int64_t id, struct user *out)
{
    struct db_val args[] = {DB_INT(id)};
    return select_one(c, "SELECT " USER_COLUMNS " FROM users WHERE id = $1", args, out, NULL);
}

int user_store_by_ids(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n,
                      struct user *out)
{
    for (int i = 0; i < n; i++)
        memset(&out[i], 0, sizeof out[i]);
    if (n == 0)
        return 0;
    /* The ids as one parameter: a JSON array for json_each (SQLite), an array literal. */
    struct buf list = BUF_INIT(0);
    for (int i = 0; i < n; i++) {
        if (d == DB_SQLITE)
            buf_printf(&list, i ? ",%lld" : "[%lld", (long long)ids[i]);
        else
            db_array_int(&list, ids[i]);
    }
    const char *arg;
    if (d == DB_SQLITE) {
        buf_puts(&list, "]");
        arg = list.err ? NULL : list.p;
    } else {
        arg = db_array_end(&list);
    }
    if (!arg) {
        buf_free(&list);
        return ERR_NOMEM;
    }
    struct db_val args[] = {DB_TEXT(arg)};
    struct db_rows *rows = NULL;
    int rc =
        db_query(c,
                 d == DB_SQLITE ? "SELECT " USER_COLUMNS " FROM users WHERE id IN "
                                  "(SELECT value FROM json_each($1))"
                                : "SELECT " USER_COLUMNS " FROM users WHERE id = ANY($1::bigint[])",
                 1, args, &rows);
    buf_free(&list);
    if (rc < 0)
        return rc;
    for (int r = 0; r < db_rows_count(rows); r++) {
        int64_t id = db_get_i64(rows, r, 0);
        for (int i = 0; i < n; i++)
            if (ids[i] == id)
                read_user(rows, r, &out[i]);
    }
    db_rows_free(rows);
    return 0;
}

int user_store_session_add(struct db_conn *c, const char *token_hash_hex, int64_t user_id,
                           int64_t created_at, int64_t expires_at)
{
    struct db_val args[] = {DB_TEXT(token_hash_hex), DB_INT(user_id), DB_INT(created_at),
                            DB_INT(expires_at)};
    int rc = db_query(c,
                      "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) "
                      "VALUES ($1, $2, $3, $4)",
                      4, args, NULL);
    return rc < 0 ? rc : 0;
}

int user_store_session_delete(struct db_conn *c, const char *token_hash_hex)
{
    struct db_val args[] = {DB_TEXT(token_hash_hex)};
    int rc = db_query(c, "DELETE FROM sessions WHERE token_hash = $1", 1, args, NULL);
    return rc < 0 ? rc : 0;
}

int user_store_session_user(struct db_conn *c, const char *token_hash_hex, int64_t now,
                            int64_t *user_id, enum user_role *role, enum user_tier *tier,
                            int64_t *expires_at)
{
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_TEXT(token_hash_hex), DB_INT(now)};
    int rc = db_query(c,
                      "SELECT u.id, u.role, u.tier, s.expires_at FROM sessions s JOIN users u ON "
                      "u.id = s.user_id "
                      "WHERE s.token_hash = $1 AND s.expires_at > $2",
                      2, args, &rows);
    if (rc < 0)
        return rc;
    if (db_rows_count(rows) != 1) {
        db_rows_free(rows);
        return ERR_NOTFOUND;
    }
    *user_id = db_get_i64(rows, 0, 0);
    *role = !strcmp(db_get(rows, 0, 1), "admin") ? USER_ROLE_ADMIN : USER_ROLE_CUSTOMER;
    *tier = !strcmp(db_get(rows, 0, 2), "premium") ? USER_TIER_PREMIUM : USER_TIER_STANDARD;
    *expires_at = db_get_i64(rows, 0, 3);
    db_rows_free(rows);
    return 0;
}

int user_store_sessions_sweep(struct db_conn *c, int64_t now, int max)
{
    struct db_val args[] = {DB_INT(now), DB_INT(max)};
    return db_query(c,
                    "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions "
                    "WHERE expires_at <= $1 LIMIT $2)",
                    2, args, NULL);
}

int user_store_session_generation(struct db_conn *c, bool bump, int64_t *out)
{
    int rc = 0;
    if (bump)
        rc = db_query(c,
                      "INSERT INTO session_store (id, generation) VALUES (1, 1) ON CONFLICT (id) "
                      "DO UPDATE SET generation = session_store.generation + 1",
                      0, NULL, NULL);
    struct db_rows *rows = NULL;
    if (rc >= 0)
        rc = db_query(c, "SELECT generation FROM session_store WHERE id = 1", 0, NULL, &rows);
    if (rc < 0)
        return rc;
    *out = db_rows_count(rows) == 1 ? db_get_i64(rows, 0, 0) : 0;
    db_rows_free(rows);
    return 0;
}
