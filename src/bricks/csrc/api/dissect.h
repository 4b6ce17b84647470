/* The one dissector (csrc/dissect.h): the key it fills once per frame, and
 * two host entry points the tests use to compare it with the flow hash. */

/* The two endpoints of a flow: addresses copied out of the frame (so a key
 * outlives the frame and a BPF program can hash it from its stack) and ports. */
struct brk_flow_endpoints {
    uint8_t source[16];
    uint8_t destination[16];
    uint16_t source_port;         /* the ports, or stand-ins when has_ports is 0 */
    uint16_t destination_port;
    uint8_t address_size;         /* 4 (IPv4), 16 (IPv6), 6 (Ethernet), 0 (nothing) */
    uint8_t has_ports;
};

/* One fragmented IP header: what identifies its datagram. */
struct brk_flow_fragment {
    uint8_t source[16];
    uint8_t destination[16];
    uint32_t id;                  /* IPv4: 16 bits, IPv6: 32 bits */
    uint8_t protocol;
    uint8_t address_size;         /* 0: no such fragment */
    uint8_t padding[2];
};

enum brk_dissect_result {
    BRK_DISSECT_NON_IP        = 1,   /* the same bits as enum brk_hash_flag */
    BRK_DISSECT_TRUNCATED     = 2,
    BRK_DISSECT_FRAGMENT      = 4
};

/* Options of brk_dissect (the kernel's FLOW_DISSECTOR_F_PARSE_1ST_FRAG): read
 * the ports of a first fragment, for a caller that remembers its datagram. */
enum brk_dissect_option {
    BRK_DISSECT_PARSE_FIRST_FRAGMENT = 1
};

/* What one walk over a frame found. */
struct brk_flow_keys {
    uint16_t vlan_tci[4];         /* the tags, outermost first */
    uint16_t ethertype;           /* after the tags */
    uint8_t vlan_count;
    uint8_t ip_headers;           /* IP headers parsed completely (1 + tunnels) */
    uint8_t ip_protocol;          /* the upper layer of the deepest IP header */
    uint8_t address_result;       /* enum brk_dissect_result bits of the address pair */
    uint8_t flow_result;          /* enum brk_dissect_result bits of the flow */
    uint8_t padding;
    /* LoadBalancer split 2: the first IP header's addresses (the Ethernet
     * addresses of a non-IP frame or one whose IP header is cut). */
    struct brk_flow_endpoints address_pair;
    /* Split 4: the deepest endpoints parsed completely, ports when read. */
    struct brk_flow_endpoints flow;
    /* The non-first fragment the flow stopped at (its datagram's first
     * fragment decides), and the first fragment whose ports the flow holds. */
    struct brk_flow_fragment later_fragment;
    struct brk_flow_fragment first_fragment;
};

/* Dissects caplen bytes of an Ethernet frame; options: enum brk_dissect_option. */
void brk_dissect_frame(const uint8_t *frame, uint32_t caplen, unsigned options, struct brk_flow_keys *keys);

/* The flow hash of SPEC §6 computed from keys (split 2 or 4, depth 0 = linked
 * to the engine), without a fragment table: portable code the XDP program
 * shares, equal to brk_flow_hash's table-driven one. */
uint32_t brk_dissect_flow_hash(const struct brk_flow_keys *keys, int split, unsigned depth);
