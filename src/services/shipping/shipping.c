/* SPDX-License-Identifier: MIT */
/* shipping.c — the shipping service: address validation, quotes, shipments and their
 * tracking events.
 *
 * Prices: per started 500 g of parcel weight (the catalog's weight_grams per unit, 500 g
 * when unknown) plus a base, times the destination zone's factor (1: US, 2: Canada/Mexico,
 * 3: Europe, 4: the rest). Every shipment change writes its `shipping-events` outbox row in
 * the same transaction. Cancellation and the first carrier event race on the shipment row:
 * both are conditional updates, so exactly one of "cancelled" and "in_transit" wins.
 * Domain only: SQL is in shipping_store.c, HTTP in shipping_http.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/outbox.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "emporium/svc/product.h"
#include "shipping_internal.h"

/* ISO 3166-1 alpha-2, officially assigned codes. */
static const char iso_countries[] =
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO "
    "BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ "
    "DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP "
    "GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG "
    "KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML "
    "MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE "
    "PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL "
    "SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM "
    "US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";
static const char europe[] =
    "AD AT BE BG CH CY CZ DE DK EE ES FI FR GB GR HR HU IE IS IT LI LT LU LV MC MT NL NO PL "
    "PT RO SE SI SK SM VA";

static bool code_in(const char *list, const char cc[3])
{
    /* "AA BB … ZZ": a code every 3 bytes, the last one followed by the NUL. */
    for (const char *p = list;; p += 3) {
        if (p[0] == cc[0] && p[1] == cc[1])
            return true;
        if (p[2] == 0)
            return false;
    }
}

static int zone_of(const char *cc)
{
    if (!strcmp(cc, "US"))
        return 1;
    if (!strcmp(cc, "CA") || !strcmp(cc, "MX"))
        return 2;
    return code_in(europe, cc) ? 3 : 4;
}

/* --- addresses --- */

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* Copies member `name` (1..max characters, trimmed) into out. */
static int addr_str(json_t *obj, const char *name, bool required, size_t max, char *out, size_t cap,
                    const char **member, const char **message)
{
    json_t *v = json_object_get(obj, name);
    out[0] = 0;
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        *member = name;
        *message = "is required";
        return ERR_INVALID;
    }
    *member = name;
    if (!json_is_string(v)) {
        *message = "must be a string";
        return ERR_INVALID;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v) || has_control(s)) {
        *message = "must not contain control characters";
        return ERR_INVALID;
    }
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len >= cap) {
        *message = "is too long";
        return ERR_INVALID;
    }
    memcpy(out, s, len);
    out[len] = 0;
    if (required && len == 0) {
        *message = "must not be empty";
        return ERR_INVALID;
    }
    if (utf8_chars(out) > max) {
        *message = "is too long";
        return ERR_INVALID;
    }
    return 0;
}

int shipping_address_parse(json_t *obj, bool full, struct shipping_address *a, const char **member,
                           const char **message)
{
    memset(a, 0, sizeof *a);
    if (!json_is_object(obj)) {
        *member = NULL;
        *message = "must be an object";
        return ERR_INVALID;
    }
    static const char *const allowed[] = {"name",  "line1",       "line2",   "city",  "region",
                                          "state", "postal_code", "country", "phone", NULL};
    const char *k;
    json_t *v;
    json_object_foreach (obj, k, v) {
        bool ok = false;
        for (const char *const *p = allowed; *p && !ok; p++)
            ok = !strcmp(*p, k);
        if (!ok) {
            *member = k;
            *message = "unknown field";
            return ERR_INVALID;
        }
    }
    int rc;
    if ((rc = addr_str(obj, "name", full, 100, a->name, sizeof a->name, member, message)) < 0 ||
        (rc = addr_str(obj, "line1", full, 200, a->line1, sizeof a->line1, member, message)) < 0 ||
        (rc = addr_str(obj, "line2", false, 200, a->line2, sizeof a->line2, member, message)) < 0 ||
        (rc = addr_str(obj, "city", full, 100, a->city, sizeof a->city, member, message)) < 0 ||
        (rc = addr_str(obj, json_object_get(obj, "state") ? "state" : "region", false, 100,
                       a->region, sizeof a->region, member, message)) < 0 ||
        (rc = addr_str(obj, "postal_code", full, 20, a->postal_code, sizeof a->postal_code, member,
                       message)) < 0)
        return rc;
    char phone[40];
    if ((rc = addr_str(obj, "phone", false, 32, phone, sizeof phone, member, message)) < 0)
        return rc;
    for (const char *p = a->postal_code; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != ' ' && *p != '-') {
            *member = "postal_code";
            *message = "may contain only letters, digits, spaces and dashes";
            return ERR_INVALID;
        }
    char cc[8];
    if ((rc = addr_str(obj, "country", true, 2, cc, sizeof cc, member, message)) < 0)
        return rc;
    *member = "country";
    if (strlen(cc) != 2 || !isalpha((unsigned char)cc[0]) || !isalpha((unsigned char)cc[1])) {
        *message = "must be an ISO 3166-1 alpha-2 country code";
        return ERR_INVALID;
    }
    cc[0] = (char)toupper((unsigned char)cc[0]);
    cc[1] = (char)toupper((unsigned char)cc[1]);
    if (!code_in(iso_countries, cc)) {
        *message = "is not an ISO 3166-1 alpha-2 country code";
        return ERR_INVALID;
    }
    memcpy(a->country, cc, 3);
    *member = NULL;
    return 0;
}

/* --- prices --- */

int shipping_price(struct app *app, const struct shipping_item *items, int n, const char *country,
                   const char *method, struct shipping_option *out, int64_t *bad_product)
{
    if (shipping__remote(app))
        return shipping__remote_price(app, items, n, country, method, out, bad_product);
    bool express = !strcmp(method, "express");
    if (!express && strcmp(method, "standard") != 0)
        return ERR_INVALID;
    int64_t grams = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].weight_grams >= 0) { /* the caller read the catalog already */
            grams += (int64_t)(items[i].weight_grams > 0 ? items[i].weight_grams : 500) *
                     items[i].quantity;
            continue;
        }
        struct product_info pi;
        int rc = product_get_info(app, items[i].product_id, &pi);
        if (rc == ERR_NOTFOUND || (rc == 0 && !pi.active)) {
            if (bad_product)
                *bad_product = items[i].product_id;
            return ERR_NOTFOUND;
        }
        if (rc < 0)
            return rc;
        grams += (int64_t)(pi.weight_grams > 0 ? pi.weight_grams : 500) * items[i].quantity;
    }
    int zone = zone_of(country);
    static const int factor10[] = {0, 10, 15, 20, 30};
    static const int std_days[] = {0, 5, 7, 8, 12};
    static const int exp_days[] = {0, 2, 3, 4, 5};
    int64_t units = grams <= 0 ? 1 : (grams + 499) / 500;
    int64_t base = express ? 999 + 250 * units : 399 + 100 * units;
    memset(out, 0, sizeof *out);
    snprintf(out->method, sizeof out->method, "%s", method);
    snprintf(out->carrier, sizeof out->carrier, "%s",
             express ? (zone == 1 ? "UPS" : "DHL Express")
                     : (zone == 1 ? "USPS" : "DHL eCommerce"));
    out->price = base * factor10[zone] / 10;
    snprintf(out->currency, sizeof out->currency, "USD");
    out->estimated_days = express ? exp_days[zone] : std_days[zone];
    return 0;
}

/* --- shipments --- */

struct create_ctx {
    int64_t id, order_id, now;
    const char *method, *carrier, *tracking, *address;
};

/* The shipment, its first event and its outbox row as one transaction whose commit is shared
 * with other shipments' (db_query_many_shared: on SQLite an intent of the shipping
 * database's group-commit writer, on PostgreSQL one pipeline, one round trip). */
static int create_write(struct db *db, struct create_ctx *x)
{
    char oid[21], ts[32];
    json_t *data = json_pack("{s:s,s:s,s:s}", "order_id", id_format(x->order_id, oid), "status",
                             "label_created", "at", time_format(x->now, ts));
    if (!data)
        return ERR_NOMEM;
    struct outbox_row ev;
    int rc = outbox_row_make(&ev, id_shard(x->id), "shipping-events", "shipment", x->id,
                             "shipment.created", data);
    json_decref(data);
    if (rc < 0)
        return rc;
    struct db_val a[] = {DB_INT(x->id),       DB_INT(x->order_id),  DB_TEXT(x->method),
                         DB_TEXT(x->carrier), DB_TEXT(x->tracking), DB_TEXT(x->address),
                         DB_INT(x->now)};
    struct db_val e[] = {DB_INT(id_new(id_shard(x->id))), DB_INT(x->id), DB_TEXT("label_created"),
                         DB_INT(x->now), DB_INT(now_ms())};
    struct db_stmt st[] = {
        {.sql = "INSERT INTO shipments (id, order_id, method, carrier, tracking_number, "
                "status, address, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, 'label_created', $6, $7, $7)",
         .n = 7,
         .args = a},
        {.sql = OUTBOX_INSERT, .n = OUTBOX_NARGS, .args = ev.args},
        {.sql = "INSERT INTO shipment_events (id, shipment_id, status, at, created_at) "
                "VALUES ($1, $2, $3, $4, $5)",
         .n = 5,
         .args = e},
    };
    rc = db_query_many_shared(db, st, 3);
    outbox_row_free(&ev);
    return rc < 0 ? rc : 0;
}

int shipping_create(struct app *app, int64_t order_id, const char *method,
                    const struct shipping_address *addr, struct shipment_info *out)
{
    if (shipping__remote(app))
        return shipping__remote_create(app, order_id, method, addr, out);
    struct shipping_option opt;
    /* The carrier only depends on method and zone; no items are needed to name it. */
    int rc = shipping_price(app, NULL, 0, addr->country, method, &opt, NULL);
    if (rc < 0)
        return rc;
    int64_t id = id_new(0), now = now_ms();
    char tracking[40], idbuf[21];
    snprintf(tracking, sizeof tracking, "EMP%sUS", id_format(id, idbuf));
    json_t *aj =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", addr->name, "line1", addr->line1,
                  "line2", addr->line2, "city", addr->city, "region", addr->region, "postal_code",
                  addr->postal_code, "country", addr->country);
    char *atext = aj ? json_dumps(aj, JSON_COMPACT) : NULL;
    json_decref(aj);
    if (!atext)
        return ERR_NOMEM;
    struct create_ctx x = {id, order_id, now, method, opt.carrier, tracking, atext};
    rc = create_write(app_db(app, "shipping"), &x);
    free(atext);
    if (rc == 0) {
        /* What was just written is the answer: no need to read it back. */
        memset(out, 0, sizeof *out);
        out->id = id;
        snprintf(out->method, sizeof out->method, "%s", method);
        snprintf(out->carrier, sizeof out->carrier, "%s", opt.carrier);
        snprintf(out->tracking_number, sizeof out->tracking_number, "%s", tracking);
        snprintf(out->status, sizeof out->status, "label_created");
        return 0;
    }
    if (rc != ERR_CONFLICT) /* ERR_CONFLICT: it exists already (a retry): answer with it */
        return rc;
    struct db_conn *c;
    if ((rc = db_conn_take(app_db(app, "shipping"), &c)) < 0)
        return rc;
    rc = shipping__store_find(c, "WHERE order_id = $1", order_id, out, NULL);
    db_conn_give(c);
    return rc;
}

int shipping_get(struct app *app, int64_t order_id, struct shipment_info *out)
{
    if (shipping__remote(app))
        return shipping__remote_get(app, order_id, out);
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "shipping"), &c);
    if (rc < 0)
        return rc;
    rc = shipping__store_find(c, "WHERE order_id = $1", order_id, out, NULL);
    db_conn_give(c);
    return rc;
}

int shipping_cancel(struct app *app, int64_t order_id)
{
    if (shipping__remote(app))
        return shipping__remote_cancel(app, order_id);
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "shipping"), &c);
    if (rc < 0)
        return rc;
    struct shipment_info s;
    rc = shipping__store_find(c, "WHERE order_id = $1", order_id, &s, NULL);
    if (rc == ERR_NOTFOUND) {
        db_conn_give(c);
        return 0;
    }
    if (rc == 0 && strcmp(s.status, "label_created") != 0)
        rc = !strcmp(s.status, "cancelled") ? 1 : ERR_CONFLICT;
    if (rc == 0) {
        int64_t now = now_ms();
        rc = db_begin(c);
        if (rc == 0)
            rc = shipping__store_move(c, s.id, "label_created", "cancelled", now);
        if (rc == 1)
            rc = shipping__store_event(c, s.id, order_id, "shipment.cancelled", "cancelled", now);
        else if (rc == 0)
            rc = 2; /* another cancel or a carrier event won the race: see which below */
        if (rc >= 0 && rc != 2)
            rc = db_commit(c);
        if (rc < 0 || rc == 2)
            db_rollback(c);
        /* A concurrent cancel makes this one a no-op; only a carrier event is "too late". */
        if (rc == 2 &&
            (rc = shipping__store_find(c, "WHERE order_id = $1", order_id, &s, NULL)) == 0)
            rc = !strcmp(s.status, "cancelled") ? 0 : ERR_CONFLICT;
    }
    db_conn_give(c);
    return rc < 0 ? rc : 0;
}

int shipping__shipment(struct app *app, int64_t id, struct shipment_info *s, int64_t *order_id,
                       struct shipment_event_view **events, int *n)
{
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "shipping"), &c);
    if (rc < 0)
        return rc;
    *events = NULL;
    *n = 0;
    rc = shipping__store_find(c, "WHERE id = $1", id, s, order_id);
    if (rc == 0)
        rc = shipping__store_events(c, id, events, n);
    db_conn_give(c);
    return rc;
}

int shipping__apply_event(struct app *app, int64_t id, const char *status, int64_t at_ms,
                          int64_t *order_id)
{
    struct db_conn *c;
    int rc = db_conn_take(app_db(app, "shipping"), &c);
    if (rc < 0)
        return rc;
    struct shipment_info s;
    rc = shipping__store_find(c, "WHERE id = $1", id, &s, order_id);
    if (rc < 0)
        goto out;
    if (!strcmp(s.status, status))
        goto out; /* a repeated event: nothing to change */
    if (!strcmp(s.status, "cancelled") || !strcmp(s.status, "delivered")) {
        rc = ERR_CONFLICT;
        goto out;
    }
    /* label_created -> in_transit | delivered; in_transit -> delivered */
    const char *from = s.status;
    if ((rc = db_begin(c)) < 0)
        goto out;
    rc = shipping__store_move(c, id, from, status, now_ms());
    if (rc == 1) {
        char type[40];
        snprintf(type, sizeof type, "shipment.%s", status);
        rc = shipping__store_event(c, id, *order_id, type, status, at_ms);
    } else if (rc == 0) {
        rc = ERR_CONFLICT; /* cancelled or moved meanwhile */
    }
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
out:
    db_conn_give(c);
    /* Whoever follows shipments (the order service) consumes the shipment.<status> outbox
     * event written with the move (shipping-events). */
    return rc < 0 ? rc : 0;
}
