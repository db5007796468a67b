/* SPDX-License-Identifier: MIT */
/* config.c — every EMPORIUM_* setting: its default, its accepted values, its parser.
 *
 * One table drives the environment, the flags (config_set), the unknown-variable warning and
 * the settings list in `emporium serve --help`. A bad value is never defaulted: the caller
 * (main.c) exits 2 after the messages printed here. */
#include "emporium/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "emporium/err.h"
#include "emporium/flags.h"
#define EMPORIUM_SERVICE_NO_HTTP /* core: no HTTP types here */
#include "emporium/redis.h"
#include "emporium/service.h"

extern char **environ;

enum kind {
    K_STR,
    K_INT,
    K_SIZE,
    K_BOOL,
    K_RATE,
    K_LEVEL,
    K_FORMAT,
    K_LISTEN,
    K_SERVICES,
    K_URL,
    K_ORIGINS,
    K_CIDRS,
    K_REDIS_URL,
    K_REDIS_NODES,
    K_SECRET,
    K_CONSUMERS,
    K_HOSTS,
    K_SMTP,
    K_MONGO_URL,
    K_FLAGS,
    K_HTTP_URL,
    K_PG_URLS
};

struct setting {
    const char *var;
    enum kind kind;
    size_t off, off2; /* offsetof the field (K_RATE: rate, burst) */
    long min, max;    /* K_INT, K_SIZE */
    const char *help; /* what it is; the accepted values are derived from kind/min/max */
};

#define F(field) offsetof(struct config, field)
static const struct setting settings[] = {
    {"EMPORIUM_LISTEN", K_LISTEN, F(listen), 0, 0, 0, "address to listen on, ADDR:PORT"},
    {"EMPORIUM_REUSE_PORT", K_BOOL, F(reuse_port), 0, 0, 0,
     "share the port with another process (SO_REUSEPORT, for a zero-downtime hand-over)"},
    {"EMPORIUM_DATA_DIR", K_STR, F(data_dir), 0, 0, 0, "directory of the SQLite files"},
    {"EMPORIUM_DATABASE_URL", K_URL, F(database_url), 0, 0, 0,
     "postgresql://… (or \"sqlite\", the embedded default)"},
    {"EMPORIUM_SERVICES", K_SERVICES, F(services), 0, 0, 0, "services to run here"},
    {"EMPORIUM_THREADS", K_INT, F(threads), 0, 0, 256, "HTTP worker threads, 0 = automatic"},
    {"EMPORIUM_DB_POOL_SIZE", K_INT, F(db_pool_size), 0, 1, 512,
     "PostgreSQL connections per logical database"},
    {"EMPORIUM_DB_PREPARE", K_BOOL, F(db_prepare), 0, 0, 0,
     "PostgreSQL named prepared statements (directly or PgBouncer session mode only)"},
    {"EMPORIUM_DATABASE_REPLICA_URLS", K_PG_URLS, F(database_replica_urls), 0, 0, 0,
     "PostgreSQL streaming replicas for reads (with a postgres EMPORIUM_DATABASE_URL)"},
    {"EMPORIUM_REPLICA_MAX_LAG_MS", K_INT, F(replica_max_lag_ms), 0, 1, 3600000,
     "a replica further behind than this serves no reads"},
    {"EMPORIUM_MAX_CONNECTIONS", K_INT, F(max_connections), 0, 16, 100000,
     "open client connections"},
    {"EMPORIUM_MAX_BODY", K_SIZE, F(max_body), 0, 1024, 64L * 1024 * 1024, "request body bytes"},
    {"EMPORIUM_MAX_HEADER_BYTES", K_SIZE, F(max_header_bytes), 0, 1024, 48 * 1024,
     "request header bytes"},
    {"EMPORIUM_DRAIN_SECONDS", K_INT, F(drain_seconds), 0, 0, 600,
     "wait for in-flight requests at shutdown"},
    {"EMPORIUM_DRAIN_DELAY_SECONDS", K_INT, F(drain_delay_seconds), 0, 0, 600,
     "after SIGTERM, serve on with /ready 503 this long before closing the listener"},
    {"EMPORIUM_CORS_ORIGINS", K_ORIGINS, F(cors_origins), 0, 0, 0,
     "origins allowed by CORS: * or a comma list of http(s)://host[:port]"},
    {"EMPORIUM_TRUSTED_PROXIES", K_CIDRS, F(trusted_proxies), 0, 0, 0,
     "proxies (the gateway) whose X-Forwarded-For names the real client"},
    {"EMPORIUM_RATE_LIMITS", K_BOOL, F(rate_limits), 0, 0, 0, "per-client rate limits"},
    {"EMPORIUM_RL_ANON", K_RATE, F(rl_anon_rate), F(rl_anon_burst), 0, 0,
     "anonymous limit per address per service, RATE:BURST"},
    {"EMPORIUM_RL_USER", K_RATE, F(rl_user_rate), F(rl_user_burst), 0, 0,
     "signed-in limit per user per service, RATE:BURST"},
    {"EMPORIUM_RL_PREMIUM", K_RATE, F(rl_premium_rate), F(rl_premium_burst), 0, 0,
     "premium limit per user per service, RATE:BURST"},
    {"EMPORIUM_RL_AUTH", K_RATE, F(rl_strict_rate), F(rl_strict_burst), 0, 0,
     "register and login together, per address, RATE:BURST"},
    {"EMPORIUM_OFFLOAD_THREADS", K_INT, F(offload_threads), 0, 0, 256,
     "slow-work threads (checkouts, password hashing, payment calls), 0 = automatic"},
    {"EMPORIUM_OFFLOAD_QUEUE", K_INT, F(offload_queue), 0, 0, 100000,
     "slow requests waiting for a slow-work thread before 503"},
    {"EMPORIUM_ACCESS_LOG", K_BOOL, F(access_log), 0, 0, 0, "one log line per request"},
    {"EMPORIUM_LOG_LEVEL", K_LEVEL, F(log_level), 0, 0, 0, "lowest level logged"},
    {"EMPORIUM_LOG_FORMAT", K_FORMAT, F(log_format), 0, 0, 0,
     "auto = text on a terminal, JSON otherwise"},
    {"EMPORIUM_DEMO", K_BOOL, F(demo), 0, 0, 0, "demo catalog on an empty shop (serve)"},
    {"EMPORIUM_SESSION_TTL_HOURS", K_INT, F(session_ttl_hours), 0, 1, 24 * 365,
     "sign-in session lifetime"},
    {"EMPORIUM_SESSION_SWEEP_SECONDS", K_INT, F(session_sweep_seconds), 0, 1, 86400,
     "how often expired sessions are deleted"},
    {"EMPORIUM_GUEST_CART_TTL_DAYS", K_INT, F(guest_cart_ttl_days), 0, 1, 3650,
     "idle guest carts are deleted after"},
    {"EMPORIUM_RESERVATION_TTL_SECONDS", K_INT, F(reservation_ttl_seconds), 0, 1, 86400,
     "stock reservation lifetime"},
    {"EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS", K_INT, F(order_pending_timeout_seconds), 0, 1, 86400,
     "a pending order older than this is failed by the recovery sweep"},
    {"EMPORIUM_ORDER_SWEEP_SECONDS", K_INT, F(order_sweep_seconds), 0, 1, 3600,
     "order recovery sweep period"},
    {"EMPORIUM_PAYMENT_LATENCY_MS", K_INT, F(payment_latency_ms), 0, 0, 60000,
     "sandbox payment provider delay per call"},
    {"EMPORIUM_FEATURE_FLAGS", K_FLAGS, F(feature_flags), 0, 0, 0,
     "feature flags rolled out to a percentage of users, name=percent,…"},
    {"EMPORIUM_PRODUCT_CACHE_MB", K_INT, F(product_cache_mb), 0, 0, 65536,
     "product read cache, 0 = off"},
    {"EMPORIUM_REDIS_URL", K_REDIS_URL, F(redis_url), 0, 0, 0,
     "one Redis server (L2 cache, shared rate limits); none = no Redis"},
    {"EMPORIUM_REDIS_CLUSTER", K_REDIS_NODES, F(redis_cluster), 0, 0, 0,
     "Redis Cluster seed nodes instead of EMPORIUM_REDIS_URL"},
    {"EMPORIUM_REDIS_PASSWORD", K_SECRET, F(redis_password), 0, 0, 0,
     "Redis password (AUTH) for the cluster nodes"},
    {"EMPORIUM_REDIS_POOL_SIZE", K_INT, F(redis_pool_size), 0, 1, 1024,
     "Redis connections per node"},
    {"EMPORIUM_REDIS_TIMEOUT_MS", K_INT, F(redis_timeout_ms), 0, 1, 60000,
     "Redis connect, command and pool-wait timeout"},
    {"EMPORIUM_REDIS_RATE_LIMITS", K_BOOL, F(redis_rate_limits), 0, 0, 0,
     "rate-limit buckets in Redis, shared by every process (off: per process)"},
    {"EMPORIUM_REDIS_PREFIX", K_STR, F(redis_prefix), 0, 0, 0,
     "prefix of every Redis key (several shops or environments on one Redis)"},
    {"EMPORIUM_REDIS_CACHE_TTL_SECONDS", K_INT, F(redis_cache_ttl_seconds), 0, 1, 86400,
     "lifetime of a product entry in the Redis cache (L2)"},
    {"EMPORIUM_REDIS_LIST_CACHE_TTL_SECONDS", K_INT, F(redis_list_cache_ttl_seconds), 0, 0, 3600,
     "lifetime of a list or search page in the Redis cache (L2); 0: lists stay per process"},
    {"EMPORIUM_MONGODB_URI", K_MONGO_URL, F(mongodb_uri), 0, 0, 0,
     "MongoDB for order_history and analytics documents (mongodb://…); unset: none"},
    {"EMPORIUM_KAFKA_BROKERS", K_HOSTS, F(kafka_brokers), 0, 0, 0,
     "Kafka bootstrap servers; unset = the embedded event log"},
    {"EMPORIUM_KAFKA_PARTITIONS", K_INT, F(kafka_partitions), 0, 1, 1024,
     "partitions per topic (Kafka topics created here, and the embedded log)"},
    {"EMPORIUM_EVENT_RETENTION_HOURS", K_INT, F(event_retention_hours), 0, 1, 24 * 3650,
     "the embedded event log keeps messages this long"},
    {"EMPORIUM_MAIL_DIR", K_STR, F(mail_dir), 0, 0, 0,
     "Maildir of the customer e-mails (default <data-dir>/mail)"},
    {"EMPORIUM_SMTP_URL", K_SMTP, F(smtp_url), 0, 0, 0,
     "send the customer e-mails over SMTP instead of the Maildir"},
    {"EMPORIUM_CONSUMERS", K_CONSUMERS, F(consumers), 0, 0, 0,
     "event consumers `serve` runs in-process (the rest run in `emporium worker`)"},
    {"EMPORIUM_INTERNAL_TOKEN", K_SECRET, F(internal_token), 0, 0, 0,
     "shared secret of the internal routes between services (at least 16 bytes); none = "
     "internal routes closed"},
    {"EMPORIUM_INVENTORY_URL", K_HTTP_URL, F(inventory_url), 0, 0, 0,
     "call the inventory service there when it does not run in this process"},
    {"EMPORIUM_PAYMENT_URL", K_HTTP_URL, F(payment_url), 0, 0, 0,
     "call the payment service there when it does not run in this process"},
    {"EMPORIUM_SHIPPING_URL", K_HTTP_URL, F(shipping_url), 0, 0, 0,
     "call the shipping service there when it does not run in this process"},
    {"EMPORIUM_PRODUCT_URL", K_HTTP_URL, F(product_url), 0, 0, 0,
     "call the product service there when it does not run in this process"},
    {"EMPORIUM_USER_URL", K_HTTP_URL, F(user_url), 0, 0, 0,
     "authenticate bearer tokens there when the user service does not run in this process"},
    {"EMPORIUM_USER_AUTH_CACHE_SECONDS", K_INT, F(user_auth_cache_seconds), 0, 0, 60,
     "how long a token accepted by the remote user service is trusted without asking again"},
    {"EMPORIUM_UPSTREAM_TIMEOUT_MS", K_INT, F(upstream_timeout_ms), 0, 1, 60000,
     "deadline of one call to another service, retries included"},
    {"EMPORIUM_OTLP_ENDPOINT", K_HTTP_URL, F(otlp_endpoint), 0, 0, 0,
     "export trace spans there (OTLP/HTTP JSON, POST <endpoint>/v1/traces); none = no tracing"},
    {"EMPORIUM_OTLP_SERVICE_NAME", K_STR, F(otlp_service_name), 0, 0, 0,
     "service.name of the exported spans (default emporium-<first of EMPORIUM_SERVICES>)"},
    {"EMPORIUM_OTLP_TIMEOUT_MS", K_INT, F(otlp_timeout_ms), 0, 1, 60000,
     "deadline of one span export request"},
    {"EMPORIUM_OTLP_QUEUE", K_INT, F(otlp_queue), 0, 1, 1000000,
     "spans waiting for export; more are dropped (and counted)"},
    {"EMPORIUM_FRAUD_REVIEW_AMOUNT", K_INT, F(fraud_review_amount), 0, 0, 2000000000,
     "orders whose total is above this (minor units) score for fraud review"},
    {"EMPORIUM_FRAUD_HOLD_SCORE", K_INT, F(fraud_hold_score), 0, 1, 1000,
     "fraud score from which an order is held for review (on_hold)"},
    {"EMPORIUM_FRAUD_VELOCITY_WINDOW_SECONDS", K_INT, F(fraud_window_seconds), 0, 60, 30 * 86400,
     "window of the fraud velocity and failed-payment rules"},
    {"EMPORIUM_FRAUD_USER_VELOCITY", K_INT, F(fraud_user_velocity), 0, 1, 1000000,
     "orders of one user in the window before the velocity rule scores"},
    {"EMPORIUM_FRAUD_CARD_VELOCITY", K_INT, F(fraud_card_velocity), 0, 1, 1000000,
     "orders on one card in the window before the card rule scores"},
    {"EMPORIUM_FRAUD_FAILED_PAYMENTS", K_INT, F(fraud_failed_payments), 0, 1, 1000000,
     "failed payments of a user or card in the window from which the rule scores"},
};
#undef F
#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"auto", "text", "json"};

void config_defaults(struct config *cfg)
{
    /* Defaults are generous: a whole office or mobile carrier can share one address, and a
     * storefront page may fire a dozen API calls at once. */
    *cfg = (struct config){
        .listen = "0.0.0.0:8080",
        .data_dir = "./data",
        .db_pool_size = 8,
        .replica_max_lag_ms = 1000,
        .max_connections = 4096,
        .max_body = 1024 * 1024,
        .max_header_bytes = 16 * 1024,
        .drain_seconds = 10,
        .rate_limits = true,
        .rl_anon_rate = 100,
        .rl_anon_burst = 200,
        .rl_user_rate = 50,
        .rl_user_burst = 100,
        .rl_premium_rate = 200,
        .rl_premium_burst = 400,
        .rl_strict_rate = 0.2,
        .rl_strict_burst = 10,
        .offload_queue = 1024,
        .access_log = true,
        .log_level = LOG_INFO,
        .log_format = LOG_FORMAT_AUTO,
        .demo = true,
        .session_ttl_hours = 720,
        .session_sweep_seconds = 600,
        .guest_cart_ttl_days = 30,
        .reservation_ttl_seconds = 900,
        .order_pending_timeout_seconds = 600,
        .order_sweep_seconds = 30,
        .payment_latency_ms = 0,
        .product_cache_mb = 64,
        .redis_pool_size = 8,
        .redis_timeout_ms = 500,
        .redis_cache_ttl_seconds = 300,
        .redis_list_cache_ttl_seconds = 0,
        .redis_prefix = "emp:",
        .redis_rate_limits = true,
        .kafka_partitions = 24,
        .event_retention_hours = 720,
        .upstream_timeout_ms = 2000,
        .otlp_timeout_ms = 2000,
        .otlp_queue = 4096,
        .user_auth_cache_seconds = 5,
        .fraud_review_amount = 100000,
        .fraud_hold_score = 100,
        .fraud_window_seconds = 3600,
        .fraud_user_velocity = 10,
        .fraud_card_velocity = 20,
        .fraud_failed_payments = 3,
    };
}

int config_parse_rate(const char *s, double *rate, double *burst)
{
    char *end;
    errno = 0;
    double r = strtod(s, &end);
    if (errno || end == s || *end != ':' || !isfinite(r) || r <= 0)
        return ERR_INVALID;
    const char *b = end + 1;
    double bu = strtod(b, &end);
    if (errno || end == b || *end || !isfinite(bu) || bu < 1)
        return ERR_INVALID;
    *rate = r;
    *burst = bu;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"on", "true", "1"}, *const no[] = {"off", "false", "0"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(v, yes[i]))
            return *out = true, 0;
        if (!strcasecmp(v, no[i]))
            return *out = false, 0;
    }
    return ERR_INVALID;
}

static int parse_listen(const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || (size_t)(colon - v) >= 64)
        return ERR_INVALID;
    char host[64];
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = 0;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
        return ERR_INVALID;
    if (!*host || !strcmp(host, "*") || !strcmp(host, "localhost"))
        return 0;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 ? 0 : ERR_INVALID;
}

/* host:port[,host:port…]: a host of letters, digits, '.', '-', a port 1-65535. */
static int parse_hosts(const char *v)
{
    if (!*v || strlen(v) > 1024)
        return ERR_INVALID;
    for (const char *p = v; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *colon = memchr(p, ':', l);
        if (!colon || colon == p)
            return ERR_INVALID;
        for (const char *q = p; q < colon; q++)
            if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                  (*q >= '0' && *q <= '9') || *q == '.' || *q == '-'))
                return ERR_INVALID;
        long port = 0;
        if (colon + 1 == p + l)
            return ERR_INVALID;
        for (const char *q = colon + 1; q < p + l; q++) {
            if (*q < '0' || *q > '9' || port > 65535)
                return ERR_INVALID;
            port = port * 10 + (*q - '0');
        }
        if (port < 1 || port > 65535)
            return ERR_INVALID;
        if (!e)
            break;
        p = e + 1;
        if (!*p)
            return ERR_INVALID;
    }
    return 0;
}

static bool is_service(const char *name, size_t len)
{
    for (int s = 0; services_all[s]; s++)
        if (strlen(services_all[s]->name) == len && !strncmp(services_all[s]->name, name, len))
            return true;
    return false;
}

/* Every comma-separated entry must be a service (or the whole list "all"). On error, the
 * offending entry is copied to bad. */
static int parse_services(const char *v, char *bad, size_t cap)
{
    if (!strcmp(v, "all"))
        return 0;
    for (const char *p = v;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (!is_service(p, len)) {
            snprintf(bad, cap, "%.*s", (int)(len > 40 ? 40 : len), p);
            return ERR_INVALID;
        }
        if (!end)
            return 0;
        p = end + 1;
    }
}

static int parse_origins(const char *v)
{
    if (!strcmp(v, "*"))
        return 0;
    for (const char *p = v;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t scheme = !strncmp(p, "https://", 8) ? 8 : !strncmp(p, "http://", 7) ? 7 : 0;
        if (!scheme || len <= scheme || p[len - 1] == '/')
            return ERR_INVALID;
        for (size_t i = scheme; i < len; i++)
            if (p[i] <= ' ' || p[i] == '/' || p[i] == '*' || (unsigned char)p[i] >= 0x7f)
                return ERR_INVALID;
        if (!end)
            return 0;
        p = end + 1;
    }
}

int config_parse_cidr(const char *s, size_t len, struct config_cidr *out)
{
    char tmp[64];
    if (len == 0 || len >= sizeof tmp)
        return ERR_INVALID;
    memcpy(tmp, s, len);
    tmp[len] = 0;
    char *slash = strchr(tmp, '/');
    if (slash)
        *slash = 0;
    struct config_cidr c = {0};
    if (inet_pton(AF_INET, tmp, c.addr) == 1) {
        c.family = AF_INET;
        c.bits = 32;
    } else if (inet_pton(AF_INET6, tmp, c.addr) == 1) {
        c.family = AF_INET6;
        c.bits = 128;
    } else {
        return ERR_INVALID;
    }
    if (slash) {
        char *end;
        errno = 0;
        long b = strtol(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || b < 0 || b > c.bits)
            return ERR_INVALID;
        c.bits = (int)b;
    }
    if (out)
        *out = c;
    return 0;
}

int config_parse_cidrs(const char *v, struct config_cidr *out, int cap)
{
    int n = 0;
    for (const char *p = v;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        while (len && p[len - 1] == ' ')
            len--;
        if (n >= cap || config_parse_cidr(p, len, out ? &out[n] : NULL) < 0)
            return ERR_INVALID;
        n++;
        if (!end)
            return n;
        p = end + 1;
    }
}

bool config_runs_service(const struct config *cfg, const char *name)
{
    const char *list = cfg->services;
    if (!list || !*list || !strcmp(list, "all"))
        return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

bool config_cidr_match(const struct config_cidr *c, int n, int family, const unsigned char *addr)
{
    for (int i = 0; i < n; i++) {
        if (c[i].family != family)
            continue;
        int full = c[i].bits / 8, rest = c[i].bits % 8;
        if (memcmp(c[i].addr, addr, (size_t)full) != 0)
            continue;
        unsigned char mask = (unsigned char)(0xff << (8 - rest));
        if (rest && (c[i].addr[full] & mask) != (addr[full] & mask))
            continue;
        return true;
    }
    return false;
}

static void print_accepted(FILE *f, const struct setting *s)
{
    switch (s->kind) {
    case K_INT:
    case K_SIZE:
        fprintf(f, "an integer from %ld to %ld", s->min, s->max);
        break;
    case K_BOOL:
        fputs("on, off, true, false, 1 or 0", f);
        break;
    case K_RATE:
        fputs("RATE:BURST, e.g. 50:100 (rate > 0 per second, burst >= 1)", f);
        break;
    case K_LEVEL:
        fputs("debug, info, warn or error", f);
        break;
    case K_FORMAT:
        fputs("auto, text or json", f);
        break;
    case K_LISTEN:
        fputs("ADDR:PORT with an IPv4 address (or *, localhost) and a port 0-65535", f);
        break;
    case K_SERVICES:
        fputs("all or a comma list of:", f);
        for (int i = 0; services_all[i]; i++)
            fprintf(f, "%s%s", i ? ", " : " ", services_all[i]->name);
        break;
    case K_URL:
        fputs("sqlite, postgres://… or postgresql://…", f);
        break;
    case K_ORIGINS:
        fputs("* or a comma list of http(s)://host[:port]", f);
        break;
    case K_CIDRS:
        fprintf(f,
                "a comma list of at most %d IPv4/IPv6 addresses or CIDR blocks, e.g. "
                "10.0.0.0/8,::1",
                CONFIG_MAX_CIDRS);
        break;
    case K_STR:
        fputs("a non-empty path", f);
        break;
    case K_REDIS_URL:
        fputs("redis://[:password@]host[:port][/db]", f);
        break;
    case K_REDIS_NODES:
        fputs("host:port,host:port,...", f);
        break;
    case K_SECRET:
        fputs("a non-empty string", f);
        break;
    case K_CONSUMERS:
        fputs("all, none or a comma list of:", f);
        for (int i = 0; services_all[i]; i++)
            fprintf(f, "%s%s", i ? ", " : " ", services_all[i]->name);
        break;
    case K_HOSTS:
        fputs("a comma list of host:port", f);
        break;
    case K_SMTP:
        fputs("smtp://host[:port] or smtps://host[:port]", f);
        break;
    case K_MONGO_URL:
        fputs("mongodb://… or mongodb+srv://… (at most 1024 bytes)", f);
        break;
    case K_PG_URLS:
        fputs("a comma list of 1 to 4 postgres://… or postgresql://… URLs", f);
        break;
    case K_HTTP_URL:
        fputs("http://host:port or https://host:port (at most 256 bytes, no path)", f);
        break;
    case K_FLAGS:
        fputs("a comma list of flag=percent (0 to 100); flags:", f);
        for (int i = 0; i < flags_count(); i++) {
            struct flag_info fi;
            flags_get(NULL, i, &fi);
            fprintf(f, "%s%s", i ? ", " : " ", fi.name);
        }
        break;
    }
}

static void print_default(FILE *f, const struct setting *s, const struct config *d)
{
    const char *base = (const char *)d;
    switch (s->kind) {
    case K_INT:
        fprintf(f, "%d", *(const int *)(const void *)(base + s->off));
        break;
    case K_SIZE:
        fprintf(f, "%zu", *(const size_t *)(const void *)(base + s->off));
        break;
    case K_BOOL:
        fputs(*(const bool *)(const void *)(base + s->off) ? "on" : "off", f);
        break;
    case K_RATE:
        fprintf(f, "%g:%g", *(const double *)(const void *)(base + s->off),
                *(const double *)(const void *)(base + s->off2));
        break;
    case K_LEVEL:
        fputs(level_names[d->log_level], f);
        break;
    case K_FORMAT:
        fputs(format_names[d->log_format], f);
        break;
    case K_PG_URLS: /* never echoed: URLs may hold passwords */
        fputs(*(const char *const *)(const void *)(base + s->off) ? "(set)" : "none", f);
        break;
    default: {
        const char *v = *(const char *const *)(const void *)(base + s->off);
        fputs(v                                                 ? v
              : s->kind == K_SERVICES || s->kind == K_CONSUMERS ? "all"
              : s->kind == K_URL                                ? "sqlite"
                                                                : "none",
              f);
    }
    }
}

static void complain(const struct setting *s, const char *source, const char *value,
                     const char *detail)
{
    fprintf(stderr, "emporium: %s=%s is not valid%s%s: expected ", source, value,
            detail ? ": " : "", detail ? detail : "");
    print_accepted(stderr, s);
    fputc('\n', stderr);
}

static int apply(struct config *cfg, const struct setting *s, const char *v, const char *source)
{
    char *base = (char *)cfg, *end;
    char bad[64];
    switch (s->kind) {
    case K_INT:
    case K_SIZE: {
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < s->min || n > s->max) {
            complain(s, source, v, end == v || *end ? "not a number" : "out of range");
            return ERR_INVALID;
        }
        if (s->kind == K_INT)
            *(int *)(void *)(base + s->off) = (int)n;
        else
            *(size_t *)(void *)(base + s->off) = (size_t)n;
        return 0;
    }
    case K_BOOL:
        if (parse_bool(v, (bool *)(void *)(base + s->off)) < 0) {
            complain(s, source, v, NULL);
            return ERR_INVALID;
        }
        return 0;
    case K_RATE:
        if (config_parse_rate(v, (double *)(void *)(base + s->off),
                              (double *)(void *)(base + s->off2)) < 0) {
            complain(s, source, v, NULL);
            return ERR_INVALID;
        }
        return 0;
    case K_LEVEL:
    case K_FORMAT: {
        const char *const *names = s->kind == K_LEVEL ? level_names : format_names;
        int n = s->kind == K_LEVEL ? 4 : 3;
        for (int i = 0; i < n; i++)
            if (!strcasecmp(v, names[i])) {
                if (s->kind == K_LEVEL)
                    cfg->log_level = (enum log_level)i;
                else
                    cfg->log_format = (enum log_format)i;
                return 0;
            }
        complain(s, source, v, NULL);
        return ERR_INVALID;
    }
    case K_LISTEN:
        if (parse_listen(v) < 0) {
            complain(s, source, v, NULL);
            return ERR_INVALID;
        }
        break;
    case K_SERVICES:
        if (parse_services(v, bad, sizeof bad) < 0) {
            char detail[96];
            snprintf(detail, sizeof detail, "%s '%s'", *bad ? "unknown service" : "empty entry",
                     bad);
            complain(s, source, v, detail);
            return ERR_INVALID;
        }
        if (!strcmp(v, "all"))
            v = NULL;
        break;
    case K_URL:
        if (!strcmp(v, "sqlite")) {
            v = NULL;
        } else if (strncmp(v, "postgres://", 11) && strncmp(v, "postgresql://", 13)) {
            /* Never echo the value: a URL may carry a password. */
            fprintf(stderr, "emporium: %s is not valid: expected ", source);
            print_accepted(stderr, s);
            fputc('\n', stderr);
            return ERR_INVALID;
        }
        break;
    case K_ORIGINS:
        if (parse_origins(v) < 0) {
            complain(s, source, v, NULL);
            return ERR_INVALID;
        }
        break;
    case K_CIDRS:
        if (config_parse_cidrs(v, NULL, CONFIG_MAX_CIDRS) < 0) {
            complain(s, source, v, NULL);
            return ERR_INVALID;
        }
        break;
    case K_REDIS_URL:
    case K_REDIS_NODES: {
        /* The client's own parser decides; never echo the value (it may hold a password). */
        struct redis_options o = {.url = s->kind == K_REDIS_URL ? v : NULL,
                                  .cluster = s->kind == K_REDIS_NODES ? v : NULL};
        struct redis *r = NULL;
        char why[96] = "";
        int rc = redis_open(&o, &r, why, sizeof why);
        redis_close(r);
        if (rc < 0) {
            fprintf(stderr, "emporium: %s is not valid (%s): expected ", source, why);
            print_accepted(stderr, s);
            fputc('\n', stderr);
            return ERR_INVALID;
        }
        break;
    }
    case K_STR:
    case K_SECRET:
        break;
    case K_HTTP_URL: {
        size_t n = strlen(v), skip = !strncmp(v, "http://", 7)    ? 7
                                     : !strncmp(v, "https://", 8) ? 8
                                                                  : 0;
        bool ok = skip && n > skip && n <= 256 && v[n - 1] != '/';
        for (size_t i = skip; ok && i < n; i++)
            ok = v[i] > 0x20 && v[i] < 0x7f && v[i] != '/' && v[i] != '?' && v[i] != '#' &&
                 v[i] != '@';
        if (!ok) {
            complain(s, source, v, NULL);
            return ERR_INVALID;
        }
        break;
    }
    case K_CONSUMERS:
        if (!strcmp(v, "none"))
            break;
        if (parse_services(v, bad, sizeof bad) < 0) {
            char detail[96];
            snprintf(detail, sizeof detail, "%s '%s'", *bad ? "unknown consumer" : "empty entry",
                     bad);
            complain(s, source, v, detail);
            return ERR_INVALID;
        }
        if (!strcmp(v, "all"))
            v = NULL;
        break;
    case K_HOSTS:
        if (parse_hosts(v) < 0) {
            complain(s, source, v, NULL);
            return ERR_INVALID;
        }
        break;
    case K_PG_URLS: {
        int n = 0;
        bool ok = *v != 0;
        for (const char *p = v; ok && *p;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            ok = ++n <= 4 && ((len > 11 && !strncmp(p, "postgres://", 11)) ||
                              (len > 13 && !strncmp(p, "postgresql://", 13)));
            p += len + (e ? 1 : 0);
            if (e && !*p)
                ok = false; /* a trailing comma */
        }
        if (!ok) {
            /* Never echo the value: a URL may carry a password. */
            fprintf(stderr, "emporium: %s is not valid: expected ", source);
            print_accepted(stderr, s);
            fputc('\n', stderr);
            return ERR_INVALID;
        }
        break;
    }
    case K_FLAGS:
        if (flags_validate(v, NULL) < 0) {
            complain(s, source, v, NULL);
            return ERR_INVALID;
        }
        break;
    case K_MONGO_URL:
    case K_SMTP:
        if (s->kind == K_MONGO_URL
                ? (strncmp(v, "mongodb://", 10) && strncmp(v, "mongodb+srv://", 14)) ||
                      strlen(v) > 1024 || strlen(v) < 11
                : (strncmp(v, "smtp://", 7) && strncmp(v, "smtps://", 8)) || strlen(v) > 512 ||
                      strlen(v) < 9) {
            /* Never echo the value: a URL may carry a password. */
            fprintf(stderr, "emporium: %s is not valid: expected ", source);
            print_accepted(stderr, s);
            fputc('\n', stderr);
            return ERR_INVALID;
        }
        break;
    }
    *(const char **)(void *)(base + s->off) = v;
    return 0;
}

static const struct setting *find(const char *var)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (!strcmp(settings[i].var, var))
            return &settings[i];
    return NULL;
}

int config_set(struct config *cfg, const char *var, const char *value, const char *source)
{
    const struct setting *s = find(var);
    if (!s)
        return ERR_NOTFOUND;
    if (!value || !*value) {
        fprintf(stderr, "emporium: %s needs a value: ", source ? source : var);
        print_accepted(stderr, s);
        fputc('\n', stderr);
        return ERR_INVALID;
    }
    return apply(cfg, s, value, source ? source : var);
}

int config_from_env(struct config *cfg)
{
    config_defaults(cfg);
    int rc = 0;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(settings[i].var);
        if (v && *v && apply(cfg, &settings[i], v, settings[i].var) < 0)
            rc = ERR_INVALID;
    }
    if (strlen(cfg->redis_prefix) > 40) {
        fprintf(stderr, "emporium: EMPORIUM_REDIS_PREFIX is not valid: at most 40 bytes\n");
        rc = ERR_INVALID;
    }
    if (cfg->redis_url && cfg->redis_cluster) {
        fprintf(stderr, "emporium: EMPORIUM_REDIS_URL and EMPORIUM_REDIS_CLUSTER are both set: "
                        "set one (a single server or the cluster's seed nodes)\n");
        rc = ERR_INVALID;
    }
    if (cfg->internal_token && strlen(cfg->internal_token) < 16) {
        /* Never echo the value: it is a secret. */
        fprintf(stderr, "emporium: EMPORIUM_INTERNAL_TOKEN is not valid: at least 16 bytes\n");
        rc = ERR_INVALID;
    }
    if (cfg->otlp_service_name) {
        size_t n = strlen(cfg->otlp_service_name);
        bool ok = n > 0 && n <= 64;
        for (size_t i = 0; ok && i < n; i++) {
            char c = cfg->otlp_service_name[i];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '.';
        }
        if (!ok) {
            fprintf(stderr, "emporium: EMPORIUM_OTLP_SERVICE_NAME is not valid: 1 to 64 of "
                            "A-Z a-z 0-9 . _ -\n");
            rc = ERR_INVALID;
        }
    }
    const char *remote = cfg->inventory_url  ? "EMPORIUM_INVENTORY_URL"
                         : cfg->payment_url  ? "EMPORIUM_PAYMENT_URL"
                         : cfg->shipping_url ? "EMPORIUM_SHIPPING_URL"
                         : cfg->product_url  ? "EMPORIUM_PRODUCT_URL"
                         : cfg->user_url     ? "EMPORIUM_USER_URL"
                                             : NULL;
    if (remote && !cfg->internal_token) {
        fprintf(stderr,
                "emporium: %s is set but EMPORIUM_INTERNAL_TOKEN is not: calls to another "
                "service need the internal token\n",
                remote);
        rc = ERR_INVALID;
    }
    /* A misspelt variable would otherwise be ignored without a word. */
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "EMPORIUM_", 9) != 0 || !strncmp(*e, "EMPORIUM_TEST_", 14) ||
            !strncmp(*e, "EMPORIUM_BIN=", 13) || !strncmp(*e, "EMPORIUM_CHROMIUM=", 18))
            continue;
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        bool known = false;
        for (size_t i = 0; i < N_SETTINGS && !known; i++)
            known = strlen(settings[i].var) == n && !strncmp(settings[i].var, *e, n);
        if (!known)
            fprintf(stderr,
                    "emporium: warning: unknown setting %.*s ignored "
                    "(see `emporium serve --help`)\n",
                    (int)n, *e);
    }
    return rc;
}

int config_worker_threads(const struct config *cfg)
{
    if (cfg->threads > 0)
        return cfg->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = n > 0 ? (int)n : 2;
    if (cfg->database_url)
        threads *= 4;
    return threads > 256 ? 256 : threads;
}

int config_offload_threads(const struct config *cfg)
{
    if (cfg->offload_threads > 0)
        return cfg->offload_threads;
    /* A checkout spends much of its time waiting for a shared commit: on SQLite queued at the
     * group-commit writers, on PostgreSQL at db_query_many_shared. The more checkouts wait
     * there at once, the more each commit carries (place-order on SQLite, 16 -> 48 threads:
     * 5.8 -> 3.6 commits and 51 -> 39 WAL pages per order, +10-13 % orders/s; on PostgreSQL
     * with shared commits 1.7 -> 3.2 calls a commit, 13.1 -> 10.5 transactions an order,
     * ~+20 % orders/s). Before PostgreSQL shared commits, 48 threads there only lengthened
     * the tail, and the default was 16. */
    return 48;
}

const char *config_backend(const struct config *cfg)
{
    return cfg->database_url ? "postgres" : "sqlite";
}

const char *config_redacted_url(const struct config *cfg, char *buf, size_t cap)
{
    return url_redacted(cfg->database_url, buf, cap);
}

const char *url_redacted(const char *u, char *buf, size_t cap)
{
    if (!u) {
        snprintf(buf, cap, "%s", "");
        return buf;
    }
    /* scheme://user:password@host… -> scheme://user:***@host… */
    const char *scheme_end = strstr(u, "://");
    const char *at = scheme_end ? strchr(scheme_end + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3)) : NULL;
    if (colon)
        snprintf(buf, cap, "%.*s:***%s", (int)(colon - u), u, at);
    else
        snprintf(buf, cap, "%s", u);
    /* A password in the query string (?password=…) is cut off with the whole query. */
    char *q = strchr(buf, '?');
    if (q && strstr(q, "password"))
        strcpy(q, "?***");
    return buf;
}

void config_print_settings(FILE *f)
{
    struct config d;
    config_defaults(&d);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        fprintf(f, "  %-38s %s\n  %-38s   accepts ", s->var, s->help, "");
        print_accepted(f, s);
        fputs("; default ", f);
        print_default(f, s, &d);
        fputc('\n', f);
    }
}
