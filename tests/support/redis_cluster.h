/* SPDX-License-Identifier: MIT */
/* redis_cluster.h — the test Redis Cluster (scripts/test-servers.sh: six nodes on
 * consecutive ports, 3 masters with a replica each), asked and disturbed directly with
 * hiredis: which master serves a slot, whether the cluster is whole, and one master killed
 * (SIGKILL) and started again with its own configuration.
 *
 * Tests that kill a master share the cluster (CMake RESOURCE_LOCK redis_cluster); each
 * waits for th_rc_whole() before its kill and after the restart, so the next test finds
 * every master with a replica that can take over. */
#ifndef EMPORIUM_TEST_REDIS_CLUSTER_H
#define EMPORIUM_TEST_REDIS_CLUSTER_H

#include <stdbool.h>

#define TH_RC_NODES 6

struct redisContext;

/* A direct hiredis connection to the Redis on 127.0.0.1:port (5 s connect and command
 * timeouts), or NULL when it does not answer. */
struct redisContext *th_rc_direct(int port);

/* The ports of the six nodes: the first seed's port and the five after it. */
void th_rc_ports(const char *seeds, int ports[TH_RC_NODES]);

/* The port of the master serving slot, asked of any node that answers; -1 if none. */
int th_rc_master_of(const int ports[TH_RC_NODES], unsigned slot);

/* Whether every node answers and says cluster_state:ok, the cluster has 3 masters and 3
 * replicas none of them failing, and every replica's link to its master is up with no sync
 * in progress (a replica still loading its first copy cannot take over: killing its master
 * then leaves the slots unserved until the master returns). */
bool th_rc_whole(const int ports[TH_RC_NODES]);

/* Waits (polling) until th_rc_whole(), failing the test after timeout_ms. */
void th_rc_wait_whole(const int ports[TH_RC_NODES], int timeout_ms);

/* Kills the node on port with SIGKILL, remembering what th_rc_restart() needs. */
void th_rc_kill(int port);

/* Starts the killed node again with its own configuration (it rejoins as a replica);
 * does nothing when no node is killed. Safe to call from a teardown. */
void th_rc_restart(void);

#endif
