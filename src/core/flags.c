/* SPDX-License-Identifier: MIT */
/* flags.c — the known feature flags and their rollout (see flags.h). */
#include "emporium/flags.h"

#include <stdlib.h>
#include <string.h>

#include "emporium/config.h"
#include "emporium/err.h"

static const struct {
    const char *name;
    const char *description;
    int percent;
} known[] = {
    {"recommendations",
     "the recommendations block (GET /api/v1/products/{id}/recommendations, product pages)", 100},
};
#define N_KNOWN ((int)(sizeof known / sizeof known[0]))

static int find(const char *name, size_t len)
{
    for (int i = 0; i < N_KNOWN; i++)
        if (strlen(known[i].name) == len && !memcmp(known[i].name, name, len))
            return i;
    return -1;
}

/* Walks "name=percent,…": calls back with each entry; ERR_INVALID at the first bad one. */
static int walk(const char *spec, const char **bad, int want, int *percent)
{
    for (const char *p = spec;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        int idx = eq ? find(p, (size_t)(eq - p)) : -1;
        char num[8];
        size_t nlen = eq ? len - (size_t)(eq + 1 - p) : 0;
        char *stop = NULL;
        long v = -1;
        if (idx >= 0 && nlen > 0 && nlen < sizeof num) {
            memcpy(num, eq + 1, nlen);
            num[nlen] = 0;
            v = strtol(num, &stop, 10);
        }
        if (idx < 0 || !stop || *stop || v < 0 || v > 100) {
            if (bad)
                *bad = p;
            return ERR_INVALID;
        }
        if (idx == want && percent)
            *percent = (int)v; /* the last entry for a flag wins */
        if (!end)
            return 0;
        p = end + 1;
    }
}

int flags_validate(const char *spec, const char **bad) { return walk(spec, bad, -1, NULL); }

int flags_count(void) { return N_KNOWN; }

static int effective(const struct config *cfg, int i)
{
    int p = known[i].percent;
    if (cfg && cfg->feature_flags)
        (void)walk(cfg->feature_flags, NULL, i, &p); /* validated at start */
    return p;
}

void flags_get(const struct config *cfg, int i, struct flag_info *out)
{
    out->name = known[i].name;
    out->description = known[i].description;
    out->percent = effective(cfg, i);
}

int flag_percent(const struct config *cfg, const char *name)
{
    int i = find(name, strlen(name));
    return i < 0 ? -1 : effective(cfg, i);
}

/* FNV-1a of the name, mixed with the subject (splitmix64 finaliser): a stable bucket 0..99. */
static unsigned bucket(const char *name, int64_t subject)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    uint64_t z = h ^ (uint64_t)subject;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (unsigned)(z % 100);
}

bool flag_on(const struct config *cfg, const char *name, int64_t subject)
{
    int p = flag_percent(cfg, name);
    if (p <= 0)
        return false;
    return p >= 100 || bucket(name, subject) < (unsigned)p;
}
