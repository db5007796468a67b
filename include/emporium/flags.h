/* SPDX-License-Identifier: MIT */
/* flags.h — feature flags with a percentage rollout by user id (the seed's rollout plan).
 *
 * The known flags and their default percentages are a table in flags.c (a flag the code
 * does not know cannot be set: EMPORIUM_FEATURE_FLAGS=name=percent,… is validated at start).
 * A flag at p % is on for a stable p % of users: the user id and the flag's name are hashed
 * into 0..99, so raising p only adds users and never flips one off, and two flags at 50 %
 * select different halves. Anonymous callers are one subject (id 0). Flags are evaluated on
 * every request from the process's configuration (a ConfigMap change rolls the pods). */
#ifndef EMPORIUM_FLAGS_H
#define EMPORIUM_FLAGS_H
#include <stdbool.h>
#include <stdint.h>

struct config;

struct flag_info {
    const char *name;
    const char *description;
    int percent; /* effective: the default, or EMPORIUM_FEATURE_FLAGS */
};

/* Validates a spec ("recommendations=50,x=0"); 0, or ERR_INVALID with *bad (may be NULL)
 * pointing at the offending entry. */
int flags_validate(const char *spec, const char **bad);
/* Number of known flags, and the i-th with its effective percentage under cfg. */
int flags_count(void);
void flags_get(const struct config *cfg, int i, struct flag_info *out);
/* Whether `name` is on for `subject` (a user id, 0 = anonymous). Unknown names are off. */
bool flag_on(const struct config *cfg, const char *name, int64_t subject);
/* The flag's effective percentage (-1 when unknown). */
int flag_percent(const struct config *cfg, const char *name);

#endif
