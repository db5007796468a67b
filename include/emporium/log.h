/* SPDX-License-Identifier: MIT */
/* log.h — structured JSON log lines on stdout (one write(2) per line).
 *
 * Messages are printf-style; callers must never pass secrets (passwords, tokens, card numbers). */
#ifndef EMPORIUM_LOG_H
#define EMPORIUM_LOG_H
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level lvl);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes a finished line (must end with '\n') to stdout in one write. */
void log_write_line(const char *line, size_t len);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
