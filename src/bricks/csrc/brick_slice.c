/* Slice: cuts every frame to at most N bytes, or to the end of its L4 header
 * plus N bytes of payload. The wire length stays (a pcap written after it
 * records it as orig_len); the IP length fields stay as on the wire unless
 * fix_lengths asks to make them, and the IPv4 header checksum, say the cut
 * size (then the frame is rewritten in the brick's own buffer).
 *
 * A cut frame goes on through brk_packet_moved(): its RX buffer can no longer
 * be swapped whole into a netmap ring (the zero-copy rule, internal.h). */
#include "internal.h"
#include "dissect.h"
#include "api/slice.h"

#include <stdlib.h>

#define SLICE_BUFFER_BYTES 65536   /* the longest frame whose lengths can be fixed */

static const char *const slice_counters[] = { "sliced", "lengths_fixed", NULL };

struct slice_state {
    uint64_t *counters;     /* the brick's stats.counters: enum brk_slice_counter */
    uint8_t *buffer;        /* fix_lengths: the rewritten frame, valid until the push returns */
};

/* The outer IP header's offset and version (0 when the frame is not IP). */
static uint32_t ip_offset(const uint8_t *data, uint32_t caplen, unsigned *version)
{
    struct brk_flow_keys link;
    link.vlan_count = 0;
    uint32_t offset = brk_dissect_ethernet(data, data + caplen, &link);
    *version = 0;
    if (offset == 0 || offset >= caplen)
        return 0;
    if (link.ethertype == BRK_ETHERTYPE_IPV4 && offset + 20 <= caplen && (data[offset] >> 4) == 4)
        *version = 4;
    else if (link.ethertype == BRK_ETHERTYPE_IPV6 && offset + 40 <= caplen && (data[offset] >> 4) == 6)
        *version = 6;
    return offset;
}

/* Where the headers end (any frame): past the L4 header of TCP, UDP, SCTP and ICMP, past
 * the IP headers for other protocols and later fragments, past the link
 * header for frames that are not IP; never past the frame. */
static __attribute__((noinline)) uint32_t any_headers_end(const uint8_t *data, uint32_t caplen)
{
    struct brk_flow_endpoints endpoints;
    struct brk_ip_header header;
    const uint8_t *end = data + caplen;
    unsigned version;
    uint32_t offset = ip_offset(data, caplen, &version), l4;
    if (version == 0)
        return offset;
    if (version == 4 ? !brk_dissect_ipv4(data, end, offset, &endpoints, &header)
                     : !brk_dissect_ipv6(data, end, offset, &endpoints, &header))
        return offset;
    if (header.cut || header.payload_offset >= caplen)
        return caplen;
    l4 = header.payload_offset;
    if (header.fragment == BRK_LATER_FRAGMENT)
        return l4;
    switch (header.protocol) {
    case BRK_PROTO_TCP:
        if (l4 + 13 > caplen)
            return caplen;
        l4 += (uint32_t)(data[l4 + 12] >> 4) * 4;
        break;
    case BRK_PROTO_UDP:
    case 1:     /* ICMP */
    case 58:    /* ICMPv6 */
        l4 += 8;
        break;
    case 132:   /* SCTP: its common header */
        l4 += 12;
        break;
    default:
        break;
    }
    return l4 < caplen ? l4 : caplen;
}

static inline uint32_t headers_end(const uint8_t *data, uint32_t caplen)
{
    /* The common case inline: untagged IPv4 without options, not a later fragment, TCP or UDP. */
    if (BRK_LIKELY(caplen >= 14 + 20 + 20) && data[12] == 0x08 && data[13] == 0x00 && data[14] == 0x45
            && (brk_load_be16(data + 20) & 0x1fff) == 0) {
        if (data[23] == BRK_PROTO_TCP) {
            uint32_t end = 14 + 20 + (uint32_t)(data[14 + 20 + 12] >> 4) * 4;
            return end < caplen ? end : caplen;
        }
        if (data[23] == BRK_PROTO_UDP)
            return 14 + 20 + 8;
    }
    return any_headers_end(data, caplen);
}

static uint16_t ipv4_checksum(const uint8_t *header, uint32_t length)
{
    uint32_t sum = 0;
    for (uint32_t i = 0; i + 1 < length; i += 2)
        sum += (uint32_t)header[i] << 8 | header[i + 1];
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static inline void store_be16(uint8_t *bytes, uint32_t value)
{
    bytes[0] = (uint8_t)(value >> 8);
    bytes[1] = (uint8_t)value;
}

/* Copies the cut frame into the buffer with the outer IP header's length
 * (and IPv4 checksum) saying its new size. 0 when the cut left the IP
 * datagram whole, or the frame is too long to rewrite. */
static int fix_lengths(struct slice_state *state, const struct brk_packet *packet, uint32_t keep)
{
    unsigned version;
    uint32_t offset = ip_offset(packet->data, keep, &version);
    if (version == 0 || keep > SLICE_BUFFER_BYTES)
        return 0;
    const uint8_t *ip = packet->data + offset;
    uint32_t header_length = version == 4 ? (uint32_t)(ip[0] & 15u) * 4 : 40;
    uint32_t wire_length = version == 4 ? brk_load_be16(ip + 2) : 40u + brk_load_be16(ip + 4);
    uint32_t cut_length = keep - offset;
    if (cut_length >= wire_length || header_length < 20 || offset + header_length > keep)
        return 0;
    memcpy(state->buffer, packet->data, keep);
    uint8_t *fixed = state->buffer + offset;
    if (version == 4) {
        store_be16(fixed + 2, cut_length);
        fixed[10] = fixed[11] = 0;
        store_be16(fixed + 10, ipv4_checksum(fixed, header_length));
    } else {
        store_be16(fixed + 4, cut_length - 40);
    }
    return 1;
}

static inline void slice_one(struct brk_brick *brick, const struct brk_slice_config *config,
                             struct slice_state *state, const struct brk_packet *packet)
{
    uint64_t keep = config->length;
    if (config->after_headers)
        keep += headers_end(packet->data, packet->caplen);
    if (keep >= packet->caplen) {
        brk_output_push(brick, 0, packet);
        return;
    }
    state->counters[BRK_SLICE_SLICED]++;
    struct brk_packet cut = brk_packet_moved(packet, 0, (uint32_t)keep);
    if (config->fix_lengths && fix_lengths(state, packet, cut.caplen)) {
        state->counters[BRK_SLICE_LENGTHS_FIXED]++;
        cut.data = state->buffer;
    }
    brk_output_push(brick, 0, &cut);
}

static void slice_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    slice_one(brick, brick->config, brick->state, packet);
}

/* A source's batch in one call: no indirect call per packet into the brick. */
static void slice_push_batch(struct brk_brick *brick, const struct brk_packet *packets, unsigned count)
{
    const struct brk_slice_config *config = brick->config;
    struct slice_state *state = brick->state;
    for (unsigned i = 0; i < count; i++)
        slice_one(brick, config, state, &packets[i]);
}

static int slice_init(struct brk_brick *brick, char *error, size_t error_size)
{
    const struct brk_slice_config *config = brick->config;
    struct slice_state *state = brick->state;
    state->counters = brick->stats.counters;
    if (config == NULL) {
        brk_fail(error, error_size, "Slice needs a length");
        return -1;
    }
    if (config->fix_lengths && !(state->buffer = malloc(SLICE_BUFFER_BYTES))) {
        brk_fail(error, error_size, "Slice: out of memory");
        return -1;
    }
    return 0;
}

static void slice_fini(struct brk_brick *brick)
{
    free(((struct slice_state *)brick->state)->buffer);
}

const struct brk_brick_kind brk_brick_slice = {
    .name = "Slice",
    .min_outputs = 1,
    .max_outputs = 1,
    .config_size = sizeof(struct brk_slice_config),
    .config_type = "struct brk_slice_config",
    .counters = slice_counters,
    .state_size = sizeof(struct slice_state),
    .init = slice_init,
    .push = slice_push,
    .push_batch = slice_push_batch,
    .fini = slice_fini,
};
