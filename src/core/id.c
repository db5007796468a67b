/* SPDX-License-Identifier: MIT */
/* id.c — time-ordered 64-bit ids with shard bits, and clock helpers.
 *
 * The sequence is one process-wide atomic counter; within one millisecond up to 65,536 ids
 * are unique per process. Two processes may collide only if they share a millisecond and a
 * sequence value, so the counter starts at a random value. */
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

static _Atomic uint32_t id_seq;
static _Atomic int id_seeded;

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
    if (!atomic_exchange(&id_seeded, 1))
        atomic_store(&id_seq, randombytes_random());
    static _Atomic int64_t last_ms;
    int64_t ms = now_ms() - ID_EPOCH_MS;
    uint32_t seq = atomic_fetch_add(&id_seq, 1);
    /* Never let the timestamp go backwards (clock steps), so ids keep sorting. */
    int64_t prev = atomic_load(&last_ms);
    while (ms > prev && !atomic_compare_exchange_weak(&last_ms, &prev, ms))
        ;
    if (ms < prev)
        ms = prev;
    return (ms << 22) | ((int64_t)(shard & 0x3F) << 16) | (int64_t)(seq & 0xFFFF);
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
