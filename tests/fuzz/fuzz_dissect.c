/* libFuzzer harness: the one dissector (dissect.h), its default walk and its
 * tunnel walk.
 *
 * Input: one option byte (bit 0: BRK_DISSECT_PARSE_FIRST_FRAGMENT, bits 1-3:
 * the tunnel walk's max_tunnels), then frames (fuzz_common.h).
 * Checks, besides memory safety on any frame (each in an allocation of its
 * exact size):
 *  - the default key hashes to what hash.c's brk_flow_hash computes without a
 *    fragment table, with the same flags, for split 2 and 4 at depths 0-3 (the
 *    XDP program and the C engine choose the same output);
 *  - the tunnel walk holds that default key unchanged, and
 *    BRK_DISSECT_TUNNELS_ONLY changes nothing else;
 *  - its layers are in order within the frame, only the last may be the
 *    payload, at most max_tunnels encapsulations were entered, and the flows'
 *    addresses are zero past their size. */
#include "fuzz_common.h"
#include "flow_hash.h"

static void check_default_key(const uint8_t *frame, uint32_t length)
{
    struct brk_flow_keys keys;
    brk_dissect_frame(frame, length, 0, &keys);
    for (int split = 2; split <= 4; split += 2)
        for (unsigned depth = 0; depth < 4; depth++) {
            uint32_t flags = 0;
            uint32_t expected = brk_flow_hash(frame, length, split, depth, NULL, &flags);
            FUZZ_CHECK(brk_dissect_flow_hash(&keys, split, depth) == expected);
            FUZZ_CHECK((split == 4 ? keys.flow_result : keys.address_result) == flags);
        }
}

static void check_flow(const struct brk_flow_endpoints *flow)
{
    FUZZ_CHECK(flow->address_size == 0 || flow->address_size == 4 || flow->address_size == 6
               || flow->address_size == 16);
    for (unsigned i = flow->address_size; i < 16; i++)
        FUZZ_CHECK(flow->source[i] == 0 && flow->destination[i] == 0);
}

static void check_tunnel_walk(const uint8_t *frame, uint32_t length, unsigned options, unsigned max_tunnels)
{
    struct brk_tunnel_keys walk, alone;
    struct brk_flow_keys keys;
    brk_dissect_tunnels_frame(frame, length, options, max_tunnels, &walk);
    brk_dissect_frame(frame, length, options, &keys);
    FUZZ_CHECK(memcmp(&walk.keys, &keys, sizeof(keys)) == 0);

    FUZZ_CHECK(walk.layer_count <= 32 && walk.tunnels <= max_tunnels);
    FUZZ_CHECK(walk.stop >= BRK_DISSECT_STOP_END && walk.stop <= BRK_DISSECT_STOP_MALFORMED);
    for (unsigned i = 0; i < walk.layer_count; i++) {
        const struct brk_dissect_layer *layer = &walk.layers[i];
        FUZZ_CHECK(layer->kind >= BRK_LAYER_ETHERNET && layer->kind <= BRK_LAYER_PAYLOAD);
        FUZZ_CHECK(layer->offset <= length);
        FUZZ_CHECK(layer->kind != BRK_LAYER_PAYLOAD || i + 1 == walk.layer_count);
        FUZZ_CHECK(i == 0 || walk.layers[i - 1].offset <= layer->offset);
    }
    FUZZ_CHECK(walk.layer_count == 0 || walk.layers[0].kind == BRK_LAYER_ETHERNET);
    check_flow(&walk.inner);
    check_flow(&walk.outer);

    memset(&alone, 0xa5, sizeof(alone));
    brk_dissect_tunnels_frame(frame, length, options | BRK_DISSECT_TUNNELS_ONLY, max_tunnels, &alone);
    FUZZ_CHECK(alone.layer_count == walk.layer_count && alone.stop == walk.stop
               && alone.tunnels == walk.tunnels && alone.inner_result == walk.inner_result);
    FUZZ_CHECK(memcmp(alone.layers, walk.layers, sizeof(walk.layers[0]) * walk.layer_count) == 0);
    FUZZ_CHECK(memcmp(&alone.inner, &walk.inner, sizeof(walk.inner)) == 0);
    FUZZ_CHECK(memcmp(&alone.outer, &walk.outer, sizeof(walk.outer)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input input = { data, size };
    uint8_t option = fuzz_byte(&input);
    unsigned options = option & BRK_DISSECT_PARSE_FIRST_FRAGMENT;
    unsigned max_tunnels = (option >> 1) & 7;
    struct fuzz_frames frames;
    fuzz_frames_take(&input, &frames);
    for (unsigned i = 0; i < frames.count; i++) {
        check_default_key(frames.data[i], frames.length[i]);
        check_tunnel_walk(frames.data[i], frames.length[i], options, max_tunnels);
    }
    fuzz_frames_free(&frames);
    return 0;
}
