/* SPDX-License-Identifier: MIT */
/* backup.c — `emporium backup --to DIR` and `emporium restore --from DIR` (see backup.h).
 *
 * A backup directory holds one `<name>.db` per database of the data dir and MANIFEST.json:
 *   {"format": "emporium-backup/1", "version": "0.1.0", "created_at": "…Z",
 *    "databases": [{"name": "orders_0", "file": "orders_0.db", "bytes": 40960}, …]}
 * restore trusts only what the manifest lists, and checks every file before touching the
 * target. */
#include "emporium/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "emporium/config.h"

#define MAX_DBS 256
#define MANIFEST "MANIFEST.json"
#define FORMAT "emporium-backup/1"
#define BUSY_MS 30000

struct names {
    char *v[MAX_DBS];
    int n;
};

static void names_free(struct names *n)
{
    for (int i = 0; i < n->n; i++)
        free(n->v[i]);
    n->n = 0;
}

/* A database name as the data dir names its files: [a-z0-9_]+, at most 64 characters. */
static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The databases of a data dir: every `<name>.db`, sorted. -1 when dir cannot be read. */
static int list_dbs(const char *dir, struct names *out)
{
    out->n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".db") || !valid_name(e->d_name, len - 3))
            continue;
        if (out->n == MAX_DBS) {
            closedir(d);
            names_free(out);
            errno = E2BIG;
            return -1;
        }
        out->v[out->n] = strndup(e->d_name, len - 3);
        if (!out->v[out->n]) {
            closedir(d);
            names_free(out);
            return -1;
        }
        out->n++;
    }
    closedir(d);
    qsort(out->v, (size_t)out->n, sizeof out->v[0], cmp_str);
    return 0;
}

static int mkdir_private(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* Anything in dir other than "." and ".."? -1 when it cannot be read (ENOENT: empty). */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int fsync_path(const char *path, bool is_dir)
{
    int fd = open(path, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* PRAGMA quick_check of a file; true when "ok". */
static bool check_file(const char *path, char *why, size_t cap)
{
    sqlite3 *db = NULL;
    bool good = false;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(why, cap, "%s", db ? sqlite3_errmsg(db) : "cannot open");
    } else {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            const char *res = (const char *)sqlite3_column_text(st, 0);
            good = res && !strcmp(res, "ok");
            snprintf(why, cap, "%s", res ? res : "no answer");
        } else {
            snprintf(why, cap, "%s", sqlite3_errmsg(db));
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return good;
}

/* Copies the open database src (inside whatever read transaction it holds) into the file
 * path, which is created 0600. */
static int copy_db(sqlite3 *src, const char *path, char *why, size_t cap)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(why, cap, "%s", strerror(errno));
        return -1;
    }
    close(fd);
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
        if (!b) {
            rc = sqlite3_errcode(dst);
        } else {
            rc = sqlite3_backup_step(b, -1);
            int fin = sqlite3_backup_finish(b);
            rc = rc == SQLITE_DONE ? fin : rc;
        }
    }
    if (rc != SQLITE_OK)
        snprintf(why, cap, "%s", dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
    /* The copy is a standalone file: no WAL next to it in the backup. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    sqlite3_close(dst);
    return rc == SQLITE_OK ? 0 : -1;
}

static void utc_now(char *buf, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int do_backup(const char *data_dir, const char *to)
{
    struct names dbs;
    if (list_dbs(data_dir, &dbs) != 0) {
        fprintf(stderr, "emporium backup: cannot read the data dir %s: %s\n", data_dir,
                strerror(errno));
        return 1;
    }
    if (dbs.n == 0) {
        fprintf(stderr, "emporium backup: no databases (*.db) in %s\n", data_dir);
        return 1;
    }
    int entries = dir_entries(to);
    if (entries != 0) {
        fprintf(stderr, "emporium backup: %s %s; choose a new directory\n", to,
                entries < 0 ? "cannot be read" : "is not empty");
        names_free(&dbs);
        return 1;
    }
    if (mkdir_private(to) != 0) {
        fprintf(stderr, "emporium backup: cannot create %s: %s\n", to, strerror(errno));
        names_free(&dbs);
        return 1;
    }
    sqlite3 *src[MAX_DBS] = {NULL};
    int status = 0;
    char path[4096], why[256];
    /* 1. A read transaction on every database: the snapshots of one moment. */
    for (int i = 0; i < dbs.n && !status; i++) {
        snprintf(path, sizeof path, "%s/%s.db", data_dir, dbs.v[i]);
        if (sqlite3_open_v2(path, &src[i], SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
            sqlite3_busy_timeout(src[i], BUSY_MS) != SQLITE_OK ||
            sqlite3_exec(src[i], "BEGIN; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) !=
                SQLITE_OK) {
            fprintf(stderr, "emporium backup: cannot read %s: %s\n", path,
                    src[i] ? sqlite3_errmsg(src[i]) : "out of memory");
            status = 1;
        }
    }
    /* 2. Each copied inside its transaction, then checked. */
    json_t *list = json_array();
    long long total = 0;
    for (int i = 0; i < dbs.n && !status; i++) {
        snprintf(path, sizeof path, "%s/%s.db", to, dbs.v[i]);
        if (copy_db(src[i], path, why, sizeof why) != 0 || !check_file(path, why, sizeof why) ||
            fsync_path(path, false) != 0) {
            fprintf(stderr, "emporium backup: %s: %s\n", dbs.v[i], why);
            status = 1;
            break;
        }
        struct stat st;
        long long bytes = stat(path, &st) == 0 ? (long long)st.st_size : 0;
        total += bytes;
        char file[80];
        snprintf(file, sizeof file, "%s.db", dbs.v[i]);
        json_array_append_new(list, json_pack("{s:s, s:s, s:I}", "name", dbs.v[i], "file", file,
                                              "bytes", (json_int_t)bytes));
    }
    for (int i = 0; i < dbs.n; i++) {
        if (src[i])
            sqlite3_exec(src[i], "COMMIT", NULL, NULL, NULL);
        sqlite3_close(src[i]);
    }
    if (!status) {
        char now[32];
        utc_now(now, sizeof now);
        json_t *m = json_pack("{s:s, s:s, s:s, s:O}", "format", FORMAT, "version", EMPORIUM_VERSION,
                              "created_at", now, "databases", list);
        snprintf(path, sizeof path, "%s/%s", to, MANIFEST);
        if (!m || json_dump_file(m, path, JSON_INDENT(2)) != 0 || chmod(path, 0600) != 0 ||
            fsync_path(path, false) != 0 || fsync_path(to, true) != 0) {
            fprintf(stderr, "emporium backup: cannot write %s\n", path);
            status = 1;
        }
        json_decref(m);
    }
    json_decref(list);
    if (!status)
        printf("backed up %d databases (%lld bytes) from %s to %s\n", dbs.n, total, data_dir, to);
    else
        fprintf(stderr, "emporium backup: FAILED; %s is incomplete, delete it\n", to);
    names_free(&dbs);
    return status;
}

/* The manifest's database names, each checked; 0 or 1 (message printed). */
static int read_manifest(const char *from, struct names *out)
{
    out->n = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", from, MANIFEST);
    json_error_t jerr;
    json_t *m = json_load_file(path, 0, &jerr);
    if (!m) {
        fprintf(stderr, "emporium restore: %s is not a backup: cannot read %s (%s)\n", from,
                MANIFEST, jerr.text);
        return 1;
    }
    const char *fmt = json_string_value(json_object_get(m, "format"));
    json_t *list = json_object_get(m, "databases");
    int status = 0;
    if (!fmt || strcmp(fmt, FORMAT) || !json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > MAX_DBS) {
        fprintf(stderr, "emporium restore: %s/%s: not an %s manifest\n", from, MANIFEST, FORMAT);
        status = 1;
    }
    size_t i;
    json_t *e;
    json_array_foreach (list, i, e) {
        if (status)
            break;
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!name || !valid_name(name, strlen(name))) {
            fprintf(stderr, "emporium restore: %s: a database without a valid name\n", MANIFEST);
            status = 1;
            break;
        }
        out->v[out->n] = strdup(name);
        if (!out->v[out->n]) {
            status = 1;
            break;
        }
        out->n++;
    }
    json_decref(m);
    if (status)
        names_free(out);
    return status;
}

static int do_restore(const char *from, const char *data_dir, bool force)
{
    struct names dbs;
    if (read_manifest(from, &dbs) != 0)
        return 1;
    char path[4096], dst[4096], why[256];
    int status = 0;
    for (int i = 0; i < dbs.n && !status; i++) {
        snprintf(path, sizeof path, "%s/%s.db", from, dbs.v[i]);
        if (!check_file(path, why, sizeof why)) {
            fprintf(stderr, "emporium restore: %s is damaged (%s); nothing was changed\n", path,
                    why);
            status = 1;
        }
    }
    struct names old = {.n = 0};
    if (!status && list_dbs(data_dir, &old) != 0 && errno != ENOENT) {
        fprintf(stderr, "emporium restore: cannot read %s: %s\n", data_dir, strerror(errno));
        status = 1;
    }
    if (!status && old.n > 0 && !force) {
        fprintf(stderr,
                "emporium restore: %s already holds a shop (%d databases); stop its server and "
                "add --force to replace it, or restore into a new directory\n",
                data_dir, old.n);
        status = 1;
    }
    if (!status && mkdir_private(data_dir) != 0) {
        fprintf(stderr, "emporium restore: cannot create %s: %s\n", data_dir, strerror(errno));
        status = 1;
    }
    /* --force: the old shop's files go, with their WAL (it would be replayed into the
     * restored file otherwise). */
    static const char *const suffixes[] = {".db", ".db-wal", ".db-shm", ".db-journal"};
    for (int i = 0; i < old.n && !status; i++)
        for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
            snprintf(dst, sizeof dst, "%s/%s%s", data_dir, old.v[i], suffixes[k]);
            if (unlink(dst) != 0 && errno != ENOENT) {
                fprintf(stderr, "emporium restore: cannot remove %s: %s\n", dst, strerror(errno));
                status = 1;
            }
        }
    for (int i = 0; i < dbs.n && !status; i++) {
        sqlite3 *src = NULL;
        snprintf(path, sizeof path, "%s/%s.db", from, dbs.v[i]);
        snprintf(dst, sizeof dst, "%s/%s.db", data_dir, dbs.v[i]);
        for (size_t k = 1; k < sizeof suffixes / sizeof suffixes[0]; k++) {
            char side[4200];
            snprintf(side, sizeof side, "%s/%s%s", data_dir, dbs.v[i], suffixes[k]);
            unlink(side);
        }
        if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
            copy_db(src, dst, why, sizeof why) != 0 || fsync_path(dst, false) != 0) {
            fprintf(stderr, "emporium restore: %s: %s\n", dbs.v[i],
                    src ? why : "cannot open the backup");
            status = 1;
        }
        sqlite3_close(src);
    }
    if (!status && fsync_path(data_dir, true) != 0)
        status = 1;
    if (!status)
        printf("restored %d databases from %s into %s\n", dbs.n, from, data_dir);
    else if (dbs.n)
        fprintf(stderr, "emporium restore: FAILED\n");
    names_free(&dbs);
    names_free(&old);
    return status;
}

static void usage(FILE *f, bool restore)
{
    if (restore)
        fputs("usage: emporium restore --from DIR [--data-dir DIR] [--force]\n\n"
              "Installs a backup made by `emporium backup` into the data dir (embedded SQLite\n"
              "mode), after checking every file. The data dir must hold no shop, unless\n"
              "--force: then its databases are replaced (stop its server first).\n\n"
              "flags:\n"
              "  --from DIR                 the backup (required)\n"
              "  --data-dir DIR             SQLite files (EMPORIUM_DATA_DIR; default ./data)\n"
              "  --force                    replace the shop the data dir holds\n"
              "  -h, --help                 this help\n\n"
              "example:\n  emporium restore --from /backup/emporium-20261206 --data-dir "
              "/var/lib/emporium\n",
              f);
    else
        fputs("usage: emporium backup --to DIR [--data-dir DIR]\n\n"
              "A consistent copy of every database of the data dir (embedded SQLite mode) while\n"
              "the shop serves: SQLite's online backup API, one snapshot of the same moment for\n"
              "every database. PostgreSQL: pg_dump or the operator's point-in-time recovery\n"
              "(docs/operations.md).\n\n"
              "flags:\n"
              "  --to DIR                   a new or empty directory for the backup (required)\n"
              "  --data-dir DIR             SQLite files (EMPORIUM_DATA_DIR; default ./data)\n"
              "  -h, --help                 this help\n\n"
              "example:\n  emporium backup --to /backup/emporium-$(date -u +%Y%m%dT%H%M%SZ)\n",
              f);
}

int backup_command(int argc, char **argv)
{
    bool restore = !strcmp(argv[0], "restore");
    const char *what = restore ? "restore" : "backup";
    const char *dir = NULL;
    bool force = false;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout, restore);
            return 0;
        }
    struct config cfg;
    if (config_from_env(&cfg) < 0)
        return 2;
    const char *want = restore ? "--from" : "--to";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        bool is_dir_flag = len == strlen(want) && !strncmp(a, want, len);
        bool is_data_flag = len == 10 && !strncmp(a, "--data-dir", len);
        if (restore && !strcmp(a, "--force")) {
            force = true;
            continue;
        }
        if (!is_dir_flag && !is_data_flag) {
            fprintf(stderr, "emporium %s: unknown argument '%s' (see emporium %s --help)\n", what,
                    a, what);
            return 2;
        }
        const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!v || !*v) {
            fprintf(stderr, "emporium %s: %.*s needs a value (DIR)\n", what, (int)len, a);
            return 2;
        }
        if (is_dir_flag)
            dir = v;
        else if (config_set(&cfg, "EMPORIUM_DATA_DIR", v, "--data-dir") < 0)
            return 2;
    }
    if (!dir) {
        fprintf(stderr, "emporium %s: %s DIR is required (see emporium %s --help)\n", what, want,
                what);
        return 2;
    }
    if (cfg.database_url) {
        fprintf(stderr,
                "emporium %s: EMPORIUM_DATABASE_URL is set: PostgreSQL databases are backed up "
                "with pg_dump or the operator's point-in-time recovery (docs/operations.md, "
                "\"Backup and restore\")\n",
                what);
        return 2;
    }
    return restore ? do_restore(dir, cfg.data_dir, force) : do_backup(cfg.data_dir, dir);
}
