/* LoadBalancer and PcapReader (balance.h): flow-aware balancing over their outputs. */

struct brk_balance_config {
    int split;              /* 2 (IP pair) or 4 (IP pair + ports) */
    unsigned depth;         /* balancing bricks above this one: 0 = the brick linked to the engine */
    unsigned frag_slots;    /* fragment table size (0 = none) */
};

/* Their counters, in brk_brick_stats.counters. */
enum brk_balance_counter {
    BRK_BALANCE_MALFORMED = 0,              /* truncated or unparsable headers (still forwarded) */
    BRK_BALANCE_FRAGMENT_FALLBACKS = 1      /* later fragments whose first was not seen: hashed on addresses */
};
