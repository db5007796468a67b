/* SPDX-License-Identifier: MIT */
/* svc/user.h — the user service's client interface for other services.
 *
 * In-process implementation (embedded mode): direct calls into src/services/user. */
#ifndef EMPORIUM_SVC_USER_H
#define EMPORIUM_SVC_USER_H
#include <stdint.h>

struct app;

/* Called after a successful login or registration, with the X-Cart-Token the client sent
 * (NULL when none) — the cart service merges the guest cart here. Hooks must not fail the
 * login: errors are theirs to log. At most 8 hooks; register in init(). */
typedef void (*user_login_hook_fn)(struct app *app, int64_t user_id, const char *cart_token);
int user_add_login_hook(user_login_hook_fn fn);

#endif
