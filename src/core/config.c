/* SPDX-License-Identifier: MIT */
/* config.c — defaults and EMPORIUM_* environment variables (flags are applied by main.c). */
#include "emporium/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emporium/err.h"

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static bool env_off(const char *name)
{
    const char *v = env(name);
    return v && (!strcasecmp(v, "off") || !strcmp(v, "0") || !strcasecmp(v, "false") ||
                 !strcasecmp(v, "no"));
}

static int env_long(const char *name, long min, long max, long *out)
{
    const char *v = env(name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < min || n > max) {
        fprintf(stderr, "emporium: %s must be an integer from %ld to %ld\n", name, min, max);
        return ERR_INVALID;
    }
    *out = n;
    return 0;
}

int config_parse_rate(const char *s, double *rate, double *burst)
{
    char *end;
    errno = 0;
    double r = strtod(s, &end);
    if (errno || end == s || *end != ':' || r <= 0)
        return ERR_INVALID;
    const char *b = end + 1;
    double bu = strtod(b, &end);
    if (errno || end == b || *end || bu < 1)
        return ERR_INVALID;
    *rate = r;
    *burst = bu;
    return 0;
}

static int env_rate(const char *name, double *rate, double *burst)
{
    const char *v = env(name);
    if (v && config_parse_rate(v, rate, burst)) {
        fprintf(stderr, "emporium: %s must be RATE:BURST (e.g. 50:100)\n", name);
        return ERR_INVALID;
    }
    return 0;
}

int config_from_env(struct config *cfg)
{
    /* Defaults are generous: a whole office or mobile carrier can share one address, and a
     * storefront page may fire a dozen API calls at once. */
    *cfg = (struct config){
        .listen = "0.0.0.0:8080",
        .data_dir = "./data",
        .db_pool_size = 8,
        .max_connections = 4096,
        .max_body = 1024 * 1024,
        .max_header_bytes = 16 * 1024,
        .drain_seconds = 10,
        .rate_limits = true,
        .rl_anon_rate = 100, .rl_anon_burst = 200,
        .rl_user_rate = 50, .rl_user_burst = 100,
        .rl_premium_rate = 200, .rl_premium_burst = 400,
        .access_log = true,
        .demo = true,
        .session_ttl_hours = 720,
        .log_level = "info",
        .offload_threads = 16,
        .offload_queue = 64,
        .rl_strict_rate = 0.2, .rl_strict_burst = 10,
    };
    const char *v;
    if ((v = env("EMPORIUM_LISTEN")))
        cfg->listen = v;
    if ((v = env("EMPORIUM_DATA_DIR")))
        cfg->data_dir = v;
    if ((v = env("EMPORIUM_DATABASE_URL")) && strcmp(v, "sqlite") != 0)
        cfg->database_url = v;
    if ((v = env("EMPORIUM_SERVICES")))
        cfg->services = v;
    if ((v = env("EMPORIUM_LOG_LEVEL")))
        cfg->log_level = v;
    long n;
    int rc = 0;
    n = cfg->threads;
    rc |= env_long("EMPORIUM_THREADS", 0, 256, &n);
    cfg->threads = (int)n;
    n = cfg->db_pool_size;
    rc |= env_long("EMPORIUM_DB_POOL_SIZE", 1, 512, &n);
    cfg->db_pool_size = (int)n;
    n = cfg->max_connections;
    rc |= env_long("EMPORIUM_MAX_CONNECTIONS", 16, 100000, &n);
    cfg->max_connections = (int)n;
    n = (long)cfg->max_body;
    rc |= env_long("EMPORIUM_MAX_BODY", 1024, 64L * 1024 * 1024, &n);
    cfg->max_body = (size_t)n;
    n = (long)cfg->max_header_bytes;
    rc |= env_long("EMPORIUM_MAX_HEADER_BYTES", 1024, 48 * 1024, &n);
    cfg->max_header_bytes = (size_t)n;
    n = cfg->drain_seconds;
    rc |= env_long("EMPORIUM_DRAIN_SECONDS", 0, 600, &n);
    cfg->drain_seconds = (int)n;
    n = cfg->session_ttl_hours;
    rc |= env_long("EMPORIUM_SESSION_TTL_HOURS", 1, 24 * 365, &n);
    cfg->session_ttl_hours = (int)n;
    rc |= env_rate("EMPORIUM_RL_ANON", &cfg->rl_anon_rate, &cfg->rl_anon_burst);
    rc |= env_rate("EMPORIUM_RL_USER", &cfg->rl_user_rate, &cfg->rl_user_burst);
    rc |= env_rate("EMPORIUM_RL_PREMIUM", &cfg->rl_premium_rate, &cfg->rl_premium_burst);
    n = cfg->offload_threads;
    rc |= env_long("EMPORIUM_OFFLOAD_THREADS", 1, 256, &n);
    cfg->offload_threads = (int)n;
    n = cfg->offload_queue;
    rc |= env_long("EMPORIUM_OFFLOAD_QUEUE", 0, 100000, &n);
    cfg->offload_queue = (int)n;
    rc |= env_rate("EMPORIUM_RL_AUTH", &cfg->rl_strict_rate, &cfg->rl_strict_burst);
    cfg->cors_origins = env("EMPORIUM_CORS_ORIGINS");
    if ((v = env("EMPORIUM_LISTEN_REUSE")) && !env_off("EMPORIUM_LISTEN_REUSE")) {
        cfg->listen_reuse = !strcasecmp(v, "on") || !strcmp(v, "1") || !strcasecmp(v, "true") ||
                            !strcasecmp(v, "yes");
        if (!cfg->listen_reuse) {
            fprintf(stderr, "emporium: EMPORIUM_LISTEN_REUSE must be on or off\n");
            rc |= ERR_INVALID;
        }
    }
    if (env_off("EMPORIUM_RATE_LIMITS"))
        cfg->rate_limits = false;
    if (env_off("EMPORIUM_ACCESS_LOG"))
        cfg->access_log = false;
    if (env_off("EMPORIUM_DEMO"))
        cfg->demo = false;
    return rc ? ERR_INVALID : 0;
}
