/* SPDX-License-Identifier: MIT */
/* notification.c — e-mails to customers about their orders, from the events (docs/events.md).
 *
 * Consumer group "notification" on order-events (order.placed, order.on_hold, order.paid,
 * order.shipped, order.delivered, order.cancelled) and payment-events (payment.failed): one
 * message per event, from a template with a text and an HTML part, to the order's customer.
 * Delivery: a Maildir (EMPORIUM_MAIL_DIR, default <data-dir>/mail: written to tmp/, renamed
 * into new/), or SMTP through libcurl when EMPORIUM_SMTP_URL is set.
 *
 * The work is done at the consumer's batch end (bus_subscribe_flush), for the whole batch: an
 * event only queues its message. An order event names the customer and the total; a
 * payment.failed does not, so its order is read (order_get). Then one read finds which of
 * the batch's events were notified before, one read (user_get_many) fetches every customer's
 * address, and the messages are delivered — instead of three reads per event.
 *
 * Exactly one message per event: the event id is recorded (notifications_sent) after the
 * delivery, and checked before it. In a Maildir the file name is derived from the event
 * (time and id), so a redelivery after a crash between the rename and the record finds the
 * file and writes nothing. Each message is written to tmp/, one syncfs() makes every file of
 * the batch durable, they are renamed into new/, new/ is synced and their records are
 * inserted in one transaction (on PostgreSQL one statement) — instead of an fsync and a
 * commit per message. Only then are the events' offsets committed; a failure anywhere
 * delivers the whole batch again, and the names derived from the events keep it to one
 * message each. Over SMTP each message is sent and then recorded; that window cannot be
 * closed (no transaction spans a mail server): a crash right after the server accepted a
 * message and before the record sends it again once. A customer-facing text never includes
 * anything but the order's own figures and
 * the name the customer chose (escaped in HTML; never in a header). */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "emporium/app.h"
#include "emporium/buf.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#define EMPORIUM_SERVICE_NO_HTTP /* no routes */
#include "emporium/service.h"
#include "emporium/svc/order.h"
#include "emporium/svc/user.h"

#define MAIL_FROM "orders@emporium.invalid"

/* An event to notify, waiting for the batch end (flush()): everything the message needs but
 * the customer's account, which the batch end reads for the whole batch at once. */
struct pending {
    char *event_id, *event_type; /* owned */
    const struct template *t;
    int64_t at_ms, order_id;
    int64_t user_id, total; /* user_id 0: not in the event (payment.failed): from the order */
    char currency[4];
    bool skip;      /* notified before, or no order or account to write to: nothing is due */
    int account;    /* index into the batch's accounts */
    char name[160]; /* the file name in tmp/ and new/ */
    bool written;   /* false: new/ had it already (a redelivery); only the record is due */
};

#define PENDING_MAX 256 /* the consumer runner's batch; flush() runs early when it is full */

struct notification_ctx {
    char maildir[512];
    const char *smtp_url; /* config-owned; NULL = Maildir */
    pthread_mutex_t mu;   /* pending: the consumer thread, or bus_dispatch() callers */
    bool dirs_made;       /* the Maildir's directories exist (until a batch end fails) */
    bool records_pg;      /* the notifications database is PostgreSQL (records_tx) */
    int n_pending;
    struct pending pending[PENDING_MAX];
    int64_t account_ids[PENDING_MAX]; /* the batch's customers, each once */
    struct user accounts[PENDING_MAX];
};

struct template
{
    const char *type;
    const char *subject; /* after "Order <id>: " */
    const char *text;    /* one paragraph */
};

static const struct template templates[] = {
    {"order.placed", "received", "We have received your order and are taking payment."},
    {"order.on_hold", "under review",
     "We are reviewing your order before taking payment; you will hear from us shortly."},
    {"order.paid", "confirmed", "Your payment went through: your order is confirmed."},
    {"order.shipped", "shipped", "Your order is on its way."},
    {"order.delivered", "delivered", "Your order has been delivered. Enjoy!"},
    {"order.cancelled", "cancelled", "Your order was cancelled. Any payment taken is refunded."},
    {"payment.failed", "payment failed",
     "Your payment did not go through, so the order was not placed. Nothing was charged."},
};

#define N_TEMPLATES (sizeof templates / sizeof templates[0])
/* The types of the templates, NULL-ended, filled at init: what the consumer subscribes to
 * (bus_subscribe_types), so the topics' other events (payment.authorized, …) are not parsed. */
static const char *template_types[N_TEMPLATES + 1];

static const struct template *template_of(const char *type)
{
    for (size_t i = 0; i < N_TEMPLATES; i++)
        if (!strcmp(templates[i].type, type))
            return &templates[i];
    return NULL;
}

static struct db *notif_db(struct app *app) { return app_db(app, "notifications"); }

static void html_escape(struct buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            buf_puts(b, "&lt;");
            break;
        case '>':
            buf_puts(b, "&gt;");
            break;
        case '&':
            buf_puts(b, "&amp;");
            break;
        case '"':
            buf_puts(b, "&quot;");
            break;
        default:
            buf_printf(b, "%c", *s);
        }
    }
}

/* The RFC 5322 message, lines ended by eol ("\r\n" for SMTP, "\n" in a Maildir). */
static void compose(struct buf *b, const char *eol, const struct pending *ev, const char *order_id,
                    const struct user *u, const char *subject, const char *amount)
{
    const struct template *t = ev->t;
    char date[64];
    time_t secs = (time_t)((ev->at_ms ? ev->at_ms : now_ms()) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    buf_printf(b, "From: Emporium <%s>%s", MAIL_FROM, eol);
    buf_printf(b, "To: <%s>%s", u->email, eol);
    buf_printf(b, "Subject: %s%s", subject, eol);
    buf_printf(b, "Date: %s%s", date, eol);
    buf_printf(b, "Message-ID: <%s.%s@emporium.invalid>%s", ev->event_id, t->type, eol);
    buf_printf(b, "X-Emporium-Event-Id: %s%s", ev->event_id, eol);
    buf_printf(b, "X-Emporium-Event-Type: %s%s", ev->event_type, eol);
    buf_printf(b, "MIME-Version: 1.0%s", eol);
    buf_printf(b, "Content-Type: multipart/alternative; boundary=\"emp-%s\"%s%s", ev->event_id, eol,
               eol);
    buf_printf(b, "--emp-%s%s", ev->event_id, eol);
    buf_printf(b, "Content-Type: text/plain; charset=utf-8%sContent-Transfer-Encoding: 8bit%s%s",
               eol, eol, eol);
    buf_printf(b, "Hello %s,%s%s%s%s%sOrder %s, total %s.%s%s— Emporium%s", u->name, eol, eol,
               t->text, eol, eol, order_id, amount, eol, eol, eol);
    buf_printf(b, "--emp-%s%s", ev->event_id, eol);
    buf_printf(b, "Content-Type: text/html; charset=utf-8%sContent-Transfer-Encoding: 8bit%s%s",
               eol, eol, eol);
    buf_puts(b, "<!doctype html><html><body><p>Hello ");
    html_escape(b, u->name);
    buf_printf(b,
               ",</p><p>%s</p><p>Order <b>%s</b>, total <b>%s</b>.</p><p>— Emporium</p>"
               "</body></html>%s",
               t->text, order_id, amount, eol);
    buf_printf(b, "--emp-%s--%s", ev->event_id, eol);
}

static int mkdirs(const char *dir)
{
    char p[600];
    const char *sub[] = {"", "/tmp", "/new", "/cur"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", dir, sub[i]);
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return ERR_UNAVAILABLE;
    }
    return 0;
}

static void pending_free(struct pending *p)
{
    free(p->event_id);
    free(p->event_type);
    p->event_id = p->event_type = NULL;
}

/* Writes the message into the Maildir's tmp/ under a name derived from the event (not synced
 * yet: flush() does that for the whole batch); p->written false when new/ has it already (a
 * redelivery). */
static int maildir_write(struct notification_ctx *ctx, const struct buf *msg, struct pending *p)
{
    const char *dir = ctx->maildir;
    if (!ctx->dirs_made && mkdirs(dir) < 0) {
        log_warn("notification: cannot create the Maildir %s", dir);
        return ERR_UNAVAILABLE;
    }
    ctx->dirs_made = true;
    char tmp[800], dst[800];
    snprintf(p->name, sizeof p->name, "%lld.%s.emporium", (long long)(p->at_ms / 1000),
             p->event_id);
    snprintf(dst, sizeof dst, "%s/new/%s", dir, p->name);
    snprintf(tmp, sizeof tmp, "%s/tmp/%s", dir, p->name);
    struct stat st;
    p->written = stat(dst, &st) != 0;
    if (!p->written)
        return 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        ctx->dirs_made = false; /* tmp/ may be gone: made again when the event comes again */
        return ERR_UNAVAILABLE;
    }
    size_t off = 0;
    while (off < msg->len) {
        ssize_t w = write(fd, msg->p + off, msg->len - off);
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return ERR_UNAVAILABLE;
        }
        off += (size_t)w;
    }
    if (close(fd) < 0) {
        unlink(tmp);
        return ERR_UNAVAILABLE;
    }
    return 0;
}

/* fsync() of a directory (so the names in it survive a crash of the machine). */
static int sync_dir(const char *dir, const char *sub)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    int fd = open(p, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return ERR_UNAVAILABLE;
    int rc = fsync(fd) < 0 ? ERR_UNAVAILABLE : 0;
    close(fd);
    return rc;
}

struct reader {
    const char *p;
    size_t left;
};

static size_t read_cb(char *out, size_t size, size_t n, void *vr)
{
    struct reader *r = vr;
    size_t k = size * n < r->left ? size * n : r->left;
    memcpy(out, r->p, k);
    r->p += k;
    r->left -= k;
    return k;
}

static int smtp_send(const char *url, const char *to, const struct buf *msg)
{
    CURL *c = curl_easy_init();
    if (!c)
        return ERR_NOMEM;
    char rcpt[300];
    snprintf(rcpt, sizeof rcpt, "<%s>", to);
    struct curl_slist *rcpts = curl_slist_append(NULL, rcpt);
    struct reader r = {msg->p, msg->len};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, "<" MAIL_FROM ">");
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &r);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(rcpts);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        log_warn("notification: SMTP: %s", curl_easy_strerror(rc));
        return ERR_UNAVAILABLE;
    }
    return 0;
}

#define RECORD_SQL                                                                                 \
    "INSERT INTO notifications_sent (event_id, event_type, order_id, subject, sent_at) "           \
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING"

static void subject_of(const struct pending *p, char *out, size_t cap)
{
    char oid[21];
    snprintf(out, cap, "Order %s: %s", id_format(p->order_id, oid), p->t->subject);
}

/* The records of the batch's messages (flush()), in one transaction: on PostgreSQL one set
 * statement, on SQLite a statement each. */
static int records_tx(struct db_conn *c, void *vctx)
{
    struct notification_ctx *ctx = vctx;
    int64_t now = now_ms();
    char subject[128];
    if (ctx->records_pg) {
        struct buf ids = BUF_INIT(0), types = BUF_INIT(0), orders = BUF_INIT(0),
                   subjects = BUF_INIT(0);
        int n = 0;
        for (int i = 0; i < ctx->n_pending; i++) {
            struct pending *p = &ctx->pending[i];
            if (p->skip)
                continue;
            subject_of(p, subject, sizeof subject);
            db_array_text(&ids, p->event_id);
            db_array_text(&types, p->event_type);
            db_array_int(&orders, p->order_id);
            db_array_text(&subjects, subject);
            n++;
        }
        const char *a0 = db_array_end(&ids), *a1 = db_array_end(&types),
                   *a2 = db_array_end(&orders), *a3 = db_array_end(&subjects);
        int rc = 0;
        if (!a0 || !a1 || !a2 || !a3) {
            rc = ERR_NOMEM;
        } else if (n > 0) {
            struct db_val a[] = {DB_TEXT(a0), DB_TEXT(a1), DB_TEXT(a2), DB_TEXT(a3), DB_INT(now)};
            rc = db_query(c,
                          "INSERT INTO notifications_sent (event_id, event_type, order_id, "
                          "subject, sent_at) SELECT e, t, o, s, $5 FROM unnest($1::text[], "
                          "$2::text[], $3::bigint[], $4::text[]) AS r(e, t, o, s) "
                          "ON CONFLICT (event_id) DO NOTHING",
                          5, a, NULL);
        }
        buf_free(&ids);
        buf_free(&types);
        buf_free(&orders);
        buf_free(&subjects);
        return rc < 0 ? rc : 0;
    }
    for (int i = 0; i < ctx->n_pending; i++) {
        struct pending *p = &ctx->pending[i];
        if (p->skip)
            continue;
        subject_of(p, subject, sizeof subject);
        struct db_val a[] = {DB_TEXT(p->event_id), DB_TEXT(p->event_type), DB_INT(p->order_id),
                             DB_TEXT(subject), DB_INT(now)};
        int rc = db_query(c, RECORD_SQL, 5, a, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Marks the batch's events notified before (their record exists) to be skipped: one read. */
static int skip_sent(struct app *app, struct notification_ctx *ctx)
{
    struct db *db = notif_db(app);
    bool pg = db_dialect(db) == DB_POSTGRES;
    struct buf ids = BUF_INIT(0);
    json_t *list = pg ? NULL : json_array();
    for (int i = 0; i < ctx->n_pending; i++) {
        if (pg)
            db_array_text(&ids, ctx->pending[i].event_id);
        else if (list)
            json_array_append_new(list, json_string(ctx->pending[i].event_id));
    }
    char *text = pg ? NULL : list ? json_dumps(list, JSON_COMPACT) : NULL;
    const char *arg = pg ? db_array_end(&ids) : text;
    json_decref(list);
    struct db_rows *r = NULL;
    int rc = ERR_NOMEM;
    if (arg) {
        struct db_val a[] = {DB_TEXT(arg)};
        rc = db_query_once(db,
                           pg ? "SELECT event_id FROM notifications_sent "
                                "WHERE event_id = ANY($1::text[])"
                              : "SELECT event_id FROM notifications_sent "
                                "WHERE event_id IN (SELECT value FROM json_each($1))",
                           1, a, &r);
    }
    buf_free(&ids);
    free(text);
    for (int row = 0; rc >= 0 && row < db_rows_count(r); row++)
        for (int i = 0; i < ctx->n_pending; i++)
            if (!strcmp(ctx->pending[i].event_id, db_get(r, row, 0)))
                ctx->pending[i].skip = true;
    db_rows_free(r);
    return rc < 0 ? rc : 0;
}

/* What the batch's messages need besides the events: the order of an event that does not
 * name its customer (payment.failed), and every customer's account, read once for the whole
 * batch. A message without an order or an account is skipped (never deliverable). */
static int resolve(struct app *app, struct notification_ctx *ctx)
{
    int rc = skip_sent(app, ctx), n = 0;
    for (int i = 0; rc == 0 && i < ctx->n_pending; i++) {
        struct pending *p = &ctx->pending[i];
        if (p->skip || p->user_id)
            continue;
        struct order_view o;
        rc = order_get(app, p->order_id, 0, true, false, &o);
        if (rc == ERR_NOTFOUND) {
            p->skip = true;
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        p->user_id = o.user_id;
        p->total = o.total;
        memcpy(p->currency, o.currency, sizeof p->currency);
        order_view_free(&o);
    }
    for (int i = 0; rc == 0 && i < ctx->n_pending; i++) {
        struct pending *p = &ctx->pending[i];
        if (p->skip)
            continue;
        int k = 0;
        while (k < n && ctx->account_ids[k] != p->user_id)
            k++;
        if (k == n)
            ctx->account_ids[n++] = p->user_id;
        p->account = k;
    }
    if (rc == 0 && n > 0)
        rc = user_get_many(app, ctx->account_ids, n, ctx->accounts);
    for (int i = 0; rc == 0 && i < ctx->n_pending; i++)
        if (!ctx->pending[i].skip && ctx->accounts[ctx->pending[i].account].id == 0)
            ctx->pending[i].skip = true; /* the account is gone */
    return rc;
}

/* p's message, lines ended by eol. */
static int message(const struct notification_ctx *ctx, const struct pending *p, const char *eol,
                   struct buf *msg)
{
    char amount[48], oid[21], subject[128];
    snprintf(amount, sizeof amount, "%lld.%02lld %s", (long long)(p->total / 100),
             (long long)(p->total % 100), p->currency);
    subject_of(p, subject, sizeof subject);
    compose(msg, eol, p, id_format(p->order_id, oid), &ctx->accounts[p->account], subject, amount);
    return msg->err ? ERR_NOMEM : 0;
}

/* Over SMTP: each message sent, then recorded, one by one (no transaction spans a mail
 * server; what was sent and recorded before a failure is skipped when the batch comes again). */
static int deliver_smtp(struct app *app, struct notification_ctx *ctx)
{
    for (int i = 0; i < ctx->n_pending; i++) {
        struct pending *p = &ctx->pending[i];
        if (p->skip)
            continue;
        struct buf msg = BUF_INIT(0);
        int rc = message(ctx, p, "\r\n", &msg);
        if (rc == 0)
            rc = smtp_send(ctx->smtp_url, ctx->accounts[p->account].email, &msg);
        buf_free(&msg);
        char subject[128];
        subject_of(p, subject, sizeof subject);
        struct db_val a[] = {DB_TEXT(p->event_id), DB_TEXT(p->event_type), DB_INT(p->order_id),
                             DB_TEXT(subject), DB_INT(now_ms())};
        if (rc == 0)
            rc = db_query_once(notif_db(app), RECORD_SQL, 5, a, NULL);
        if (rc < 0)
            return rc;
        metrics_count("emporium_notifications_total", "smtp");
        log_event("notification.sent", LOG_I("order_id", p->order_id),
                  LOG_S("type", p->event_type));
    }
    return 0;
}

/* Into the Maildir: every message written to tmp/, one syncfs() makes them durable, they are
 * renamed into new/, new/ is synced, and their records go in one transaction. */
static int deliver_maildir(struct app *app, struct notification_ctx *ctx)
{
    int rc = 0, wrote = 0;
    for (int i = 0; i < ctx->n_pending && rc == 0; i++) {
        struct pending *p = &ctx->pending[i];
        if (p->skip)
            continue;
        struct buf msg = BUF_INIT(0);
        rc = message(ctx, p, "\n", &msg);
        if (rc == 0)
            rc = maildir_write(ctx, &msg, p);
        buf_free(&msg);
        wrote += rc == 0 && p->written;
    }
    char tmp[800], dst[800];
    if (rc == 0 && wrote) {
        snprintf(tmp, sizeof tmp, "%s/tmp", ctx->maildir);
        int fd = open(tmp, O_RDONLY | O_DIRECTORY);
        if (fd < 0 || syncfs(fd) < 0)
            rc = ERR_UNAVAILABLE;
        if (fd >= 0)
            close(fd);
        for (int i = 0; i < ctx->n_pending && rc == 0; i++) {
            struct pending *p = &ctx->pending[i];
            if (p->skip || !p->written)
                continue;
            snprintf(tmp, sizeof tmp, "%s/tmp/%s", ctx->maildir, p->name);
            snprintf(dst, sizeof dst, "%s/new/%s", ctx->maildir, p->name);
            struct stat st;
            if (rename(tmp, dst) < 0 && stat(dst, &st) != 0) /* a twin of the batch moved it */
                rc = ERR_UNAVAILABLE;
        }
        if (rc == 0)
            rc = sync_dir(ctx->maildir, "new");
    }
    ctx->records_pg = db_dialect(notif_db(app)) == DB_POSTGRES;
    if (rc == 0)
        rc = db_transact(notif_db(app), records_tx, NULL, ctx);
    for (int i = 0; i < ctx->n_pending; i++) {
        struct pending *p = &ctx->pending[i];
        if (p->skip)
            continue;
        if (rc == 0) {
            metrics_count("emporium_notifications_total", "maildir");
            log_event("notification.sent", LOG_I("order_id", p->order_id),
                      LOG_S("type", p->event_type));
        } else if (p->written) {
            snprintf(tmp, sizeof tmp, "%s/tmp/%s", ctx->maildir, p->name);
            unlink(tmp); /* gone already when it reached new/ (or never written) */
        }
    }
    return rc;
}

/* The batch end: the batch's records and accounts read (one statement each), then every
 * message delivered. On a failure nothing of the batch counts as sent (its events come
 * again; what reached new/ is found there by name). Called with ctx->mu held. */
static int flush_locked(struct app *app, struct notification_ctx *ctx)
{
    if (ctx->n_pending == 0)
        return 0;
    int rc = resolve(app, ctx);
    if (rc == 0)
        rc = ctx->smtp_url ? deliver_smtp(app, ctx) : deliver_maildir(app, ctx);
    if (rc < 0) {
        log_warn("notification: %d messages not delivered, their events come again: %s",
                 ctx->n_pending, err_str(rc));
        ctx->dirs_made = false; /* a directory may be gone: made again before the next */
    }
    for (int i = 0; i < ctx->n_pending; i++)
        pending_free(&ctx->pending[i]);
    ctx->n_pending = 0;
    return rc;
}

static int flush(void *vapp)
{
    struct app *app = vapp;
    struct notification_ctx *ctx = app_service_ctx(app, "notification");
    if (!ctx)
        return 0;
    pthread_mutex_lock(&ctx->mu);
    int rc = flush_locked(app, ctx);
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

/* An event's customer and total, when it names them (every order event does). */
static void from_event(const struct bus_event *ev, struct pending *p)
{
    const char *uid = json_string_value(json_object_get(ev->data, "user_id"));
    json_t *total = json_object_get(ev->data, "total");
    json_t *amount = json_object_get(total, "amount");
    const char *cur = json_string_value(json_object_get(total, "currency"));
    int64_t user_id;
    if (!uid || id_parse(uid, &user_id) < 0 || user_id <= 0 || !json_is_integer(amount) || !cur ||
        strlen(cur) != 3)
        return; /* read from the order at the batch end */
    p->user_id = user_id;
    p->total = json_integer_value(amount);
    memcpy(p->currency, cur, sizeof p->currency);
}

/* Queues ev's message for the batch end (flush()), which reads what it needs for the whole
 * batch and delivers it. */
static int on_event(void *vctx, const struct bus_event *ev)
{
    struct app *app = vctx;
    struct notification_ctx *ctx = app_service_ctx(app, "notification");
    const struct template *t = template_of(ev->type);
    if (!t || !ctx)
        return 0;
    int64_t order_id = 0;
    const char *oid = json_string_value(json_object_get(ev->data, "order_id"));
    if (!oid || id_parse(oid, &order_id) < 0)
        return 0; /* malformed: never deliverable */
    pthread_mutex_lock(&ctx->mu);
    int rc = ctx->n_pending == PENDING_MAX ? flush_locked(app, ctx) : 0;
    struct pending *p = &ctx->pending[ctx->n_pending];
    if (rc == 0) {
        memset(p, 0, sizeof *p);
        p->t = t;
        p->at_ms = ev->at_ms;
        p->order_id = order_id;
        from_event(ev, p);
        p->event_id = strdup(ev->id);
        p->event_type = strdup(ev->type);
        if (p->event_id && p->event_type) {
            ctx->n_pending++;
        } else {
            pending_free(p);
            rc = ERR_NOMEM;
        }
    }
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

static int notification_init(struct app *app)
{
    const struct config *cfg = app_config(app);
    struct notification_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return ERR_NOMEM;
    if (cfg->mail_dir)
        snprintf(ctx->maildir, sizeof ctx->maildir, "%s", cfg->mail_dir);
    else
        snprintf(ctx->maildir, sizeof ctx->maildir, "%s/mail", cfg->data_dir);
    ctx->smtp_url = cfg->smtp_url;
    pthread_mutex_init(&ctx->mu, NULL);
    int rc = app_set_service_ctx(app, "notification", ctx);
    for (size_t i = 0; i < N_TEMPLATES; i++)
        template_types[i] = templates[i].type;
    if (rc == 0)
        rc = bus_subscribe_types("notification", BUS_TOPIC_ORDER, template_types, on_event, app);
    if (rc == 0)
        rc = bus_subscribe_types("notification", BUS_TOPIC_PAYMENT, template_types, on_event, app);
    if (rc == 0)
        rc = bus_subscribe_flush("notification", flush, app);
    if (rc == 0)
        rc = metrics_counter_declare("emporium_notifications_total", "via",
                                     "Customer e-mails delivered (maildir or smtp).");
    if (rc < 0) {
        app_set_service_ctx(app, "notification", NULL);
        pthread_mutex_destroy(&ctx->mu);
        free(ctx);
    }
    return rc;
}

static void notification_deinit(struct app *app)
{
    struct notification_ctx *ctx = app_service_ctx(app, "notification");
    app_set_service_ctx(app, "notification", NULL);
    if (!ctx)
        return;
    /* The consumers stopped first, their last batch ended: anything left here was never
     * acknowledged, and its events come again (the file in tmp/ is rewritten then). */
    for (int i = 0; i < ctx->n_pending; i++)
        pending_free(&ctx->pending[i]);
    pthread_mutex_destroy(&ctx->mu);
    free(ctx);
}

static const struct db_migration notification_migrations[] = {
    {.sql = "CREATE TABLE notifications_sent ("
            " event_id TEXT PRIMARY KEY,"
            " event_type TEXT NOT NULL,"
            " order_id BIGINT NOT NULL,"
            " subject TEXT NOT NULL,"
            " sent_at BIGINT NOT NULL);"},
};

static const struct service_db notification_dbs[] = {
    {"notifications", 0, notification_migrations, 1},
    {NULL, 0, NULL, 0},
};

const struct service service_notification = {
    .name = "notification",
    .routes = NULL,
    .dbs = notification_dbs,
    .init = notification_init,
    .deinit = notification_deinit,
};
