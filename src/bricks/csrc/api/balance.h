/* LoadBalancer and PcapReader (balance.h): flow-aware balancing over their outputs. */

struct brk_balance_config {
    int split;              /* 2 (IP pair) or 4 (IP pair + ports) */
    unsigned depth;         /* balancing bricks above this one: 0 = the brick linked to the engine */
    unsigned frag_slots;    /* fragment table size (0 = none) */
    unsigned tunnels;       /* enum brk_balance_tunnels: which flow of a tunnelled frame is hashed */
};

enum brk_balance_tunnels {
    BRK_BALANCE_OUTER = 0,  /* the original's flow hash (the default, bit for bit) */
    BRK_BALANCE_INNER = 1   /* the innermost flow of the tunnel walk (brk_dissect_inner_hash) */
};

/* Their counters, in brk_brick_stats.counters. */
enum brk_balance_counter {
    BRK_BALANCE_MALFORMED = 0,              /* truncated or unparsable headers (still forwarded) */
    BRK_BALANCE_FRAGMENT_FALLBACKS = 1      /* later fragments whose first was not seen: hashed on addresses */
};
