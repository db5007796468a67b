/* SPDX-License-Identifier: MIT */
/* log.c — JSON log lines on stdout.
 *
 * Each line is formatted into a stack buffer and written with one write(2), so lines from
 * different threads never interleave and no lock is taken. */
#include "emporium/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "emporium/id.h"

static enum log_level min_level = LOG_INFO;

void log_set_level(enum log_level lvl) { min_level = lvl; }

void log_write_line(const char *line, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, line, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        line += n;
        len -= (size_t)n;
    }
}

/* Appends s to buf as JSON string content (without quotes); returns the new length. */
static size_t json_escape_into(char *buf, size_t len, size_t cap, const char *s)
{
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (lvl < min_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char line[1400], ts[32];
    size_t len = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                                  time_format(now_ms(), ts), names[lvl]);
    len = json_escape_into(line, len, sizeof line - 4, msg);
    memcpy(line + len, "\"}\n", 3);
    len += 3;
    log_write_line(line, len);
}
