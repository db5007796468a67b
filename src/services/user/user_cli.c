/* SPDX-License-Identifier: MIT */
/* user_cli.c — `emporium user create --email E --password-file F [--role R] [--tier T]
 * [--name N]`: operator accounts without the HTTP API. The password comes from a file (or
 * "-" for stdin) so it never shows in the process list or shell history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
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

int user__command(struct app *app, int argc, char **argv)
{
    const char *email = NULL, *pwfile = NULL, *role = "customer", *tier = "standard",
               *name = NULL;
    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        fprintf(stderr, "usage: emporium user create --email E --password-file F "
                        "[--role admin|customer] [--tier standard|premium] [--name N]\n");
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
