/* libFuzzer harness: the flow hash (hash.c) and the output choice.
 *
 * Input: one option byte (split 2 or 4, depth 0-3), then one frame.
 * Checks, besides memory safety on any frame:
 *  - symmetry: the frame with every address pair and the ports swapped (both
 *    directions of a flow) hashes the same, with the same flags;
 *  - the output choice is hash % outputs, in range, for 1 to 64 outputs;
 *  - a non-fragment hashes the same with and without a fragment table;
 *  - a later fragment of a first fragment seen before gets the first one's
 *    hash, unless the table says it fell back to the address pair. */
#include "fuzz_common.h"

static struct brk_brick *bricks_by_outputs[BRK_MAX_OUTPUTS + 1];

/* LoadBalancers with 1 to 64 outputs: what brk_output_for_hash reads. */
static void make_bricks(void)
{
    const struct brk_brick_kind *kind = brk_brick_kind_find("LoadBalancer");
    struct brk_balance_config config = { .split = 2 };
    char error[256];
    FUZZ_CHECK(kind != NULL);
    for (unsigned outputs = 1; outputs <= BRK_MAX_OUTPUTS; outputs++) {
        struct brk_brick *brick = brk_brick_new(kind, &config, error, sizeof(error));
        FUZZ_CHECK(brick != NULL);
        for (unsigned i = 0; i < outputs; i++)
            FUZZ_CHECK(brk_brick_add_sink(brick, brk_sink_null_new()) == 0);
        bricks_by_outputs[outputs] = brick;
    }
}

static void swap_bytes(uint8_t *a, uint8_t *b, unsigned size)
{
    for (unsigned i = 0; i < size; i++) {
        uint8_t t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Where a walk through the headers found a first fragment (to make a later
 * fragment of the same datagram from it). */
struct first_fragment {
    uint8_t *field;      /* the 16-bit offset/flags field, NULL if none */
    int version;
};

/*
 * Swaps the endpoints of frame in place, written from SPEC §6 rather than
 * from hash.c: the Ethernet addresses, then the addresses of every IP header
 * (VLAN tags skipped, IPv6 extension headers walked, IP-in-IP and IPv6-in-IP
 * tunnels entered) and the TCP/UDP ports of the innermost one. Swapping bytes
 * the hash does not read is harmless, so the walk may go further than the
 * hash would (past a fragment, say), but never reads past caplen.
 */
static void swap_endpoints(uint8_t *frame, uint32_t caplen, struct first_fragment *fragment)
{
    fragment->field = NULL;
    if (caplen >= 12)
        swap_bytes(frame, frame + 6, 6);
    if (caplen < 14)
        return;
    uint32_t offset = 14;
    unsigned type = be16(frame + 12);
    for (unsigned tags = 0; type == 0x8100 || type == 0x88a8 || type == 0x9100; tags++) {
        if (tags == 4 || offset + 4 > caplen)
            return;
        type = be16(frame + offset + 2);
        offset += 4;
    }
    if (type != 0x0800 && type != 0x86dd)
        return;
    int version = type == 0x0800 ? 4 : 6;
    uint8_t *p = frame + offset;
    uint32_t length = caplen - offset;
    for (unsigned nesting = 0; nesting < 4; nesting++) {
        unsigned protocol;
        uint32_t header_size;
        if (version == 4) {
            if (length < 20)
                return;
            swap_bytes(p + 12, p + 16, 4);
            header_size = (p[0] & 15u) * 4;
            protocol = p[9];
            if (header_size < 20 || header_size > length)
                return;
            if (be16(p + 6) & 0x3fff) {
                if (be16(p + 6) & 0x1fff)
                    return;                  /* a later fragment: payload only */
                if (!fragment->field) {
                    fragment->field = p + 6;
                    fragment->version = 4;
                }
            }
        } else {
            if (length < 40)
                return;
            swap_bytes(p + 8, p + 24, 16);
            protocol = p[6];
            header_size = 40;
            for (unsigned extensions = 0;; extensions++) {
                int generic = protocol == 0 || protocol == 43 || protocol == 60 || protocol == 135
                              || protocol == 139 || protocol == 140;
                if (!generic && protocol != 51 && protocol != 44)
                    break;
                if (extensions == 8 || header_size + (protocol == 44 ? 8 : 2) > length)
                    return;
                const uint8_t *extension = p + header_size;
                if (protocol == 44) {
                    unsigned field = be16(extension + 2);
                    if (field & 0xfff8)
                        return;
                    if ((field & 1) && !fragment->field) {
                        fragment->field = (uint8_t *)extension + 2;
                        fragment->version = 6;
                    }
                }
                header_size += protocol == 44 ? 8 : protocol == 51 ? (extension[1] + 2u) * 4
                                                                   : (extension[1] + 1u) * 8;
                protocol = extension[0];
            }
            if (header_size > length)
                return;
        }
        p += header_size;
        length -= header_size;
        if (protocol == 6 || protocol == 17) {
            if (length >= 4)
                swap_bytes(p, p + 2, 2);
            return;
        }
        if (protocol != 4 && protocol != 41)
            return;
        version = protocol == 4 ? 4 : 6;
    }
}

static void check_output_choice(uint32_t hash)
{
    for (unsigned outputs = 1; outputs <= BRK_MAX_OUTPUTS; outputs++) {
        unsigned chosen = brk_output_for_hash(bricks_by_outputs[outputs], hash);
        FUZZ_CHECK(chosen < outputs);
        FUZZ_CHECK(chosen == hash % outputs);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!bricks_by_outputs[1])
        make_bricks();
    struct fuzz_input input = { data, size };
    uint8_t options = fuzz_byte(&input);
    int split = options & 1 ? 4 : 2;
    unsigned depth = (options >> 1) & 3;
    uint32_t caplen = (uint32_t)input.size;
    uint8_t *frame = malloc(caplen ? caplen : 1);
    FUZZ_CHECK(frame != NULL);
    memcpy(frame, input.data, caplen);

    uint32_t flags, swapped_flags;
    uint32_t hash = brk_flow_hash(frame, caplen, split, depth, NULL, &flags);
    check_output_choice(hash);

    struct first_fragment fragment;
    uint8_t *swapped = malloc(caplen ? caplen : 1);
    FUZZ_CHECK(swapped != NULL);
    memcpy(swapped, frame, caplen);
    swap_endpoints(swapped, caplen, &fragment);
    uint32_t swapped_hash = brk_flow_hash(swapped, caplen, split, depth, NULL, &swapped_flags);
    FUZZ_CHECK(swapped_flags == flags);
    FUZZ_CHECK(swapped_hash == hash);
    /* The walk found the field in the swapped copy; the frame has it at the same place. */
    uint8_t *fragment_field = fragment.field ? frame + (fragment.field - swapped) : NULL;
    free(swapped);

    brk_frag_table *frags = brk_frag_table_new(16);
    FUZZ_CHECK(frags != NULL);
    uint32_t table_flags;
    uint32_t table_hash = brk_flow_hash(frame, caplen, split, depth, frags, &table_flags);
    if (!(flags & BRK_HASH_FRAGMENT))
        FUZZ_CHECK(table_hash == hash && table_flags == flags);
    if (fragment_field) {
        /* The same datagram's fragment at offset 8 (IPv4: 1 unit of 8 bytes,
         * IPv6: the offset field's low bit is bit 3). */
        if (fragment.version == 4)
            fragment_field[1] |= 1;
        else
            fragment_field[1] |= 8;
        uint32_t later_flags;
        uint32_t later_hash = brk_flow_hash(frame, caplen, split, depth, frags, &later_flags);
        FUZZ_CHECK(later_hash == table_hash || (later_flags & BRK_HASH_FRAG_FALLBACK));
        check_output_choice(later_hash);
    }
    brk_frag_table_free(frags);
    free(frame);
    return 0;
}
