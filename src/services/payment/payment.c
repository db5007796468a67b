/* SPDX-License-Identifier: MIT */
/* payment.c — the payment service: authorize, capture, void and refund over a provider port.
 *
 * One row in `payments` per authorization attempt, unique on the caller's idempotency key.
 * authorize() first commits the row as `processing` (the unique key makes a concurrent or
 * retried duplicate find it instead of calling the provider again), then calls the provider
 * with no database lock held (it may be slow), then records the outcome, the operation and
 * its outbox event in one transaction. capture/void/refund are conditional transitions
 * (`UPDATE … WHERE status = 'authorized'`) written with their operation row and outbox
 * event in one transaction; the provider call before them carries a key derived from the
 * payment's key, so repeating one is harmless at the provider too. The card number and CVC
 * never reach the database or the log: only brand and last four digits are kept. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "emporium/app.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/metrics.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/outbox.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "payment_internal.h"

#define PAYMENT_WAIT_MS 8000 /* how long a duplicate waits for a processing attempt */

static struct payment_provider provider;

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static void result_fill(const struct payrow *p, struct payment_result *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    out->payment_id = p->id;
    copy(out->status, sizeof out->status, p->status);
    copy(out->failure_reason, sizeof out->failure_reason, p->reason);
    out->retryable = p->retryable;
    copy(out->brand, sizeof out->brand, p->brand);
    copy(out->last4, sizeof out->last4, p->last4);
}

static struct db *payments_db(struct app *app) { return app_db(app, "payments"); }

/* --- cards --- */

int payment__digits(const char *number, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *s = number; *s; s++) {
        if (*s == ' ' || *s == '-')
            continue;
        if (!isdigit((unsigned char)*s) || n + 1 >= cap)
            return -1;
        out[n++] = *s;
    }
    out[n] = 0;
    return (int)n;
}

const char *payment__brand(const char *d)
{
    size_t n = strlen(d);
    if (n < 4)
        return "unknown";
    if (d[0] == '4')
        return "visa";
    int two = (d[0] - '0') * 10 + (d[1] - '0');
    int three = two * 10 + (d[2] - '0');
    int four = three * 10 + (d[3] - '0');
    if ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720))
        return "mastercard";
    if (two == 34 || two == 37)
        return "amex";
    if (four >= 3528 && four <= 3589)
        return "jcb";
    if ((three >= 300 && three <= 305) || two == 36 || two == 38 || two == 39)
        return "diners";
    if (four == 6011 || (three >= 644 && three <= 649) || two == 65)
        return "discover";
    return "unknown";
}

const char *payment_card_brand(const char *number)
{
    char d[24];
    const char *b =
        number && payment__digits(number, d, sizeof d) >= 4 ? payment__brand(d) : "unknown";
    sodium_memzero(d, sizeof d);
    return b;
}

void payment_card_last4(const char *number, char out[5])
{
    char d[24];
    int n = number ? payment__digits(number, d, sizeof d) : -1;
    out[0] = 0;
    if (n >= 4)
        memcpy(out, d + n - 4, 5);
    sodium_memzero(d, sizeof d);
}

static bool luhn_ok(const char *d)
{
    size_t n = strlen(d);
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i % 2 == 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

int payment_card_check(const struct payment_card *card, const char **field, const char **message,
                       bool *expired)
{
    *expired = false;
    char d[24];
    int n = card->number ? payment__digits(card->number, d, sizeof d) : -1;
    if (n < 12 || n > 19) {
        *field = "card_number";
        *message = "must be 12 to 19 digits";
        return ERR_INVALID;
    }
    if (!luhn_ok(d)) {
        *field = "card_number";
        *message = "is not a valid card number";
        return ERR_INVALID;
    }
    if (card->exp_month < 1 || card->exp_month > 12) {
        *field = "exp_month";
        *message = "must be from 1 to 12";
        return ERR_INVALID;
    }
    if (card->exp_year < 2000 || card->exp_year > 2100) {
        *field = "exp_year";
        *message = "must be a four-digit year";
        return ERR_INVALID;
    }
    size_t cl = card->cvc ? strlen(card->cvc) : 0;
    bool cvc_ok = cl == 3 || cl == 4;
    for (size_t i = 0; cvc_ok && i < cl; i++)
        cvc_ok = isdigit((unsigned char)card->cvc[i]) != 0;
    if (!cvc_ok) {
        *field = "cvc";
        *message = "must be 3 or 4 digits";
        return ERR_INVALID;
    }
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    int now_ym = (tm.tm_year + 1900) * 12 + tm.tm_mon; /* tm_mon is 0-based */
    int card_ym = card->exp_year * 12 + (card->exp_month - 1);
    if (card_ym < now_ym) {
        *expired = true;
        *field = "exp_year";
        *message = "the card has expired";
        return ERR_INVALID;
    }
    return 0;
}

/* --- the client interface --- */

/* payment_authorize(); with then_capture, an approved authorization is recorded as
 * `capturing` at once (the mark a capture commits before it asks the provider), so the
 * capture that follows (capture_ask) needs no commit of its own first. *fresh: this call
 * made the attempt (p is it, as recorded), rather than finding an earlier one by its key. */
static int authorize(struct app *app, const char *key, int64_t order_id, int64_t amount,
                     const char *currency, const struct payment_card *card, bool then_capture,
                     struct payrow *pp, bool *fresh, struct payment_result *out)
{
    *fresh = false;
    const char *field, *msg;
    bool expired;
    if (!key || !*key || strlen(key) > 128 || amount < 0)
        return ERR_INVALID;
    if (payment_card_check(card, &field, &msg, &expired) < 0)
        return ERR_INVALID;
    char digits[24];
    payment__digits(card->number, digits, sizeof digits);
    struct payrow p = {.id = id_new(0), .order_id = order_id, .amount = amount};
    *pp = p;
    copy(p.key, sizeof p.key, key);
    copy(p.status, sizeof p.status, "processing");
    copy(p.currency, sizeof p.currency, currency);
    copy(p.brand, sizeof p.brand, payment__brand(digits));
    copy(p.last4, sizeof p.last4, digits + strlen(digits) - 4);

    struct db_conn *c;
    int rc = payment__store_insert(payments_db(app), &p, provider.name);
    if (rc == ERR_CONFLICT) {
        /* A retry or a concurrent duplicate: return what the first attempt got. */
        if ((rc = db_conn_take(payments_db(app), &c)) < 0)
            return rc;
        int64_t deadline = mono_ms() + PAYMENT_WAIT_MS;
        for (;;) {
            rc = payment__store_find(c, "WHERE idempotency_key = $1", DB_TEXT(key), &p);
            if (rc <= 0) {
                db_conn_give(c);
                return rc < 0 ? rc : ERR_INTERNAL;
            }
            if (strcmp(p.status, "processing") != 0 || mono_ms() > deadline)
                break;
            db_conn_give(c);
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
            if ((rc = db_conn_take(payments_db(app), &c)) < 0)
                return rc;
        }
        db_conn_give(c);
        result_fill(&p, out);
        *pp = p;
        if (!strcmp(p.status, "processing"))
            return ERR_BUSY;
        return !strcmp(p.status, "failed") ? ERR_PAYMENT : 0;
    }
    if (rc < 0)
        return rc;

    /* No connection is held while the provider works. */
    struct payment_provider_result pr;
    rc = provider.authorize(provider.self, key, card, amount, currency, &pr);
    memset(digits, 0, sizeof digits);
    if (rc < 0) {
        pr = (struct payment_provider_result){.ok = false, .retryable = true};
        copy(pr.reason, sizeof pr.reason, "processing_error");
    }
    copy(p.status, sizeof p.status, pr.ok ? "authorized" : "failed");
    copy(p.reason, sizeof p.reason, pr.ok ? "" : pr.reason);
    copy(p.ref, sizeof p.ref, pr.ref);
    p.retryable = pr.retryable;
    /* The outcome, its operation row and its event: one intent of the group commit. */
    bool capturing = pr.ok && then_capture;
    rc = payment__store_record(payments_db(app), &p, capturing ? "capturing" : p.status, amount);
    if (rc == 1) {
        rc = 0;
        metrics_count("emporium_payments_total", p.status);
        if (capturing)
            copy(p.status, sizeof p.status, "capturing");
        *fresh = true;
    } else if (rc == 0) {
        /* Recovery voided the attempt meanwhile (the order was given up): report what is
         * stored, and release a hold the provider granted after all, so no card keeps one. */
        bool granted = pr.ok;
        char ref[sizeof p.ref];
        copy(ref, sizeof ref, pr.ref);
        if ((rc = db_conn_take(payments_db(app), &c)) < 0)
            return rc;
        rc = payment__store_find(c, "WHERE id = $1", DB_INT(p.id), &p);
        db_conn_give(c);
        rc = rc < 0 ? rc : 0;
        pr.ok = !strcmp(p.status, "authorized") || !strcmp(p.status, "captured");
        if (granted && !pr.ok) {
            char vkey[128 + 8]; /* keys are at most 128 bytes (checked above) */
            struct payment_provider_result vr;
            snprintf(vkey, sizeof vkey, "%s:void", key);
            if (provider.void_auth(provider.self, vkey, ref, &vr) < 0 || !vr.ok)
                log_warn("payment %lld: voiding a late authorization failed", (long long)p.id);
        }
    }
    if (rc < 0)
        return rc;
    *pp = p;
    result_fill(&p, out);
    return pr.ok ? 0 : ERR_PAYMENT;
}

int payment_authorize(struct app *app, const char *key, int64_t order_id, int64_t amount,
                      const char *currency, const struct payment_card *card,
                      struct payment_result *out)
{
    if (payment__remote(app))
        return payment__remote_authorize(app, key, order_id, amount, currency, card, out);
    struct payrow p;
    bool fresh;
    return authorize(app, key, order_id, amount, currency, card, false, &p, &fresh, out);
}

static int capture_ask(struct app *app, struct payrow *p);

int payment_charge(struct app *app, const char *key, int64_t order_id, int64_t amount,
                   const char *currency, const struct payment_card *card,
                   struct payment_result *out)
{
    int rc;
    if (payment__remote(app)) {
        rc = payment__remote_authorize(app, key, order_id, amount, currency, card, out);
        if (rc == 0 && (rc = payment__remote_capture(app, order_id)) == 0 && out)
            copy(out->status, sizeof out->status, "captured");
        return rc;
    }
    struct payrow p;
    bool fresh;
    rc = authorize(app, key, order_id, amount, currency, card, true, &p, &fresh, out);
    if (rc < 0)
        return rc;
    /* This call's own authorization is marked capturing already; an earlier attempt's (a
     * retry with the same key) goes the whole way of payment_capture(). */
    rc = fresh && !strcmp(p.status, "capturing") ? capture_ask(app, &p) : 1;
    if (rc == 1)
        rc = payment_capture(app, order_id);
    if (rc == 0 && out)
        copy(out->status, sizeof out->status, "captured");
    return rc;
}

/* The newest payment of an order, on a connection taken for the read: 1 found, 0 not. */
static int by_order(struct app *app, int64_t order_id, struct payrow *p)
{
    struct db_conn *c;
    int rc = db_conn_take(payments_db(app), &c);
    if (rc < 0)
        return rc;
    rc = payment__store_by_order(c, order_id, p);
    db_conn_give(c);
    return rc;
}

int payment_capture(struct app *app, int64_t order_id)
{
    if (payment__remote(app))
        return payment__remote_capture(app, order_id);
    struct db *db = payments_db(app);
    struct payrow p;
    /* The common case first: the newest payment authorized, marked `capturing` as it is
     * read (PostgreSQL: one statement instead of a read and a mark). */
    int rc = payment__store_mark_newest(db, order_id, "authorized", "capturing", &p);
    if (rc < 0)
        return rc;
    bool marked = rc > 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (marked) {
            marked = false;
            goto ask;
        }
        rc = by_order(app, order_id, &p);
        if (rc <= 0) {
            rc = rc < 0 ? rc : ERR_NOTFOUND;
            break;
        }
        if (!strcmp(p.status, "captured")) {
            rc = 0;
            break;
        }
        if (!strcmp(p.status, "authorized")) {
            /* `capturing` is committed before the provider is asked: should recording its
             * answer fail (or the process die), compensation knows the money may have been
             * taken and refunds instead of voiding. */
            if ((rc = payment__store_mark(db, &p, "authorized", "capturing")) < 0)
                break;
            if (rc == 0)
                continue; /* moved meanwhile: look again */
        } else if (strcmp(p.status, "capturing") != 0) {
            rc = !strcmp(p.status, "processing") ? ERR_BUSY
                 : !strcmp(p.status, "failed")   ? ERR_NOTFOUND
                                                 : ERR_CONFLICT;
            break;
        }
    ask:
        if ((rc = capture_ask(app, &p)) != 1)
            break;
    }
    return rc > 0 ? 0 : rc;
}

/* p is marked capturing: asks the provider, then records captured (with its operation and
 * event). 0 captured; 1 when the row was no longer capturing at the record (it moved under
 * us: look again); ERR_PAYMENT when the provider refused (the mark is taken back: a void
 * will do again); another ERR_* when the provider could not be asked (the row stays
 * capturing, so compensation refunds). */
static int capture_ask(struct app *app, struct payrow *p)
{
    struct db *db = payments_db(app);
    char key[200];
    snprintf(key, sizeof key, "%s:capture", p->key);
    struct payment_provider_result pr;
    int rc = provider.capture(provider.self, key, p->ref, p->amount, &pr);
    if (rc == 0 && !pr.ok) {
        payment__store_mark(db, p, "capturing", "authorized");
        return ERR_PAYMENT;
    }
    if (rc < 0)
        return rc;
    rc = payment__store_transition(db, p, "capturing", "captured", "capture", "payment.captured",
                                   p->amount);
    return rc < 0 ? rc : rc == 0 ? 1 : 0;
}

int payment_cancel(struct app *app, int64_t order_id)
{
    if (payment__remote(app))
        return payment__remote_cancel(app, order_id);
    struct db *db = payments_db(app);
    struct payrow p;
    int rc = 0;
    for (int attempt = 0; attempt < 5; attempt++) {
        rc = by_order(app, order_id, &p);
        if (rc <= 0)
            break; /* nothing to undo */
        if (!strcmp(p.status, "failed") || !strcmp(p.status, "voided") ||
            !strcmp(p.status, "refunded")) {
            rc = 0;
            break;
        }
        if (!strcmp(p.status, "processing")) {
            /* An attempt abandoned by a crash (or still at the provider): void it, so a late
             * answer finds it no longer processing and leaves it alone. */
            rc = payment__store_transition(db, &p, "processing", "voided", "void", "payment.voided",
                                           p.amount);
            if (rc != 0) {
                rc = rc < 0 ? rc : 0;
                break;
            }
            continue;
        }
        /* capturing: the provider may have taken the money (nothing recorded its answer):
         * refund it, never void. */
        bool capturing = !strcmp(p.status, "capturing");
        bool captured = capturing || !strcmp(p.status, "captured");
        char key[200];
        snprintf(key, sizeof key, "%s:%s", p.key, captured ? "refund" : "void");
        struct payment_provider_result pr;
        rc = captured ? provider.refund(provider.self, key, p.ref, p.amount, &pr)
                      : provider.void_auth(provider.self, key, p.ref, &pr);
        if (rc == 0 && !pr.ok)
            rc = ERR_UNAVAILABLE;
        if (rc < 0)
            break;
        rc = captured
                 ? payment__store_transition(db, &p, capturing ? "capturing" : "captured",
                                             "refunded", "refund", "payment.refunded", p.amount)
                 : payment__store_transition(db, &p, "authorized", "voided", "void",
                                             "payment.voided", p.amount);
        if (rc != 0) {
            rc = rc < 0 ? rc : 0;
            break;
        }
        /* 0: the state moved under us (captured meanwhile); look again. */
    }
    return rc;
}

int payment_get(struct app *app, int64_t order_id, struct payment_result *out)
{
    if (payment__remote(app))
        return payment__remote_get(app, order_id, out);
    struct db_conn *c;
    int rc = db_conn_take(payments_db(app), &c);
    if (rc < 0)
        return rc;
    struct payrow p;
    rc = payment__store_by_order(c, order_id, &p);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ERR_NOTFOUND;
    result_fill(&p, out);
    return 0;
}

int payment__audit(struct app *app, int64_t order_id, struct payment_view **out, int *n)
{
    struct db_conn *c;
    int rc = db_conn_take(payments_db(app), &c);
    if (rc < 0)
        return rc;
    rc = payment__store_audit(c, order_id, out, n);
    db_conn_give(c);
    return rc;
}

/* --- service --- */

int payment__init(struct app *app)
{
    payment__sandbox_init(&provider, app_config(app)->payment_latency_ms);
    metrics_counter_declare("emporium_payments_total", "outcome",
                            "Payment operations by outcome (authorized, failed, captured, "
                            "voided, refunded).");
    return 0;
}
