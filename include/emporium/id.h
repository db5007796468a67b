/* SPDX-License-Identifier: MIT */
/* id.h — time-ordered 64-bit ids that carry a shard number.
 *
 * Layout (most significant first): 41 bits milliseconds since 2024-01-01, 6 bits shard,
 * 16 bits sequence. Ids fit in a signed 64-bit integer and sort by creation time; those of
 * one shard made by one process strictly increase in the order they were made. For
 * orders the 6 bits are the order's bucket group (docs/sharding.md), which the shard map
 * turns into the shard that holds it. */
#ifndef EMPORIUM_ID_H
#define EMPORIUM_ID_H
#include <stdint.h>
#include <stddef.h>

int64_t id_new(unsigned shard);
unsigned id_shard(int64_t id);
/* Parses a decimal id string; returns 0 on success, ERR_INVALID otherwise. */
int id_parse(const char *s, int64_t *out);
/* Writes the decimal form into buf (at least 21 bytes). Returns buf. */
char *id_format(int64_t id, char buf[21]);

/* Milliseconds since the Unix epoch (wall clock). */
int64_t now_ms(void);
/* Monotonic milliseconds. */
int64_t mono_ms(void);
/* RFC 3339 UTC form of a Unix-ms timestamp, e.g. 2026-11-28T20:30:53.123Z (buf >= 32). */
char *time_format(int64_t ms, char buf[32]);

#endif
