/* SPDX-License-Identifier: MIT */
/* redis.c — the Redis client (include/emporium/redis.h): node pools, cluster routing.
 *
 * Nodes live in a fixed array that only grows (REDIS_MAX_NODES), so a node pointer read
 * once stays valid until redis_close(); a node that left the cluster simply stops being
 * chosen. The slot map is 16384 atomic node numbers (index + 1, 0 = unknown): a MOVED reply
 * rewrites one entry, a CLUSTER SLOTS reload rewrites all of them, and readers never lock.
 *
 * Each node's pool is a mutex, a condition variable and a stack of idle connections;
 * connecting happens outside the lock with the slot already counted, so the pool bound holds
 * while a connect is slow. A connection that fails is never given back. When a connection
 * that sat idle reports EOF on its first command, the server closed it (a restart, an idle
 * timeout) before it saw the command, so every idle connection of that node is dropped and
 * the command is sent once more on a fresh one: that is the reconnect. Any other failure
 * after a command was written is reported, not retried: the command may have run. */
#include "emporium/redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"

enum {
    REDIS_SLOTS = 16384,
    REDIS_MAX_NODES = 64,
    REDIS_HOST_MAX = 256,
    REDIS_MAX_SCRIPTS = 16,
    REDIS_POOL_MAX = 1024,
    REDIS_BACKOFF_MIN_MS = 100,
    REDIS_BACKOFF_MAX_MS = 2000,
    REDIS_RELOAD_EVERY_MS = 100,
};

struct rnode {
    char host[REDIS_HOST_MAX];
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    redisContext **idle; /* pool_size entries */
    int n_idle, n_open;  /* n_open counts idle, leased and connecting */
    int64_t down_until;  /* mono_ms: refuse to connect before this */
    int backoff_ms;
};

struct rscript {
    const char *text; /* the caller's static string: compared by address */
    char sha[41];
};

struct redis {
    bool cluster;
    int pool_size, timeout_ms, max_redirects, db;
    char *password; /* owned; NULL = none */

    pthread_mutex_t nodes_mu;  /* adding nodes */
    pthread_mutex_t reload_mu; /* one CLUSTER SLOTS reload at a time */
    struct rnode *_Atomic nodes[REDIS_MAX_NODES];
    atomic_int n_nodes;
    _Atomic uint16_t slot_node[REDIS_SLOTS]; /* node index + 1; 0 = unknown */
    _Atomic int64_t last_reload;
    atomic_uint rr; /* round robin over nodes for keyless commands */

    pthread_mutex_t scripts_mu;
    struct rscript scripts[REDIS_MAX_SCRIPTS];
    int n_scripts;

    _Atomic uint64_t commands, failures, moved, ask, tryagain, connects, connect_failures,
        map_reloads;

    struct redis *reg_next; /* live clients, for redis_metrics_write */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct redis *reg_head;

/* ---- slots ---------------------------------------------------------------------------- */

/* CRC16-XMODEM (polynomial 0x1021, initial 0), bitwise: keys are short and this is not the
 * hot part of a network round trip. */
static uint16_t crc16(const char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned redis_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) /* "{}" is no tag: the whole key counts */
            return crc16(open + 1, (size_t)(close - open - 1)) & (REDIS_SLOTS - 1);
    }
    return crc16(key, len) & (REDIS_SLOTS - 1);
}

/* ---- nodes and their pools ------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct rnode *node_new(const char *host, size_t hostlen, int port, int pool_size)
{
    if (hostlen == 0 || hostlen >= REDIS_HOST_MAX || port <= 0 || port > 65535)
        return NULL;
    struct rnode *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->idle = calloc((size_t)pool_size, sizeof *n->idle);
    if (!n->idle) {
        free(n);
        return NULL;
    }
    memcpy(n->host, host, hostlen);
    n->port = port;
    pthread_mutex_init(&n->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    return n;
}

static void node_free(struct rnode *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n_idle; i++)
        redisFree(n->idle[i]);
    free(n->idle);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
}

/* The node's index, adding it when new; -1 when the table is full or the address bad. */
static int node_index(struct redis *r, const char *host, size_t hostlen, int port)
{
    pthread_mutex_lock(&r->nodes_mu);
    int n = atomic_load(&r->n_nodes), found = -1;
    for (int i = 0; i < n && found < 0; i++) {
        struct rnode *x = atomic_load(&r->nodes[i]);
        if (x->port == port && strlen(x->host) == hostlen && !memcmp(x->host, host, hostlen))
            found = i;
    }
    if (found < 0 && n < REDIS_MAX_NODES) {
        struct rnode *x = node_new(host, hostlen, port, r->pool_size);
        if (x) {
            atomic_store(&r->nodes[n], x);
            atomic_store(&r->n_nodes, n + 1); /* after the pointer: readers see it set */
            found = n;
        }
    }
    pthread_mutex_unlock(&r->nodes_mu);
    return found;
}

static redisContext *node_connect(struct redis *r, struct rnode *n)
{
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(n->host, n->port, tv);
    if (!c || c->err)
        goto fail;
    if (redisSetTimeout(c, tv) != REDIS_OK)
        goto fail;
    redisEnableKeepAlive(c);
    if (r->password) {
        redisReply *rep = redisCommand(c, "AUTH %s", r->password);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (rep && !ok)
            log_warn("redis: %s:%d refused the password", n->host, n->port);
        freeReplyObject(rep);
        if (!ok)
            goto fail;
    }
    if (r->db > 0) {
        redisReply *rep = redisCommand(c, "SELECT %d", r->db);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
        if (!ok)
            goto fail;
    }
    atomic_fetch_add(&r->connects, 1);
    return c;
fail:
    atomic_fetch_add(&r->connect_failures, 1);
    if (c)
        redisFree(c);
    return NULL;
}

/* A connection of node n in *out (reused: it sat idle), or ERR_UNAVAILABLE: the node is in
 * its back-off, refused us just now, or every connection stayed busy for timeout_ms. */
static int node_take(struct redis *r, struct rnode *n, redisContext **out, bool *reused)
{
    int64_t deadline = mono_ms() + r->timeout_ms;
    pthread_mutex_lock(&n->mu);
    for (;;) {
        if (n->n_idle > 0) {
            *out = n->idle[--n->n_idle];
            *reused = true;
            pthread_mutex_unlock(&n->mu);
            return 0;
        }
        int64_t now = mono_ms();
        if (now < n->down_until)
            break;
        if (n->n_open < r->pool_size) {
            n->n_open++;
            pthread_mutex_unlock(&n->mu);
            redisContext *c = node_connect(r, n);
            pthread_mutex_lock(&n->mu);
            if (!c) {
                n->n_open--;
                n->backoff_ms = n->backoff_ms ? n->backoff_ms * 2 : REDIS_BACKOFF_MIN_MS;
                if (n->backoff_ms > REDIS_BACKOFF_MAX_MS)
                    n->backoff_ms = REDIS_BACKOFF_MAX_MS;
                n->down_until = mono_ms() + n->backoff_ms;
                pthread_cond_broadcast(&n->cv);
                break;
            }
            n->backoff_ms = 0;
            n->down_until = 0;
            pthread_mutex_unlock(&n->mu);
            *out = c;
            *reused = false;
            return 0;
        }
        if (now >= deadline)
            break;
        struct timespec ts = {(time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L};
        pthread_cond_timedwait(&n->cv, &n->mu, &ts);
    }
    pthread_mutex_unlock(&n->mu);
    return ERR_UNAVAILABLE;
}

/* Gives c back (ok) or closes it; drop_idle also closes every idle connection (stale). */
static void node_give(struct rnode *n, redisContext *c, bool ok, bool drop_idle)
{
    redisContext *close_list[REDIS_POOL_MAX];
    int nclose = 0;
    pthread_mutex_lock(&n->mu);
    if (ok && !c->err) {
        n->idle[n->n_idle++] = c;
    } else {
        n->n_open--;
        close_list[nclose++] = c;
    }
    if (drop_idle) {
        while (n->n_idle > 0 && nclose < REDIS_POOL_MAX) {
            close_list[nclose++] = n->idle[--n->n_idle];
            n->n_open--;
        }
    }
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    for (int i = 0; i < nclose; i++)
        redisFree(close_list[i]);
}

/* ---- the cluster map -------------------------------------------------------------------- */

/* Applies one CLUSTER SLOTS reply (asked of node `from`); false when it is malformed. */
static bool map_apply(struct redis *r, const redisReply *rep, const struct rnode *from)
{
    static _Thread_local uint16_t map[REDIS_SLOTS];
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0)
        return false;
    memset(map, 0, sizeof map);
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            return false;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply *m = e->element[2];
        if (lo < 0 || hi >= REDIS_SLOTS || lo > hi || m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER)
            return false;
        const char *host = m->element[0]->str;
        size_t hostlen = m->element[0]->len;
        if (hostlen == 0 ||
            (hostlen == 1 && host[0] == '?')) { /* unknown endpoint: the asked node's */
            host = from->host;
            hostlen = strlen(from->host);
        }
        int idx = node_index(r, host, hostlen, (int)m->element[1]->integer);
        if (idx < 0)
            return false;
        for (long long s = lo; s <= hi; s++)
            map[s] = (uint16_t)(idx + 1);
    }
    for (int s = 0; s < REDIS_SLOTS; s++)
        atomic_store_explicit(&r->slot_node[s], map[s], memory_order_relaxed);
    return true;
}

/* Reloads the slot map from the first node that answers; at most every 100 ms unless
 * forced, and by one thread at a time (the others go on with the map they have). */
static void map_reload(struct redis *r, bool force)
{
    int64_t now = mono_ms();
    if (!force && now - atomic_load(&r->last_reload) < REDIS_RELOAD_EVERY_MS)
        return;
    if (pthread_mutex_trylock(&r->reload_mu) != 0)
        return;
    atomic_store(&r->last_reload, now);
    int n = atomic_load(&r->n_nodes);
    unsigned start = atomic_fetch_add(&r->rr, 1);
    for (int k = 0; k < n; k++) {
        struct rnode *node = atomic_load(&r->nodes[(start + (unsigned)k) % (unsigned)n]);
        redisContext *c;
        bool reused;
        if (node_take(r, node, &c, &reused) < 0)
            continue;
        redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
        node_give(node, c, rep != NULL, false);
        bool ok = rep && map_apply(r, rep, node);
        freeReplyObject(rep);
        if (ok) {
            atomic_fetch_add(&r->map_reloads, 1);
            break;
        }
    }
    pthread_mutex_unlock(&r->reload_mu);
}

/* The node for a slot (or any node for REDIS_SLOTS); NULL when none is known. */
static struct rnode *node_for(struct redis *r, unsigned slot)
{
    int n = atomic_load(&r->n_nodes);
    if (n == 0)
        return NULL;
    if (!r->cluster)
        return atomic_load(&r->nodes[0]);
    if (slot < REDIS_SLOTS) {
        unsigned v = atomic_load_explicit(&r->slot_node[slot], memory_order_relaxed);
        if (v == 0) {
            map_reload(r, false);
            v = atomic_load_explicit(&r->slot_node[slot], memory_order_relaxed);
        }
        if (v > 0)
            return atomic_load(&r->nodes[v - 1]);
    }
    /* Keyless, or the map is unknown: any node (a wrong one answers MOVED). */
    n = atomic_load(&r->n_nodes);
    return atomic_load(&r->nodes[atomic_fetch_add(&r->rr, 1) % (unsigned)n]);
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": the slot and target node; false if malformed. */
static bool parse_redirect(struct redis *r, const char *msg, const struct rnode *from,
                           unsigned *slot, struct rnode **to)
{
    const char *p = strchr(msg, ' ');
    if (!p)
        return false;
    char *end;
    long s = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end != ' ' || s < 0 || s >= REDIS_SLOTS)
        return false;
    const char *addr = end + 1, *colon = strrchr(addr, ':');
    if (!colon)
        return false;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || port <= 0 || port > 65535)
        return false;
    const char *host = addr;
    size_t hostlen = (size_t)(colon - addr);
    if (hostlen == 0) {
        host = from->host;
        hostlen = strlen(from->host);
    }
    int idx = node_index(r, host, hostlen, (int)port);
    if (idx < 0)
        return false;
    *slot = (unsigned)s;
    *to = atomic_load(&r->nodes[idx]);
    return true;
}

static bool starts(const redisReply *rep, const char *prefix)
{
    return rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, prefix, strlen(prefix));
}

/* ---- commands --------------------------------------------------------------------------- */

int redis_command(struct redis *r, const char *key, size_t keylen, int argc, const char **argv,
                  const size_t *lens, struct redisReply **reply)
{
    unsigned slot = r->cluster && key ? redis_keyslot(key, keylen) : REDIS_SLOTS;
    struct rnode *ask = NULL;
    bool retried_stale = false;
    int backoff = 1;
    *reply = NULL;
    for (int attempt = 0; attempt <= r->max_redirects; attempt++) {
        struct rnode *n = ask ? ask : node_for(r, slot);
        if (!n)
            break;
        redisContext *c;
        bool reused;
        if (node_take(r, n, &c, &reused) < 0) {
            if (!r->cluster)
                break;
            /* A master that went away: a reload may name its promoted replica. */
            map_reload(r, false);
            if (ask || node_for(r, slot) == n)
                break;
            continue;
        }
        redisReply *rep = NULL;
        atomic_fetch_add(&r->commands, 1);
        if (ask) {
            redisReply *asking = NULL;
            if (redisAppendCommand(c, "ASKING") == REDIS_OK &&
                redisAppendCommandArgv(c, argc, argv, lens) == REDIS_OK &&
                redisGetReply(c, (void **)&asking) == REDIS_OK)
                redisGetReply(c, (void **)&rep);
            freeReplyObject(asking);
            ask = NULL;
        } else {
            rep = redisCommandArgv(c, argc, argv, lens);
        }
        if (!rep) {
            bool stale = reused && !retried_stale &&
                         (c->err == REDIS_ERR_EOF ||
                          (c->err == REDIS_ERR_IO && (errno == ECONNRESET || errno == EPIPE)));
            node_give(n, c, false, stale);
            if (stale) {
                retried_stale = true;
                attempt--;
                continue;
            }
            if (r->cluster)
                map_reload(r, false);
            break;
        }
        node_give(n, c, true, false);
        if (starts(rep, "MOVED ") || starts(rep, "ASK ")) {
            unsigned s;
            struct rnode *to;
            bool moved = rep->str[0] == 'M';
            if (!r->cluster || !parse_redirect(r, rep->str, n, &s, &to)) {
                *reply = rep; /* not ours to follow: the caller sees the error */
                return 0;
            }
            freeReplyObject(rep);
            if (moved) {
                atomic_fetch_add(&r->moved, 1);
                int idx = 0;
                while (atomic_load(&r->nodes[idx]) != to)
                    idx++;
                atomic_store_explicit(&r->slot_node[s], (uint16_t)(idx + 1), memory_order_relaxed);
                map_reload(r, false); /* one moved slot usually means more moved */
            } else {
                atomic_fetch_add(&r->ask, 1);
                ask = to;
            }
            continue;
        }
        if (starts(rep, "TRYAGAIN") || starts(rep, "CLUSTERDOWN") || starts(rep, "LOADING")) {
            freeReplyObject(rep);
            atomic_fetch_add(&r->tryagain, 1);
            sleep_ms(backoff);
            backoff = backoff < 64 ? backoff * 2 : 100;
            if (r->cluster)
                map_reload(r, false);
            continue;
        }
        *reply = rep;
        return 0;
    }
    atomic_fetch_add(&r->failures, 1);
    return ERR_UNAVAILABLE;
}

void redis_reply_free(struct redisReply *reply) { freeReplyObject(reply); }

/* The cached SHA1 of a script (SCRIPT LOAD once), or "" when not known yet. */
static void script_sha(struct redis *r, const char *script, char sha[41])
{
    sha[0] = 0;
    pthread_mutex_lock(&r->scripts_mu);
    for (int i = 0; i < r->n_scripts; i++)
        if (r->scripts[i].text == script)
            memcpy(sha, r->scripts[i].sha, 41);
    pthread_mutex_unlock(&r->scripts_mu);
}

static void script_remember(struct redis *r, const char *script, const char *sha, size_t len)
{
    if (len != 40)
        return;
    pthread_mutex_lock(&r->scripts_mu);
    bool known = false;
    for (int i = 0; i < r->n_scripts; i++)
        known |= r->scripts[i].text == script;
    if (!known && r->n_scripts < REDIS_MAX_SCRIPTS) {
        r->scripts[r->n_scripts].text = script;
        memcpy(r->scripts[r->n_scripts].sha, sha, 40);
        r->scripts[r->n_scripts].sha[40] = 0;
        r->n_scripts++;
    }
    pthread_mutex_unlock(&r->scripts_mu);
}

int redis_script(struct redis *r, const char *script, int nkeys, const char **keys, int nargs,
                 const char **args, struct redisReply **reply)
{
    enum { MAX_ARGS = 32 };
    if (nkeys < 0 || nargs < 0 || nkeys + nargs > MAX_ARGS - 3)
        return ERR_INVALID;
    const char *argv[MAX_ARGS];
    char sha[41], nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    const char *rkey = nkeys > 0 ? keys[0] : NULL;
    size_t rlen = rkey ? strlen(rkey) : 0;
    for (int i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[3 + nkeys + i] = args[i];
    argv[2] = nk;
    script_sha(r, script, sha);
    if (sha[0]) {
        argv[0] = "EVALSHA";
        argv[1] = sha;
        int rc = redis_command(r, rkey, rlen, 3 + nkeys + nargs, argv, NULL, reply);
        if (rc < 0 || !starts(*reply, "NOSCRIPT"))
            return rc;
        freeReplyObject(*reply);
        *reply = NULL;
    }
    argv[0] = "EVAL";
    argv[1] = script;
    int rc = redis_command(r, rkey, rlen, 3 + nkeys + nargs, argv, NULL, reply);
    if (rc == 0 && !sha[0] && (*reply)->type != REDIS_REPLY_ERROR) {
        /* Learn the digest for next time: SCRIPT LOAD is idempotent and cheap. */
        const char *lv[] = {"SCRIPT", "LOAD", script};
        redisReply *s = NULL;
        if (redis_command(r, rkey, rlen, 3, lv, NULL, &s) == 0 && s->type == REDIS_REPLY_STRING)
            script_remember(r, script, s->str, s->len);
        freeReplyObject(s);
    }
    return rc;
}

int redis_ping(struct redis *r)
{
    if (r->cluster)
        map_reload(r, false);
    int n = atomic_load(&r->n_nodes);
    bool seen[REDIS_MAX_NODES] = {0};
    /* The masters that own slots; one server: node 0. */
    if (!r->cluster) {
        seen[0] = n > 0;
    } else {
        for (int s = 0; s < REDIS_SLOTS; s++) {
            unsigned v = atomic_load_explicit(&r->slot_node[s], memory_order_relaxed);
            if (v)
                seen[v - 1] = true;
        }
    }
    int checked = 0;
    for (int i = 0; i < n; i++) {
        if (!seen[i])
            continue;
        struct rnode *node = atomic_load(&r->nodes[i]);
        redisContext *c;
        bool reused;
        if (node_take(r, node, &c, &reused) < 0)
            return ERR_UNAVAILABLE;
        redisReply *rep = redisCommand(c, "PING");
        bool stale = !rep && reused;
        node_give(node, c, rep != NULL, stale);
        if (stale) { /* an idle connection to a restarted server: once more */
            if (node_take(r, node, &c, &reused) < 0)
                return ERR_UNAVAILABLE;
            rep = redisCommand(c, "PING");
            node_give(node, c, rep != NULL, false);
        }
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
        if (!ok)
            return ERR_UNAVAILABLE;
        checked++;
    }
    return checked > 0 ? 0 : ERR_UNAVAILABLE;
}

/* ---- life ------------------------------------------------------------------------------- */

static int set_why(char *why, size_t cap, const char *msg)
{
    if (why && cap)
        snprintf(why, cap, "%s", msg);
    return ERR_INVALID;
}

/* "host:port" of length len into a node; false when malformed. */
static bool add_hostport(struct redis *r, const char *s, size_t len, int default_port)
{
    const char *colon = memrchr(s, ':', len);
    size_t hostlen = colon ? (size_t)(colon - s) : len;
    long port = default_port;
    if (colon) {
        char num[8];
        size_t pl = len - hostlen - 1;
        if (pl == 0 || pl >= sizeof num)
            return false;
        memcpy(num, colon + 1, pl);
        num[pl] = 0;
        char *end;
        port = strtol(num, &end, 10);
        if (*end || port <= 0 || port > 65535)
            return false;
    }
    for (size_t i = 0; i < hostlen; i++)
        if (s[i] == '/' || s[i] == '@' || s[i] == ' ')
            return false;
    return hostlen > 0 && node_index(r, s, hostlen, (int)port) >= 0;
}

static int parse_url(struct redis *r, const char *url, char *why, size_t cap)
{
    if (strncmp(url, "redis://", 8) != 0)
        return set_why(why, cap, "must start with redis://");
    const char *p = url + 8, *slash = strchr(p, '/'), *end = slash ? slash : p + strlen(p);
    const char *at = memrchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p)); /* user:password or :password */
        const char *pw = colon ? colon + 1 : p;
        if (at > pw) {
            r->password = strndup(pw, (size_t)(at - pw));
            if (!r->password)
                return ERR_NOMEM;
        }
        p = at + 1;
    }
    if (!add_hostport(r, p, (size_t)(end - p), 6379))
        return set_why(why, cap, "expected redis://[:password@]host[:port][/db]");
    if (slash && slash[1]) {
        char *e;
        long db = strtol(slash + 1, &e, 10);
        if (*e || db < 0 || db > 15)
            return set_why(why, cap, "the database number must be 0..15");
        r->db = (int)db;
    }
    return 0;
}

int redis_open(const struct redis_options *opt, struct redis **out, char *why, size_t cap)
{
    if (!!opt->url == !!opt->cluster)
        return set_why(why, cap, "give either a URL or cluster seed nodes");
    if (opt->pool_size < 0 || opt->pool_size > REDIS_POOL_MAX || opt->timeout_ms < 0 ||
        opt->max_redirects < 0)
        return set_why(why, cap, "pool size, timeout or redirects out of range");
    struct redis *r = calloc(1, sizeof *r);
    if (!r)
        return ERR_NOMEM;
    r->cluster = opt->cluster != NULL;
    r->pool_size = opt->pool_size ? opt->pool_size : 8;
    r->timeout_ms = opt->timeout_ms ? opt->timeout_ms : 500;
    r->max_redirects = opt->max_redirects ? opt->max_redirects : 8;
    pthread_mutex_init(&r->nodes_mu, NULL);
    pthread_mutex_init(&r->reload_mu, NULL);
    pthread_mutex_init(&r->scripts_mu, NULL);
    atomic_store(&r->last_reload, mono_ms() - REDIS_RELOAD_EVERY_MS);
    int rc = 0;
    if (opt->url) {
        rc = parse_url(r, opt->url, why, cap);
    } else {
        const char *p = opt->cluster;
        while (rc == 0 && *p) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (!add_hostport(r, p, len, 6379))
                rc = set_why(why, cap, "expected host:port,host:port,...");
            p += len + (e ? 1 : 0);
        }
        if (rc == 0 && atomic_load(&r->n_nodes) == 0)
            rc = set_why(why, cap, "no seed node");
    }
    if (rc == 0 && !r->password && opt->password && *opt->password) {
        r->password = strdup(opt->password);
        if (!r->password)
            rc = ERR_NOMEM;
    }
    if (rc < 0) {
        redis_close(r);
        return rc;
    }
    pthread_mutex_lock(&reg_mu);
    r->reg_next = reg_head;
    reg_head = r;
    pthread_mutex_unlock(&reg_mu);
    *out = r;
    return 0;
}

void redis_close(struct redis *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&reg_mu);
    for (struct redis **pp = &reg_head; *pp; pp = &(*pp)->reg_next)
        if (*pp == r) {
            *pp = r->reg_next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    int n = atomic_load(&r->n_nodes);
    for (int i = 0; i < n; i++)
        node_free(atomic_load(&r->nodes[i]));
    pthread_mutex_destroy(&r->nodes_mu);
    pthread_mutex_destroy(&r->reload_mu);
    pthread_mutex_destroy(&r->scripts_mu);
    free(r->password);
    free(r);
}

bool redis_is_cluster(const struct redis *r) { return r->cluster; }

void redis_get_stats(struct redis *r, struct redis_stats *out)
{
    memset(out, 0, sizeof *out);
    out->commands = atomic_load(&r->commands);
    out->failures = atomic_load(&r->failures);
    out->moved = atomic_load(&r->moved);
    out->ask = atomic_load(&r->ask);
    out->tryagain = atomic_load(&r->tryagain);
    out->connects = atomic_load(&r->connects);
    out->connect_failures = atomic_load(&r->connect_failures);
    out->map_reloads = atomic_load(&r->map_reloads);
    int n = atomic_load(&r->n_nodes);
    out->nodes = (uint64_t)n;
    for (int i = 0; i < n; i++) {
        struct rnode *x = atomic_load(&r->nodes[i]);
        pthread_mutex_lock(&x->mu);
        out->open += (uint64_t)x->n_open;
        out->idle += (uint64_t)x->n_idle;
        pthread_mutex_unlock(&x->mu);
    }
}

void redis_metrics_write(struct buf *out, void *ctx)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } fam[] = {
#define F(n, t, h) {"emporium_redis_" #n, t, h, offsetof(struct redis_stats, n)}
        F(commands, "counter", "Redis commands sent (retries included)."),
        F(failures, "counter", "Redis calls that failed (no connection, timeout, redirects)."),
        F(moved, "counter", "MOVED redirects followed."),
        F(ask, "counter", "ASK redirects followed."),
        F(tryagain, "counter", "TRYAGAIN/CLUSTERDOWN/LOADING back-offs."),
        F(connects, "counter", "Connections opened."),
        F(connect_failures, "counter", "Connection attempts that failed."),
        F(map_reloads, "counter", "Cluster slot maps loaded."),
        F(nodes, "gauge", "Redis nodes known."),
        F(open, "gauge", "Connections open."),
        F(idle, "gauge", "Connections idle in the pools."),
#undef F
    };
    (void)ctx;
    pthread_mutex_lock(&reg_mu);
    for (size_t f = 0; f < sizeof fam / sizeof fam[0] && reg_head; f++) {
        const char *suffix = !strcmp(fam[f].type, "counter") ? "_total" : "";
        buf_printf(out, "# HELP %s%s %s\n# TYPE %s%s %s\n", fam[f].name, suffix, fam[f].help,
                   fam[f].name, suffix, fam[f].type);
        for (struct redis *r = reg_head; r; r = r->reg_next) {
            struct redis_stats st;
            uint64_t v;
            redis_get_stats(r, &st);
            memcpy(&v, (const char *)&st + fam[f].off, sizeof v);
            buf_printf(out, "%s%s{mode=\"%s\"} %llu\n", fam[f].name, suffix,
                       r->cluster ? "cluster" : "standalone", (unsigned long long)v);
        }
    }
    pthread_mutex_unlock(&reg_mu);
}
