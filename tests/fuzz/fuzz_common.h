/* What the libFuzzer harnesses of tests/fuzz share: a reader over the fuzzer's
 * bytes, frames each in their own allocation (so AddressSanitizer sees a read
 * one byte past any frame), a check that aborts (a finding), and sinks that
 * count or record what reaches them. Each harness compiles the project's
 * C sources in directly (see tests/fuzz/run). */
#ifndef BRK_FUZZ_COMMON_H
#define BRK_FUZZ_COMMON_H

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_MAX_FRAMES 64

/* A finding: libFuzzer saves the input that made it. */
#define FUZZ_CHECK(condition)                                                       \
    do {                                                                            \
        if (!(condition)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #condition,        \
                    __FILE__, __LINE__);                                            \
            abort();                                                                \
        }                                                                           \
    } while (0)

struct fuzz_input {
    const uint8_t *data;
    size_t size;
};

/* The next byte, or 0 once the input is used up (so short inputs stay valid). */
static inline uint8_t fuzz_byte(struct fuzz_input *input)
{
    if (!input->size)
        return 0;
    input->size--;
    return *input->data++;
}

/* The frames of the rest of the input: each a 2-byte little-endian length and
 * that many bytes (the last one cut to what is left). */
struct fuzz_frames {
    unsigned count;
    uint8_t *data[FUZZ_MAX_FRAMES];
    uint32_t length[FUZZ_MAX_FRAMES];
};

static inline void fuzz_frames_take(struct fuzz_input *input, struct fuzz_frames *frames)
{
    frames->count = 0;
    while (input->size >= 2 && frames->count < FUZZ_MAX_FRAMES) {
        size_t length = input->data[0] | (size_t)input->data[1] << 8;
        input->data += 2;
        input->size -= 2;
        if (length > input->size)
            length = input->size;
        /* Exactly length bytes (malloc(0) may return NULL: keep one spare byte
         * out of reach by giving a zero-length frame a 1-byte block it never reads). */
        uint8_t *copy = malloc(length ? length : 1);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, input->data, length);
        frames->data[frames->count] = copy;
        frames->length[frames->count] = (uint32_t)length;
        frames->count++;
        input->data += length;
        input->size -= length;
    }
}

static inline void fuzz_frames_free(struct fuzz_frames *frames)
{
    for (unsigned i = 0; i < frames->count; i++)
        free(frames->data[i]);
    frames->count = 0;
}

static inline struct brk_packet fuzz_packet(const struct fuzz_frames *frames, unsigned i)
{
    struct brk_packet packet = { 0 };
    packet.data = frames->data[i];
    packet.caplen = frames->length[i];
    packet.wirelen = frames->length[i] + (frames->length[i] & 1);   /* sometimes longer than captured */
    packet.ts_nsec = 1700000000000000000ull + i;
    return packet;
}

/* A sink that keeps the data pointers of what it accepted, in order, and
 * refuses every refuse_every-th packet (0: never) like a full ring would. */
struct fuzz_sink {
    struct brk_sink base;
    unsigned refuse_every;
    uint64_t offered;
    uint64_t accepted;
    unsigned recorded;
    const uint8_t *record[FUZZ_MAX_FRAMES * 4];
};

static inline int fuzz_sink_send(struct brk_sink *base, const struct brk_packet *packet)
{
    struct fuzz_sink *sink = (struct fuzz_sink *)base;
    sink->offered++;
    if (sink->refuse_every && sink->offered % sink->refuse_every == 0)
        return -1;
    /* Touch every byte: a packet handed on must be readable in full. */
    volatile uint8_t sum = 0;
    for (uint32_t i = 0; i < packet->caplen; i++)
        sum ^= packet->data[i];
    (void)sum;
    if (sink->recorded < sizeof(sink->record) / sizeof(sink->record[0]))
        sink->record[sink->recorded++] = packet->data;
    sink->accepted++;
    return 0;
}

static inline void fuzz_sink_flush(struct brk_sink *base) { }
static inline void fuzz_sink_close(struct brk_sink *base) { free(base); }

static const struct brk_sink_ops fuzz_sink_ops = {
    .send = fuzz_sink_send,
    .flush = fuzz_sink_flush,
    .close = fuzz_sink_close,
};

static inline struct fuzz_sink *fuzz_sink_new(unsigned refuse_every)
{
    struct fuzz_sink *sink = calloc(1, sizeof(*sink));
    FUZZ_CHECK(sink != NULL);
    sink->base.ops = &fuzz_sink_ops;
    sink->refuse_every = refuse_every;
    return sink;
}

#endif
