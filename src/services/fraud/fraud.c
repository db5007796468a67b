/* SPDX-License-Identifier: MIT */
/* fraud.c — the fraud service: the rules that score an order before its payment is captured
 * (svc/fraud.h), the card fingerprint, and the consumer that teaches the rules from the order
 * events.
 *
 * The checkout saga calls fraud_score() after the authorization and before the capture. The
 * score is the sum of the points of the rules that fire; from the hold threshold on the order
 * is held for an operator's review (the order service keeps it on_hold, authorized and with
 * its stock, until approve or reject). Scoring writes the order's row for the velocity rules
 * in the same transaction as the assessment, so a burst of checkouts is counted even before
 * the consumer has heard of it; the consumer ("fraud", on order-events) adds the card and
 * country of orders placed elsewhere, the failures of payments and each order's status.
 * Every write of the consumer sets a state (insert-or-fill, status = …), so applying an event
 * twice changes nothing; events of one order arrive in order (the key is the order id).
 * The consumer's writes wait for its batch end (bus_subscribe_flush) and go together, in
 * their order: one round trip per 32 on PostgreSQL instead of one each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "fraud_internal.h"

static struct db *fraud_db(struct app *app) { return app_db(app, "fraud"); }

static const char *const reason_names[] = {"amount", "velocity", "card_velocity", "failed_payments",
                                           "new_country"};

const char *fraud__reason(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof reason_names / sizeof reason_names[0]; i++)
        if (strlen(reason_names[i]) == len && !strncmp(reason_names[i], s, len))
            return reason_names[i];
    return NULL;
}

static void fire(struct fraud_verdict *v, int points, const char *reason)
{
    v->score += points;
    if (v->n_reasons < FRAUD_MAX_REASONS)
        v->reasons[v->n_reasons++] = reason;
}

void fraud__rules(const struct fraud_ctx *ctx, const struct fraud_order *o,
                  const struct fraud_counts *n, struct fraud_verdict *out)
{
    memset(out, 0, sizeof *out);
    if (o->amount > ctx->review_amount)
        fire(out, FRAUD_POINTS_AMOUNT, reason_names[0]);
    /* "More than N orders in the window" counts this one: N others already is one too many. */
    if (n->user_orders >= ctx->user_velocity)
        fire(out, FRAUD_POINTS_VELOCITY, reason_names[1]);
    if (n->card_orders >= ctx->card_velocity)
        fire(out, FRAUD_POINTS_CARD, reason_names[2]);
    if (n->failed_payments >= ctx->failed_payments)
        fire(out, FRAUD_POINTS_FAILURES, reason_names[3]);
    if (n->past_orders > 0 && n->same_country == 0)
        fire(out, FRAUD_POINTS_COUNTRY, reason_names[4]);
    out->hold = out->score >= ctx->hold_score;
}

int fraud_card_fingerprint(struct app *app, const char *card_number,
                           char out[FRAUD_FINGERPRINT_LEN + 1])
{
    out[0] = 0;
    struct fraud_ctx *ctx = app_service_ctx(app, "fraud");
    if (!ctx)
        return ERR_UNAVAILABLE;
    char digits[41];
    size_t n = 0;
    for (const char *s = card_number; s && *s && n < sizeof digits - 1; s++)
        if (*s >= '0' && *s <= '9')
            digits[n++] = *s;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, (const unsigned char *)digits, n, ctx->key);
    sodium_memzero(digits, sizeof digits);
    sodium_bin2hex(out, FRAUD_FINGERPRINT_LEN + 1, mac, FRAUD_FINGERPRINT_LEN / 2);
    return 0;
}

int fraud_score(struct app *app, const struct fraud_order *o, struct fraud_verdict *out)
{
    memset(out, 0, sizeof *out);
    struct fraud_ctx *ctx = app_service_ctx(app, "fraud");
    struct db *db = fraud_db(app);
    if (!ctx || !db)
        return ERR_UNAVAILABLE;
    int rc = fraud__store_score(db, ctx, o, out);
    if (rc < 0) {
        log_warn("fraud: scoring order %lld failed: %s", (long long)o->order_id, err_str(rc));
        return rc;
    }
    metrics_count("emporium_fraud_assessments_total", out->hold ? "hold" : "pass");
    if (out->n_reasons > 0) {
        char reasons[96] = "";
        size_t len = 0;
        for (int i = 0; i < out->n_reasons && len < sizeof reasons; i++)
            len += (size_t)snprintf(reasons + len, sizeof reasons - len, "%s%s", i ? "," : "",
                                    out->reasons[i]);
        log_event("fraud.assessed", LOG_I("order_id", o->order_id), LOG_I("user_id", o->user_id),
                  LOG_I("score", out->score), LOG_B("hold", out->hold), LOG_S("reasons", reasons));
    }
    return 0;
}

int fraud_assessment_get(struct app *app, int64_t order_id, struct fraud_assessment *out)
{
    struct db *db = fraud_db(app);
    if (!db)
        return ERR_UNAVAILABLE;
    return fraud__store_assessment(db, order_id, out);
}

/* --- the consumer: order-events --- */

static bool payment_failure(const char *reason)
{
    return reason && (!strcmp(reason, "card_declined") || !strcmp(reason, "insufficient_funds") ||
                      !strcmp(reason, "processing_error"));
}

/* The batch end: the staged writes in one go. On failure they stay staged and the runner
 * delivers the batch again (they are idempotent, so staging them twice is harmless). */
static int flush_locked(struct app *app, struct fraud_ctx *ctx)
{
    int rc = fraud__store_events(fraud_db(app), ctx->staged, ctx->n_staged);
    if (rc == 0)
        ctx->n_staged = 0;
    return rc;
}

static int flush(void *vapp)
{
    struct app *app = vapp;
    struct fraud_ctx *ctx = app_service_ctx(app, "fraud");
    if (!ctx)
        return 0;
    pthread_mutex_lock(&ctx->mu);
    int rc = flush_locked(app, ctx);
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

/* What the rules count comes from the order events: the order placed (its card and
 * country), then its status. Staged here, written at the batch end (flush()). */
static int on_order_event(void *vctx, const struct bus_event *ev)
{
    struct app *app = vctx;
    struct fraud_ctx *ctx = app_service_ctx(app, "fraud");
    if (!ctx || !fraud_db(app) || strncmp(ev->type, "order.", 6) != 0)
        return 0;
    int64_t order_id, user_id;
    json_t *d = ev->data;
    if (id_parse(json_string_value(json_object_get(d, "order_id")), &order_id) < 0 ||
        id_parse(json_string_value(json_object_get(d, "user_id")), &user_id) < 0)
        return 0; /* malformed: never applicable */
    struct fraud_event e = {.placed = !strcmp(ev->type, "order.placed"),
                            .order_id = order_id,
                            .user_id = user_id,
                            .at = ev->at_ms ? ev->at_ms : now_ms()};
    if (e.placed) {
        const char *fp = json_string_value(json_object_get(d, "card_fingerprint"));
        const char *country = json_string_value(json_object_get(d, "country"));
        if (fp && strlen(fp) == FRAUD_FINGERPRINT_LEN)
            memcpy(e.card_fp, fp, FRAUD_FINGERPRINT_LEN + 1);
        if (country && strlen(country) < sizeof e.country)
            snprintf(e.country, sizeof e.country, "%s", country);
    } else {
        const char *status = json_string_value(json_object_get(d, "status"));
        if (!status || strlen(status) >= sizeof e.status)
            return 0;
        snprintf(e.status, sizeof e.status, "%s", status);
        e.failed_payment = !strcmp(ev->type, "order.failed") &&
                           payment_failure(json_string_value(json_object_get(d, "reason")));
    }
    pthread_mutex_lock(&ctx->mu);
    int rc = ctx->n_staged == FRAUD_STAGED_MAX ? flush_locked(app, ctx) : 0;
    if (rc == 0)
        ctx->staged[ctx->n_staged++] = e;
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

/* --- the service --- */

static void ctx_free(struct fraud_ctx *ctx)
{
    if (!ctx)
        return;
    pthread_mutex_destroy(&ctx->mu);
    sodium_memzero(ctx, sizeof *ctx);
    free(ctx);
}

int fraud__init(struct app *app)
{
    const struct config *cfg = app_config(app);
    struct fraud_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return ERR_NOMEM;
    ctx->review_amount = cfg->fraud_review_amount;
    ctx->hold_score = cfg->fraud_hold_score;
    ctx->window_ms = (int64_t)cfg->fraud_window_seconds * 1000;
    ctx->user_velocity = cfg->fraud_user_velocity;
    ctx->card_velocity = cfg->fraud_card_velocity;
    ctx->failed_payments = cfg->fraud_failed_payments;
    pthread_mutex_init(&ctx->mu, NULL);
    unsigned char fresh[FRAUD_KEY_BYTES];
    randombytes_buf(fresh, sizeof fresh);
    int rc = fraud__store_key(fraud_db(app), fresh, ctx->key);
    sodium_memzero(fresh, sizeof fresh);
    if (rc == 0)
        rc = app_set_service_ctx(app, "fraud", ctx);
    if (rc == 0)
        rc = bus_subscribe("fraud", BUS_TOPIC_ORDER, on_order_event, app);
    if (rc == 0)
        rc = bus_subscribe_flush("fraud", flush, app);
    if (rc == 0)
        rc = metrics_counter_declare("emporium_fraud_assessments_total", "verdict",
                                     "Orders scored by the fraud rules (pass, hold).");
    if (rc < 0) {
        app_set_service_ctx(app, "fraud", NULL);
        ctx_free(ctx);
    }
    return rc;
}

void fraud__deinit(struct app *app)
{
    struct fraud_ctx *ctx = app_service_ctx(app, "fraud");
    ctx_free(ctx); /* what is staged was never flushed: its batch's offsets were not committed */
    app_set_service_ctx(app, "fraud", NULL);
}
