/* SPDX-License-Identifier: MIT */
/* config.h — every setting of the process, parsed and validated once at start.
 *
 * Every setting has an EMPORIUM_* environment variable; the few with a flag (--listen,
 * --data-dir, --services, --threads, --no-demo) take the same values and win over the
 * environment. A bad value stops the process (exit 2) with a message on stderr naming the
 * variable or flag and the accepted values: nothing is silently defaulted. Services read
 * their settings from this struct (app_config(app)), never from getenv(). Strings point into
 * the environment/argv or static defaults and live for the process.
 *
 * Adding a setting: a field here, its default in config_defaults() and one row in the table
 * of config.c (name, kind, range). `emporium serve --help` lists the table. */
#ifndef EMPORIUM_CONFIG_H
#define EMPORIUM_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "emporium/log.h"

struct config {
    /* process */
    const char *listen;          /* EMPORIUM_LISTEN, --listen; "0.0.0.0:8080" */
    bool reuse_port;             /* EMPORIUM_REUSE_PORT; off (on: SO_REUSEPORT for a hand-over) */
    const char *data_dir;        /* EMPORIUM_DATA_DIR, --data-dir; "./data" */
    const char *database_url;    /* EMPORIUM_DATABASE_URL; NULL = embedded SQLite */
    const char *services;        /* EMPORIUM_SERVICES, --services; NULL = all (validated list) */
    int threads;                 /* EMPORIUM_THREADS, --threads; 0 = automatic (1..256) */
    int db_pool_size;            /* EMPORIUM_DB_POOL_SIZE; 8 */
    bool db_prepare;             /* EMPORIUM_DB_PREPARE; off (on: named prepared statements) */
    int max_connections;         /* EMPORIUM_MAX_CONNECTIONS; 4096 */
    size_t max_body;             /* EMPORIUM_MAX_BODY; 1 MiB */
    size_t max_header_bytes;     /* EMPORIUM_MAX_HEADER_BYTES; 16 KiB */
    int drain_seconds;           /* EMPORIUM_DRAIN_SECONDS; 10 */
    int drain_delay_seconds;     /* EMPORIUM_DRAIN_DELAY_SECONDS; 0 (/ready 503, still serving) */
    const char *cors_origins;    /* EMPORIUM_CORS_ORIGINS; NULL = no CORS; "*" or a,b,c */
    const char *trusted_proxies; /* EMPORIUM_TRUSTED_PROXIES; NULL = none (CIDR list) */
    /* limits */
    bool rate_limits;                         /* EMPORIUM_RATE_LIMITS; on */
    double rl_anon_rate, rl_anon_burst;       /* EMPORIUM_RL_ANON="rate:burst" per IP per service */
    double rl_user_rate, rl_user_burst;       /* EMPORIUM_RL_USER */
    double rl_premium_rate, rl_premium_burst; /* EMPORIUM_RL_PREMIUM */
    double rl_strict_rate, rl_strict_burst; /* EMPORIUM_RL_AUTH; 0.2:10 per IP (register, login) */
    int offload_threads; /* EMPORIUM_OFFLOAD_THREADS; 0 = config_offload_threads() */
    int offload_queue;   /* EMPORIUM_OFFLOAD_QUEUE; 1024: slow requests waiting beyond those */
    /* logs */
    bool access_log;            /* EMPORIUM_ACCESS_LOG; on */
    enum log_level log_level;   /* EMPORIUM_LOG_LEVEL: debug|info|warn|error; info */
    enum log_format log_format; /* EMPORIUM_LOG_FORMAT: auto|text|json; auto */
    /* services */
    bool demo;                         /* EMPORIUM_DEMO, --no-demo; on */
    int session_ttl_hours;             /* EMPORIUM_SESSION_TTL_HOURS; 720 (30 days) */
    int session_sweep_seconds;         /* EMPORIUM_SESSION_SWEEP_SECONDS; 600 */
    int guest_cart_ttl_days;           /* EMPORIUM_GUEST_CART_TTL_DAYS; 30 */
    int reservation_ttl_seconds;       /* EMPORIUM_RESERVATION_TTL_SECONDS; 900 */
    int order_pending_timeout_seconds; /* EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS; 600 */
    int order_sweep_seconds;           /* EMPORIUM_ORDER_SWEEP_SECONDS; 30 */
    int payment_latency_ms;            /* EMPORIUM_PAYMENT_LATENCY_MS; 0 (sandbox provider delay) */
    const char *feature_flags; /* EMPORIUM_FEATURE_FLAGS; NULL = every flag at its default */
    int product_cache_mb;      /* EMPORIUM_PRODUCT_CACHE_MB; 64, 0 = no cache */
    /* Redis (L2 cache, shared rate limits): off unless one of the first two is set */
    const char *redis_url;       /* EMPORIUM_REDIS_URL; NULL (redis://[:pw@]host[:port][/db]) */
    const char *redis_cluster;   /* EMPORIUM_REDIS_CLUSTER; NULL (seed nodes host:port,...) */
    const char *redis_password;  /* EMPORIUM_REDIS_PASSWORD; NULL (cluster AUTH) */
    int redis_pool_size;         /* EMPORIUM_REDIS_POOL_SIZE; 8 connections per node */
    int redis_timeout_ms;        /* EMPORIUM_REDIS_TIMEOUT_MS; 500 */
    int redis_cache_ttl_seconds; /* EMPORIUM_REDIS_CACHE_TTL_SECONDS; 300 */
    int redis_list_cache_ttl_seconds; /* EMPORIUM_REDIS_LIST_CACHE_TTL_SECONDS; 30, 0 = off */
    const char *mongodb_uri;          /* EMPORIUM_MONGODB_URI; NULL = no MongoDB */
    const char *redis_prefix;         /* EMPORIUM_REDIS_PREFIX; "emp:" (at most 40 bytes) */
    bool redis_rate_limits;           /* EMPORIUM_REDIS_RATE_LIMITS; on: buckets in Redis */
    const char *kafka_brokers;        /* EMPORIUM_KAFKA_BROKERS; NULL = the embedded log */
    int kafka_partitions;             /* EMPORIUM_KAFKA_PARTITIONS; 24 */
    int event_retention_hours;        /* EMPORIUM_EVENT_RETENTION_HOURS; 720 (30 days) */
    const char *consumers;            /* EMPORIUM_CONSUMERS; NULL = all, "none", or a list */
    const char *mail_dir;             /* EMPORIUM_MAIL_DIR; NULL = <data_dir>/mail */
    const char *smtp_url;             /* EMPORIUM_SMTP_URL; NULL = write the Maildir */
    /* calls between services (upstream.h) */
    const char *internal_token;  /* EMPORIUM_INTERNAL_TOKEN; NULL = internal routes closed */
    const char *inventory_url;   /* EMPORIUM_INVENTORY_URL; NULL = in-process only */
    const char *payment_url;     /* EMPORIUM_PAYMENT_URL */
    const char *shipping_url;    /* EMPORIUM_SHIPPING_URL */
    const char *product_url;     /* EMPORIUM_PRODUCT_URL */
    const char *user_url;        /* EMPORIUM_USER_URL: the remote authenticator */
    int user_auth_cache_seconds; /* EMPORIUM_USER_AUTH_CACHE_SECONDS; 5, 0 = no cache */
    int upstream_timeout_ms;     /* EMPORIUM_UPSTREAM_TIMEOUT_MS; 2000 */
    /* distributed tracing (trace.h): off unless the endpoint is set */
    const char *otlp_endpoint;     /* EMPORIUM_OTLP_ENDPOINT; NULL (http://collector:4318) */
    const char *otlp_service_name; /* EMPORIUM_OTLP_SERVICE_NAME; NULL = from the services */
    int otlp_timeout_ms;           /* EMPORIUM_OTLP_TIMEOUT_MS; 2000 per export request */
    int otlp_queue;                /* EMPORIUM_OTLP_QUEUE; 4096 spans waiting, more are dropped */
    /* fraud review (svc/fraud.h) */
    int fraud_review_amount;   /* EMPORIUM_FRAUD_REVIEW_AMOUNT; 100000 minor units */
    int fraud_hold_score;      /* EMPORIUM_FRAUD_HOLD_SCORE; 100 */
    int fraud_window_seconds;  /* EMPORIUM_FRAUD_VELOCITY_WINDOW_SECONDS; 3600 */
    int fraud_user_velocity;   /* EMPORIUM_FRAUD_USER_VELOCITY; 10 orders per window */
    int fraud_card_velocity;   /* EMPORIUM_FRAUD_CARD_VELOCITY; 20 orders per window */
    int fraud_failed_payments; /* EMPORIUM_FRAUD_FAILED_PAYMENTS; 3 per window */

    /* read replicas: EMPORIUM_DATABASE_REPLICA_URLS (NULL = none), EMPORIUM_REPLICA_MAX_LAG_MS
     * (1000) */
    const char *database_replica_urls;
    int replica_max_lag_ms;
};

/* The defaults, without reading the environment. */
void config_defaults(struct config *cfg);
/* config_defaults() and then every EMPORIUM_* variable. Returns 0, or ERR_INVALID after
 * printing one line per bad variable on stderr. Unknown EMPORIUM_* variables are warned
 * about (a typo should not pass silently); EMPORIUM_TEST_*, EMPORIUM_BIN and EMPORIUM_CHROMIUM
 * are the test tools' own and ignored. */
int config_from_env(struct config *cfg);
/* Sets one setting by its variable name from a string (how flags are applied: `source` is
 * the flag, e.g. "--threads", used in the message). 0, or ERR_INVALID with the message
 * printed; ERR_NOTFOUND when no such setting. */
int config_set(struct config *cfg, const char *var, const char *value, const char *source);
/* "rate:burst" -> two numbers; ERR_INVALID when malformed. */
int config_parse_rate(const char *s, double *rate, double *burst);
/* Worker threads to run: cfg->threads, or when 0 the CPU count (times 4 with PostgreSQL,
 * whose calls block on the network). */
int config_worker_threads(const struct config *cfg);
/* Slow-work threads to run: cfg->offload_threads, or when 0 48 on SQLite (more checkouts
 * queued at the group-commit writers at once make bigger batches) and 16 on PostgreSQL. */
int config_offload_threads(const struct config *cfg);
/* "sqlite" or "postgres". */
const char *config_backend(const struct config *cfg);
/* The database URL with any password replaced by "***" (for logs), into buf. */
const char *config_redacted_url(const struct config *cfg, char *buf, size_t cap);
/* Any database URL the same way (user:***@, no ?password=…). */
const char *url_redacted(const char *url, char *buf, size_t cap);
/* One entry of EMPORIUM_TRUSTED_PROXIES: an address and how many leading bits must match. */
#define CONFIG_MAX_CIDRS 64
struct config_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};
/* "10.0.0.0/8" or "::1" (len bytes of s) -> *out (may be NULL: validation only). */
int config_parse_cidr(const char *s, size_t len, struct config_cidr *out);
/* A comma list of those into out[cap] (out may be NULL); the count, or ERR_INVALID. */
int config_parse_cidrs(const char *v, struct config_cidr *out, int cap);
/* Whether addr (4 or 16 bytes of the family) is inside one of the n blocks. */
/* Whether EMPORIUM_SERVICES (cfg->services: NULL, "" or "all" = every one) names `name`. */
bool config_runs_service(const struct config *cfg, const char *name);
bool config_cidr_match(const struct config_cidr *c, int n, int family, const unsigned char *addr);
/* Prints the settings table (variable, accepted values, default) for --help. */
void config_print_settings(FILE *f);

#endif
