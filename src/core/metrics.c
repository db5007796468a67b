/* SPDX-License-Identifier: MIT */
/* metrics.c — the writer registry, the process_* families read from /proc/self, the build
 * info, and business counters.
 *
 * Counters: a fixed table of families, each with a fixed table of series. A series is found
 * by a linear scan over atomically published slots (few families, few label values), so
 * counting takes no lock; creating a family or a series takes the registry lock once. */
#include "emporium/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
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
#ifndef EMPORIUM_VERSION
#define EMPORIUM_VERSION "unknown"
#endif
    buf_puts(out, "# HELP emporium_build_info The running version (always 1).\n"
                  "# TYPE emporium_build_info gauge\n"
                  "emporium_build_info{version=\"" EMPORIUM_VERSION "\"} 1\n");
    buf_printf(
        out,
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

/* ---- business counters ----------------------------------------------------------------- */

#define MAX_FAMILIES 32
#define MAX_SERIES 32
#define NAME_MAX_LEN 64
#define VALUE_MAX_LEN 48

struct series {
    char value[VALUE_MAX_LEN];
    atomic_ulong count;
};

struct family {
    char name[NAME_MAX_LEN];
    char label[32];
    char help[160];
    atomic_int n_series; /* published after the series is filled in */
    struct series series[MAX_SERIES];
};

static struct family families[MAX_FAMILIES];
static atomic_int n_families;
static pthread_mutex_t counters_lock = PTHREAD_MUTEX_INITIALIZER;

/* Prometheus names: [a-zA-Z_:][a-zA-Z0-9_:]*; labels the same without ':'. */
static bool name_ok(const char *s, bool colon, size_t max)
{
    size_t n = 0;
    for (; s && s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (n > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return n > 0 && n < max;
}

static struct family *family_find(const char *name)
{
    int n = atomic_load_explicit(&n_families, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (!strcmp(families[i].name, name))
            return &families[i];
    return NULL;
}

/* Under counters_lock. */
static struct family *family_add(const char *name, const char *label, const char *help)
{
    int n = atomic_load(&n_families);
    if (n == MAX_FAMILIES || !name_ok(name, true, NAME_MAX_LEN) ||
        !name_ok(label, false, sizeof families[0].label))
        return NULL;
    struct family *f = &families[n];
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->label, sizeof f->label, "%s", label);
    /* Help text is one line in the exposition format. */
    size_t k = 0;
    for (const char *h = help; h && *h && k < sizeof f->help - 1; h++)
        f->help[k++] = *h == '\n' || *h == '\\' ? ' ' : *h;
    f->help[k] = 0;
    atomic_store(&f->n_series, 0);
    atomic_store_explicit(&n_families, n + 1, memory_order_release);
    return f;
}

int metrics_counter_declare(const char *name, const char *label, const char *help)
{
    pthread_mutex_lock(&counters_lock);
    struct family *f = family_find(name);
    if (!f)
        f = family_add(name, label, help);
    pthread_mutex_unlock(&counters_lock);
    return f ? 0 : ERR_INVALID;
}

static struct series *series_find(struct family *f, const char *value)
{
    int n = atomic_load_explicit(&f->n_series, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (!strncmp(f->series[i].value, value, VALUE_MAX_LEN - 1))
            return &f->series[i];
    return NULL;
}

void metrics_count_add(const char *name, const char *label_value, unsigned long n)
{
    if (!name || !label_value)
        return;
    struct family *f = family_find(name);
    struct series *s = f ? series_find(f, label_value) : NULL;
    if (!s) {
        pthread_mutex_lock(&counters_lock);
        if (!(f = family_find(name)))
            f = family_add(name, "kind", "Business events counted by kind.");
        if (f && !(s = series_find(f, label_value))) {
            int k = atomic_load(&f->n_series);
            if (k < MAX_SERIES) {
                s = &f->series[k];
                snprintf(s->value, sizeof s->value, "%s", label_value);
                atomic_store(&s->count, 0);
                atomic_store_explicit(&f->n_series, k + 1, memory_order_release);
            }
        }
        pthread_mutex_unlock(&counters_lock);
        if (!s)
            return;
    }
    atomic_fetch_add_explicit(&s->count, n, memory_order_relaxed);
}

void metrics_count(const char *name, const char *label_value)
{
    metrics_count_add(name, label_value, 1);
}

unsigned long metrics_counter_value(const char *name, const char *label_value)
{
    struct family *f = family_find(name);
    struct series *s = f ? series_find(f, label_value) : NULL;
    return s ? atomic_load(&s->count) : 0;
}

void metrics_write_counters(struct buf *out)
{
    int nf = atomic_load_explicit(&n_families, memory_order_acquire);
    for (int i = 0; i < nf; i++) {
        struct family *f = &families[i];
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", f->name,
                   f->help[0] ? f->help : "Counter.", f->name);
        int ns = atomic_load_explicit(&f->n_series, memory_order_acquire);
        for (int k = 0; k < ns; k++) {
            /* Label values are escaped as the exposition format wants: \\, \" and \n. */
            buf_printf(out, "%s{%s=\"", f->name, f->label);
            for (const char *c = f->series[k].value; *c; c++) {
                if (*c == '\\' || *c == '"')
                    buf_printf(out, "\\%c", *c);
                else if (*c == '\n')
                    buf_puts(out, "\\n");
                else
                    buf_append(out, c, 1);
            }
            buf_printf(out, "\"} %lu\n", atomic_load(&f->series[k].count));
        }
    }
}
