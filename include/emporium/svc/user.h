/* SPDX-License-Identifier: MIT */
/* svc/user.h — the user service's client interface: accounts, sessions, sign-in.
 *
 * Plain structs in, plain structs and ERR_* codes out; nothing here knows about HTTP. The
 * HTTP layer (src/services/user/user_http.c) and the command line (user_cli.c) are clients
 * of this interface like any other service. In-process implementation (embedded mode):
 * direct calls into src/services/user/user.c.
 *
 * Errors: a negative ERR_* code. When the caller passes a `struct user_problem`, a refused
 * request also says why, in terms a client can act on: the field at fault, a machine code
 * ("email_taken", "too_many_failures", …) and, for throttling, when to retry. */
#ifndef EMPORIUM_SVC_USER_H
#define EMPORIUM_SVC_USER_H
#include <stdbool.h>
#include <stdint.h>

struct app;

#define USER_EMAIL_MAX 254
#define USER_PASSWORD_MIN 8
#define USER_PASSWORD_MAX 128 /* characters */
#define USER_NAME_MAX 100     /* characters */
#define USER_TOKEN_MAX 64     /* bytes of a session token, NUL included */

/* Login throttling (src/services/user/README.md): only failures count, in three token
 * buckets. Per (account, address): strict — 5 failures, then one more per minute. Per
 * address, over all accounts: 30 failures, then one every 5 s. Per account, over all
 * addresses: a slow ceiling of 50 failures, refilled at one every 10 s — faster than any
 * patient guesser at one try every 30 s, so that alone never locks the owner out. */
#define USER_THROTTLE_PAIR_BURST 5
#define USER_THROTTLE_PAIR_RATE (1.0 / 60)
#define USER_THROTTLE_ADDR_BURST 30
#define USER_THROTTLE_ADDR_RATE (1.0 / 5)
#define USER_THROTTLE_ACCOUNT_BURST 50
#define USER_THROTTLE_ACCOUNT_RATE (1.0 / 10)

enum user_role { USER_ROLE_CUSTOMER = 0, USER_ROLE_ADMIN = 1 };
enum user_tier { USER_TIER_STANDARD = 0, USER_TIER_PREMIUM = 1 };

struct user {
    int64_t id;
    char email[USER_EMAIL_MAX + 1];   /* normalised: trimmed, lower case */
    char name[USER_NAME_MAX * 4 + 1]; /* UTF-8 */
    enum user_role role;
    enum user_tier tier;
    int64_t created_at; /* Unix ms */
};

/* A new session: the token is a secret, shown once to its owner; wipe it after use
 * (sodium_memzero). Only its SHA-256 is stored. */
struct user_session {
    struct user user;
    char token[USER_TOKEN_MAX];
    int64_t expires_at; /* Unix ms */
};

/* Why a request was refused (any member may be NULL / 0). Strings are static. */
struct user_problem {
    const char *field;   /* "email", "password", "name", "role", "tier" */
    const char *code;    /* machine code when more precise than the ERR_* ("email_taken") */
    const char *message; /* for people */
    double retry_after;  /* seconds, with ERR_RATELIMITED */
};

struct user_new {
    const char *email;    /* normalised by the service */
    const char *password; /* USER_PASSWORD_MIN..USER_PASSWORD_MAX characters */
    const char *name;     /* NULL: the email */
    enum user_role role;
    enum user_tier tier;
};

/* Creates an account (ERR_INVALID with the field, ERR_CONFLICT "email_taken"). With
 * `session` non-NULL also opens a session for it (registration signs in). */
int user_create(struct app *app, const struct user_new *in, struct user *out,
                struct user_session *session, struct user_problem *why);
/* Signs in. `client_addr` is the caller's address, for throttling. ERR_UNAUTHORIZED
 * ("invalid_credentials") for an unknown email or a wrong password alike (same time);
 * ERR_RATELIMITED ("too_many_failures", retry_after) when a throttle bucket is empty. */
int user_login(struct app *app, const char *email, const char *password, const char *client_addr,
               struct user_session *out, struct user_problem *why);
/* Ends the session whose token has this SHA-256. */
int user_logout(struct app *app, const unsigned char token_hash[32]);
/* ERR_NOTFOUND when the account does not exist (any more). */
int user_get(struct app *app, int64_t id, struct user *out);
/* Many accounts in one read: out[i] is the account ids[i], or all zero (id 0) when it does
 * not exist. n <= USER_GET_MANY_MAX. */
#define USER_GET_MANY_MAX 1024
int user_get_many(struct app *app, const int64_t *ids, int n, struct user *out);
/* Many customer accounts with one password (hashed once), for load tests; with `tokens`,
 * a session for each is written there one token per line. *created = new accounts. */
int user_bulk_create(struct app *app, long count, const char *email_format, const char *password,
                     void *tokens_file /* FILE * or NULL */, long *created,
                     struct user_problem *why);

/* Called after a successful login or registration, with the X-Cart-Token the client sent
 * (NULL when none) — the cart service merges the guest cart here. Hooks must not fail the
 * login: errors are theirs to log. At most 8 hooks; register in init(). */
typedef void (*user_login_hook_fn)(struct app *app, int64_t user_id, const char *cart_token);
int user_add_login_hook(user_login_hook_fn fn);
/* Runs the hooks (the HTTP layer calls it after a sign-in it answered). */
void user_run_login_hooks(struct app *app, int64_t user_id, const char *cart_token);

#endif
