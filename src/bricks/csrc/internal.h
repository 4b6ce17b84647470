/* Definitions shared by the C files but hidden from Python: the packet, the
 * brick kind interface, sources and sinks. */
#ifndef BRK_INTERNAL_H
#define BRK_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/hash.h"
#include "api/engine.h"
#include "api/io.h"
#include "api/filter.h"
#include "api/balance.h"
#include "api/netmap.h"

#define BRK_LIKELY(x)   __builtin_expect(!!(x), 1)
#define BRK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BRK_MAX_OUTPUTS 64

/* One packet as a source hands it over; data stays valid until the source's
 * release(), i.e. until the end of the batch.
 *
 * The zero-copy rule: swappable_slot says that the whole of the RX buffer
 * holding this packet may change hands, and a sink may then send that buffer
 * (the slot's length of bytes from its start) instead of copying `data`. A
 * brick that hands on a packet whose data or caplen it changed (stripping a
 * header, slicing) must hand it on through brk_packet_moved(), which clears
 * the slot; the netmap sink also swaps only when data still starts at the
 * slot's buffer with the slot's length, so a brick that forgets sends its
 * bytes by copy, never the buffer's stale ones. */
struct brk_packet {
    const uint8_t *data;
    uint32_t caplen;     /* bytes present at data */
    uint32_t wirelen;    /* length on the wire */
    uint64_t ts_nsec;    /* capture time, ns since the epoch */
    /* netmap zero copy: the RX slot whose buffer holds data, and the region
     * that buffer lives in. NULL (the other back-ends, or a push to several
     * outputs) when the buffer must not change hands: sinks then copy. */
    struct netmap_slot *swappable_slot;
    const void *slot_region;
};

/* A copy of packet whose data now starts `skip` bytes later and holds at most
 * `caplen` bytes: its buffer can no longer be swapped whole (the rule above). */
static inline struct brk_packet brk_packet_moved(const struct brk_packet *packet, uint32_t skip,
                                                 uint32_t caplen)
{
    struct brk_packet moved = *packet;
    skip = skip < packet->caplen ? skip : packet->caplen;
    moved.data = packet->data + skip;
    moved.caplen = caplen < packet->caplen - skip ? caplen : packet->caplen - skip;
    moved.wirelen = packet->wirelen - (skip < packet->wirelen ? skip : packet->wirelen);
    moved.swappable_slot = NULL;
    moved.slot_region = NULL;
    return moved;
}

/* A brick kind, defined once in its own brick_<kind>.c (Click's element):
 * its name, how many outputs it takes, its config and counters, and its
 * per-packet action. A kind with settings declares their struct and its
 * counters' enum in api/<kind>.h; the builder registers every brick_*.c. */
struct brk_brick_kind {
    const char *name;
    unsigned min_outputs;
    unsigned max_outputs;
    /* Its config struct: brk_brick_new copies config_size bytes into
     * brick->config. config_type names it for Python (cffi's ffi.new). */
    size_t config_size;
    const char *config_type;
    /* The names of brick->stats.counters[0..], NULL-terminated (at most
     * BRK_MAX_KIND_COUNTERS): the generic snapshot copies them, Python lists
     * them by these names. */
    const char *const *counters;
    size_t state_size;
    int (*init)(struct brk_brick *brick, char *error, size_t error_size);
    void (*push)(struct brk_brick *brick, const struct brk_packet *packet);
    /* Optional: a whole batch from a source at once (the engine counted it
     * as received), so that the kind may prefetch ahead. */
    void (*push_batch)(struct brk_brick *brick, const struct brk_packet *packets, unsigned count);
    void (*fini)(struct brk_brick *brick);
};

/* An output port: an internal edge to a child brick, or a sink. */
struct brk_output {
    struct brk_brick *child;
    struct brk_sink *sink;
    struct brk_counters counters;   /* delivered packets/bytes, drops */
};

struct brk_brick {
    const struct brk_brick_kind *kind;
    const void *config;              /* kind->config_size bytes, or NULL */
    struct brk_brick_stats stats;
    unsigned outputs;
    uint64_t outputs_reciprocal;     /* for brk_output_for_hash: no division per packet */
    struct brk_output output[BRK_MAX_OUTPUTS];
    void *state;                     /* kind->state_size bytes */
    /* What other threads read: a copy of the counters the engine publishes
     * once per batch under a sequence lock, so readers never race the loop. */
    uint32_t snapshot_sequence;
    struct brk_brick_stats snapshot;
    struct brk_counters snapshot_output[BRK_MAX_OUTPUTS];
};

/* hash % outputs, exactly, by Lemire's multiply-shift (a divide costs ~25 cycles). */
static inline unsigned brk_output_for_hash(const struct brk_brick *brick, uint32_t hash)
{
    uint64_t low_bits = brick->outputs_reciprocal * hash;
    return (unsigned)(((__uint128_t)low_bits * brick->outputs) >> 64);
}

/* Hands packet to output i, counting it as delivered or dropped there. */
static inline void brk_output_push(struct brk_brick *brick, unsigned i,
                                   const struct brk_packet *packet);

/* What a sink's send() did with a packet. */
enum brk_send_result {
    BRK_SENT = 0,               /* delivered now: the caller counts it */
    BRK_QUEUED = 1,             /* the sink counts it once the kernel takes it (or not) */
    BRK_DROP_FULL = -1,
    BRK_DROP_TOO_BIG = -2,
    BRK_DROP_TOO_SHORT = -3,
    BRK_DROP_GONE = -4,
    BRK_DROP_WRITE_ERROR = -5
};

static inline void brk_count_drops(struct brk_counters *counters, int cause, uint64_t count)
{
    counters->drops += count;
    switch (cause) {
    case BRK_DROP_TOO_BIG: counters->too_big += count; break;
    case BRK_DROP_TOO_SHORT: counters->too_short += count; break;
    case BRK_DROP_GONE: counters->gone += count; break;
    case BRK_DROP_WRITE_ERROR: counters->write_errors += count; break;
    default: counters->full += count; break;
    }
}

static inline void brk_count_delivered(struct brk_counters *counters, uint64_t count, uint64_t bytes)
{
    counters->packets += count;
    counters->bytes += bytes;
}

/* A source's or sink's state as readers in other threads see it: written by
 * the engine thread (or at open), published under a sequence lock. */
struct brk_io_state_cell {
    uint32_t sequence;
    struct brk_io_state state;
};

/* Sets the state (status and a printf-style reason) and counts the change. */
void brk_io_set_state(struct brk_io_state_cell *cell, int status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
void brk_io_read_state(const struct brk_io_state_cell *cell, struct brk_io_state *out);

struct brk_sink_ops {
    /* An enum brk_send_result. */
    int (*send)(struct brk_sink *sink, const struct brk_packet *packet);
    /* Once per batch: hand what was queued to the kernel / the file. */
    void (*flush)(struct brk_sink *sink);
    void (*close)(struct brk_sink *sink);
};

struct brk_sink {
    const struct brk_sink_ops *ops;
    /* The counters of the output it serves (set when it is added to a
     * brick): where a sink counts what it queued once the kernel decides. */
    struct brk_counters *counters;
    struct brk_io_state_cell state;
};

struct brk_source_ops {
    /* Up to max packets into packets[]; 0 when nothing is ready now. */
    unsigned (*next_batch)(struct brk_source *source, struct brk_packet *packets, unsigned max);
    /* The packets of the last batch are no longer used. */
    void (*release)(struct brk_source *source);
    /* A file descriptor to poll for input, or -1 (always ready). */
    int (*poll_fd)(struct brk_source *source);
    /* Packets the kernel dropped since the last call. */
    uint64_t (*kernel_drops)(struct brk_source *source);
    /* Optional: poll() reported an error on poll_fd (the interface went
     * down or away): find out, and set the state. */
    void (*poll_error)(struct brk_source *source);
    /* Nonzero once no packet will ever come again (end of a file). */
    int (*exhausted)(struct brk_source *source);
    void (*close)(struct brk_source *source);
};

struct brk_source {
    const struct brk_source_ops *ops;
    struct brk_io_state_cell state;
    uint64_t malformed;      /* records it could not read (engine thread only) */
};

static inline void brk_output_push(struct brk_brick *brick, unsigned i,
                                   const struct brk_packet *packet)
{
    struct brk_output *out = &brick->output[i];
    if (out->child) {
        struct brk_brick *child = out->child;
        child->stats.received_packets++;
        child->stats.received_bytes += packet->wirelen;
        child->kind->push(child, packet);
    } else {
        int result = out->sink->ops->send(out->sink, packet);
        if (BRK_LIKELY(result == BRK_QUEUED))
            return;
        if (BRK_UNLIKELY(result != BRK_SENT)) {
            brk_count_drops(&out->counters, result, 1);
            return;
        }
    }
    brk_count_delivered(&out->counters, 1, packet->wirelen);
}

/* The two per-packet actions most kinds share: Click's Tee and a plain wire. */
static inline void brk_push_to_every_output(struct brk_brick *brick, const struct brk_packet *packet)
{
    struct brk_packet shared;
    if (BRK_UNLIKELY(packet->swappable_slot != NULL) && brick->outputs > 1) {
        /* One buffer cannot be handed to several rings: each output copies. */
        shared = *packet;
        shared.swappable_slot = NULL;
        packet = &shared;
    }
    for (unsigned i = 0; i < brick->outputs; i++)
        brk_output_push(brick, i, packet);
}

static inline void brk_push_to_first_output(struct brk_brick *brick, const struct brk_packet *packet)
{
    brk_output_push(brick, 0, packet);
}

/* Writes a one-line message into error (printf style). Returns NULL so that
 * constructors can `return brk_fail(...)`. */
void *brk_fail(char *error, size_t error_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#endif
