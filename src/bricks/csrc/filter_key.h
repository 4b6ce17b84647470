/* The Filter's view of a frame: its outer 5-tuple as a key of words, read
 * through the one dissector's layer functions (dissect.h). The same source
 * serves the Filter brick (brick_filter.c) and the XDP program
 * (xdp/bricks.bpf.c), so both match a frame against the same key. */
#ifndef BRK_FILTER_KEY_H
#define BRK_FILTER_KEY_H

#include "dissect.h"

#define FILTER_KEY_WORDS 10       /* IPv6: src(4) dst(4) ports(1) protocol(1) */
#define FILTER_IPV4_KEY_WORDS 4   /* IPv4: src dst ports protocol */

enum { FILTER_IPV4 = 0, FILTER_IPV6 = 1, FILTER_FAMILIES = 2 };

/* A packet's (or a rule's) 5-tuple as words: addresses in host order so that
 * a prefix mask keeps the high bits; ports = sport << 16 | dport. */
struct filter_key {
    uint32_t word[FILTER_KEY_WORDS];
};

BRK_DISSECT_FUNCTION uint32_t filter_load_be32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 | bytes[3];
}

BRK_DISSECT_FUNCTION int filter_has_ports(unsigned protocol)
{
    /* TCP, UDP, SCTP and UDP-Lite: bits of one word, one test. */
    return protocol < 64 ? (0x20040ull >> protocol) & 1 : protocol == 132 || protocol == 136;
}

/* The port word of the upper layer of header (0 for later fragments, for
 * protocols without ports and when the frame ends before them). */
BRK_DISSECT_FUNCTION uint32_t filter_ports_word(const uint8_t *data, const uint8_t *end,
                                                const struct brk_ip_header *header)
{
    if (header->fragment == BRK_LATER_FRAGMENT || !filter_has_ports(header->protocol)
            || header->payload_offset > BRK_DISSECT_MAX_OFFSET)
        return 0;
    const uint8_t *ports = brk_at(data, header->payload_offset);
    return ports + 4 <= end ? filter_load_be32(ports) : 0;
}

/* The offset of the layer after the Ethernet header and its VLAN/QinQ tags
 * (link->ethertype says which), or 0 when the frame ends before it. link is
 * scratch for the tags (the caller's, so a BPF caller decides where it lives). */
BRK_DISSECT_FUNCTION uint32_t filter_link_offset(const uint8_t *data, const uint8_t *end,
                                                 struct brk_flow_keys *link)
{
    link->vlan_count = 0;
    uint32_t offset = brk_dissect_ethernet(data, end, link);
    if (offset == 0 || offset > BRK_DISSECT_MAX_OFFSET || brk_at(data, offset) + 1 > end)
        return 0;
    return offset;
}

/* The key of the IP header of version (4 or 6) at offset, past an IPv6
 * header's extension headers: FILTER_IPV4 or FILTER_IPV6, or -1 when the
 * version nibble disagrees or the header is cut (not IP to the Filter). */
BRK_DISSECT_FUNCTION int filter_ip_key(const uint8_t *data, const uint8_t *end, uint32_t offset, unsigned version,
                                       struct filter_key *key)
{
    struct brk_flow_endpoints endpoints;
    struct brk_ip_header header;
    const uint8_t *ip = brk_at(data, offset);
    if (ip + 1 > end || (unsigned)(ip[0] >> 4) != version)
        return -1;
    if (version == 4 ? (ip[0] & 15u) < 5 || !brk_dissect_ipv4(data, end, offset, &endpoints, &header)
                     : !brk_dissect_ipv6(data, end, offset, &endpoints, &header) || header.cut)
        return -1;
    unsigned address_words = version == 4 ? 1 : 4;
    for (unsigned w = 0; w < 4 && w < address_words; w++) {
        key->word[w] = filter_load_be32(endpoints.source + 4 * w);
        key->word[address_words + w] = filter_load_be32(endpoints.destination + 4 * w);
    }
    key->word[2 * address_words] = filter_ports_word(data, end, &header);
    key->word[2 * address_words + 1] = header.protocol;
    return version == 4 ? FILTER_IPV4 : FILTER_IPV6;
}

/* The frame's key in FILTER_IPV4 or FILTER_IPV6 layout (the family is
 * returned), or -1 for what is not IP or too short to say. The XDP program
 * calls the two steps apart, each verified on its own. */
BRK_DISSECT_FUNCTION int filter_frame_key(const uint8_t *data, const uint8_t *end, struct brk_flow_keys *link,
                                          struct filter_key *key)
{
    uint32_t offset = filter_link_offset(data, end, link);
    if (offset == 0)
        return -1;
    if (link->ethertype != BRK_ETHERTYPE_IPV4 && link->ethertype != BRK_ETHERTYPE_IPV6)
        return -1;
    return filter_ip_key(data, end, offset, link->ethertype == BRK_ETHERTYPE_IPV4 ? 4 : 6, key);
}

#endif
