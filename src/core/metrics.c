/* SPDX-License-Identifier: MIT */
/* metrics.c — the writer registry and the process_* families read from /proc/self. */
#include "emporium/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "emporium/err.h"

#define MAX_WRITERS 64

static struct {
    metrics_writer_fn fn;
    void *ctx;
} writers[MAX_WRITERS];
static int n_writers;
static pthread_mutex_t writers_lock = PTHREAD_MUTEX_INITIALIZER;

int metrics_add_writer(metrics_writer_fn fn, void *ctx)
{
    pthread_mutex_lock(&writers_lock);
    int rc = ERR_NOMEM;
    if (n_writers < MAX_WRITERS) {
        writers[n_writers].fn = fn;
        writers[n_writers].ctx = ctx;
        n_writers++;
        rc = 0;
    }
    pthread_mutex_unlock(&writers_lock);
    return rc;
}

void metrics_remove_all(void)
{
    pthread_mutex_lock(&writers_lock);
    n_writers = 0;
    pthread_mutex_unlock(&writers_lock);
}

void metrics_write_all(struct buf *out)
{
    pthread_mutex_lock(&writers_lock);
    int n = n_writers;
    pthread_mutex_unlock(&writers_lock);
    for (int i = 0; i < n; i++)
        writers[i].fn(out, writers[i].ctx);
}

void metrics_write_process(struct buf *out)
{
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    double cpu = 0, start = 0;
    long rss_pages = 0, vsize = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char line[1024];
        if (fgets(line, sizeof line, f)) {
            /* Fields after the parenthesised command name; utime/stime are 14 and 15,
             * starttime 22, vsize 23, rss 24 (1-based, see proc(5)). */
            char *p = strrchr(line, ')');
            unsigned long utime = 0, stime = 0, vs = 0;
            unsigned long long st = 0;
            long rss = 0;
            if (p && sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
                            "%*d %*d %*d %llu %lu %ld",
                            &utime, &stime, &st, &vs, &rss) == 5) {
                cpu = (double)(utime + stime) / (double)ticks;
                rss_pages = rss;
                vsize = (long)vs;
                double boot = 0;
                FILE *s = fopen("/proc/stat", "r");
                if (s) {
                    char l2[256];
                    while (fgets(l2, sizeof l2, s))
                        if (sscanf(l2, "btime %lf", &boot) == 1)
                            break;
                    fclose(s);
                }
                start = boot + (double)st / (double)ticks;
            }
        }
        fclose(f);
    }
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                fds++;
        closedir(d);
        fds--; /* the directory handle itself */
    }
    long max_fds = sysconf(_SC_OPEN_MAX);
    buf_printf(out,
               "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
               "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
               "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
               "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n"
               "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
               "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %ld\n"
               "# HELP process_open_fds Number of open file descriptors.\n"
               "# TYPE process_open_fds gauge\nprocess_open_fds %d\n"
               "# HELP process_max_fds Maximum number of open file descriptors.\n"
               "# TYPE process_max_fds gauge\nprocess_max_fds %ld\n"
               "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
               "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
               cpu, rss_pages * page, vsize, fds, max_fds, start);
}
