/* SPDX-License-Identifier: MIT */
/* kafka_mock.c — a Kafka-protocol test broker: librdkafka's mock cluster in a daemon.
 *
 * Usage: emporium-kafka-mock --bootstrap-file FILE [--brokers N] [--partitions P]
 *
 * Hosts a mock cluster of N brokers (default 3) that any Kafka client reaches over TCP — the
 * shop, its workers, kcat. The seed's topics are created with P partitions (default 24) and
 * replication factor min(3, N), then the bootstrap list ("127.0.0.1:port,…"; the ports are
 * chosen by the kernel) is written to FILE (atomically, through a rename), which tells the
 * test the cluster is up. Signals: SIGUSR1 takes every broker down (an outage), SIGUSR2 brings
 * them back, SIGTERM/SIGINT stop the daemon. It serves the protocol, including idempotent
 * producers and consumer groups with committed offsets, not durability: state lives in memory. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static const char *const topics[] = {
    "order-events",           "payment-events",        "inventory-events",
    "shipping-events",        "notification-events",   "analytics-events",
    "fraud-detection-events", "recommendation-events", "cache-invalidation",
};

int main(int argc, char **argv)
{
    const char *file = NULL;
    int brokers = 3, partitions = 24;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bootstrap-file") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
            brokers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
            partitions = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s --bootstrap-file FILE [--brokers N] [--partitions P]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!file || brokers < 1 || brokers > 16 || partitions < 1 || partitions > 1024) {
        fprintf(stderr, "%s: --bootstrap-file is required; brokers 1-16, partitions 1-1024\n",
                argv[0]);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before librdkafka starts its threads */

    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "kafka-mock: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "kafka-mock: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    int rf = brokers < 3 ? brokers : 3;
    for (size_t t = 0; t < sizeof topics / sizeof topics[0]; t++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topics[t], partitions, rf);
        if (e) {
            fprintf(stderr, "kafka-mock: topic %s: %s\n", topics[t], rd_kafka_err2str(e));
            return 1;
        }
    }
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", bs) < 0 || fclose(f) != 0 || rename(tmp, file) != 0) {
        fprintf(stderr, "kafka-mock: cannot write %s\n", file);
        return 1;
    }
    fprintf(stderr, "kafka-mock: %d brokers at %s, %d partitions per topic\n", brokers, bs,
            partitions);
    for (;;) {
        int sig = 0;
        sigwait(&set, &sig);
        if (sig == SIGUSR1 || sig == SIGUSR2) {
            for (int b = 1; b <= brokers; b++) {
                if (sig == SIGUSR1)
                    rd_kafka_mock_broker_set_down(mc, b);
                else
                    rd_kafka_mock_broker_set_up(mc, b);
            }
            fprintf(stderr, "kafka-mock: every broker %s\n", sig == SIGUSR1 ? "down" : "up");
            continue;
        }
        break;
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    unlink(file);
    return 0;
}
