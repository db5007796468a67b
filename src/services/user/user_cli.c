/* SPDX-License-Identifier: MIT */
/* user_cli.c — `emporium user create --email E --password-file F [--role R] [--tier T]
 * [--name N]`: operator accounts without the HTTP API. The password comes from a file (or
 * "-" for stdin) so it never shows in the process list or shell history. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#define EMPORIUM_SERVICE_NO_HTTP /* the command line knows nothing of HTTP */
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
    /* argv is checked and normalised by main.c: {user, bulk-create, --flag, value, …} */
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--count"))
            count_s = argv[i + 1];
        else if (!strcmp(argv[i], "--password-file"))
            pwfile = argv[i + 1];
        else if (!strcmp(argv[i], "--email-format"))
            fmt = argv[i + 1];
        else if (!strcmp(argv[i], "--tokens-out"))
            tokens = argv[i + 1];
    }
    long count = count_s ? strtol(count_s, NULL, 10) : 0;
    if (count < 1 || !pwfile) {
        fprintf(stderr, "emporium user bulk-create: --count and --password-file are required\n");
        return 2;
    }
    char pw[USER_PASSWORD_MAX * 4 + 2];
    if (read_password(pwfile, pw, sizeof pw) < 0) {
        fprintf(stderr, "emporium user bulk-create: cannot read a password from %s\n", pwfile);
        return 2;
    }
    FILE *tf = NULL;
    if (tokens) {
        int fd = open(tokens, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        tf = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!tf) {
            sodium_memzero(pw, sizeof pw);
            fprintf(stderr, "emporium user bulk-create: cannot write %s\n", tokens);
            return 1;
        }
    }
    long created = 0;
    struct user_problem why = {0};
    int rc = user_bulk_create(app, count, fmt, pw, tf, &created, &why);
    sodium_memzero(pw, sizeof pw);
    if (tf && fclose(tf) != 0 && rc == 0)
        rc = ERR_INTERNAL;
    if (rc < 0) {
        if (why.field)
            fprintf(stderr, "emporium user bulk-create: --%s %s\n",
                    !strcmp(why.field, "email_format") ? "email-format" : "password-file",
                    why.message);
        else
            fprintf(stderr, "emporium user bulk-create: %s\n", err_str(rc));
        return rc == ERR_INVALID ? 2 : 1;
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
    {"--tokens-out", "FILE", "open a session for each and write the tokens here (mode 0600)", 0, 0,
     false},
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
    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        fprintf(stderr, "usage: emporium user create|bulk-create … (see emporium user --help)\n");
        return 2;
    }
    const char *email = NULL, *pwfile = NULL, *role = "customer", *tier = "standard", *name = NULL;
    /* argv is checked and normalised by main.c: {user, create, --flag, value, …} */
    for (int i = 2; i + 1 < argc; i += 2) {
        const char **t = !strcmp(argv[i], "--email")           ? &email
                         : !strcmp(argv[i], "--password-file") ? &pwfile
                         : !strcmp(argv[i], "--role")          ? &role
                         : !strcmp(argv[i], "--tier")          ? &tier
                         : !strcmp(argv[i], "--name")          ? &name
                                                               : NULL;
        if (t)
            *t = argv[i + 1];
    }
    if (!email || !pwfile) {
        fprintf(stderr, "emporium user create: --email and --password-file are required\n");
        return 2;
    }
    if (strcmp(role, "admin") && strcmp(role, "customer")) {
        fprintf(stderr,
                "emporium user create: --role %s is not valid: expected admin or customer\n", role);
        return 2;
    }
    if (strcmp(tier, "standard") && strcmp(tier, "premium")) {
        fprintf(stderr,
                "emporium user create: --tier %s is not valid: expected standard or premium\n",
                tier);
        return 2;
    }
    char pw[USER_PASSWORD_MAX * 4 + 2];
    if (read_password(pwfile, pw, sizeof pw) < 0) {
        fprintf(stderr, "emporium user create: cannot read a password from %s\n", pwfile);
        return 2;
    }
    struct user_new in = {
        .email = email,
        .password = pw,
        .name = name,
        .role = !strcmp(role, "admin") ? USER_ROLE_ADMIN : USER_ROLE_CUSTOMER,
        .tier = !strcmp(tier, "premium") ? USER_TIER_PREMIUM : USER_TIER_STANDARD,
    };
    struct user u;
    struct user_problem why = {0};
    int rc = user_create(app, &in, &u, NULL, &why);
    sodium_memzero(pw, sizeof pw);
    if (rc == ERR_CONFLICT) {
        fprintf(stderr, "emporium user create: an account with this email already exists\n");
        return 1;
    }
    if (rc == ERR_INVALID) {
        const char *flag = why.field && !strcmp(why.field, "password") ? "--password-file"
                           : why.field && !strcmp(why.field, "name")   ? "--name"
                                                                       : "--email";
        fprintf(stderr, "emporium user create: %s: %s\n", flag,
                why.message ? why.message : "invalid");
        return 2;
    }
    if (rc < 0) {
        fprintf(stderr, "emporium user create: %s\n", err_str(rc));
        return 1;
    }
    printf("created %s user %s (id %lld, tier %s)\n", role, u.email, (long long)u.id, tier);
    return 0;
}
