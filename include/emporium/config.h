/* SPDX-License-Identifier: MIT */
/* config.h — configuration from the environment first, then command-line flags.
 *
 * Every setting has an EMPORIUM_* environment variable; flags given on the command line win.
 * Strings point into the environment/argv or static defaults and live for the process. */
#ifndef EMPORIUM_CONFIG_H
#define EMPORIUM_CONFIG_H
#include <stdbool.h>
#include <stddef.h>

struct config {
    const char *listen;        /* EMPORIUM_LISTEN, --listen; "0.0.0.0:8080" */
    const char *data_dir;      /* EMPORIUM_DATA_DIR, --data-dir; "./data" */
    const char *database_url;  /* EMPORIUM_DATABASE_URL; NULL = embedded SQLite */
    const char *services;      /* EMPORIUM_SERVICES, --services; NULL = all */
    int threads;               /* EMPORIUM_THREADS; 0 = number of CPUs */
    int db_pool_size;          /* EMPORIUM_DB_POOL_SIZE; 8 */
    int max_connections;       /* EMPORIUM_MAX_CONNECTIONS; 4096 */
    size_t max_body;           /* EMPORIUM_MAX_BODY; 1 MiB */
    size_t max_header_bytes;   /* EMPORIUM_MAX_HEADER_BYTES; 16 KiB */
    int drain_seconds;         /* EMPORIUM_DRAIN_SECONDS; 10 */
    bool rate_limits;          /* EMPORIUM_RATE_LIMITS=off turns off; on */
    double rl_anon_rate, rl_anon_burst;       /* EMPORIUM_RL_ANON="rate:burst" per IP per service */
    double rl_user_rate, rl_user_burst;       /* EMPORIUM_RL_USER */
    double rl_premium_rate, rl_premium_burst; /* EMPORIUM_RL_PREMIUM */
    bool access_log;           /* EMPORIUM_ACCESS_LOG=off turns off */
    bool demo;                 /* --no-demo / EMPORIUM_DEMO=off */
    int session_ttl_hours;     /* EMPORIUM_SESSION_TTL_HOURS; 720 (30 days) */
    const char *log_level;     /* EMPORIUM_LOG_LEVEL: debug|info|warn|error */
    int offload_threads;       /* EMPORIUM_OFFLOAD_THREADS; 16: slow-work threads (ROUTE_OFFLOAD) */
    int offload_queue;         /* EMPORIUM_OFFLOAD_QUEUE; 64: slow requests waiting beyond those */
    double rl_strict_rate, rl_strict_burst; /* EMPORIUM_RL_AUTH; 0.2:10 per IP (register, login) */
    const char *cors_origins;  /* EMPORIUM_CORS_ORIGINS: "https://a.example,https://b…" or "*" */
    bool listen_reuse;         /* EMPORIUM_LISTEN_REUSE=on: SO_REUSEPORT for a hand-over; off */
};

/* Fills cfg with defaults and the environment. Returns 0 or ERR_INVALID (message printed). */
int config_from_env(struct config *cfg);
/* "rate:burst" -> two numbers; ERR_INVALID when malformed. */
int config_parse_rate(const char *s, double *rate, double *burst);

#endif
