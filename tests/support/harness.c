/* SPDX-License-Identifier: MIT */
/* harness.c — test support: run the real `emporium` binary and talk HTTP to it.
 *
 * Each th_server owns one temp root, /tmp/emp-test-XXXXXX, holding the server's data dir
 * (ROOT/data), its log (ROOT/server.log, stdout and stderr, appended across restarts) and
 * helper files such as admin password files. The log sits beside the data dir, not in it, so
 * a test may wipe or inspect the data dir without losing the log; th_cleanup() removes the
 * whole root. The child is started with fork/execve; everything it needs (argv, envp, fds) is
 * built before fork, so the child only calls async-signal-safe functions, which matters
 * because test programs may be multi-threaded. PR_SET_PDEATHSIG makes a server die with the
 * test that started it (a failed cmocka assertion skips th_stop), so no server outlives its
 * test; note it fires when the *thread* that called th_start exits.
 *
 * HTTP goes through one libcurl easy handle per request: simple, and no state is shared
 * between threads. Only the header block of the final response is kept (a "100 Continue"
 * block is dropped). Bodies are parsed with jansson when they are JSON. */
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum {
    /* Sanitizer builds start slowly, and creating some 14 PostgreSQL databases on a loaded
     * machine took more than 15 s: the deadline is generous, the wait ends at /health. */
    TH_START_TIMEOUT_MS = 90000,
    TH_POLL_MS = 20,
    TH_STOP_TIMEOUT_MS = 30000,
    TH_CLI_TIMEOUT_MS = 120000,
    TH_HTTP_TIMEOUT_S = 60,
    TH_LOG_TAIL = 64 * 1024, /* at most this much of a log is printed */
    TH_BIND_TRIES = 3,
};

#define TH_ROOT_PREFIX "/tmp/emp-test-"

static pthread_once_t th_curl_once = PTHREAD_ONCE_INIT;
static atomic_uint th_counter;

static void th_curl_init(void) { curl_global_init(CURL_GLOBAL_ALL); }

static int64_t th_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void th_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- small growable buffer (curl callbacks, CLI output) ---- */

struct th_buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void th_buf_add(struct th_buf *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Hands the buffer's memory to the caller: always a NUL-terminated string or NULL (OOM). */
static char *th_buf_take(struct th_buf *b)
{
    char *p;

    if (b->oom) {
        free(b->p);
        return NULL;
    }
    if (!b->p)
        return strdup("");
    p = b->p;
    b->p = NULL;
    return p;
}

/* ---- log ---- */

static void th_log_dump(const char *path, const char *why)
{
    FILE *f = fopen(path, "r");
    char chunk[4096];
    size_t n;
    long size;

    fprintf(stderr, "---- %s; server log %s ----\n", why, path);
    if (!f) {
        fprintf(stderr, "(cannot open the log: %s)\n", strerror(errno));
        return;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > TH_LOG_TAIL) {
        fseek(f, size - TH_LOG_TAIL, SEEK_SET);
        fprintf(stderr, "(last %d bytes)\n", TH_LOG_TAIL);
    } else {
        fseek(f, 0, SEEK_SET);
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, stderr);
    fclose(f);
    fprintf(stderr, "---- end of server log ----\n");
}

/* Appends a marker so a log spanning restarts shows where each run begins. */
static void th_log_mark(const char *path, const char *what)
{
    FILE *f = fopen(path, "a");

    if (f) {
        fprintf(f, "==== harness: %s ====\n", what);
        fclose(f);
    }
}

/* ---- paths, ports, database names ---- */

/* The temp root is data_dir minus its "/data" tail; refuse anything that is not ours, so a
 * zeroed or clobbered struct can never make th_cleanup remove the wrong tree. */
static bool th_root_of(const struct th_server *s, char *root, size_t cap)
{
    size_t n = strlen(s->data_dir);

    if (strncmp(s->data_dir, TH_ROOT_PREFIX, strlen(TH_ROOT_PREFIX)) != 0 || n < 5 ||
        strcmp(s->data_dir + n - 5, "/data") != 0 || n - 5 >= cap)
        return false;
    memcpy(root, s->data_dir, n - 5);
    root[n - 5] = '\0';
    return strchr(root + strlen(TH_ROOT_PREFIX), '/') == NULL;
}

/* A port that was free a moment ago. Another process may take it before the server binds;
 * th_start retries when the server says so. */
static int th_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* EMPORIUM_TEST_PG_URL with its database name replaced by prefix; both the URL form
 * (postgres://u:p@h:5432/db?x=y) and the keyword form (host=h dbname=db) are handled. */
static int th_pg_url(const char *base, const char *prefix, char *out, size_t cap)
{
    const char *scheme = strstr(base, "://");
    int n;

    if (scheme) {
        const char *path = scheme + 3 + strcspn(scheme + 3, "/?");
        const char *rest = path;
        if (*path == '/')
            rest = path + 1 + strcspn(path + 1, "?");
        n = snprintf(out, cap, "%.*s/%s%s", (int)(path - base), base, prefix, rest);
    } else {
        const char *db = strstr(base, "dbname=");
        if (db && (db == base || db[-1] == ' ')) {
            const char *end = db + strcspn(db, " ");
            n = snprintf(out, cap, "%.*sdbname=%s%s", (int)(db - base), base, prefix, end);
        } else {
            n = snprintf(out, cap, "%s dbname=%s", base, prefix);
        }
    }
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int th_backend_db_url(const char *tag, char *out, size_t cap)
{
    if (cap)
        out[0] = 0;
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    if (!backend || strcmp(backend, "postgres") != 0)
        return 0;
    const char *base = getenv("EMPORIUM_TEST_PG_URL");
    uint32_t rnd = 0;
    if (!base || getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
        return -1;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s%ld_%06x", tag, (long)getpid(), rnd & 0xffffff);
    return th_pg_url(base, prefix, out, cap) == 0 ? 1 : -1;
}

/* ---- child processes ---- */

static bool th_env_named(const char *entry, const char *name, size_t name_len)
{
    return strncmp(entry, name, name_len) == 0 && entry[name_len] == '=';
}

static bool th_env_skipped(const char *entry, const char *const *extra_env)
{
    /* Set from the struct (or deliberately unset) by the harness, never inherited. */
    static const char *const own[] = {"EMPORIUM_RATE_LIMITS", "EMPORIUM_DATABASE_URL",
                                      "EMPORIUM_DATA_DIR", "EMPORIUM_LISTEN", NULL};
    for (int i = 0; own[i]; i++)
        if (th_env_named(entry, own[i], strlen(own[i])))
            return true;
    for (int i = 0; extra_env && extra_env[i]; i++) {
        const char *eq = strchr(extra_env[i], '=');
        if (eq && th_env_named(entry, extra_env[i], (size_t)(eq - extra_env[i])))
            return true;
    }
    return false;
}

/* envp for a child: the parent's environment minus what the harness decides, plus the data
 * dir / database URL, plus extra_env (which wins). Free with th_strv_free. */
static char **th_child_env(const struct th_server *s, const char *const *extra_env)
{
    size_t n = 0, k = 0;
    char **env;

    while (environ[n])
        n++;
    for (size_t i = 0; extra_env && extra_env[i]; i++)
        n++;
    env = calloc(n + 3, sizeof *env);
    if (!env)
        return NULL;
    for (size_t i = 0; environ[i]; i++)
        if (!th_env_skipped(environ[i], extra_env))
            env[k++] = strdup(environ[i]);
    if (asprintf(&env[k++], "EMPORIUM_DATA_DIR=%s", s->data_dir) < 0)
        env[k - 1] = NULL;
    if (s->db_url[0] && asprintf(&env[k++], "EMPORIUM_DATABASE_URL=%s", s->db_url) < 0)
        env[k - 1] = NULL;
    for (size_t i = 0; extra_env && extra_env[i]; i++)
        env[k++] = strdup(extra_env[i]);
    for (size_t i = 0; i < k; i++) {
        if (!env[i]) { /* some allocation failed: give up on the whole thing */
            for (size_t j = 0; j < k; j++)
                free(env[j]);
            free(env);
            return NULL;
        }
    }
    return env;
}

static void th_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Forks and execs argv with envp, stdout+stderr on out_fd, stdin on /dev/null. Returns the pid
 * or -1. Between fork and exec only async-signal-safe calls. */
static pid_t th_spawn(char *const *argv, char *const *envp, int out_fd)
{
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t parent = getpid(), pid;

    if (null_fd < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(126); /* the test is already gone */
        if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
            _exit(126);
        /* Other servers' log files and curl's sockets must not leak into this child. */
        close_range(3, ~0u, 0);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    close(null_fd);
    return pid < 0 ? -1 : pid;
}

/* Reaps pid if it has exited; returns true then, with its wait status in *status. */
static bool th_reaped(pid_t pid, int *status)
{
    pid_t r;

    do {
        r = waitpid(pid, status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    return r == pid || (r < 0 && errno == ECHILD);
}

static void th_reap_blocking(pid_t pid, int *status)
{
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
}

/* ---- HTTP ---- */

static size_t th_curl_write(char *data, size_t size, size_t n, void *ud)
{
    th_buf_add(ud, data, size * n);
    return size * n;
}

static size_t th_curl_header(char *data, size_t size, size_t n, void *ud)
{
    struct th_buf *b = ud;

    /* A new status line starts a new block (after "100 Continue"): keep only the last. */
    if (size * n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        b->len = 0;
    th_buf_add(b, data, size * n);
    return size * n;
}

static bool th_has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);

    for (int i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
            return true;
    return false;
}

int th_req(struct th_server *s, const char *method, const char *path, const char *body,
           const char *const *headers, struct th_resp *r)
{
    struct th_buf rb = {0}, hb = {0};
    struct curl_slist *hl = NULL;
    char url[2048], errbuf[CURL_ERROR_SIZE] = "";
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    CURL *c;

    memset(r, 0, sizeof *r);
    pthread_once(&th_curl_once, th_curl_init);
    if (snprintf(url, sizeof url, "%s%s", s->base_url, path) >= (int)sizeof url)
        return -1;
    c = curl_easy_init();
    if (!c)
        return -1;
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    if (body && !th_has_header(headers, "Content-Type"))
        hl = curl_slist_append(hl, "Content-Type: application/json");

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* a developer's http_proxy must not apply */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)TH_HTTP_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L); /* else curl waits for a body */
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    if (hl)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, th_curl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &rb);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, th_curl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);

    rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);

    r->body = th_buf_take(&rb);
    r->len = r->body ? rb.len : 0;
    r->headers = th_buf_take(&hb);
    if (rc != CURLE_OK || !r->body || !r->headers) {
        fprintf(stderr, "th_req: %s %s: %s\n", method, url,
                rc != CURLE_OK ? (errbuf[0] ? errbuf : curl_easy_strerror(rc)) : "out of memory");
        th_resp_free(r);
        return -1;
    }
    if (r->len > 0)
        r->json = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL);
    return 0;
}

int th_call(struct th_server *s, const char *method, const char *path, const char *token,
            struct th_resp *r, const char *body_fmt, ...)
{
    char *body = NULL, *auth = NULL;
    const char *headers[2] = {NULL, NULL};
    int rc;

    if (body_fmt) {
        va_list ap;
        va_start(ap, body_fmt);
        rc = vasprintf(&body, body_fmt, ap);
        va_end(ap);
        if (rc < 0) {
            memset(r, 0, sizeof *r);
            return -1;
        }
    }
    if (token) {
        if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
            free(body);
            memset(r, 0, sizeof *r);
            return -1;
        }
        headers[0] = auth;
    }
    rc = th_req(s, method, path, body, headers, r);
    free(body);
    free(auth);
    return rc;
}

const char *th_header(const struct th_resp *r, const char *name, char *buf, size_t cap)
{
    size_t nlen = strlen(name);

    if (!r->headers || cap == 0)
        return NULL;
    for (const char *line = r->headers; *line;) {
        size_t llen = strcspn(line, "\r\n");
        if (llen > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1, *end = line + llen;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            size_t vlen = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
            memcpy(buf, v, vlen);
            buf[vlen] = '\0';
            return buf;
        }
        line += llen;
        line += strspn(line, "\r\n");
    }
    return NULL;
}

void th_resp_free(struct th_resp *r)
{
    if (!r)
        return;
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* ---- server lifecycle ---- */

/* GET /health with a short timeout: true on 200. */
static bool th_healthy(CURL *c, const char *url)
{
    long status = 0;

    curl_easy_setopt(c, CURLOPT_URL, url);
    if (curl_easy_perform(c) != CURLE_OK)
        return false;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status == 200;
}

static size_t th_curl_discard(char *data, size_t size, size_t n, void *ud) { return size * n; }

/* Does the log, from offset on, say that the port was taken? (then a retry is worth it) */
static bool th_log_says_in_use(const char *path, long offset)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    bool hit = false;

    if (!f)
        return false;
    fseek(f, offset, SEEK_SET);
    while (!hit && fgets(line, sizeof line, f))
        hit = strcasestr(line, "address already in use") || strcasestr(line, "EADDRINUSE");
    fclose(f);
    return hit;
}

enum th_launch { TH_UP, TH_FAILED, TH_PORT_TAKEN };

/* th_use_binary(): another build of emporium for the next starts (upgrade drills). */
static const char *th_bin_override;
void th_use_binary(const char *path) { th_bin_override = path; }
static const char *th_bin(void) { return th_bin_override ? th_bin_override : EMPORIUM_BIN; }

/* One attempt: spawn `serve` on a fresh port and wait for /health. */
static enum th_launch th_launch_once(struct th_server *s, char **envp,
                                     const char *const *extra_args, char *why, size_t why_cap)
{
    char listen[32], health[96], mark[128];
    const char *fixed[] = {th_bin(),     "serve",     "--listen", listen,
                           "--data-dir", s->data_dir, "--no-demo"};
    size_t nfixed = sizeof fixed / sizeof fixed[0], nextra = 0;
    enum th_launch res = TH_FAILED;
    struct stat st;
    char **argv;
    int64_t deadline;
    long log_off;
    CURL *c;
    int fd, status;

    s->port = th_free_port();
    if (s->port <= 0) {
        snprintf(why, why_cap, "no free port: %s", strerror(errno));
        return TH_FAILED;
    }
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d", s->port);
    snprintf(health, sizeof health, "%s/health", s->base_url);

    while (extra_args && extra_args[nextra])
        nextra++;
    argv = calloc(nfixed + nextra + 1, sizeof *argv);
    if (!argv) {
        snprintf(why, why_cap, "out of memory");
        return TH_FAILED;
    }
    /* execve takes char *const[]; the strings are not modified. */
    for (size_t i = 0; i < nfixed; i++)
        argv[i] = (char *)fixed[i];
    for (size_t i = 0; i < nextra; i++)
        argv[nfixed + i] = (char *)extra_args[i];

    snprintf(mark, sizeof mark, "serve on %s", listen);
    th_log_mark(s->log_path, mark);
    fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    log_off = fd >= 0 && fstat(fd, &st) == 0 ? (long)st.st_size : 0;
    s->pid = fd >= 0 ? th_spawn(argv, envp, fd) : -1;
    if (fd >= 0)
        close(fd);
    free(argv);
    if (s->pid < 0) {
        s->pid = 0;
        snprintf(why, why_cap, "cannot start %s: %s", EMPORIUM_BIN, strerror(errno));
        return TH_FAILED;
    }

    c = curl_easy_init();
    if (!c) {
        snprintf(why, why_cap, "curl_easy_init failed");
        th_kill(s);
        return TH_FAILED;
    }
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, th_curl_discard);

    deadline = th_now_ms() + TH_START_TIMEOUT_MS;
    for (;;) {
        if (th_reaped(s->pid, &status)) {
            s->pid = 0;
            if (WIFEXITED(status))
                snprintf(why, why_cap, "server exited with status %d before /health answered",
                         WEXITSTATUS(status));
            else
                snprintf(why, why_cap, "server died of signal %d before /health answered",
                         WTERMSIG(status));
            res = th_log_says_in_use(s->log_path, log_off) ? TH_PORT_TAKEN : TH_FAILED;
            break;
        }
        if (th_healthy(c, health)) {
            res = TH_UP;
            break;
        }
        if (th_now_ms() > deadline) {
            snprintf(why, why_cap, "/health did not answer 200 within %d ms", TH_START_TIMEOUT_MS);
            th_kill(s);
            break;
        }
        th_sleep_ms(TH_POLL_MS);
    }
    curl_easy_cleanup(c);
    return res;
}

static int th_launch(struct th_server *s, const char *const *extra_env,
                     const char *const *extra_args)
{
    char why[256] = "";
    enum th_launch res = TH_FAILED;
    char **envp;

    pthread_once(&th_curl_once, th_curl_init);
    envp = th_child_env(s, extra_env);
    if (!envp) {
        fprintf(stderr, "th_start: out of memory\n");
        return -1;
    }
    for (int attempt = 0; attempt < TH_BIND_TRIES; attempt++) {
        res = th_launch_once(s, envp, extra_args, why, sizeof why);
        if (res != TH_PORT_TAKEN)
            break;
    }
    th_strv_free(envp);
    if (res == TH_UP)
        return 0;
    th_log_dump(s->log_path, why);
    return -1;
}

/* ---- PostgreSQL: the databases of a test server ----
 *
 * `emporium serve` on a fresh prefix creates some 18 databases and migrates each; on the test
 * server that cost several CPU seconds per th_start (most of it CREATE DATABASE copying
 * template1 page by page into the WAL, which the test replica then replays too), thousands of
 * databases over a make test run, left on disk for the final rm -rf. Two things make it
 * cheaper, both only when EMPORIUM_TEST_PG_ADMIN_URL names the server directly (not through
 * PgBouncer; scripts/test-servers.sh env prints it):
 *   - th_start() clones the server's databases from a migrated template set ("tpl<key>_*",
 *     made once per emporium binary by running its own `emporium migrate`, under a file
 *     lock) with CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY; the server then finds them
 *     there and up to date. Any failure leaves the rest to the server, as before.
 *   - th_cleanup() drops the databases of the server's prefix (without the admin URL too,
 *     through EMPORIUM_TEST_PG_URL).
 * Names are [A-Za-z0-9_] (the harness makes them; checked again before they go into SQL). */

static void th_pg_quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static bool th_pg_name_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
              (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return false;
    return n > 0 && n <= max;
}

/* The database name of a URL (both forms of th_pg_url) into out; false if none fits. */
static bool th_pg_dbname(const char *url, char *out, size_t cap)
{
    const char *scheme = strstr(url, "://"), *p;
    size_t n;

    if (scheme) {
        p = scheme + 3 + strcspn(scheme + 3, "/?");
        if (*p != '/')
            return false;
        p++;
        n = strcspn(p, "?");
    } else {
        p = strstr(url, "dbname=");
        if (!p || (p != url && p[-1] != ' '))
            return false;
        p += 7;
        n = strcspn(p, " ");
    }
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, p, n);
    out[n] = 0;
    return true;
}

/* A connection to the "postgres" database of base's server, or NULL (reason on stderr). */
static PGconn *th_pg_connect(const char *base)
{
    char url[600];
    PGconn *c;

    if (th_pg_url(base, "postgres", url, sizeof url) != 0)
        return NULL;
    c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "harness: cannot connect to %s: %s", url, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, th_pg_quiet, NULL);
    return c;
}

/* One statement without parameters; true when it succeeded (else the error on stderr). */
static bool th_pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "harness: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* The databases named "<prefix>_…" (the suffixes when strip), malloc'd NULL-terminated list;
 * NULL on an error. */
static char **th_pg_list(PGconn *c, const char *prefix, bool strip)
{
    char like[80];
    const char *vals[] = {like};
    char **v = NULL;

    snprintf(like, sizeof like, "%s_", prefix);
    PGresult *r = PQexecParams(c,
                               "SELECT datname FROM pg_catalog.pg_database WHERE "
                               "substr(datname, 1, length($1)) = $1 ORDER BY datname",
                               1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && (v = calloc((size_t)PQntuples(r) + 1, sizeof *v))) {
        for (int i = 0; i < PQntuples(r); i++) {
            v[i] = strdup(PQgetvalue(r, i, 0) + (strip ? strlen(like) : 0));
            if (!v[i]) {
                th_strv_free(v);
                v = NULL;
                break;
            }
        }
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "harness: listing databases %s*: %s", like, PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

static void th_pg_drop_all(PGconn *c, char **names)
{
    char sql[160];
    for (size_t i = 0; names && names[i]; i++) {
        if (!th_pg_name_ok(names[i], 63))
            continue;
        /* FORCE: PgBouncer may still hold an idle server connection to it. */
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", names[i]);
        th_pg_exec(c, sql);
    }
}

static struct {
    pthread_mutex_t mu;
    int state;     /* 0 not tried yet, 1 ready, -1 not available in this process */
    char tpl[32];  /* "tpl<key>" */
    char **suffix; /* its databases, "users", "orders_0", … */
} th_tpl = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t th_fnv(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}

/* Runs `BIN migrate` on the template prefix (its own environment: only what migrate needs,
 * so a suite's Redis or service settings do not reach it). */
static bool th_tpl_migrate(const char *admin, const char *bin)
{
    char url[600], dir[] = "/tmp/emp-tpl-XXXXXX", logp[64];
    char *env[8] = {0}, *argv[] = {(char *)bin, "migrate", NULL};
    const char *keep[] = {"PATH",         "ASAN_OPTIONS",       "UBSAN_OPTIONS",
                          "LSAN_OPTIONS", "MONGOC_DISABLE_SHM", NULL};
    int k = 0, fd, status = 0;
    bool ok = false;

    if (th_pg_url(admin, th_tpl.tpl, url, sizeof url) != 0 || !mkdtemp(dir))
        return false;
    snprintf(logp, sizeof logp, "%s/migrate.log", dir);
    for (int i = 0; keep[i]; i++) {
        const char *v = getenv(keep[i]);
        if (v && asprintf(&env[k], "%s=%s", keep[i], v) > 0)
            k++;
    }
    if (asprintf(&env[k], "EMPORIUM_DATABASE_URL=%s", url) > 0)
        k++;
    if (asprintf(&env[k], "EMPORIUM_DATA_DIR=%s", dir) > 0)
        k++;
    fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    pid_t pid = fd >= 0 ? th_spawn(argv, env, fd) : -1;
    if (pid > 0) {
        th_reap_blocking(pid, &status);
        ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    if (fd >= 0)
        close(fd);
    if (!ok)
        th_log_dump(logp, "harness: migrating the template databases failed");
    for (int i = 0; i < k; i++)
        free(env[i]);
    unlink(logp);
    rmdir(dir);
    return ok;
}

/* Makes the template set of this binary unless it exists; under th_tpl.mu. */
static bool th_tpl_make(const char *admin)
{
    const char *bin = th_bin();
    struct stat st;
    uint64_t h = 1469598103934665603ull;
    char lockp[80], ready[40], sql[96];
    bool ok = false;
    int lfd;

    if (stat(bin, &st) != 0)
        return false;
    h = th_fnv(h, bin, strlen(bin));
    h = th_fnv(h, &st.st_ino, sizeof st.st_ino);
    h = th_fnv(h, &st.st_size, sizeof st.st_size);
    h = th_fnv(h, &st.st_mtim, sizeof st.st_mtim);
    snprintf(th_tpl.tpl, sizeof th_tpl.tpl, "tpl%016llx", (unsigned long long)h);
    snprintf(ready, sizeof ready, "%sready", th_tpl.tpl); /* not "<tpl>_…": not cloned */
    /* One process makes it; the others (ctest -j) wait here, then find it made. */
    snprintf(lockp, sizeof lockp, "/tmp/emporium-test-tpl-%016llx.lock",
             (unsigned long long)th_fnv(1469598103934665603ull, admin, strlen(admin)));
    lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        if (lfd >= 0)
            close(lfd);
        return false;
    }
    PGconn *c = th_pg_connect(admin);
    if (c) {
        const char *vals[] = {ready};
        PGresult *r = PQexecParams(c, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", 1,
                                   NULL, vals, NULL, NULL, 0);
        bool have = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        PQclear(r);
        if (!have) {
            char **left = th_pg_list(c, th_tpl.tpl, false); /* of a run that died midway */
            th_pg_drop_all(c, left);
            th_strv_free(left);
            snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", ready);
            have = th_tpl_migrate(admin, bin) && th_pg_exec(c, sql);
        }
        if (have)
            th_tpl.suffix = th_pg_list(c, th_tpl.tpl, true);
        ok = have && th_tpl.suffix && th_tpl.suffix[0];
        PQfinish(c);
    }
    flock(lfd, LOCK_UN);
    close(lfd);
    return ok;
}

/* Before a server's first start on prefix: its databases, cloned from the template set. */
static void th_pg_prepare(const char *prefix)
{
    const char *admin = getenv("EMPORIUM_TEST_PG_ADMIN_URL");
    char sql[200];

    if (!admin || !*admin || th_bin_override || !th_pg_name_ok(prefix, 40))
        return;
    pthread_mutex_lock(&th_tpl.mu);
    if (th_tpl.state == 0)
        th_tpl.state = th_tpl_make(admin) ? 1 : -1;
    if (th_tpl.state < 0) {
        pthread_mutex_unlock(&th_tpl.mu);
        return;
    }
    pthread_mutex_unlock(&th_tpl.mu);
    PGconn *c = th_pg_connect(admin);
    for (size_t i = 0; c && th_tpl.suffix[i]; i++) {
        if (!th_pg_name_ok(th_tpl.suffix[i], 20))
            continue;
        snprintf(sql, sizeof sql, "CREATE DATABASE \"%s_%s\" TEMPLATE \"%s_%s\" STRATEGY FILE_COPY",
                 prefix, th_tpl.suffix[i], th_tpl.tpl, th_tpl.suffix[i]);
        if (!th_pg_exec(c, sql))
            break; /* the server creates what is missing */
    }
    PQfinish(c);
}

/* Drops the databases of the server's prefix (its URL's database name). A DROP waits for the
 * connections PgBouncer still holds to end, most of a second each on a loaded machine, so the
 * drops run in the background: psql (postgresql-client, which the test servers need anyway),
 * in a process of its own that outlives the test, its output thrown away. Without psql, here. */
static void th_pg_drop(const char *db_url)
{
    static const char psql[] = "/usr/bin/psql";
    const char *admin = getenv("EMPORIUM_TEST_PG_ADMIN_URL");
    char prefix[64], url[600];

    admin = admin && *admin ? admin : db_url;
    if (!th_pg_dbname(db_url, prefix, sizeof prefix) || !th_pg_name_ok(prefix, 60) ||
        th_pg_url(admin, "postgres", url, sizeof url) != 0)
        return;
    PGconn *c = th_pg_connect(admin);
    if (!c)
        return;
    char **names = th_pg_list(c, prefix, false);
    size_t n = 0;
    while (names && names[n])
        n++;
    char **argv = n && access(psql, X_OK) == 0 ? calloc(2 * n + 8, sizeof *argv) : NULL;
    size_t k = 0;
    if (argv) {
        argv[k++] = (char *)psql;
        argv[k++] = "-X";
        argv[k++] = "-q";
        argv[k++] = "-d";
        argv[k++] = url;
        for (size_t i = 0; i < n; i++) {
            if (!th_pg_name_ok(names[i], 63))
                continue;
            char *sql;
            if (asprintf(&sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", names[i]) < 0)
                continue; /* that one stays */
            argv[k++] = "-c";
            argv[k++] = sql;
        }
    }
    int null_fd = argv ? open("/dev/null", O_RDWR | O_CLOEXEC) : -1;
    pid_t pid = null_fd >= 0 ? fork() : -1;
    if (pid == 0) { /* only async-signal-safe calls from here on */
        char *const envp[] = {NULL};
        setsid();
        if (fork() != 0)
            _exit(0); /* the grandchild is nobody's to wait for */
        if (dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0)
            _exit(126);
        close_range(3, ~0u, 0);
        execve(psql, argv, envp);
        _exit(127);
    }
    if (pid > 0) {
        int status;
        th_reap_blocking(pid, &status);
    } else {
        th_pg_drop_all(c, names);
    }
    if (null_fd >= 0)
        close(null_fd);
    for (size_t i = 6; argv && i < k; i += 2)
        free(argv[i]);
    free(argv);
    th_strv_free(names);
    PQfinish(c);
}

int th_start(struct th_server *s, const char *const *extra_env, const char *const *extra_args)
{
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    char root[64] = TH_ROOT_PREFIX "XXXXXX"; /* short, so the paths below always fit */

    memset(s, 0, sizeof *s);
    if (!mkdtemp(root)) {
        fprintf(stderr, "th_start: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(s->data_dir, sizeof s->data_dir, "%s/data", root);
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", root);
    if (mkdir(s->data_dir, 0700) != 0) {
        fprintf(stderr, "th_start: mkdir %s: %s\n", s->data_dir, strerror(errno));
        th_cleanup(s);
        return -1;
    }

    if (backend && strcmp(backend, "postgres") == 0) {
        const char *base = getenv("EMPORIUM_TEST_PG_URL");
        char prefix[64];
        uint32_t rnd = 0;

        if (!base || !*base) {
            fprintf(stderr, "th_start: EMPORIUM_TEST_BACKEND=postgres needs "
                            "EMPORIUM_TEST_PG_URL\n");
            th_cleanup(s);
            return -1;
        }
        /* pid + counter make it unique here; the random part guards against a stale
         * database left by an earlier run that had the same pid. */
        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
            rnd = (uint32_t)th_now_ms();
        snprintf(prefix, sizeof prefix, "t%ld_%u_%06x", (long)getpid(),
                 atomic_fetch_add(&th_counter, 1), rnd & 0xffffff);
        if (th_pg_url(base, prefix, s->db_url, sizeof s->db_url) != 0) {
            fprintf(stderr, "th_start: EMPORIUM_TEST_PG_URL too long\n");
            th_cleanup(s);
            return -1;
        }
        th_pg_prepare(prefix);
    } else if (backend && *backend && strcmp(backend, "sqlite") != 0) {
        fprintf(stderr, "th_start: unknown EMPORIUM_TEST_BACKEND \"%s\"\n", backend);
        th_cleanup(s);
        return -1;
    }

    if (th_launch(s, extra_env, extra_args) != 0) {
        /* The caller cannot use a server that never came up: leave nothing behind. */
        th_cleanup(s);
        return -1;
    }
    return 0;
}

int th_restart(struct th_server *s, const char *const *extra_env, const char *const *extra_args)
{
    if (s->pid > 0) {
        fprintf(stderr, "th_restart: server %ld still running; th_stop or th_kill it first\n",
                (long)s->pid);
        return -1;
    }
    return th_launch(s, extra_env, extra_args);
}

int th_stop(struct th_server *s)
{
    int64_t deadline = th_now_ms() + TH_STOP_TIMEOUT_MS;
    int status = 0, rc;

    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    while (!th_reaped(s->pid, &status)) {
        if (th_now_ms() > deadline) {
            kill(s->pid, SIGKILL);
            th_reap_blocking(s->pid, &status);
            s->pid = 0;
            th_log_dump(s->log_path, "server did not exit within 30 s of SIGTERM");
            return -1;
        }
        th_sleep_ms(10);
    }
    s->pid = 0;
    if (WIFEXITED(status)) {
        rc = WEXITSTATUS(status);
        if (rc != 0) {
            char why[64];
            snprintf(why, sizeof why, "server exited with status %d", rc);
            th_log_dump(s->log_path, why);
        }
        return rc;
    }
    {
        char why[64];
        snprintf(why, sizeof why, "server died of signal %d", WTERMSIG(status));
        th_log_dump(s->log_path, why);
    }
    return -1;
}

void th_kill(struct th_server *s)
{
    int status;

    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    th_reap_blocking(s->pid, &status);
    s->pid = 0;
}

static int th_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "th_cleanup: remove %s: %s\n", path, strerror(errno));
    return 0; /* keep going: remove as much as possible */
}

/* The PostgreSQL databases of the server's prefix ("<prefix>_<logical>") are dropped: a make
 * test run makes thousands, and left in place they filled gigabytes of the test server's
 * data dir (and its replica's), which took minutes to remove at the end. */
void th_cleanup(struct th_server *s)
{
    char root[sizeof s->data_dir];

    th_kill(s);
    if (!th_root_of(s, root, sizeof root)) {
        if (s->data_dir[0])
            fprintf(stderr, "th_cleanup: %s is not a harness dir; not removing it\n", s->data_dir);
        return;
    }
    if (s->db_url[0])
        th_pg_drop(s->db_url);
    /* EMPORIUM_TEST_LOG_DIR: the log outlives the server there (make test scans them all
     * for secrets with scripts/log-hygiene.sh). */
    const char *keep = getenv("EMPORIUM_TEST_LOG_DIR");
    if (keep && *keep && s->log_path[0]) {
        char dst[512], chunk[8192];
        snprintf(dst, sizeof dst, "%s/%s-%s.log", keep, strrchr(root, '/') + 1,
                 program_invocation_short_name);
        FILE *in = fopen(s->log_path, "r"), *out = in ? fopen(dst, "w") : NULL;
        size_t n;
        while (out && (n = fread(chunk, 1, sizeof chunk, in)) > 0)
            fwrite(chunk, 1, n, out);
        if (!out || fclose(out) != 0)
            fprintf(stderr, "th_cleanup: could not keep %s in %s\n", s->log_path, keep);
        if (in)
            fclose(in);
    }
    nftw(root, th_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    s->data_dir[0] = '\0';
    s->log_path[0] = '\0';
}

/* ---- CLI ---- */

int th_cli(struct th_server *s, const char *const *args, char **out)
{
    return th_cli_env(s, NULL, args, out);
}

int th_cli_env(struct th_server *s, const char *const *extra_env, const char *const *args,
               char **out)
{
    struct th_buf ob = {0};
    size_t nargs = 0;
    char **argv = NULL, **envp = NULL;
    int pfd[2] = {-1, -1}, status = 0, rc = -1;
    int64_t deadline = th_now_ms() + TH_CLI_TIMEOUT_MS;
    pid_t pid;

    if (out)
        *out = NULL;
    while (args && args[nargs])
        nargs++;
    argv = calloc(nargs + 4, sizeof *argv);
    envp = th_child_env(s, extra_env);
    if (!argv || !envp || pipe2(pfd, O_CLOEXEC) != 0) {
        fprintf(stderr, "th_cli: %s\n", strerror(errno ? errno : ENOMEM));
        goto out;
    }
    argv[0] = (char *)th_bin();
    for (size_t i = 0; i < nargs; i++)
        argv[1 + i] = (char *)args[i];
    argv[1 + nargs] = (char *)"--data-dir";
    argv[2 + nargs] = s->data_dir;

    pid = th_spawn(argv, envp, pfd[1]);
    close(pfd[1]);
    pfd[1] = -1;
    if (pid < 0) {
        fprintf(stderr, "th_cli: cannot start %s: %s\n", EMPORIUM_BIN, strerror(errno));
        goto out;
    }
    /* Read until EOF (every copy of the write end is closed, i.e. the command is done). */
    for (;;) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int64_t left = deadline - th_now_ms();
        char chunk[4096];
        ssize_t n;

        if (left <= 0) {
            fprintf(stderr, "th_cli: %s %s: no exit within %d ms, killed\n", EMPORIUM_BIN,
                    nargs ? args[0] : "", TH_CLI_TIMEOUT_MS);
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&p, 1, (int)left) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        n = read(pfd[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        th_buf_add(&ob, chunk, (size_t)n);
    }
    th_reap_blocking(pid, &status);
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (out)
        *out = th_buf_take(&ob);
out:
    free(ob.p);
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    free(argv);
    th_strv_free(envp);
    return rc;
}

/* ---- API shortcuts ---- */

/* POSTs obj (stolen) as JSON and returns the "token" of an expected status, or NULL. */
static char *th_token_from(struct th_server *s, const char *path, json_t *obj, long expect)
{
    char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    struct th_resp r;
    const char *tok;
    char *ret = NULL;

    json_decref(obj);
    if (!body)
        return NULL;
    /* A login answered with a retryable 503 (a dependency such as the Redis holding sessions
     * is briefly away, e.g. a cluster settling under load) is asked again for up to 30 s: a
     * test's setup waits for the condition instead of failing on a moment. A login changes
     * nothing when it fails; a registration may have (then it is not retried). */
    for (int attempt = 0; attempt < 300; attempt++) {
        if (th_req(s, "POST", path, body, NULL, &r) != 0)
            break;
        tok = th_jstr(r.json, "token");
        bool retry = r.status == 503 && expect != 503 && strstr(path, "/login");
        if (r.status == expect && tok)
            ret = strdup(tok);
        else if (!retry || attempt == 299)
            fprintf(stderr, "POST %s: expected %ld with a token, got %ld: %s\n", path, expect,
                    r.status, r.body);
        th_resp_free(&r);
        if (ret || !retry)
            break;
        usleep(100000);
    }
    free(body);
    return ret;
}

char *th_register(struct th_server *s, const char *email, const char *password)
{
    return th_token_from(
        s, "/api/v1/auth/register",
        json_pack("{s:s, s:s, s:s}", "email", email, "password", password, "name", "Test User"),
        201);
}

char *th_admin_token(struct th_server *s)
{
    static const char password[] = "admin-password-42";
    unsigned n = atomic_fetch_add(&th_counter, 1);
    char root[sizeof s->data_dir], email[64], pwfile[sizeof s->data_dir + 32];
    char *out = NULL;
    FILE *f;
    int rc;

    /* The password file goes in the temp root, beside (not inside) the server's data. */
    if (!th_root_of(s, root, sizeof root))
        return NULL;
    snprintf(email, sizeof email, "admin-%u@example.com", n);
    snprintf(pwfile, sizeof pwfile, "%s/admin-%u.password", root, n);
    f = fopen(pwfile, "w");
    if (!f || fputs(password, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "th_admin_token: cannot write %s\n", pwfile);
        return NULL;
    }
    rc = th_cli(s,
                (const char *const[]){"user", "create", "--email", email, "--password-file", pwfile,
                                      "--role", "admin", NULL},
                &out);
    if (rc != 0) {
        fprintf(stderr, "th_admin_token: `user create` exited %d:\n%s\n", rc, out ? out : "");
        free(out);
        return NULL;
    }
    free(out);
    return th_token_from(s, "/api/v1/auth/login",
                         json_pack("{s:s, s:s}", "email", email, "password", password), 200);
}

/* ---- JSON paths ---- */

static json_t *th_jget(json_t *root, const char *path)
{
    json_t *cur = root;
    const char *seg = path;

    while (cur && seg) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        char key[256];

        if (len >= sizeof key)
            return NULL;
        memcpy(key, seg, len);
        key[len] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, key);
        } else if (json_is_array(cur) && len > 0 && strspn(key, "0123456789") == len) {
            cur = json_array_get(cur, strtoul(key, NULL, 10));
        } else {
            return NULL;
        }
        seg = dot ? dot + 1 : NULL;
    }
    return cur;
}

const char *th_jstr(json_t *root, const char *path)
{
    return json_string_value(th_jget(root, path));
}

/* Ids are strings in the API, so a string of digits counts as an integer too. */
long long th_jint(json_t *root, const char *path, long long dflt)
{
    json_t *v = th_jget(root, path);

    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v)) {
        const char *str = json_string_value(v);
        char *end;
        errno = 0;
        long long x = strtoll(str, &end, 10);
        if (*str && !*end && errno == 0)
            return x;
    }
    return dflt;
}

/* ---- error shape ---- */

bool th_is_error(const struct th_resp *r, long status, const char *code, const char *field)
{
    json_t *err = json_object_get(r->json, "error");
    const char *got_code = json_string_value(json_object_get(err, "code"));
    const char *got_field = json_string_value(json_object_get(err, "field"));
    const char *problem = NULL;

    if (r->status != status)
        problem = "status";
    else if (!json_is_object(err))
        problem = "no \"error\" object";
    else if (!got_code)
        problem = "error.code is not a string";
    else if (!json_is_string(json_object_get(err, "message")))
        problem = "error.message is not a string";
    else if (code && strcmp(got_code, code) != 0)
        problem = "error.code";
    else if (field && (!got_field || strcmp(got_field, field) != 0))
        problem = "error.field";
    if (!problem)
        return true;
    fprintf(stderr, "th_is_error: %s mismatch: expected %ld code=%s field=%s; got %ld: %s\n",
            problem, status, code ? code : "(any)", field ? field : "(any)", r->status,
            r->body ? r->body : "(no body)");
    return false;
}

int th_suite_start(struct th_server *s, char **admin)
{
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    *admin = NULL;
    if (th_start(s, env, NULL) != 0)
        return -1;
    *admin = th_admin_token(s);
    return *admin ? 0 : -1;
}

int th_suite_stop(struct th_server *s, char *admin)
{
    free(admin);
    int rc = th_stop(s);
    th_cleanup(s);
    return rc == 0 ? 0 : -1;
}
