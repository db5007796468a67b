/* SPDX-License-Identifier: MIT */
/* ops_load.h — the mixed shopper load of the operations drills (tests/ops): browse, cart and
 * checkout through HTTP, and the checks that follow a drill (every acknowledged order is
 * readable and paid with its events, stock adds up, nothing stays reserved).
 *
 * A load runs `threads` shoppers against a target (a th_server whose base_url is the shop or
 * a gateway in front of several). Each shopper loops: list products, read one, add it to the
 * cart, read the cart, check out with a fresh Idempotency-Key. Every 201 is recorded as an
 * acknowledged order. A drill waits on ops_load_acked() (a condition), never on a clock. */
#ifndef EMPORIUM_OPS_LOAD_H
#define EMPORIUM_OPS_LOAD_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "harness.h"

enum { OPS_PRODUCTS = 3, OPS_MAX_BUYERS = 8, OPS_MAX_ACKS = 4096, OPS_STOCK = 1000000 };

/* The operations counted for the error budget (docs/operations.md). */
enum ops_op { OPS_BROWSE, OPS_CART, OPS_CHECKOUT, OPS_N_OPS };

struct ops_ack {
    int buyer;
    char id[32];
    bool checked; /* its events and payment were checked once */
};

struct ops_shop {
    struct th_server *srv; /* the shop itself (admin calls, checks) */
    char *admin;
    char product[OPS_PRODUCTS][32];
    char *token[OPS_MAX_BUYERS];
    int n_buyers;
};

struct ops_load {
    struct ops_shop *shop;
    struct th_server *target;     /* where the load goes (the shop or a gateway) */
    bool stop_on_transport_error; /* crash drills: a dead server ends the shopper */
    const char *key_prefix;       /* unique per load, so keys never repeat */
    int threads;
    int generation; /* loads started so far: part of every key */
    int premium;    /* shoppers 0..premium-1 send `user-type: premium` (the gateway pins them) */
    int pace_ms;    /* pause of each shopper between rounds (100): a steady, modest load */
    pthread_t tid[OPS_MAX_BUYERS];
    atomic_bool stop;
    atomic_long total[OPS_N_OPS];
    atomic_long failed[OPS_N_OPS];
    atomic_long cut[OPS_N_OPS]; /* crash drills: cut off by the kill (no answer) */
    atomic_long acked;
    atomic_long worst_ms;
    pthread_mutex_t mu;
    struct ops_ack acks[OPS_MAX_ACKS];
    int n_acks;
    char first_failure[512];
};

/* Creates the products (stock OPS_STOCK each) and `buyers` shoppers. 0 or -1. */
/* Settings for the shop under a drill: its few shoppers each place hundreds of orders an hour
 * on the one sandbox card, which the fraud rules rightly hold for review (on_hold) — the
 * drills check that every acknowledged order is paid, so they raise the velocity limits
 * (fraud review has its own tests: tests/integration/test_fraud.c). Only for builds that
 * know these settings (the upgrade drill's previous build refuses unknown ones). */
#define OPS_FRAUD_ENV                                                                              \
    "EMPORIUM_FRAUD_USER_VELOCITY=1000000", "EMPORIUM_FRAUD_CARD_VELOCITY=1000000",                \
        "EMPORIUM_FRAUD_FAILED_PAYMENTS=1000000"

int ops_shop_setup(struct ops_shop *shop, struct th_server *srv, int buyers);
void ops_shop_free(struct ops_shop *shop);

/* Clears l (big: keep it static) for `threads` shoppers sending to target. key_prefix must
 * be unique to the shop's database (e.g. the drill's name and pid). */
void ops_load_init(struct ops_load *l, struct ops_shop *shop, struct th_server *target, int threads,
                   const char *key_prefix, bool stop_on_transport_error);
/* Starts the shoppers; the ack list of l is kept across loads (pass the same l again after
 * ops_load_stop to go on counting). */
int ops_load_start(struct ops_load *l);
/* Sets stop and joins the shoppers. */
void ops_load_stop(struct ops_load *l);
long ops_load_acked(struct ops_load *l);
/* Waits until at least n orders were acknowledged, or timeout_s passed; true when reached. */
bool ops_load_wait_acked(struct ops_load *l, long n, int timeout_s);
long ops_load_total(struct ops_load *l);
long ops_load_failed(struct ops_load *l);
/* Prints one line per operation: total, failed, availability vs 99.95 %. */
void ops_load_budget(struct ops_load *l, const char *drill);

/* Every acknowledged order readable by its owner through srv, paid (or further on); with deep,
 * the ones not checked yet also have order.placed / order.paid events and one captured payment.
 * Returns the number of orders found missing or wrong (0 expected); why gets the first. */
int ops_check_acks(struct ops_load *l, struct th_server *srv, bool deep, char *why, size_t cap);
/* Stock adds up: for every product, OPS_STOCK = available + units in paid orders, and
 * nothing reserved, within timeout_s (abandoned checkouts are compensated by the sweep).
 * true when it holds; sold gets the units sold. */
bool ops_check_stock(struct ops_shop *shop, struct th_server *srv, int timeout_s, long *sold,
                     char *why, size_t cap);

#endif
