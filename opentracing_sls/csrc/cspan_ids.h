/* Part of _cspan.c (one translation unit, split for reading; every symbol stays static):
 * trace and span ids for the spans TracerCore starts.
 *
 * Why not random.getrandbits: calling it costs a Python call and argument parsing per id,
 * several hundred instructions; xoshiro256** is a handful. Ids need to be unpredictable
 * enough not to collide, not secret: the generator is seeded from the OS and reseeded in
 * every forked child (pthread_atfork runs for any fork(), also uWSGI's C-level ones that
 * skip Python's os.register_at_fork hooks), so pre-fork workers never share a sequence.
 * Every caller holds the GIL, which serialises access to the state. */
#ifndef CSPAN_IDS_H
#define CSPAN_IDS_H

#include "cspan_common.h"

#include <stdint.h>
#include <string.h>
#include <time.h>
#ifndef _WIN32
#include <pthread.h>
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sys/random.h>
#endif

static uint64_t id_state[4];

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman and Vigna). */
static inline uint64_t id_next(void) {
    uint64_t *s = id_state;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* New state from the OS. Where that fails (no getrandom, entropy not ready), the process
 * id and the clocks are mixed into the current state instead, which still makes a forked
 * child's sequence differ from its parent's. Async-signal-safe: it runs in fork's child. */
static void id_seed(void) {
    uint64_t fresh[4];
    int ok = 0;
#if defined(__linux__)
    ok = getrandom(fresh, sizeof fresh, GRND_NONBLOCK) == (ssize_t)sizeof fresh;
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
    arc4random_buf(fresh, sizeof fresh);
    ok = 1;
#endif
    if (ok) {
        memcpy(id_state, fresh, sizeof id_state);
    } else {
        uint64_t mix = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
#ifndef _WIN32
        mix ^= (uint64_t)getpid() << 32;
#endif
        for (int i = 0; i < 4; i++)
            id_state[i] ^= splitmix64(&mix);
    }
    if (!(id_state[0] | id_state[1] | id_state[2] | id_state[3]))
        id_state[0] = 1; /* the one state xoshiro never leaves */
}

/* Seeds once and arranges the reseed after fork. Returns 0. */
static int ids_init(void) {
    id_seed();
#ifndef _WIN32
    pthread_atfork(NULL, NULL, id_seed);
#endif
    return 0;
}

static inline uint64_t id_nonzero(void) {
    uint64_t value;
    do {
        value = id_next();
    } while (value == 0);
    return value;
}

/* A random non-zero 64-bit id. New reference. */
static PyObject *new_span_id(void) { return PyLong_FromUnsignedLongLong(id_nonzero()); }

/* A random trace id: 64-bit, or 128-bit with non-zero high and low halves (ids.py's rule).
 * New reference. */
static PyObject *new_trace_id_obj(int bits_128) {
    if (!bits_128)
        return new_span_id();
    PyObject *high = PyLong_FromUnsignedLongLong(id_nonzero());
    PyObject *shift = high ? PyLong_FromLong(64) : NULL;
    PyObject *shifted = shift ? PyNumber_Lshift(high, shift) : NULL;
    PyObject *low = shifted ? PyLong_FromUnsignedLongLong(id_nonzero()) : NULL;
    PyObject *id = low ? PyNumber_Or(shifted, low) : NULL;
    Py_XDECREF(high);
    Py_XDECREF(shift);
    Py_XDECREF(shifted);
    Py_XDECREF(low);
    return id;
}

#endif
