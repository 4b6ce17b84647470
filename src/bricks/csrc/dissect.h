/* The one dissector, in the style of the kernel's flow_dissector: one bounded
 * walk over the layers (Ethernet and up to 4 VLAN/QinQ tags, IPv4/IPv6 with
 * extension headers, fragments, IP-in-IP and IPv6 tunnels, TCP/UDP ports)
 * filling a key once, one small function per layer.
 *
 * The same source compiles for the host and for BPF (clang -target bpf):
 * every read is preceded by a check written as pointer-plus-end that the
 * verifier can see, every loop has a constant bound, and offsets from the
 * frame stay below BRK_DISSECT_MAX_OFFSET (32 KiB) so that packet pointers
 * stay within the verifier's 64 KiB. It parses exactly what hash.c parses (the
 * unit test test_dissect.py compares both on the hash vectors); a frame
 * longer than BRK_DISSECT_MAX_OFFSET whose headers reach past it is treated
 * as cut there. */
#ifndef BRK_DISSECT_H
#define BRK_DISSECT_H

#ifdef __bpf__
#include <linux/types.h>
typedef __u8 uint8_t;
typedef __u16 uint16_t;
typedef __u32 uint32_t;
typedef __u64 uint64_t;
typedef __s32 int32_t;
typedef unsigned long size_t;
/* The verifier sees one program: every helper is inlined into it. */
#define BRK_DISSECT_FUNCTION static inline __attribute__((always_inline))
#else
#include <stdint.h>
#define BRK_DISSECT_FUNCTION static inline
#endif

#include "api/dissect.h"

#define BRK_ETHERTYPE_IPV4 0x0800
#define BRK_ETHERTYPE_IPV6 0x86dd
#define BRK_ETHERTYPE_VLAN 0x8100
#define BRK_ETHERTYPE_QINQ 0x88a8
#define BRK_ETHERTYPE_QINQ_LEGACY 0x9100

#define BRK_DISSECT_MAX_VLAN_TAGS 4
#define BRK_DISSECT_MAX_IP_HEADERS 4          /* the outer header plus nested tunnels */
#define BRK_DISSECT_MAX_IPV6_EXTENSIONS 8
/* Headers start below 32 KiB: a mask the verifier sees keeps packet offsets
 * within its 0xffff (a frame whose headers reach past it counts as cut). */
#define BRK_DISSECT_MAX_OFFSET 0x7fffu

#define BRK_PROTO_HOP_BY_HOP 0
#define BRK_PROTO_IPIP 4
#define BRK_PROTO_TCP 6
#define BRK_PROTO_UDP 17
#define BRK_PROTO_IPV6 41
#define BRK_PROTO_ROUTING 43
#define BRK_PROTO_FRAGMENT 44
#define BRK_PROTO_AH 51
#define BRK_PROTO_DESTINATION_OPTIONS 60
#define BRK_PROTO_MOBILITY 135
#define BRK_PROTO_HIP 139
#define BRK_PROTO_SHIM6 140

/* The original's stand-in ports when a flow is hashed on its address pair:
 * ntohs(0xFFFD) and ntohs(0xFFFE) on a little-endian host. */
#define BRK_ADDRESS_PAIR_SOURCE_PORT 0xFDFF
#define BRK_ADDRESS_PAIR_DESTINATION_PORT 0xFEFF

enum brk_fragment_kind { BRK_NOT_FRAGMENT, BRK_FIRST_FRAGMENT, BRK_LATER_FRAGMENT };

/* One IP header as far as the walk cares; its addresses go to the key. */
struct brk_ip_header {
    uint32_t payload_offset;      /* from the frame start, past the extension headers */
    uint32_t fragment_id;
    uint8_t protocol;             /* the upper layer, after IPv6 extension headers */
    uint8_t fragment_next;        /* the protocol every fragment names (IPv6: the fragment header's next) */
    uint8_t cut;                  /* the header ends past the frame: payload unknown */
    uint8_t fragment;             /* enum brk_fragment_kind */
};

BRK_DISSECT_FUNCTION uint16_t brk_load_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* The bytes at offset, which the caller checked is <= BRK_DISSECT_MAX_OFFSET:
 * the mask changes nothing but shows the verifier the bound on the very
 * register added to the pointer (clang may check one copy, add another). */
BRK_DISSECT_FUNCTION const uint8_t *brk_at(const uint8_t *data, uint32_t offset)
{
    return data + (offset & BRK_DISSECT_MAX_OFFSET);
}

/* Byte by byte: the addresses are unaligned in the frame, and BPF has no memcpy. */
BRK_DISSECT_FUNCTION void brk_copy_bytes(uint8_t *to, const uint8_t *from, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        to[i] = from[i];
}

BRK_DISSECT_FUNCTION void brk_set_address_pair(struct brk_flow_endpoints *endpoints, const uint8_t *source,
                                               const uint8_t *destination, unsigned size)
{
    brk_copy_bytes(endpoints->source, source, size);
    brk_copy_bytes(endpoints->destination, destination, size);
    endpoints->address_size = (uint8_t)size;
    endpoints->source_port = BRK_ADDRESS_PAIR_SOURCE_PORT;
    endpoints->destination_port = BRK_ADDRESS_PAIR_DESTINATION_PORT;
    endpoints->has_ports = 0;
}

/* L2: the Ethernet addresses and the tags. Returns the offset of the layer
 * after the tags, or 0 when the frame ends inside them or has too many. */
BRK_DISSECT_FUNCTION uint32_t brk_dissect_ethernet(const uint8_t *data, const uint8_t *end,
                                                   struct brk_flow_keys *keys)
{
    if (data + 12 > end)
        return 0;
    /* A non-IP frame hashes on its addresses with ports 0 (not the stand-ins). */
    brk_copy_bytes(keys->address_pair.source, data + 6, 6);
    brk_copy_bytes(keys->address_pair.destination, data, 6);
    keys->address_pair.address_size = 6;
    if (data + 14 > end)
        return 0;
    uint16_t ethertype = brk_load_be16(data + 12);
    uint32_t offset = 14;
    for (unsigned tags = 0; tags <= BRK_DISSECT_MAX_VLAN_TAGS; tags++) {
        if (ethertype != BRK_ETHERTYPE_VLAN && ethertype != BRK_ETHERTYPE_QINQ
            && ethertype != BRK_ETHERTYPE_QINQ_LEGACY)
            break;
        const uint8_t *tag = brk_at(data, offset);
        if (tags == BRK_DISSECT_MAX_VLAN_TAGS || tag + 4 > end)
            return 0;
        keys->vlan_tci[tags] = brk_load_be16(tag);
        keys->vlan_count = (uint8_t)(tags + 1);
        ethertype = brk_load_be16(tag + 2);
        offset += 4;
    }
    keys->ethertype = ethertype;
    return offset;
}

/* L3, IPv4 at offset: 0 when even the addresses are cut. */
BRK_DISSECT_FUNCTION int brk_dissect_ipv4(const uint8_t *data, const uint8_t *end, uint32_t offset,
                                          struct brk_flow_endpoints *endpoints, struct brk_ip_header *header)
{
    const uint8_t *ip = brk_at(data, offset);
    if (ip + 20 > end)
        return 0;
    uint32_t header_size = (uint32_t)(ip[0] & 0x0f) * 4;
    uint16_t fragment_field = brk_load_be16(ip + 6);
    brk_set_address_pair(endpoints, ip + 12, ip + 16, 4);
    header->protocol = ip[9];
    header->payload_offset = offset + header_size;
    header->cut = header_size < 20 || ip + header_size > end;
    header->fragment_id = brk_load_be16(ip + 4);
    header->fragment_next = ip[9];
    if ((fragment_field & 0x3fff) == 0)
        header->fragment = BRK_NOT_FRAGMENT;
    else
        header->fragment = (fragment_field & 0x1fff) ? BRK_LATER_FRAGMENT : BRK_FIRST_FRAGMENT;
    return 1;
}

/* L3, IPv6 at offset, walking the extension headers to the upper layer: 0
 * when even the addresses are cut. Too many extension headers count as cut. */
BRK_DISSECT_FUNCTION int brk_dissect_ipv6(const uint8_t *data, const uint8_t *end, uint32_t offset,
                                          struct brk_flow_endpoints *endpoints, struct brk_ip_header *header)
{
    const uint8_t *ip = brk_at(data, offset);
    if (ip + 40 > end)
        return 0;
    uint8_t next = ip[6];
    uint32_t extension_offset = offset + 40;
    brk_set_address_pair(endpoints, ip + 8, ip + 24, 16);
    header->cut = 0;
    header->fragment = BRK_NOT_FRAGMENT;
    header->fragment_id = 0;
    header->fragment_next = 0;
    for (unsigned extensions = 0; extensions < BRK_DISSECT_MAX_IPV6_EXTENSIONS; extensions++) {
        if (extension_offset > BRK_DISSECT_MAX_OFFSET)
            goto cut;
        const uint8_t *extension = brk_at(data, extension_offset);
        uint32_t extension_size;
        switch (next) {
        case BRK_PROTO_HOP_BY_HOP:
        case BRK_PROTO_ROUTING:
        case BRK_PROTO_DESTINATION_OPTIONS:
        case BRK_PROTO_MOBILITY:
        case BRK_PROTO_HIP:
        case BRK_PROTO_SHIM6:
            if (extension + 2 > end)
                goto cut;
            extension_size = ((uint32_t)extension[1] + 1) * 8;
            break;
        case BRK_PROTO_AH:
            if (extension + 2 > end)
                goto cut;
            extension_size = ((uint32_t)extension[1] + 2) * 4;
            break;
        case BRK_PROTO_FRAGMENT: {
            if (extension + 8 > end)
                goto cut;
            uint16_t fragment_field = brk_load_be16(extension + 2);
            /* Offset 0 without "more fragments" is an atomic fragment: whole. */
            if (fragment_field & 0xfff8)
                header->fragment = BRK_LATER_FRAGMENT;
            else if (fragment_field & 1)
                header->fragment = BRK_FIRST_FRAGMENT;
            header->fragment_id = (uint32_t)brk_load_be16(extension + 4) << 16 | brk_load_be16(extension + 6);
            header->fragment_next = extension[0];
            extension_size = 8;
            if (header->fragment == BRK_LATER_FRAGMENT) {
                /* What follows is payload, not headers. */
                header->protocol = extension[0];
                header->payload_offset = extension_offset + extension_size;
                return 1;
            }
            break;
        }
        default:
            if (extension > end)
                goto cut;
            header->protocol = next;
            header->payload_offset = extension_offset;
            return 1;
        }
        next = extension[0];
        extension_offset += extension_size;
    }
cut:
    header->protocol = next;
    header->payload_offset = extension_offset;
    header->cut = 1;
    return 1;
}

/* L4: the ports of TCP or UDP at offset; 0 when they are cut. */
BRK_DISSECT_FUNCTION int brk_dissect_ports(const uint8_t *data, const uint8_t *end, uint32_t offset,
                                           struct brk_flow_endpoints *endpoints)
{
    if (offset > BRK_DISSECT_MAX_OFFSET)
        return 0;
    const uint8_t *ports = brk_at(data, offset);
    if (ports + 4 > end)
        return 0;
    endpoints->source_port = brk_load_be16(ports);
    endpoints->destination_port = brk_load_be16(ports + 2);
    endpoints->has_ports = 1;
    return 1;
}

BRK_DISSECT_FUNCTION int brk_depends_on_payload(uint8_t protocol)
{
    return protocol == BRK_PROTO_TCP || protocol == BRK_PROTO_UDP
        || protocol == BRK_PROTO_IPIP || protocol == BRK_PROTO_IPV6;
}

/* A later IPv6 fragment names only the first header of the fragmentable part
 * (AH, destination options, ...): its first fragment walked on from there and
 * may have reached TCP, UDP or a tunnel, so its datagram's memory decides. */
BRK_DISSECT_FUNCTION int brk_may_depend_on_payload(const struct brk_ip_header *header)
{
    if (brk_depends_on_payload(header->protocol))
        return 1;
    if (header->fragment != BRK_LATER_FRAGMENT)
        return 0;
    switch (header->protocol) {
    case BRK_PROTO_HOP_BY_HOP:
    case BRK_PROTO_ROUTING:
    case BRK_PROTO_FRAGMENT:
    case BRK_PROTO_AH:
    case BRK_PROTO_DESTINATION_OPTIONS:
    case BRK_PROTO_MOBILITY:
    case BRK_PROTO_HIP:
    case BRK_PROTO_SHIM6:
        return 1;
    default:
        return 0;
    }
}

BRK_DISSECT_FUNCTION void brk_set_fragment(struct brk_flow_fragment *fragment, const struct brk_flow_endpoints *endpoints,
                                           const struct brk_ip_header *header)
{
    brk_copy_bytes(fragment->source, endpoints->source, 16);
    brk_copy_bytes(fragment->destination, endpoints->destination, 16);
    fragment->id = header->fragment_id;
    fragment->protocol = header->fragment_next;   /* what every fragment of the datagram names */
    fragment->address_size = endpoints->address_size;
}

/* Where the walk over the IP layers stands between two headers. */
struct brk_dissect_walk {
    uint32_t offset;              /* of the next IP header, from the frame start */
    uint32_t version;             /* 4 or 6 */
    uint32_t nesting;             /* IP headers behind */
    uint32_t result;              /* enum brk_dissect_result bits so far */
};

/* One IP header of the walk: the first one's address pair, then through
 * tunnels to the deepest ports. Returns 1 when a tunnel follows (walk moved
 * to it), 0 when the walk is over (keys->flow_result then final).
 * Invariant (hash.c's): keys->flow always holds the deepest endpoints parsed
 * completely, so a cut header leaves what came before it; nothing past end
 * is read. A step is the unit a BPF program can verify on its own. */
BRK_DISSECT_FUNCTION int brk_dissect_ip_step(const uint8_t *data, const uint8_t *end, unsigned options,
                                             struct brk_dissect_walk *walk, struct brk_flow_keys *keys)
{
    struct brk_ip_header header = { 0, 0, 0, 0, 0, 0 };
    int parsed = 0;
    int more = 0;
    if (walk->offset <= BRK_DISSECT_MAX_OFFSET)
        parsed = walk->version == 4 ? brk_dissect_ipv4(data, end, walk->offset, &keys->flow, &header)
                                    : brk_dissect_ipv6(data, end, walk->offset, &keys->flow, &header);
    if (!parsed) {
        walk->result |= BRK_DISSECT_TRUNCATED;
        if (walk->nesting == 0)
            keys->address_result = (uint8_t)walk->result;
        goto done;
    }
    keys->ip_headers++;
    keys->ip_protocol = header.protocol;
    if (header.cut)
        walk->result |= BRK_DISSECT_TRUNCATED;
    if (header.fragment != BRK_NOT_FRAGMENT)
        walk->result |= BRK_DISSECT_FRAGMENT;
    if (walk->nesting == 0) {
        keys->address_pair = keys->flow;
        keys->address_result = (uint8_t)walk->result;
    }
    if (header.cut || !brk_may_depend_on_payload(&header))
        goto done;
    if (header.fragment != BRK_NOT_FRAGMENT) {
        /* Without a memory of first fragments every fragment goes by its address pair. */
        if (!(options & BRK_DISSECT_PARSE_FIRST_FRAGMENT))
            goto done;
        if (header.fragment == BRK_LATER_FRAGMENT) {
            brk_set_fragment(&keys->later_fragment, &keys->flow, &header);
            goto done;
        }
        brk_set_fragment(&keys->first_fragment, &keys->flow, &header);
    }
    if (header.protocol == BRK_PROTO_TCP || header.protocol == BRK_PROTO_UDP) {
        if (!brk_dissect_ports(data, end, header.payload_offset, &keys->flow))
            walk->result |= BRK_DISSECT_TRUNCATED;
        goto done;
    }
    walk->version = header.protocol == BRK_PROTO_IPIP ? 4 : 6;
    walk->offset = header.payload_offset;
    more = ++walk->nesting < BRK_DISSECT_MAX_IP_HEADERS;
done:
    keys->flow_result = (uint8_t)walk->result;
    return more;
}

/* L2 of the walk: fills the Ethernet part of keys and starts walk at the IP
 * header. Returns 0 when there is no IP header to walk (keys final). */
BRK_DISSECT_FUNCTION int brk_dissect_start(const uint8_t *data, const uint8_t *end, struct brk_dissect_walk *walk,
                                           struct brk_flow_keys *keys)
{
    __builtin_memset(keys, 0, sizeof(*keys));
    __builtin_memset(walk, 0, sizeof(*walk));
    uint32_t offset = brk_dissect_ethernet(data, end, keys);
    keys->flow = keys->address_pair;
    if (offset == 0) {
        keys->address_result = keys->flow_result = BRK_DISSECT_TRUNCATED;
        return 0;
    }
    if (keys->ethertype != BRK_ETHERTYPE_IPV4 && keys->ethertype != BRK_ETHERTYPE_IPV6) {
        keys->address_result = keys->flow_result = BRK_DISSECT_NON_IP;
        return 0;
    }
    walk->offset = offset;
    walk->version = keys->ethertype == BRK_ETHERTYPE_IPV4 ? 4 : 6;
    return 1;
}

/* Fills keys from the frame at data (end = one past its last byte). */
BRK_DISSECT_FUNCTION void brk_dissect(const uint8_t *data, const uint8_t *end, unsigned options,
                                      struct brk_flow_keys *keys)
{
    struct brk_dissect_walk walk;
    if (!brk_dissect_start(data, end, &walk, keys))
        return;
    for (unsigned nesting = 0; nesting < BRK_DISSECT_MAX_IP_HEADERS; nesting++)
        if (!brk_dissect_ip_step(data, end, options, &walk, keys))
            break;
}
#endif
