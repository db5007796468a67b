/* SPDX-License-Identifier: MIT */
/* user_cli.c — `emporium user create --email E --password-file F [--role R] [--tier T]
 * [--name N]`: operator accounts without the HTTP API. The password comes from a file (or
 * "-" for stdin) so it never shows in the process list or shell history. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/service.h"
#include "user_internal.h"

static int read_password(const char *path, char *out, size_t cap)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f)
        return ERR_NOTFOUND;
    size_t n = fread(out, 1, cap - 1, f);
    int toobig = !feof(f);
    if (f != stdin)
        fclose(f);
    if (toobig)
        return ERR_TOOBIG;
    out[n] = 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = 0;
    return 0;
}

/* `user bulk-create --count N --password-file F [--email-format FMT] [--tokens-out FILE]`:
 * many customer accounts sharing one password (hashed once, so 10,000 accounts take
 * seconds, not minutes of argon2), for load tests. With --tokens-out, a session is opened for
 * each and its token written one per line (mode 0600: the file is a set of credentials). */
static int bulk_create(struct app *app, int argc, char **argv)
{
    const char *count_s = NULL, *pwfile = NULL, *fmt = "user%d@bench.example", *tokens = NULL;
    for (int i = 2; i < argc; i++) {
        const char **t = NULL;
        if (!strcmp(argv[i], "--count"))
            t = &count_s;
        else if (!strcmp(argv[i], "--password-file"))
            t = &pwfile;
        else if (!strcmp(argv[i], "--email-format"))
            t = &fmt;
        else if (!strcmp(argv[i], "--tokens-out"))
            t = &tokens;
        if (!t || i + 1 >= argc) {
            fprintf(stderr, "emporium user bulk-create: unknown or incomplete option %s\n", argv[i]);
            return 2;
        }
        *t = argv[++i];
    }
    char *end;
    long count = count_s ? strtol(count_s, &end, 10) : 0;
    if (!count_s || *end || count < 1 || count > 1000000 || !pwfile) {
        fprintf(stderr, "usage: emporium user bulk-create --count N (1..1000000) --password-file F "
                        "[--email-format user%%d@bench.example] [--tokens-out FILE]\n");
        return 2;
    }
    const char *pct = strstr(fmt, "%d");
    if (!pct || strchr(pct + 2, '%') || strchr(fmt, '%') != pct) {
        fprintf(stderr, "emporium user bulk-create: --email-format must contain exactly one %%d\n");
        return 2;
    }
    char pw[USER_PASSWORD_MAX * 4 + 2], hash[crypto_pwhash_STRBYTES];
    int rc = read_password(pwfile, pw, sizeof pw);
    if (rc < 0 || strlen(pw) < USER_PASSWORD_MIN) {
        fprintf(stderr, "emporium user bulk-create: cannot read a password from %s\n", pwfile);
        return 2;
    }
    rc = user__hash_password(pw, hash);
    sodium_memzero(pw, sizeof pw);
    if (rc < 0)
        return 1;
    FILE *tf = NULL;
    if (tokens) {
        int fd = open(tokens, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        tf = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!tf) {
            fprintf(stderr, "emporium user bulk-create: cannot write %s\n", tokens);
            return 1;
        }
    }
    struct db_conn *c;
    if (db_conn_take(app_db(app, "users"), &c) < 0) {
        if (tf)
            fclose(tf);
        return 1;
    }
    rc = db_begin(c);
    int ttl = app_config(app)->session_ttl_hours;
    long created = 0;
    for (long i = 1; rc >= 0 && i <= count; i++) {
        char email[USER_EMAIL_MAX + 1], norm[USER_EMAIL_MAX + 1];
        /* fmt was checked to hold exactly one %d: print around it, never as a format. */
        snprintf(email, sizeof email, "%.*s%ld%s", (int)(pct - fmt), fmt, i, pct + 2);
        if (user__normalize_email(email, norm) < 0) {
            fprintf(stderr, "emporium user bulk-create: %s is not a valid email\n", email);
            rc = ERR_INVALID;
            break;
        }
        int64_t id = id_new(0), now = now_ms();
        struct db_val args[] = {DB_INT(id), DB_TEXT(norm), DB_TEXT(norm), DB_TEXT(hash), DB_INT(now)};
        rc = db_query(c,
                      "INSERT INTO users (id, email, name, password_hash, role, tier, created_at, "
                      "updated_at) VALUES ($1, $2, $3, $4, 'customer', 'standard', $5, $5) "
                      "ON CONFLICT (email) DO NOTHING",
                      5, args, NULL);
        if (rc == 0) /* already there: keep its id for the session */ {
            struct db_rows *rows = NULL;
            struct db_val a1[] = {DB_TEXT(norm)};
            rc = db_query(c, "SELECT id FROM users WHERE email = $1", 1, a1, &rows);
            if (rc >= 0 && db_rows_count(rows) == 1)
                id = db_get_i64(rows, 0, 0);
            db_rows_free(rows);
        } else if (rc > 0) {
            created++;
        }
        if (rc >= 0 && tf) {
            char token[64];
            int64_t exp;
            rc = user__session_create(c, id, ttl, token, &exp);
            if (rc >= 0)
                fprintf(tf, "%s\n", token);
            sodium_memzero(token, sizeof token);
        }
    }
    if (rc >= 0)
        rc = db_commit(c);
    db_conn_give(c);
    if (tf && fclose(tf) != 0)
        rc = ERR_INTERNAL;
    if (rc < 0) {
        fprintf(stderr, "emporium user bulk-create: %s\n", err_str(rc));
        return 1;
    }
    printf("created %ld of %ld accounts%s\n", created, count, tokens ? ", tokens written" : "");
    return 0;
}

static const struct cli_flag create_flags[] = {
    {"--email", "EMAIL", "the account's email address", 0, 0, true},
    {"--password-file", "FILE", "a file holding the password, 8 to 128 characters (- = stdin)", 0,
     0, true},
    {"--role", "ROLE", "admin or customer (default customer)", 0, 0, false},
    {"--tier", "TIER", "standard or premium (default standard)", 0, 0, false},
    {"--name", "NAME", "display name (default: the email address)", 0, 0, false},
    {NULL, NULL, NULL, 0, 0, false},
};
static const struct cli_flag bulk_flags[] = {
    {"--count", "N", "accounts to create", 1, 1000000, true},
    {"--password-file", "FILE", "the password all of them share (- = stdin)", 0, 0, true},
    {"--email-format", "FMT", "email pattern with one %d (default user%d@bench.example)", 0, 0,
     false},
    {"--tokens-out", "FILE", "open a session for each and write the tokens here (mode 0600)", 0,
     0, false},
    {NULL, NULL, NULL, 0, 0, false},
};
static const struct cli_command user_subcommands[] = {
    {"create", "create one account (an admin, for instance)",
     "emporium user create --email admin@shop.example --password-file pw.txt --role admin",
     create_flags, NULL},
    {"bulk-create", "create many customer accounts sharing one password (load tests)",
     "emporium user bulk-create --count 1000 --password-file pw.txt --tokens-out tokens.txt",
     bulk_flags, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
const struct cli_command user__cli = {
    "user", "manage accounts without the HTTP API: create, bulk-create",
    "emporium user create --email admin@shop.example --password-file pw.txt --role admin", NULL,
    user_subcommands};

int user__command(struct app *app, int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "bulk-create"))
        return bulk_create(app, argc, argv);
    const char *email = NULL, *pwfile = NULL, *role = "customer", *tier = "standard",
               *name = NULL;
    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        fprintf(stderr, "usage: emporium user create --email E --password-file F "
                        "[--role admin|customer] [--tier standard|premium] [--name N]\n"
                        "       emporium user bulk-create --count N --password-file F "
                        "[--email-format FMT] [--tokens-out FILE]\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char **t = NULL;
        if (!strcmp(argv[i], "--email"))
            t = &email;
        else if (!strcmp(argv[i], "--password-file"))
            t = &pwfile;
        else if (!strcmp(argv[i], "--role"))
            t = &role;
        else if (!strcmp(argv[i], "--tier"))
            t = &tier;
        else if (!strcmp(argv[i], "--name"))
            t = &name;
        if (!t || i + 1 >= argc) {
            fprintf(stderr, "emporium user create: unknown or incomplete option %s\n", argv[i]);
            return 2;
        }
        *t = argv[++i];
    }
    if (!email || !pwfile) {
        fprintf(stderr, "emporium user create: --email and --password-file are required\n");
        return 2;
    }
    if (strcmp(role, "admin") && strcmp(role, "customer")) {
        fprintf(stderr, "emporium user create: --role must be admin or customer\n");
        return 2;
    }
    if (strcmp(tier, "standard") && strcmp(tier, "premium")) {
        fprintf(stderr, "emporium user create: --tier must be standard or premium\n");
        return 2;
    }
    char norm[USER_EMAIL_MAX + 1];
    if (user__normalize_email(email, norm) < 0) {
        fprintf(stderr, "emporium user create: invalid email address\n");
        return 2;
    }
    char pw[USER_PASSWORD_MAX * 4 + 2];
    int rc = read_password(pwfile, pw, sizeof pw);
    size_t pwlen = rc == 0 ? strlen(pw) : 0;
    if (rc < 0 || pwlen < USER_PASSWORD_MIN || pwlen > USER_PASSWORD_MAX * 4) {
        fprintf(stderr, "emporium user create: cannot read a password of %d to %d characters from %s\n",
                USER_PASSWORD_MIN, USER_PASSWORD_MAX, pwfile);
        return 2;
    }
    char hash[crypto_pwhash_STRBYTES];
    rc = user__hash_password(pw, hash);
    sodium_memzero(pw, sizeof pw);
    if (rc < 0)
        return 1;
    struct db_conn *c;
    if (db_conn_take(app_db(app, "users"), &c) < 0) {
        fprintf(stderr, "emporium user create: the users database is unavailable\n");
        return 1;
    }
    int64_t id = id_new(0), now = now_ms();
    struct db_val args[] = {DB_INT(id),     DB_TEXT(norm), DB_TEXT(name ? name : norm),
                            DB_TEXT(hash),  DB_TEXT(role), DB_TEXT(tier),
                            DB_INT(now)};
    rc = db_query(c,
                  "INSERT INTO users (id, email, name, password_hash, role, tier, created_at, "
                  "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                  7, args, NULL);
    db_conn_give(c);
    if (rc == ERR_CONFLICT) {
        fprintf(stderr, "emporium user create: %s already exists\n", norm);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, "emporium user create: %s\n", err_str(rc));
        return 1;
    }
    printf("created %s user %s (id %lld, tier %s)\n", role, norm, (long long)id, tier);
    return 0;
}
