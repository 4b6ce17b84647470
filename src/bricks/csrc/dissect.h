/* The one dissector, in the style of the kernel's flow_dissector, with two
 * walks sharing their layer functions:
 *  - the default walk (brk_dissect): Ethernet and up to 4 VLAN/QinQ tags,
 *    IPv4/IPv6 with extension headers, fragments, IP-in-IP and IPv6 tunnels,
 *    TCP/UDP ports, filling the key the flow hash uses (hash.c's, bit for bit);
 *  - the tunnel walk (brk_dissect_tunnels, below it): every layer of every
 *    encapsulation (VLAN/QinQ, MPLS, pseudowires, IP in IP, GRE, ERSPAN I/II/III,
 *    VXLAN, GENEVE, GTP-U) to a given depth, recording each header's offset
 *    and the outer and innermost flows; it holds the default key unchanged.
 * One small function per layer.
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
#ifdef __bpf__
    /* Where clang can prove the bound itself it drops the mask, and the verifier,
     * which may have lost the bound, refuses the read: hide the value from clang. */
    asm volatile("" : "+r"(offset));
#endif
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
/* ---- The tunnel walk: every layer, to the innermost flow ------------------
 * A second walk, beside the default one above (whose key it copies unchanged,
 * so the default hash cannot move): one header per step, a small function per
 * layer kind that checks the header lies within the frame, then names the
 * next layer and its offset. The walk records each complete header in
 * layers[] and keeps the innermost flow with the default walk's invariant
 * (the deepest endpoints parsed completely). Bounded: at most
 * BRK_DISSECT_MAX_LAYERS steps, every inner loop constant-bounded, offsets
 * below BRK_DISSECT_MAX_OFFSET. */

#define BRK_ETHERTYPE_MPLS 0x8847
#define BRK_ETHERTYPE_MPLS_MULTICAST 0x8848
#define BRK_ETHERTYPE_TRANSPARENT_ETHERNET 0x6558
#define BRK_ETHERTYPE_ERSPAN 0x88be       /* type II (type I: no sequence number, no header) */
#define BRK_ETHERTYPE_ERSPAN_III 0x22eb
#define BRK_PROTO_GRE 47
#define BRK_UDP_PORT_VXLAN 4789
#define BRK_UDP_PORT_GENEVE 6081
#define BRK_UDP_PORT_GTP_U 2152

#define BRK_DISSECT_MAX_LAYERS 32         /* the size of brk_tunnel_keys.layers */
#define BRK_DISSECT_MAX_TAGS_PER_ETHERNET 8
#define BRK_DISSECT_MAX_GTP_EXTENSIONS 8

/* Where the tunnel walk stands: the header at offset is of kind next. */
struct brk_tunnel_walk {
    uint32_t offset;
    uint32_t next;                /* enum brk_layer_kind */
    uint32_t next_offset;         /* set by a layer function: where the following header starts */
    uint32_t following;           /* set by a layer function: its kind */
    uint32_t detail;              /* set by a layer function: the layer's detail */
    uint32_t erspan_type;         /* set by GRE for the ERSPAN header after it */
    uint32_t tags;                /* VLAN tags since the last Ethernet header */
    uint32_t ip_headers;          /* complete IP headers so far */
    uint32_t previous;            /* kind of the last layer recorded */
    uint32_t options;
};

/* The layer after an Ethernet type (Ethernet, a tag, GRE, GENEVE). */
BRK_DISSECT_FUNCTION uint32_t brk_layer_of_ethertype(uint16_t ethertype)
{
    switch (ethertype) {
    case BRK_ETHERTYPE_VLAN:
    case BRK_ETHERTYPE_QINQ:
    case BRK_ETHERTYPE_QINQ_LEGACY:
        return BRK_LAYER_VLAN;
    case BRK_ETHERTYPE_IPV4:
        return BRK_LAYER_IPV4;
    case BRK_ETHERTYPE_IPV6:
        return BRK_LAYER_IPV6;
    case BRK_ETHERTYPE_MPLS:
    case BRK_ETHERTYPE_MPLS_MULTICAST:
        return BRK_LAYER_MPLS;
    case BRK_ETHERTYPE_TRANSPARENT_ETHERNET:
        return BRK_LAYER_ETHERNET;
    default:
        return BRK_LAYER_PAYLOAD;
    }
}

/* Bare IP after MPLS, GTP-U or ERSPAN III: the version nibble says which. */
BRK_DISSECT_FUNCTION uint32_t brk_layer_of_ip_version(const uint8_t *p, const uint8_t *end)
{
    if (p + 1 > end)
        return BRK_LAYER_PAYLOAD;
    return (p[0] >> 4) == 4 ? BRK_LAYER_IPV4 : (p[0] >> 4) == 6 ? BRK_LAYER_IPV6 : BRK_LAYER_PAYLOAD;
}

/* Each layer function below: 0 with walk->following/next_offset/detail set,
 * or an enum brk_dissect_stop. */

BRK_DISSECT_FUNCTION uint32_t brk_layer_ethernet(const uint8_t *data, const uint8_t *end,
                                                 struct brk_tunnel_walk *walk, struct brk_tunnel_keys *t)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (p + 14 > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    /* Until an IP header follows, the innermost flow is this frame's addresses (as the default key's). */
    __builtin_memset(&t->inner, 0, sizeof(t->inner));
    brk_copy_bytes(t->inner.source, p + 6, 6);
    brk_copy_bytes(t->inner.destination, p, 6);
    t->inner.address_size = 6;
    walk->tags = 0;
    walk->following = brk_layer_of_ethertype(brk_load_be16(p + 12));
    walk->next_offset = walk->offset + 14;
    return 0;
}

BRK_DISSECT_FUNCTION uint32_t brk_layer_vlan(const uint8_t *data, const uint8_t *end, struct brk_tunnel_walk *walk)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (p + 4 > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    if (++walk->tags > BRK_DISSECT_MAX_TAGS_PER_ETHERNET)
        return BRK_DISSECT_STOP_MALFORMED;
    walk->following = brk_layer_of_ethertype(brk_load_be16(p + 2));
    walk->next_offset = walk->offset + 4;
    return 0;
}

/* One label stack entry; after the bottom one, IP by its version nibble or a
 * pseudowire control word (first nibble 0) before Ethernet. */
BRK_DISSECT_FUNCTION uint32_t brk_layer_mpls(const uint8_t *data, const uint8_t *end, struct brk_tunnel_walk *walk)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (p + 4 > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    walk->detail = p[2] & 1;
    walk->next_offset = walk->offset + 4;
    if (!walk->detail) {
        walk->following = BRK_LAYER_MPLS;
    } else if (p + 5 <= end && (p[4] >> 4) == 0) {
        walk->following = BRK_LAYER_PW_CONTROL_WORD;
    } else {
        walk->following = brk_layer_of_ip_version(p + 4, end);
    }
    return 0;
}

BRK_DISSECT_FUNCTION uint32_t brk_layer_pw_control_word(const uint8_t *data, const uint8_t *end,
                                                        struct brk_tunnel_walk *walk)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (p + 4 > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    walk->following = BRK_LAYER_ETHERNET;
    walk->next_offset = walk->offset + 4;
    return 0;
}

/* IPv4 or IPv6 (the default walk's functions), the innermost flow's addresses. */
BRK_DISSECT_FUNCTION uint32_t brk_layer_ip(const uint8_t *data, const uint8_t *end, struct brk_tunnel_walk *walk,
                                           struct brk_tunnel_keys *t)
{
    struct brk_ip_header header = { 0, 0, 0, 0, 0, 0 };
    /* The addresses must be there before the innermost flow changes (the deepest complete one stays). */
    /* Zero past the address size too: the key is compared and hashed whole. Parsed in place: a copy
     * of bytes just written one at a time stalls on store forwarding. Constant sizes per branch: the
     * verifier learns nothing from a check of a variable one. */
    const uint8_t *ip = brk_at(data, walk->offset);
    if (walk->next == BRK_LAYER_IPV4) {
        if (ip + 20 > end)
            return BRK_DISSECT_STOP_TRUNCATED;
        __builtin_memset(&t->inner, 0, sizeof(t->inner));
        brk_dissect_ipv4(data, end, walk->offset, &t->inner, &header);
    } else {
        if (ip + 40 > end)
            return BRK_DISSECT_STOP_TRUNCATED;
        __builtin_memset(&t->inner, 0, sizeof(t->inner));
        brk_dissect_ipv6(data, end, walk->offset, &t->inner, &header);
    }
    if (walk->ip_headers++ == 0)
        t->outer = t->inner;
    if (header.fragment != BRK_NOT_FRAGMENT)
        t->inner_result |= BRK_DISSECT_FRAGMENT;
    if (header.cut)
        return BRK_DISSECT_STOP_TRUNCATED;
    walk->detail = header.fragment;
    walk->next_offset = header.payload_offset;
    if (header.fragment == BRK_LATER_FRAGMENT
        || (header.fragment == BRK_FIRST_FRAGMENT && !(walk->options & BRK_DISSECT_PARSE_FIRST_FRAGMENT))) {
        walk->following = BRK_LAYER_PAYLOAD;
        return 0;
    }
    switch (header.protocol) {
    case BRK_PROTO_TCP:
        walk->following = BRK_LAYER_TCP;
        break;
    case BRK_PROTO_UDP:
        walk->following = BRK_LAYER_UDP;
        break;
    case BRK_PROTO_IPIP:
        walk->following = BRK_LAYER_IPV4;
        break;
    case BRK_PROTO_IPV6:
        walk->following = BRK_LAYER_IPV6;
        break;
    case BRK_PROTO_GRE:
        walk->following = BRK_LAYER_GRE;
        break;
    default:
        walk->following = BRK_LAYER_PAYLOAD;
    }
    return 0;
}

/* TCP/UDP: the ports of the innermost flow (and of the outer one behind the
 * first IP header); UDP to a tunnel port leads into the tunnel. */
BRK_DISSECT_FUNCTION uint32_t brk_layer_transport(const uint8_t *data, const uint8_t *end,
                                                  struct brk_tunnel_walk *walk, struct brk_tunnel_keys *t)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (!brk_dissect_ports(data, end, walk->offset, &t->inner))
        return BRK_DISSECT_STOP_TRUNCATED;
    if (walk->ip_headers == 1)
        t->outer = t->inner;
    if (walk->next == BRK_LAYER_TCP) {
        if (p + 20 > end)
            return BRK_DISSECT_STOP_END;      /* the flow is whole; only the TCP options are cut */
        uint32_t size = (uint32_t)(p[12] >> 4) * 4;
        if (size < 20)
            return BRK_DISSECT_STOP_MALFORMED;
        if (p + size > end)
            return BRK_DISSECT_STOP_END;
        walk->following = BRK_LAYER_PAYLOAD;
        walk->next_offset = walk->offset + size;
        return 0;
    }
    if (p + 8 > end)
        return BRK_DISSECT_STOP_END;
    walk->next_offset = walk->offset + 8;
    switch (brk_load_be16(p + 2)) {
    case BRK_UDP_PORT_VXLAN:
        walk->following = BRK_LAYER_VXLAN;
        break;
    case BRK_UDP_PORT_GENEVE:
        walk->following = BRK_LAYER_GENEVE;
        break;
    case BRK_UDP_PORT_GTP_U:
        walk->following = BRK_LAYER_GTP;
        break;
    default:
        walk->following = BRK_LAYER_PAYLOAD;
    }
    return 0;
}

/* GRE version 0 with its optional checksum, key and sequence number. */
BRK_DISSECT_FUNCTION uint32_t brk_layer_gre(const uint8_t *data, const uint8_t *end, struct brk_tunnel_walk *walk)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (p + 4 > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    /* Routing (RFC 1701, deprecated) and version 1 (PPTP) are not encapsulations we open. */
    if ((p[0] & 0x40) || (p[1] & 0x07))
        return BRK_DISSECT_STOP_MALFORMED;
    uint32_t size = 4 + ((p[0] & 0x80) ? 4 : 0) + ((p[0] & 0x20) ? 4 : 0) + ((p[0] & 0x10) ? 4 : 0);
    if (p + size > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    uint16_t protocol = brk_load_be16(p + 2);
    walk->next_offset = walk->offset + size;
    if (protocol == BRK_ETHERTYPE_ERSPAN) {
        walk->following = BRK_LAYER_ERSPAN;
        walk->erspan_type = (p[0] & 0x10) ? 2 : 1;
    } else if (protocol == BRK_ETHERTYPE_ERSPAN_III) {
        walk->following = BRK_LAYER_ERSPAN;
        walk->erspan_type = 3;
    } else {
        walk->following = brk_layer_of_ethertype(protocol);
        if (walk->following == BRK_LAYER_VLAN)
            walk->following = BRK_LAYER_PAYLOAD;
    }
    return 0;
}

/* ERSPAN: type I has no header, II has 8 bytes, III 12 plus an optional 8-byte platform sub-header. */
BRK_DISSECT_FUNCTION uint32_t brk_layer_erspan(const uint8_t *data, const uint8_t *end, struct brk_tunnel_walk *walk)
{
    const uint8_t *p = brk_at(data, walk->offset);
    walk->detail = walk->erspan_type;
    walk->following = BRK_LAYER_ETHERNET;
    if (walk->erspan_type == 1) {
        walk->next_offset = walk->offset;
        return 0;
    }
    uint32_t size = walk->erspan_type == 2 ? 8 : 12;
    if (p + size > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    if ((uint32_t)(p[0] >> 4) != walk->erspan_type - 1)
        return BRK_DISSECT_STOP_MALFORMED;
    if (walk->erspan_type == 3) {
        uint32_t frame_type = (p[10] >> 2) & 0x1f;
        if (p[11] & 1)
            size += 8;
        if (p + size > end)
            return BRK_DISSECT_STOP_TRUNCATED;
        if (frame_type == 2)
            walk->following = brk_layer_of_ip_version(p + size, end);
        else if (frame_type != 0)
            walk->following = BRK_LAYER_PAYLOAD;
    }
    walk->next_offset = walk->offset + size;
    return 0;
}

BRK_DISSECT_FUNCTION uint32_t brk_layer_vxlan(const uint8_t *data, const uint8_t *end, struct brk_tunnel_walk *walk)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (p + 8 > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    /* RFC 7348: the I flag says the VNI is valid; without it no encoder sent this. */
    if (!(p[0] & 0x08))
        return BRK_DISSECT_STOP_MALFORMED;
    walk->following = BRK_LAYER_ETHERNET;
    walk->next_offset = walk->offset + 8;
    return 0;
}

BRK_DISSECT_FUNCTION uint32_t brk_layer_geneve(const uint8_t *data, const uint8_t *end, struct brk_tunnel_walk *walk)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (p + 8 > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    if (p[0] >> 6)
        return BRK_DISSECT_STOP_MALFORMED;    /* only version 0 exists */
    uint32_t size = 8 + (uint32_t)(p[0] & 0x3f) * 4;
    if (p + size > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    walk->following = brk_layer_of_ethertype(brk_load_be16(p + 2));
    if (walk->following == BRK_LAYER_VLAN)
        walk->following = BRK_LAYER_PAYLOAD;
    walk->next_offset = walk->offset + size;
    return 0;
}

/* GTP-U version 1: a G-PDU carries IP after the optional fields and the chain of extension headers. */
BRK_DISSECT_FUNCTION uint32_t brk_layer_gtp(const uint8_t *data, const uint8_t *end, struct brk_tunnel_walk *walk)
{
    const uint8_t *p = brk_at(data, walk->offset);
    if (p + 8 > end)
        return BRK_DISSECT_STOP_TRUNCATED;
    if ((p[0] >> 5) != 1 || !(p[0] & 0x10))
        return BRK_DISSECT_STOP_MALFORMED;    /* not GTP version 1 (GTP' or other) */
    uint32_t size = 8;
    uint8_t next_extension = 0;
    if (p[0] & 0x07) {
        if (p + 12 > end)
            return BRK_DISSECT_STOP_TRUNCATED;
        size = 12;
        if (p[0] & 0x04)
            next_extension = p[11];
    }
    for (unsigned extensions = 0; extensions <= BRK_DISSECT_MAX_GTP_EXTENSIONS && next_extension; extensions++) {
        if (extensions == BRK_DISSECT_MAX_GTP_EXTENSIONS)
            return BRK_DISSECT_STOP_MALFORMED;
        if (walk->offset + size > BRK_DISSECT_MAX_OFFSET)
            return BRK_DISSECT_STOP_TRUNCATED;
        const uint8_t *extension = brk_at(data, walk->offset + size);
        if (extension + 1 > end)
            return BRK_DISSECT_STOP_TRUNCATED;
        uint32_t extension_size = (uint32_t)extension[0] * 4;
        if (extension_size == 0)
            return BRK_DISSECT_STOP_MALFORMED;
        /* Its last byte names the next one: checked on the very pointer read (the verifier
         * refuses a read before a checked pointer). */
        uint32_t last_offset = walk->offset + size + extension_size - 1;
        if (last_offset > BRK_DISSECT_MAX_OFFSET)
            return BRK_DISSECT_STOP_TRUNCATED;
        const uint8_t *last = brk_at(data, last_offset);
        if (last + 1 > end)
            return BRK_DISSECT_STOP_TRUNCATED;
        next_extension = last[0];
        size += extension_size;
    }
    walk->next_offset = walk->offset + size;
    if (walk->next_offset > BRK_DISSECT_MAX_OFFSET)
        return BRK_DISSECT_STOP_TRUNCATED;
    /* Only a G-PDU (type 255) carries user packets; echo and the others are signalling. */
    walk->following = p[1] == 0xff ? brk_layer_of_ip_version(brk_at(data, walk->next_offset), end)
                                   : BRK_LAYER_PAYLOAD;
    walk->detail = p[1];
    return 0;
}

BRK_DISSECT_FUNCTION int brk_layer_is_tunnel(uint32_t kind, uint32_t previous)
{
    switch (kind) {
    case BRK_LAYER_GRE:
    case BRK_LAYER_VXLAN:
    case BRK_LAYER_GENEVE:
    case BRK_LAYER_GTP:
    case BRK_LAYER_PW_CONTROL_WORD:
        return 1;
    case BRK_LAYER_IPV4:
    case BRK_LAYER_IPV6:
        return previous == BRK_LAYER_IPV4 || previous == BRK_LAYER_IPV6;
    default:
        return 0;
    }
}

BRK_DISSECT_FUNCTION void brk_record_layer(struct brk_tunnel_keys *t, uint32_t kind, uint32_t offset, uint32_t detail)
{
    uint32_t index = t->layer_count;
    if (index >= BRK_DISSECT_MAX_LAYERS)
        return;
    t->layers[index].kind = (uint8_t)kind;
    t->layers[index].offset = (uint16_t)offset;
    t->layers[index].detail = (uint8_t)detail;
    t->layer_count = (uint8_t)(index + 1);
}

/* One header of the tunnel walk. Returns 1 when another follows (walk moved to it). */
BRK_DISSECT_FUNCTION int brk_dissect_tunnel_step(const uint8_t *data, const uint8_t *end, unsigned max_tunnels,
                                                 struct brk_tunnel_walk *walk, struct brk_tunnel_keys *t)
{
    uint32_t stop;
    if (walk->next == BRK_LAYER_PAYLOAD) {
        brk_record_layer(t, BRK_LAYER_PAYLOAD, walk->offset, 0);
        t->stop = BRK_DISSECT_STOP_END;
        return 0;
    }
    if (walk->offset > BRK_DISSECT_MAX_OFFSET) {
        t->stop = BRK_DISSECT_STOP_TRUNCATED;
        return 0;
    }
    if (t->layer_count >= BRK_DISSECT_MAX_LAYERS - 1) {   /* one slot stays for the payload */
        t->stop = BRK_DISSECT_STOP_LAYERS;
        return 0;
    }
    int tunnel = brk_layer_is_tunnel(walk->next, walk->previous);
    if (tunnel && t->tunnels >= max_tunnels) {
        brk_record_layer(t, BRK_LAYER_PAYLOAD, walk->offset, 0);
        t->stop = BRK_DISSECT_STOP_DEPTH;
        return 0;
    }
    walk->detail = 0;
    switch (walk->next) {
    case BRK_LAYER_ETHERNET:
        stop = brk_layer_ethernet(data, end, walk, t);
        break;
    case BRK_LAYER_VLAN:
        stop = brk_layer_vlan(data, end, walk);
        break;
    case BRK_LAYER_MPLS:
        stop = brk_layer_mpls(data, end, walk);
        break;
    case BRK_LAYER_PW_CONTROL_WORD:
        stop = brk_layer_pw_control_word(data, end, walk);
        break;
    case BRK_LAYER_IPV4:
    case BRK_LAYER_IPV6:
        stop = brk_layer_ip(data, end, walk, t);
        break;
    case BRK_LAYER_TCP:
    case BRK_LAYER_UDP:
        stop = brk_layer_transport(data, end, walk, t);
        break;
    case BRK_LAYER_GRE:
        stop = brk_layer_gre(data, end, walk);
        break;
    case BRK_LAYER_ERSPAN:
        stop = brk_layer_erspan(data, end, walk);
        break;
    case BRK_LAYER_VXLAN:
        stop = brk_layer_vxlan(data, end, walk);
        break;
    case BRK_LAYER_GENEVE:
        stop = brk_layer_geneve(data, end, walk);
        break;
    case BRK_LAYER_GTP:
        stop = brk_layer_gtp(data, end, walk);
        break;
    default:
        stop = BRK_DISSECT_STOP_MALFORMED;
    }
    if (stop) {
        t->stop = (uint8_t)stop;
        return 0;
    }
    t->tunnels += (uint8_t)tunnel;
    brk_record_layer(t, walk->next, walk->offset, walk->detail);
    walk->previous = walk->next;
    walk->next = walk->following;
    walk->offset = walk->next_offset;
    return 1;
}

/* The tunnel walk's start at the Ethernet header (keys->keys, the default
 * key, is the caller's to fill: brk_dissect, or its steps in BPF). */
BRK_DISSECT_FUNCTION void brk_dissect_tunnels_start(struct brk_tunnel_walk *walk, unsigned options,
                                                    struct brk_tunnel_keys *t)
{
    __builtin_memset(walk, 0, sizeof(*walk));
    walk->next = BRK_LAYER_ETHERNET;
    walk->options = options;
    t->layer_count = 0;
    t->tunnels = 0;
    t->inner_result = 0;
    t->stop = BRK_DISSECT_STOP_LAYERS;    /* unless a step ends the walk first */
}

/* The result bits of the innermost flow once the walk is over. */
BRK_DISSECT_FUNCTION void brk_dissect_tunnels_finish(struct brk_tunnel_keys *t)
{
    if (t->stop == BRK_DISSECT_STOP_TRUNCATED)
        t->inner_result |= BRK_DISSECT_TRUNCATED;
    if (t->inner.address_size == 6 || t->inner.address_size == 0)
        t->inner_result |= BRK_DISSECT_NON_IP;
}

/* The default key (brk_dissect, unchanged) and the tunnel walk from the
 * Ethernet header, entering at most max_tunnels encapsulations. */
BRK_DISSECT_FUNCTION void brk_dissect_tunnels(const uint8_t *data, const uint8_t *end, unsigned options,
                                              unsigned max_tunnels, struct brk_tunnel_keys *t)
{
    struct brk_tunnel_walk walk;
    /* layers[] past layer_count is not read: only the flows start zeroed. */
    __builtin_memset(&t->outer, 0, sizeof(t->outer));
    __builtin_memset(&t->inner, 0, sizeof(t->inner));
    if (!(options & BRK_DISSECT_TUNNELS_ONLY))
        brk_dissect(data, end, options, &t->keys);
    brk_dissect_tunnels_start(&walk, options, t);
    for (unsigned step = 0; step < BRK_DISSECT_MAX_LAYERS; step++)
        if (!brk_dissect_tunnel_step(data, end, max_tunnels, &walk, t))
            break;
    brk_dissect_tunnels_finish(t);
}
#endif
