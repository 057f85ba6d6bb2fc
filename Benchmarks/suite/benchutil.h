/*
 * benchutil.h: what the benchmark's C programs share (fanout.c, idle.c):
 * the monotonic clock, dying with errno, latency percentiles, and futexes
 * on a 32-bit counter. Header-only: each program is one cc command.
 */
#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* "PROGRAM: WHAT: strerror(errno)" and exit 1 */
static inline void die(const char *what) {
    fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(errno));
    exit(1);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static inline void sort_u64(uint64_t *v, long n) { qsort(v, (size_t)n, sizeof *v, cmp_u64); }

/* The p-quantile (0..1, nearest rank) of n sorted nanosecond values, in µs;
 * 0 when there are none. */
static inline double pct_us(const uint64_t *sorted, long n, double p) {
    if (n == 0) return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1000.0;
}

/* The latencies of a run, sorted: every delivery (`all`), and for each
 * message its slowest reader (`last`, only messages every reader timed).
 * lat[r][i] is message i's latency at reader r, 0 for none. */
struct latencies {
    uint64_t *all, *last;
    long nall, nlast;
};

static inline struct latencies collect_latencies(uint64_t *const *lat, int nreaders, long count) {
    struct latencies l = {
        malloc(sizeof(uint64_t) * (size_t)count * (size_t)nreaders), malloc(sizeof(uint64_t) * (size_t)count), 0, 0};
    if (!l.all || !l.last) die("malloc");
    for (long i = 0; i < count; i++) {
        uint64_t worst = 0;
        int seen = 0;
        for (int k = 0; k < nreaders; k++) {
            uint64_t v = lat[k][i];
            if (v == 0) continue;
            l.all[l.nall++] = v;
            seen++;
            if (v > worst) worst = v;
        }
        if (seen == nreaders) l.last[l.nlast++] = worst;
    }
    sort_u64(l.all, l.nall);
    sort_u64(l.last, l.nlast);
    return l;
}

static inline void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static inline void futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* Sleeps until *addr >= target (the counter only grows). */
static inline void wait_at_least(_Atomic uint32_t *addr, uint32_t target) {
    uint32_t v;
    while ((v = atomic_load(addr)) < target) futex_wait(addr, v);
}

#endif
