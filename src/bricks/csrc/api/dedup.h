/* The Dedup brick (brick_dedup.c): drops the copies of a frame seen again within a window. */

/* What Dedup ignores when it compares two frames (struct brk_dedup_config.ignore). */
enum brk_dedup_ignore {
    BRK_DEDUP_IGNORE_TTL = 1,        /* IPv4 TTL, IPv6 hop limit */
    BRK_DEDUP_IGNORE_VLAN = 2,       /* VLAN / QinQ tags: a tagged copy equals the untagged one */
    BRK_DEDUP_IGNORE_MAC = 4,        /* both Ethernet addresses */
    BRK_DEDUP_IGNORE_DSCP = 8,       /* the DSCP bits of IPv4 TOS / IPv6 traffic class (not ECN) */
    BRK_DEDUP_IGNORE_CHECKSUM = 16   /* the IPv4 header checksum */
};

struct brk_dedup_config {
    uint64_t window_ns;     /* a copy seen later than this after its original passes */
    uint32_t table_size;    /* frames remembered at most (the window's worth) */
    uint32_t ignore;        /* enum brk_dedup_ignore bits */
    uint64_t store_bytes;   /* the bytes kept of the remembered frames, at most */
};

/* Its counters, in brk_brick_stats.counters. */
enum brk_dedup_counter {
    BRK_DEDUP_DEDUPLICATED = 0,   /* copies dropped */
    BRK_DEDUP_UNIQUE = 1,         /* first copies forwarded */
    BRK_DEDUP_TABLE_FULL = 2      /* frames forgotten before their window ended: their copies pass */
};

/* Tests: fixes Dedup's clock at now_nsec (0: back to the packets' capture
 * times). 0, or -1 when brick is not a Dedup. */
int brk_dedup_set_clock(struct brk_brick *brick, uint64_t now_nsec);
