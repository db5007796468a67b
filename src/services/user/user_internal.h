/* SPDX-License-Identifier: MIT */
/* user_internal.h — shared between the user service's files only. */
#ifndef EMPORIUM_USER_INTERNAL_H
#define EMPORIUM_USER_INTERNAL_H
#include <sodium.h>
#include <stdbool.h>

#include "emporium/db.h"
#include "emporium/http.h"

#define USER_EMAIL_MAX 254
#define USER_PASSWORD_MIN 8
#define USER_PASSWORD_MAX 128
#define USER_NAME_MAX 100
#define USER_SELECT "SELECT id, email, name, role, tier, created_at FROM users "

extern const struct http_route user__routes[];
int user__command(struct app *app, int argc, char **argv);
extern const struct cli_command user__cli;

int user__normalize_email(const char *in, char out[USER_EMAIL_MAX + 1]);
int user__hash_password(const char *pw, char out[crypto_pwhash_STRBYTES]);
/* hash NULL: burns the same time against a dummy hash and returns false. */
bool user__verify_password(const char *hash, const char *pw);
void user__token_hash(const char *token, unsigned char out[32]);
int user__session_create(struct db_conn *c, int64_t user_id, int ttl_hours, char token[64],
                         int64_t *expires_at);
int user__session_delete(struct db_conn *c, const unsigned char hash[32]);
int user__throttle_check(const char *email, const char *ip, double *retry);
void user__throttle_fail(const char *email, const char *ip);
void user__run_login_hooks(struct app *app, int64_t user_id, const char *cart_token);
/* {id,email,name,role,tier,created_at} from a USER_SELECT row; new reference. */
json_t *user__json(const struct db_rows *rows, int row);

#endif
