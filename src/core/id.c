/* SPDX-License-Identifier: MIT */
/* id.c — time-ordered 64-bit ids with shard bits, and clock helpers.
 *
 * The process keeps one atomic (milliseconds, sequence) pair, the last one it gave out; the
 * next id takes the current millisecond with the sequence after the last one, or, when that
 * would not be larger (the same millisecond after 65,536 ids, or a clock that stepped back),
 * the pair after the last one, borrowing the next millisecond. So ids made in one process
 * strictly increase in the order they were made: an aggregate's outbox events sort in the
 * order they were written (relay.c publishes in id order), even across the sequence's wrap,
 * which the plain counter before this let a later id sort first within a millisecond. Two
 * processes may collide only if they share a millisecond, a shard and a sequence value, so
 * the sequence starts at a random value. */
#include "emporium/id.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "emporium/err.h"

#define ID_EPOCH_MS 1704067200000LL /* 2024-01-01T00:00:00Z */

/* (ms << 16) | seq of the last id made here; -1 before the first */
static _Atomic int64_t id_last = -1;

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t id_new(unsigned shard)
{
    int64_t ms = now_ms() - ID_EPOCH_MS, next;
    int64_t prev = atomic_load(&id_last);
    do {
        int64_t last = prev >= 0 ? prev : (ms << 16) | (int64_t)(randombytes_random() & 0xFFFF);
        next = (ms << 16) | ((last + 1) & 0xFFFF);
        if (next <= last)
            next = last + 1;
    } while (!atomic_compare_exchange_weak(&id_last, &prev, next));
    return ((next >> 16) << 22) | ((int64_t)(shard & 0x3F) << 16) | (next & 0xFFFF);
}

unsigned id_shard(int64_t id) { return (unsigned)((id >> 16) & 0x3F); }

int id_parse(const char *s, int64_t *out)
{
    if (!s || *s < '1' || *s > '9')
        return ERR_INVALID;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return ERR_INVALID;
    *out = v;
    return 0;
}

char *id_format(int64_t id, char buf[21])
{
    snprintf(buf, 21, "%lld", (long long)id);
    return buf;
}

char *time_format(int64_t ms, char buf[32])
{
    /* Called for every log line: the calendar part is recomputed only when the second
     * changes (per thread), the milliseconds are written by hand. */
    static _Thread_local int64_t cached_sec = INT64_MIN;
    static _Thread_local char cached[24];
    int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    unsigned milli = (unsigned)(ms - sec * 1000);
    if (sec != cached_sec) {
        time_t secs = (time_t)sec;
        struct tm tm;
        gmtime_r(&secs, &tm);
        /* Clamp every field so the compiler can prove the 19 characters fit. */
        snprintf(cached, sizeof cached, "%04u-%02u-%02uT%02u:%02u:%02u",
                 (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
                 (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
                 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
        cached_sec = sec;
    }
    memcpy(buf, cached, 19);
    buf[19] = '.';
    buf[20] = (char)('0' + milli / 100);
    buf[21] = (char)('0' + milli / 10 % 10);
    buf[22] = (char)('0' + milli % 10);
    buf[23] = 'Z';
    buf[24] = 0;
    return buf;
}
