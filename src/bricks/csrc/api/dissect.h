/* The one dissector (csrc/dissect.h): the key it fills once per frame, the
 * tunnel walk's layers and flows, and the host entry points (the tests compare
 * them with the flow hash; C callers may use dissect.h's inline functions). */

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
    BRK_DISSECT_PARSE_FIRST_FRAGMENT = 1,
    /* brk_dissect_tunnels only: skip the default key (keys is left as it was), for a caller that
     * hashes the innermost flow alone. */
    BRK_DISSECT_TUNNELS_ONLY = 2
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

/* The tunnel walk (brk_dissect_tunnels): every layer down to the innermost
 * flow, for the Strip brick (cut at any layer) and inner-flow balancing. It
 * only adds to the default key above, which it holds unchanged. */
enum brk_layer_kind {
    BRK_LAYER_ETHERNET = 1,
    BRK_LAYER_VLAN,               /* one 802.1Q/802.1ad tag (4 bytes; its Ethernet type ends it) */
    BRK_LAYER_MPLS,               /* one label stack entry; detail: 1 on the bottom of the stack */
    BRK_LAYER_PW_CONTROL_WORD,    /* Ethernet over MPLS: the pseudowire control word */
    BRK_LAYER_IPV4,               /* detail: enum brk_fragment_kind (0 = whole) */
    BRK_LAYER_IPV6,               /* with its extension headers; detail as IPv4 */
    BRK_LAYER_GRE,
    BRK_LAYER_ERSPAN,             /* detail: ERSPAN type 1, 2 or 3 (type 1 has no header: size 0) */
    BRK_LAYER_UDP,
    BRK_LAYER_TCP,
    BRK_LAYER_VXLAN,
    BRK_LAYER_GENEVE,             /* with its options */
    BRK_LAYER_GTP,                /* GTP-U with its extension headers */
    BRK_LAYER_PAYLOAD             /* what follows the last header parsed (not a header) */
};

/* Why the tunnel walk stopped. */
enum brk_dissect_stop {
    BRK_DISSECT_STOP_END = 1,     /* at a payload it does not parse (TCP data, ARP, an unknown protocol) */
    BRK_DISSECT_STOP_TRUNCATED,   /* a header ends past the captured length */
    BRK_DISSECT_STOP_DEPTH,       /* the next header is a tunnel deeper than max_tunnels */
    BRK_DISSECT_STOP_LAYERS,      /* more layers than layers[] holds */
    BRK_DISSECT_STOP_FRAGMENT,    /* an IP fragment whose payload is not parsed */
    BRK_DISSECT_STOP_MALFORMED    /* a header with a value no encoder writes (GRE routing, ERSPAN version, ...) */
};

struct brk_dissect_layer {
    uint16_t offset;              /* of the header from the frame start; the next layer's offset ends it */
    uint8_t kind;                 /* enum brk_layer_kind */
    uint8_t detail;               /* per kind, see enum brk_layer_kind */
};

/* What the tunnel walk found: the default key, the outer and innermost flows and every layer, outermost first. */
struct brk_tunnel_keys {
    struct brk_flow_keys keys;    /* exactly brk_dissect's (the default hash's key) */
    /* The first IP header's addresses and, when it carries TCP/UDP, its ports (stand-ins otherwise). */
    struct brk_flow_endpoints outer;
    /* The innermost flow: the deepest IP header parsed completely with its TCP/UDP ports, or the deepest
     * Ethernet addresses (ports 0) when no IP header follows them; hashed like keys.flow. */
    struct brk_flow_endpoints inner;
    struct brk_dissect_layer layers[32];
    uint8_t layer_count;
    uint8_t tunnels;              /* encapsulations entered (IP in IP, GRE, VXLAN, GENEVE, GTP-U, pseudowire) */
    uint8_t stop;                 /* enum brk_dissect_stop */
    uint8_t inner_result;         /* enum brk_dissect_result bits of the inner flow (TRUNCATED: any header cut) */
};

/* The tunnel walk over caplen bytes of an Ethernet frame, entering at most max_tunnels encapsulations;
 * options: enum brk_dissect_option (as brk_dissect_frame). */
void brk_dissect_tunnels_frame(const uint8_t *frame, uint32_t caplen, unsigned options, unsigned max_tunnels,
                               struct brk_tunnel_keys *tunnel_keys);

/* The flow hash of the innermost flow (split 4 style, depth 0 = linked to the engine): the same for both
 * directions of an inner connection whatever tunnel carries it. */
uint32_t brk_dissect_inner_hash(const struct brk_tunnel_keys *tunnel_keys, unsigned depth);
