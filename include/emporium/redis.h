/* SPDX-License-Identifier: MIT */
/* redis.h — a thread-safe Redis client on hiredis, for one server or a Redis Cluster.
 *
 * One `struct redis` serves every thread of the process. Behind it each server ("node") has
 * a bounded pool of blocking hiredis connections (at most pool_size open per node; a caller
 * waits up to timeout_ms for one), each with a connect and a command timeout. A connection
 * that fails is closed and a new one is opened on the next use; a node that refuses
 * connections is skipped for a short, growing back-off (100 ms to 2 s) so that a Redis that
 * is down costs each request one fast ERR_UNAVAILABLE, not a connect timeout.
 *
 * Cluster mode (hiredis 0.14 has none, so it is here): the key's hash slot (CRC16-XMODEM of
 * the key, or of its first non-empty {tag}, mod 16384) picks the master from a slot map
 * loaded with CLUSTER SLOTS from any known node. -MOVED updates the map (and reloads it),
 * -ASK sends ASKING plus the command once to the named node without touching the map,
 * -TRYAGAIN and -CLUSTERDOWN back off briefly and retry; redirects are capped. A node that
 * stops answering makes the client reload the map (at most every 100 ms), which is how a
 * promoted replica is found after a failover. Multi-key commands and scripts must keep their
 * keys in one slot (use a {tag}).
 *
 * Replies are hiredis's `redisReply` (include <hiredis/hiredis.h> to read them); an error
 * reply other than a redirect is returned as a reply of type REDIS_REPLY_ERROR, not as a
 * failure. Nothing here logs a password. */
#ifndef EMPORIUM_REDIS_H
#define EMPORIUM_REDIS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emporium/buf.h"

struct redis;
struct redisReply; /* hiredis */

struct redis_options {
    /* Exactly one of the two. url: "redis://[:password@]host[:port][/db]" (one server).
     * cluster: seed nodes "host:port,host:port,..." (any subset of the cluster). */
    const char *url;
    const char *cluster;
    const char *password; /* for cluster nodes (AUTH); NULL = none. The URL's wins. */
    int pool_size;        /* connections per node; 0 = 8 */
    int timeout_ms;       /* connect, command, and pool wait; 0 = 500 */
    int max_redirects;    /* MOVED/ASK/TRYAGAIN retries per command; 0 = 8 */
};

struct redis_stats {
    uint64_t commands;         /* commands sent (each retry counts) */
    uint64_t failures;         /* redis_command calls that returned an error code */
    uint64_t moved, ask;       /* redirects followed */
    uint64_t tryagain;         /* TRYAGAIN / CLUSTERDOWN / LOADING back-offs */
    uint64_t connects;         /* connections opened */
    uint64_t connect_failures; /* connection attempts that failed */
    uint64_t map_reloads;      /* CLUSTER SLOTS loaded */
    uint64_t nodes;            /* nodes known */
    uint64_t open, idle;       /* connections now */
};

/* Validates the options and returns the client in *out. No connection is made yet (the
 * cluster map is loaded on first use), so a Redis that is down at start is not an error:
 * ERR_INVALID only for a malformed URL or seed list (message in `why`, never a password). */
int redis_open(const struct redis_options *opt, struct redis **out, char *why, size_t whycap);
/* NULL is a no-op. No call may be running on the client. */
void redis_close(struct redis *r);
bool redis_is_cluster(const struct redis *r);

/* Runs one command, given as argc strings (lens may be NULL for NUL-terminated ones).
 * key/keylen route it in cluster mode (NULL: any node; ignored for one server).
 * Returns 0 with *reply set (yours: redis_reply_free), or ERR_UNAVAILABLE (no connection,
 * timeout, too many redirects), ERR_NOMEM. */
int redis_command(struct redis *r, const char *key, size_t keylen, int argc, const char **argv,
                  const size_t *lens, struct redisReply **reply);
/* EVALSHA, and EVAL when the node answers NOSCRIPT (which caches the script there): the
 * script's keys are KEYS[1..nkeys] (all in one slot; routed by the first), then the args. */
int redis_script(struct redis *r, const char *script, int nkeys, const char **keys, int nargs,
                 const char **args, struct redisReply **reply);
void redis_reply_free(struct redisReply *reply); /* NULL is a no-op */

/* PING on one server, or on every master of the cluster map; 0 or ERR_UNAVAILABLE. */
int redis_ping(struct redis *r);
/* The slot of a key: CRC16-XMODEM of the key, or of its first non-empty {tag}, & 16383. */
unsigned redis_keyslot(const char *key, size_t len);
void redis_get_stats(struct redis *r, struct redis_stats *out);
/* Appends emporium_redis_* families for r (a metrics writer: ctx is the client). */
void redis_metrics_write(struct buf *out, void *ctx);

#endif
