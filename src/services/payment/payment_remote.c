/* SPDX-License-Identifier: MIT */
/* payment_remote.c — the payment service's client interface over HTTP, for a process that
 * does not run payments but has EMPORIUM_PAYMENT_URL: authorize, capture, cancel and get go to
 * the internal routes of payment_http.c through upstream.h. authorize carries the caller's
 * idempotency key as Idempotency-Key (so it may be retried: the payment service returns the
 * stored outcome and never charges twice); capture and cancel are idempotent per order. The
 * card travels only in the request body of the internal call and is never logged. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/upstream.h"
#include "payment_internal.h"

static struct upstream *up(struct app *app)
{
    const struct config *cfg = app_config(app);
    return upstream_service(cfg, "payment", cfg->payment_url);
}

bool payment__remote(struct app *app)
{
    return app_config(app)->payment_url && !app_has_service(app, "payment");
}

static int result_read(json_t *j, struct payment_result *out)
{
    if (!out)
        return 0;
    memset(out, 0, sizeof *out);
    const char *id = json_string_value(json_object_get(j, "payment_id"));
    const char *st = json_string_value(json_object_get(j, "status"));
    if (!id || !st || id_parse(id, &out->payment_id) < 0)
        return ERR_INTERNAL;
    const char *fr = json_string_value(json_object_get(j, "failure_reason"));
    const char *br = json_string_value(json_object_get(j, "brand"));
    const char *l4 = json_string_value(json_object_get(j, "last4"));
    snprintf(out->status, sizeof out->status, "%s", st);
    snprintf(out->failure_reason, sizeof out->failure_reason, "%s", fr ? fr : "");
    snprintf(out->brand, sizeof out->brand, "%s", br ? br : "");
    snprintf(out->last4, sizeof out->last4, "%s", l4 ? l4 : "");
    out->retryable = json_is_true(json_object_get(j, "retryable"));
    return 0;
}

int payment__remote_authorize(struct app *app, const char *key, int64_t order_id, int64_t amount,
                              const char *currency, const struct payment_card *card,
                              struct payment_result *out)
{
    if (!key || !*key || strlen(key) > 128 || amount < 0 || !card || !card->number || !card->cvc ||
        !currency)
        return ERR_INVALID;
    char oid[21];
    json_t *body = json_pack("{s:s,s:I,s:s,s:{s:s,s:i,s:i,s:s}}", "order_id",
                             id_format(order_id, oid), "amount", (json_int_t)amount, "currency",
                             currency, "card", "number", card->number, "exp_month", card->exp_month,
                             "exp_year", card->exp_year, "cvc", card->cvc);
    if (!body)
        return ERR_NOMEM;
    int status;
    json_t *resp = NULL;
    int rc = upstream_call_json(up(app), "POST", "/internal/v1/payment/authorizations", key, body,
                                0, &status, &resp);
    json_decref(body);
    if (rc == 0 && (rc = upstream_status_err(status)) == 0) {
        json_t *a = json_object_get(resp, "authorized");
        rc = json_is_boolean(a) ? result_read(json_object_get(resp, "payment"), out) : ERR_INTERNAL;
        if (rc == 0 && !json_is_true(a))
            rc = ERR_PAYMENT;
    }
    json_decref(resp);
    return rc;
}

static int post_order(struct app *app, int64_t order_id, const char *verb)
{
    char path[96], oid[21];
    snprintf(path, sizeof path, "/internal/v1/payment/orders/%s/%s", id_format(order_id, oid),
             verb);
    int status;
    int rc =
        upstream_call(up(app), "POST", path, NULL, NULL, 0, UPSTREAM_IDEMPOTENT, 0, &status, NULL);
    return rc < 0 ? rc : upstream_status_err(status);
}

int payment__remote_capture(struct app *app, int64_t order_id)
{
    return post_order(app, order_id, "capture");
}

int payment__remote_cancel(struct app *app, int64_t order_id)
{
    return post_order(app, order_id, "cancel");
}

int payment__remote_get(struct app *app, int64_t order_id, struct payment_result *out)
{
    char path[80], oid[21];
    snprintf(path, sizeof path, "/internal/v1/payment/orders/%s", id_format(order_id, oid));
    int status;
    json_t *resp = NULL;
    int rc = upstream_call(up(app), "GET", path, NULL, NULL, 0, 0, 0, &status, &resp);
    if (rc == 0 && (rc = upstream_status_err(status)) == 0)
        rc = result_read(resp, out);
    json_decref(resp);
    return rc;
}
