/* In-memory back-end: a source replaying frames from memory and a sink that
 * counts and discards, so the core can be measured and tested without a kernel. */
#include "internal.h"

#include <stdlib.h>

struct memory_source {
    struct brk_source base;
    uint8_t *frames;
    uint32_t *lengths;
    uint32_t *offsets;
    unsigned count;
    unsigned next;          /* index of the next frame in this round */
    uint64_t rounds_left;
};

static unsigned memory_next_batch(struct brk_source *base, struct brk_packet *packets, unsigned max)
{
    struct memory_source *source = (struct memory_source *)base;
    unsigned n = 0;
    while (n < max && source->rounds_left) {
        unsigned i = source->next;
        packets[n].data = source->frames + source->offsets[i];
        packets[n].caplen = packets[n].wirelen = source->lengths[i];
        packets[n].ts_nsec = 0;
        n++;
        if (++source->next == source->count) {
            source->next = 0;
            source->rounds_left--;
        }
    }
    return n;
}

static void memory_release(struct brk_source *base) { }
static int memory_poll_fd(struct brk_source *base) { return -1; }
static uint64_t memory_kernel_drops(struct brk_source *base) { return 0; }

static int memory_exhausted(struct brk_source *base)
{
    return ((struct memory_source *)base)->rounds_left == 0;
}

static void memory_close(struct brk_source *base)
{
    struct memory_source *source = (struct memory_source *)base;
    free(source->frames);
    free(source->lengths);
    free(source->offsets);
    free(source);
}

static const struct brk_source_ops memory_source_ops = {
    .next_batch = memory_next_batch,
    .release = memory_release,
    .poll_fd = memory_poll_fd,
    .kernel_drops = memory_kernel_drops,
    .exhausted = memory_exhausted,
    .close = memory_close,
};

brk_source *brk_source_memory_new(const uint8_t *frames, const uint32_t *lengths,
                                  unsigned count, uint64_t rounds)
{
    struct memory_source *source = calloc(1, sizeof(*source));
    size_t total = 0;
    if (!source || !count)
        goto fail;
    source->base.ops = &memory_source_ops;
    source->lengths = malloc(count * sizeof(uint32_t));
    source->offsets = malloc(count * sizeof(uint32_t));
    if (!source->lengths || !source->offsets)
        goto fail;
    for (unsigned i = 0; i < count; i++) {
        source->offsets[i] = (uint32_t)total;
        source->lengths[i] = lengths[i];
        total += lengths[i];
    }
    /* Private copy: Python's buffer may move or die while the engine runs. */
    if (!(source->frames = malloc(total ? total : 1)))
        goto fail;
    memcpy(source->frames, frames, total);
    source->count = count;
    source->rounds_left = rounds;
    return &source->base;
fail:
    if (source)
        memory_close(&source->base);
    return NULL;
}

void brk_source_close(brk_source *source)
{
    if (source)
        source->ops->close(source);
}

static int null_send(struct brk_sink *sink, const struct brk_packet *packet) { return 0; }
static void null_flush(struct brk_sink *sink) { }
static void null_close(struct brk_sink *sink) { free(sink); }

static const struct brk_sink_ops null_sink_ops = {
    .send = null_send,
    .flush = null_flush,
    .close = null_close,
};

brk_sink *brk_sink_null_new(void)
{
    struct brk_sink *sink = calloc(1, sizeof(*sink));
    if (sink)
        sink->ops = &null_sink_ops;
    return sink;
}

void brk_sink_close(brk_sink *sink)
{
    if (sink)
        sink->ops->close(sink);
}
