/* SPDX-License-Identifier: MIT */
/* events_wait.c — see events_wait.h. */
#include "events_wait.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static void nap(void)
{
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
}

/* One scrape: 1 settled, 0 not yet, -1 no answer. *work receives the sum of the counters
 * of work done (events published by the relay, events applied by consumers). */
static int scrape(struct th_server *s, double *work)
{
    *work = 0;
    struct th_resp r;
    if (th_req(s, "GET", "/metrics", NULL, NULL, &r) != 0)
        return -1;
    int rc = r.status == 200 ? 1 : -1;
    bool seen_pending = false;
    for (char *line = r.body; rc == 1 && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        if (!strncmp(line, "emporium_outbox_pending ", 24)) {
            seen_pending = true;
            if (strtod(line + 24, NULL) != 0)
                rc = 0;
        } else if (!strncmp(line, "emporium_outbox_published_total", 31) ||
                   !strncmp(line, "emporium_consumer_events_total", 30)) {
            const char *sp = strrchr(line, ' ');
            if (sp)
                *work += strtod(sp + 1, NULL);
        } else if (!strncmp(line, "emporium_consumer_lag{", 22)) {
            const char *sp = strrchr(line, ' ');
            if (!sp || strtod(sp + 1, NULL) != 0)
                rc = 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    th_resp_free(&r);
    return rc == 1 && !seen_pending ? 0 : rc;
}

/* Settled: two scrapes in a row show nothing pending and no lag, and no work was done
 * between them. One scrape alone can lie: its gauges are read one after another, so a
 * consumer that applies an event (and writes the next event into its outbox) between the
 * read of the outbox gauge and the read of its lag looks settled while a cascade is still
 * on its way (seen: the order.delivered e-mail missing after a "settled" wait). */
bool th_events_settled(struct th_server *s, int timeout_s)
{
    time_t end = time(NULL) + timeout_s;
    double before = -1;
    while (time(NULL) < end) {
        double work;
        int rc = scrape(s, &work);
        if (rc == 1 && before >= 0 && work == before)
            return true;
        before = rc == 1 ? work : -1;
        nap();
    }
    return false;
}

double th_metric_in(const char *body, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (const char *line = body; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (!strncmp(line, prefix, pl) && line[pl] == ' ')
            return strtod(line + pl + 1, NULL);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

double th_metric(struct th_server *s, const char *prefix)
{
    struct th_resp r;
    if (th_req(s, "GET", "/metrics", NULL, NULL, &r) != 0)
        return -1;
    double v = r.status == 200 && r.body ? th_metric_in(r.body, prefix) : -1;
    th_resp_free(&r);
    return v;
}

/* How many "worker: running" lines s's log holds (each worker writes one once its stop
 * signals are handled). */
static int workers_running(const struct th_server *s)
{
    FILE *f = fopen(s->log_path, "r");
    if (!f)
        return 0;
    int n = 0;
    char line[1024];
    while (fgets(line, sizeof line, f))
        n += strstr(line, "worker: running") != NULL;
    fclose(f);
    return n;
}

pid_t th_worker_start(struct th_server *s, const char *consumers, bool relay,
                      const char *const *extra_env)
{
    int before = workers_running(s);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        /* Returns once the worker is running: a SIGTERM sent earlier would meet the default
         * action instead of the drain (seen in CI: killed by the signal, not exit 0). */
        for (time_t end = time(NULL) + 60; time(NULL) < end; nap()) {
            if (workers_running(s) > before)
                return pid;
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid)
                return -1; /* it exited before it ran (a refused setting, say) */
        }
        return pid; /* not seen within the deadline: the caller's checks will tell */
    }
    int fd = open(s->log_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    setenv("EMPORIUM_DATA_DIR", s->data_dir, 1);
    if (s->db_url[0])
        setenv("EMPORIUM_DATABASE_URL", s->db_url, 1);
    setenv("EMPORIUM_LOG_FORMAT", "json", 1);
    for (int i = 0; extra_env && extra_env[i]; i++)
        putenv((char *)extra_env[i]);
    const char *argv[8];
    int n = 0;
    argv[n++] = EMPORIUM_BIN;
    argv[n++] = "worker";
    if (consumers) {
        argv[n++] = "--consumers";
        argv[n++] = consumers;
    }
    if (relay)
        argv[n++] = "--relay";
    argv[n] = NULL;
    execv(EMPORIUM_BIN, (char *const *)argv);
    _exit(127);
}

int th_worker_stop(pid_t pid)
{
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    time_t end = time(NULL) + 60;
    int st;
    while (time(NULL) < end) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        nap();
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

void th_worker_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
}
