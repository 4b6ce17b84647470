/* Strip (brick_strip.c): removes the encapsulations it is given and forwards the inner Ethernet frame. */

struct brk_strip_config {
    unsigned layers;        /* bits 1 << enum brk_layer_kind (api/dissect.h) of the encapsulations to remove:
                             * VLAN, MPLS, VXLAN, GENEVE, GRE, ERSPAN, GTP */
};

/* Its counters, in brk_brick_stats.counters. Every packet it receives is exactly one of the first three. */
enum brk_strip_counter {
    BRK_STRIP_STRIPPED = 0,     /* forwarded without (some of) its encapsulations */
    BRK_STRIP_UNCHANGED = 1,    /* none of the chosen layers: forwarded as it came */
    BRK_STRIP_CUT = 2,          /* a chosen layer whose inner frame is cut short or is no frame: forwarded as it came */
    BRK_STRIP_SYNTHESISED = 3   /* of the stripped ones: inner bare IP, given an Ethernet header */
};
