/* libFuzzer harness: every brick kind's per-packet function, driven by the
 * engine's loop (engine.c) from a source of fuzzed frames.
 *
 * Input: a topology byte, a parameter byte, a batch-size byte, then frames
 * (fuzz_common.h). Topologies: Dummy, Merge, Duplicator, LoadBalancer (split
 * 2 or 4, with or without a fragment table), a LoadBalancer feeding
 * LoadBalancers one level deeper, PcapReader's balancing, a Filter without
 * rules, PcapWriter to a pcap file sink (/dev/null) and a counting sink, a
 * Duplicator feeding one of each, Dedup (a small table, a short window on a
 * clock or capture times, any fields ignored) and Slice (any length, after
 * the headers or not, lengths fixed or not) feeding a pcap file sink. Outputs are sinks that refuse every n-th
 * packet like a full ring. The source hands out each frame in its own
 * allocation, so that a read past a frame's end is seen.
 * Checks, besides memory safety: the engine ends when the source does, it
 * counts every frame once, and every brick accounts for every packet it
 * received: delivered + dropped at its outputs + filtered + deduplicated = received, with
 * each sink's own count equal to what the brick says it delivered there. */
#include "fuzz_common.h"
#include "api/dedup.h"
#include "api/slice.h"

#define FUZZ_MAX_BRICKS 16

/* The fuzzed frames as an engine source: one batch of up to max at a time. */
struct frames_source {
    struct brk_source base;
    const struct fuzz_frames *frames;
    unsigned next;
};

static unsigned frames_next_batch(struct brk_source *base, struct brk_packet *packets, unsigned max)
{
    struct frames_source *source = (struct frames_source *)base;
    unsigned n = 0;
    while (n < max && source->next < source->frames->count) {
        packets[n] = fuzz_packet(source->frames, source->next);
        source->next++;
        n++;
    }
    return n;
}

static void frames_release(struct brk_source *base) { }
static int frames_poll_fd(struct brk_source *base) { return -1; }
static uint64_t frames_kernel_drops(struct brk_source *base) { return 0; }

static int frames_exhausted(struct brk_source *base)
{
    struct frames_source *source = (struct frames_source *)base;
    return source->next == source->frames->count;
}

static void frames_close(struct brk_source *base) { }

static const struct brk_source_ops frames_source_ops = {
    .next_batch = frames_next_batch,
    .release = frames_release,
    .poll_fd = frames_poll_fd,
    .kernel_drops = frames_kernel_drops,
    .exhausted = frames_exhausted,
    .close = frames_close,
};

/* Everything one input builds, to check and free at the end. */
struct topology {
    unsigned brick_count;
    struct brk_brick *bricks[FUZZ_MAX_BRICKS];
    unsigned sink_count;
    struct brk_sink *sinks[FUZZ_MAX_BRICKS * 4];
    struct fuzz_sink *counting[FUZZ_MAX_BRICKS * 4];   /* NULL for the pcap file sink */
    unsigned refuse_every;
};

static struct brk_brick *add_configured(struct topology *topology, const char *kind_name, const void *config)
{
    const struct brk_brick_kind *kind = brk_brick_kind_find(kind_name);
    char error[256];
    FUZZ_CHECK(kind != NULL && topology->brick_count < FUZZ_MAX_BRICKS);
    struct brk_brick *brick = brk_brick_new(kind, config, error, sizeof(error));
    FUZZ_CHECK(brick != NULL);
    topology->bricks[topology->brick_count++] = brick;
    return brick;
}

static struct brk_brick *add_brick(struct topology *topology, const char *kind_name,
                                   int split, unsigned depth, unsigned frag_slots)
{
    /* The balancing kinds' config; the others take none and ignore it. */
    struct brk_balance_config config = { .split = split, .depth = depth, .frag_slots = frag_slots };
    return add_configured(topology, kind_name, &config);
}

static void add_counting_sinks(struct topology *topology, struct brk_brick *brick, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        struct fuzz_sink *sink = fuzz_sink_new(topology->refuse_every);
        topology->counting[topology->sink_count] = sink;
        topology->sinks[topology->sink_count++] = &sink->base;
        FUZZ_CHECK(brk_brick_add_sink(brick, &sink->base) == 0);
    }
}

static void add_pcap_sink(struct topology *topology, struct brk_brick *brick, unsigned snaplen)
{
    char error[256];
    struct brk_sink *sink = brk_sink_pcap_open("/dev/null", snaplen, error, sizeof(error));
    FUZZ_CHECK(sink != NULL);
    topology->counting[topology->sink_count] = NULL;
    topology->sinks[topology->sink_count++] = sink;
    FUZZ_CHECK(brk_brick_add_sink(brick, sink) == 0);
}

/* The brick the source feeds; parameter picks output counts and options. */
static struct brk_brick *build(struct topology *topology, unsigned shape, uint8_t parameter)
{
    unsigned outputs = 1 + (parameter & 7);
    int split = parameter & 8 ? 4 : 2;
    unsigned frag_slots = parameter & 16 ? 64 : 0;
    struct brk_brick *root;
    switch (shape) {
    case 0:
        root = add_brick(topology, "Dummy", 0, 0, 0);
        add_counting_sinks(topology, root, 1);
        break;
    case 1:
        root = add_brick(topology, "Merge", 0, 0, 0);
        add_counting_sinks(topology, root, 1);
        break;
    case 2:
        root = add_brick(topology, "Duplicator", 0, 0, 0);
        add_counting_sinks(topology, root, outputs);
        break;
    case 3:
        root = add_brick(topology, "LoadBalancer", split, 0, frag_slots);
        add_counting_sinks(topology, root, outputs);
        break;
    case 4:
        root = add_brick(topology, "LoadBalancer", split, 0, frag_slots);
        for (unsigned i = 0; i < 1 + (outputs & 3); i++) {
            struct brk_brick *child = add_brick(topology, "LoadBalancer", split, 1, frag_slots);
            FUZZ_CHECK(brk_brick_add_child(root, child) == 0);
            add_counting_sinks(topology, child, 1 + (parameter >> 5));
        }
        break;
    case 5:
        root = add_brick(topology, "PcapReader", split, 0, frag_slots);
        add_counting_sinks(topology, root, outputs);
        break;
    case 6:
        root = add_brick(topology, "Filter", 0, 0, 0);
        add_counting_sinks(topology, root, 1 + (parameter & 1));
        break;
    case 7:
        root = add_brick(topology, "PcapWriter", 0, 0, 0);
        add_pcap_sink(topology, root, parameter & 32 ? 64 : 0);   /* a short snaplen cuts packets */
        add_counting_sinks(topology, root, 1);
        break;
    case 9: {
        /* A table of 1..8 frames and a byte store of 128..4,096 bytes: full all the time. */
        struct brk_dedup_config config = { .window_ns = 1000u * (parameter & 3), .table_size = 1 + (parameter & 7),
                                           .ignore = parameter >> 3, .store_bytes = 128u << (parameter >> 5) };
        root = add_configured(topology, "Dedup", &config);
        if (parameter & 4)
            brk_dedup_set_clock(root, 1 + parameter);
        add_counting_sinks(topology, root, 1);
        break;
    }
    case 10: {
        struct brk_slice_config config = { .length = parameter >> 2, .after_headers = parameter & 1,
                                           .fix_lengths = (parameter >> 1) & 1 };
        root = add_configured(topology, "Slice", &config);
        add_pcap_sink(topology, root, 0);
        break;
    }
    default: {
        static const char *const kinds[] = { "Dummy", "Merge", "LoadBalancer", "Filter", "PcapWriter" };
        root = add_brick(topology, "Duplicator", 0, 0, 0);
        for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            struct brk_brick *child = add_brick(topology, kinds[i], split, 1, frag_slots);
            FUZZ_CHECK(brk_brick_add_child(root, child) == 0);
            add_counting_sinks(topology, child, 1);
        }
        break;
    }
    }
    return root;
}

/* received = delivered + dropped + filtered for every brick, and each sink
 * took exactly what its brick counts as delivered there. */
static void check_accounting(const struct topology *topology)
{
    for (unsigned b = 0; b < topology->brick_count; b++) {
        const struct brk_brick *brick = topology->bricks[b];
        struct brk_brick_stats stats;
        brk_brick_stats(brick, &stats);
        uint64_t delivered = 0, dropped = 0;
        for (unsigned i = 0; i < brick->outputs; i++) {
            struct brk_counters counters;
            FUZZ_CHECK(brk_brick_output_stats(brick, i, &counters) == 0);
            delivered += counters.packets;
            dropped += counters.drops;
            if (brick->output[i].child) {
                struct brk_brick_stats child;
                brk_brick_stats(brick->output[i].child, &child);
                FUZZ_CHECK(child.received_packets == counters.packets);
            }
            for (unsigned s = 0; s < topology->sink_count; s++) {
                if (topology->sinks[s] == brick->output[i].sink && topology->counting[s]) {
                    FUZZ_CHECK(topology->counting[s]->accepted == counters.packets);
                    FUZZ_CHECK(topology->counting[s]->offered == counters.packets + counters.drops);
                }
            }
        }
        /* These two give every packet to every output. */
        int fans_out = strcmp(brick->kind->name, "Duplicator") == 0 || strcmp(brick->kind->name, "PcapWriter") == 0;
        uint64_t filtered = strcmp(brick->kind->name, "Filter") == 0 ? stats.counters[BRK_FILTER_FILTERED]
                          : strcmp(brick->kind->name, "Dedup") == 0 ? stats.counters[BRK_DEDUP_DEDUPLICATED] : 0;
        if (strcmp(brick->kind->name, "Dedup") == 0)
            FUZZ_CHECK(stats.counters[BRK_DEDUP_UNIQUE] == delivered + dropped);
        uint64_t handled = delivered + dropped + filtered;
        if (fans_out)
            FUZZ_CHECK(handled == stats.received_packets * brick->outputs);
        else
            FUZZ_CHECK(handled == stats.received_packets);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input input = { data, size };
    uint8_t shape = fuzz_byte(&input);
    uint8_t parameter = fuzz_byte(&input);
    uint8_t batch_byte = fuzz_byte(&input);
    struct fuzz_frames frames;
    fuzz_frames_take(&input, &frames);

    struct topology topology = { .refuse_every = shape >> 4 };
    struct brk_brick *root = build(&topology, (shape & 15) % 11, parameter);
    struct frames_source source = { .base.ops = &frames_source_ops, .frames = &frames };
    brk_engine *engine = brk_engine_new(1 + batch_byte % 64, -1);
    FUZZ_CHECK(engine != NULL);
    FUZZ_CHECK(brk_engine_add_source(engine, &source.base, root) == 0);
    brk_engine_rearm(engine);
    FUZZ_CHECK(brk_engine_run(engine) == 0);

    struct brk_engine_stats stats;
    brk_engine_stats(engine, &stats);
    FUZZ_CHECK(stats.finished && !stats.running);
    FUZZ_CHECK(stats.received_packets == frames.count);
    struct brk_brick_stats root_stats;
    brk_brick_stats(root, &root_stats);
    FUZZ_CHECK(root_stats.received_packets == frames.count);
    check_accounting(&topology);
    uint64_t dropped = 0;
    for (unsigned b = 0; b < topology.brick_count; b++)
        for (unsigned i = 0; i < topology.bricks[b]->outputs; i++)
            dropped += topology.bricks[b]->output[i].counters.drops;
    FUZZ_CHECK(stats.output_drops == dropped);

    brk_engine_free(engine);
    for (unsigned b = 0; b < topology.brick_count; b++)
        brk_brick_free(topology.bricks[b]);
    for (unsigned s = 0; s < topology.sink_count; s++)
        brk_sink_close(topology.sinks[s]);
    fuzz_frames_free(&frames);
    return 0;
}
