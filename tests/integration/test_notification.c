/* SPDX-License-Identifier: MIT */
/* test_notification.c — the customer e-mails, from the events: one RFC 5322 message per
 * event (order placed, paid, shipped, delivered, cancelled; payment failed) in the Maildir
 * (<data-dir>/mail/new), to the customer, the order number in the subject; a kill -9 and a
 * restart send nothing twice; a failed batch end delivers its events again, each message
 * once. Over SMTP (EMPORIUM_SMTP_URL) against a real SMTP server
 * (python3-aiosmtpd), the same messages arrive. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

static struct th_server srv;
static char *admin;
static const char *env_on[] = {"EMPORIUM_RATE_LIMITS=off", NULL};

static int setup(void **state) { return th_suite_start(&srv, &admin); }
static int teardown(void **state) { return th_suite_stop(&srv, admin); }

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void product(struct th_server *s, const char *adm, const char *sku, char id[32])
{
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"%s\",\"name\":\"Item %s\",\"description\":\"d\","
                             "\"category\":\"mail\",\"price\":{\"amount\":1250,\"currency\":"
                             "\"USD\"}}",
                             sku, sku),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(s, "PUT", path, adm, &r, "{\"available\":100}"), 0);
    th_resp_free(&r);
}

/* Places an order; its id into oid; returns the HTTP status. */
static long buy(struct th_server *s, const char *tok, const char *pid, const char *card,
                char oid[32])
{
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":1}", pid),
                     0);
    th_resp_free(&r);
    static int key;
    char auth[160], idem[48], body[512];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(idem, sizeof idem, "Idempotency-Key: nt-%d-%ld", ++key, (long)time(NULL));
    const char *h[] = {auth, "Content-Type: application/json", idem, NULL};
    snprintf(body, sizeof body,
             "{\"shipping_address\":{\"name\":\"A\",\"line1\":\"1 Road\",\"city\":\"Town\","
             "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":\"%s\","
             "\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},\"shipping_method\":"
             "\"standard\"}",
             card);
    assert_int_equal(th_req(s, "POST", "/api/v1/orders", body, h, &r), 0);
    long st = r.status;
    const char *id = th_jstr(r.json, "id");
    if (!id)
        id = th_jstr(r.json, "error.order.id");
    snprintf(oid, 32, "%s", id ? id : "");
    th_resp_free(&r);
    if (st != 201) {
        char path[96];
        snprintf(path, sizeof path, "/api/v1/cart/items/%s", pid);
        assert_int_equal(th_call(s, "DELETE", path, tok, &r, NULL), 0);
        th_resp_free(&r);
    }
    return st;
}

/* The messages of a Maildir's new/: count, and how many have `needle` in them. */
static int maildir_count(const char *dir, const char *needle)
{
    char path[600];
    snprintf(path, sizeof path, "%s/new", dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char f[1200];
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        FILE *fp = fopen(f, "r");
        if (!fp)
            continue;
        char buf[8192];
        size_t len = fread(buf, 1, sizeof buf - 1, fp);
        buf[len] = 0;
        fclose(fp);
        if (!needle || strstr(buf, needle))
            n++;
    }
    closedir(d);
    return n;
}

static void carrier(const char *oid, const char *tok, const char *status)
{
    struct th_resp r;
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s", oid);
    assert_int_equal(th_call(&srv, "GET", path, tok, &r, NULL), 0);
    char sid[32];
    snprintf(sid, sizeof sid, "%s", th_jstr(r.json, "shipment.id"));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/shipments/%s/events", sid);
    assert_int_equal(th_call(&srv, "POST", path, admin, &r, "{\"status\":\"%s\"}", status), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static void test_maildir_one_message_per_event(void **state)
{
    char pid[32], a[32], b[32], c[32], maildir[400], needle[200];
    snprintf(maildir, sizeof maildir, "%s/mail", srv.data_dir);
    product(&srv, admin, "NT-1", pid);
    char *tok = th_register(&srv, "mail-buyer@example.com", "buyer password");
    assert_non_null(tok);
    assert_int_equal(buy(&srv, tok, pid, "4242424242424242", a), 201);
    assert_int_equal(buy(&srv, tok, pid, "4000000000000002", b), 402); /* declined */
    assert_int_equal(buy(&srv, tok, pid, "4242424242424242", c), 201);
    struct th_resp r;
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", a);
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    carrier(c, tok, "in_transit");
    assert_true(th_events_settled(&srv, 90));
    carrier(c, tok, "delivered");
    assert_true(th_events_settled(&srv, 90));
    /* a: placed, paid, cancelled; b: placed, payment failed; c: placed, paid, shipped,
     * delivered */
    assert_int_equal(maildir_count(maildir, NULL), 9);
    assert_int_equal(maildir_count(maildir, "To: <mail-buyer@example.com>"), 9);
    static const char *const want[][2] = {
        {"a", "confirmed"}, {"a", "cancelled"}, {"b", "payment failed"},
        {"c", "received"},  {"c", "shipped"},   {"c", "delivered"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *o = want[i][0][0] == 'a' ? a : want[i][0][0] == 'b' ? b : c;
        snprintf(needle, sizeof needle, "Subject: Order %s: %s\n", o, want[i][1]);
        if (maildir_count(maildir, needle) != 1)
            fail_msg("%d messages with \"%s\"", maildir_count(maildir, needle), needle);
    }
    assert_int_equal(maildir_count(maildir, "Content-Type: multipart/alternative"), 9);
    assert_int_equal(maildir_count(maildir, "Content-Type: text/html"), 9);

    /* kill -9 and restart: the consumer starts again from its committed offsets; nothing is
     * sent twice */
    th_kill(&srv);
    assert_int_equal(th_restart(&srv, env_on, NULL), 0);
    char d[32];
    assert_int_equal(buy(&srv, tok, pid, "4242424242424242", d), 201);
    assert_true(th_events_settled(&srv, 90));
    assert_int_equal(maildir_count(maildir, NULL), 11);
    free(tok);
}

/* Whether the server's log has `needle` in it. */
static bool log_has(const char *needle)
{
    FILE *fp = fopen(srv.log_path, "r");
    if (!fp)
        return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof line, fp))
        found = strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

/* The Maildir's messages are made durable at the consumer's batch end (one sync, the
 * renames into new/, the records in one transaction). When that fails — here new/ is a
 * file, so no message can be moved there — nothing of the batch counts: its events come
 * again, and once new/ is back every message arrives exactly once. */
static void test_maildir_batch_end_fails(void **state)
{
    char pid[32], a[32], maildir[400], path[600], needle[200];
    snprintf(maildir, sizeof maildir, "%s/mail", srv.data_dir);
    product(&srv, admin, "NT-3", pid);
    char *tok = th_register(&srv, "mail-retry@example.com", "buyer password");
    assert_non_null(tok);
    assert_true(th_events_settled(&srv, 90));
    char saved[620];
    snprintf(path, sizeof path, "%s/new", maildir);
    snprintf(saved, sizeof saved, "%s/new.saved", maildir);
    assert_int_equal(rename(path, saved), 0);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(buy(&srv, tok, pid, "4242424242424242", a), 201);
    /* The batch end fails (and is retried with a backoff) until new/ is a directory again. */
    for (int i = 0; i < 900 && !log_has("messages not delivered, their events come again"); i++)
        nap_ms(100);
    assert_true(log_has("messages not delivered, their events come again"));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rename(saved, path), 0);
    assert_true(th_events_settled(&srv, 120));
    snprintf(needle, sizeof needle, "Subject: Order %s: received\n", a);
    assert_int_equal(maildir_count(maildir, needle), 1);
    snprintf(needle, sizeof needle, "Subject: Order %s: confirmed\n", a);
    assert_int_equal(maildir_count(maildir, needle), 1);
    snprintf(needle, sizeof needle, "Order %s: ", a);
    assert_int_equal(maildir_count(maildir, needle), 2);
    snprintf(path, sizeof path, "%s/tmp", maildir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int left = 0;
    for (struct dirent *e; (e = readdir(d));)
        left += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(left, 0); /* nothing left behind in tmp/ */
    free(tok);
}

/* A free loopback port (bound, then released for the SMTP server to take). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static const char smtpd_py[] =
    "import os, signal, sys\n"
    "from aiosmtpd.controller import Controller\n"
    "out, port = sys.argv[1], int(sys.argv[2])\n"
    "class Handler:\n"
    "    async def handle_DATA(self, server, session, envelope):\n"
    "        n = len(os.listdir(out))\n"
    "        tmp = os.path.join(out, '.%05d' % n)\n"
    "        with open(tmp, 'wb') as f:\n"
    "            f.write(('X-Rcpt: %s\\r\\n' % ','.join(envelope.rcpt_tos)).encode())\n"
    "            f.write(envelope.original_content)\n"
    "        os.rename(tmp, os.path.join(out, '%05d.eml' % n))\n"
    "        return '250 OK'\n"
    "c = Controller(Handler(), hostname='127.0.0.1', port=port)\n"
    "c.start()\n"
    "open(os.path.join(out, '.ready'), 'w').close()\n"
    "signal.sigwait({signal.SIGTERM, signal.SIGINT})\n"
    "c.stop()\n";

static int dir_count(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char f[600], buf[8192];
        snprintf(f, sizeof f, "%s/%s", dir, e->d_name);
        FILE *fp = fopen(f, "r");
        if (!fp)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, fp);
        buf[len] = 0;
        fclose(fp);
        if (!needle || strstr(buf, needle))
            n++;
    }
    closedir(d);
    return n;
}

static void test_smtp(void **state)
{
    char dir[] = "/tmp/emp-smtp-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int port = free_port();
    assert_true(port > 0);
    char ports[16], script[80], ready[80];
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(script, sizeof script, "%s/.smtpd.py", dir);
    snprintf(ready, sizeof ready, "%s/.ready", dir);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fputs(smtpd_py, f);
    fclose(f);
    pid_t py = fork();
    assert_true(py >= 0);
    if (py == 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigprocmask(SIG_BLOCK, &set, NULL); /* sigwait in the script */
        execl("/usr/bin/python3", "python3", script, dir, ports,
              (char *)NULL); /* Debian's, with aiosmtpd */
        _exit(127);
    }
    bool up = false;
    for (time_t end = time(NULL) + 30; !up && time(NULL) < end; nap_ms(50))
        up = access(ready, F_OK) == 0;
    assert_true(up);

    struct th_server s;
    char url[64];
    snprintf(url, sizeof url, "EMPORIUM_SMTP_URL=smtp://127.0.0.1:%d", port);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", url, NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    char pid[32], oid[32], needle[128];
    product(&s, adm, "NT-SMTP", pid);
    char *tok = th_register(&s, "smtp-buyer@example.com", "buyer password");
    assert_non_null(tok);
    assert_int_equal(buy(&s, tok, pid, "4242424242424242", oid), 201);
    assert_true(th_events_settled(&s, 90));
    assert_int_equal(dir_count(dir, NULL), 2);
    assert_int_equal(dir_count(dir, "X-Rcpt: smtp-buyer@example.com\r\n"), 2);
    snprintf(needle, sizeof needle, "Subject: Order %s: confirmed\r\n", oid);
    assert_int_equal(dir_count(dir, needle), 1);
    snprintf(needle, sizeof needle, "Subject: Order %s: received\r\n", oid);
    assert_int_equal(dir_count(dir, needle), 1);
    /* nothing in the Maildir: the mail went over SMTP */
    char maildir[400];
    snprintf(maildir, sizeof maildir, "%s/mail", s.data_dir);
    assert_int_equal(maildir_count(maildir, NULL), 0);
    free(tok);
    free(adm);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
    kill(py, SIGTERM);
    int st;
    waitpid(py, &st, 0);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maildir_one_message_per_event),
        cmocka_unit_test(test_maildir_batch_end_fails),
        cmocka_unit_test(test_smtp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
