/* The Slice brick (brick_slice.c): cuts frames short, the wire length kept. */

struct brk_slice_config {
    uint32_t length;         /* bytes kept: from the frame start, or past the L4 header */
    uint32_t after_headers;  /* 1: keep the headers up to the end of the L4 header, then length bytes */
    uint32_t fix_lengths;    /* 1: the IP length fields (and IPv4 checksum) of a cut datagram say its new size */
};

/* Its counters, in brk_brick_stats.counters. */
enum brk_slice_counter {
    BRK_SLICE_SLICED = 0,          /* frames cut short */
    BRK_SLICE_LENGTHS_FIXED = 1    /* ... whose IP length fields were rewritten */
};
