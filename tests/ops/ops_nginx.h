/* SPDX-License-Identifier: MIT */
/* ops_nginx.h — a throwaway nginx gateway for the operations drills (tests/ops).
 *
 * Runs Debian's nginx unprivileged-style from a temp prefix (`daemon off`, dies with the test
 * process) on a free port of 27500-27599, in front of the shop instances given as upstream
 * groups. The generated config is the one documented in docs/operations.md (zero-downtime
 * section) and shipped in deploy/nginx/canary.conf: keep-alive upstreams, passive health
 * (max_fails / fail_timeout), idempotent requests retried on the next instance on a
 * connection error, and a POST retried only when it carries an Idempotency-Key. Every config
 * carries a generation number served at /__generation, so a reload is known to be in effect
 * (a condition) rather than assumed after a pause. */
#ifndef EMPORIUM_OPS_NGINX_H
#define EMPORIUM_OPS_NGINX_H
#include <stdbool.h>
#include <sys/types.h>

#include "harness.h"

enum { OPS_GW_MAX_PEERS = 8 };

/* One upstream group: ports of the instances in it (weight 0 = left out). */
struct ops_group {
    const char *name; /* "blue", "green", "shop" */
    int port[OPS_GW_MAX_PEERS];
    int weight[OPS_GW_MAX_PEERS];
    int n;
};

struct ops_gateway {
    pid_t pid;
    int port;
    int generation;
    char prefix[128];
    char conf[200];
    struct th_server front; /* base_url = the gateway: a target for ops_load */
};

/* true when an nginx binary is there (else the drill skips and says why). */
bool ops_nginx_available(void);
/* Writes the config for these groups. split: NULL for one group (groups[0]); else a canary
 * split of groups[0] (stable) and groups[1] (new), `percent` of the traffic to groups[1], and
 * every `user-type: premium` request pinned to groups[pin_premium]. */
int ops_gateway_start(struct ops_gateway *g, const struct ops_group *groups, int n_groups,
                      int percent, int pin_premium);
/* Rewrites the config, runs `nginx -s reload`, and waits (30 s) until /__generation answers
 * the new generation, i.e. new workers with the new config serve. 0 or -1. */
int ops_gateway_reload(struct ops_gateway *g, const struct ops_group *groups, int n_groups,
                       int percent, int pin_premium);
/* SIGQUIT (graceful), waited for; removes the prefix. */
void ops_gateway_stop(struct ops_gateway *g);

/* Polls GET /ready on the instance until it answers `status` (deadline timeout_s). Returns
 * the status seen last (-1 no answer). */
long ops_wait_ready(struct th_server *s, long status, int timeout_s);

#endif
