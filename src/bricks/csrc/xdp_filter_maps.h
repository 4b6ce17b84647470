/* The Filter's rule maps in the XDP program, shared by the program
 * (xdp/bricks.bpf.c reads them) and the control side (xdp_filter.c fills
 * them from the rule table's published sets). Not part of the Python API.
 *
 * A rule's keys are stable: each publication writes only the keys that are
 * new or changed, before the set becomes current, and deletes the keys gone
 * from it after. A key names its mask by a stable id, not by its place in
 * the set's shape list: that list (most specific first) and the prefix trie
 * are written whole for every set, as a new generation beside the current
 * one, and made current by one store to brk_filter_generation. A frame reads
 * the generation before and after matching and matches again when it moved.
 * So a frame always sees whole rules under one generation's shapes; a batch
 * of rules becomes visible within its publication, and no publication waits
 * for the frames in flight. */
#ifndef BRK_XDP_FILTER_MAPS_H
#define BRK_XDP_FILTER_MAPS_H

#include "filter_key.h"
/* api/xdp.h first: the API headers have no include guards (cffi reads them). */

/* Rule classes of one Filter: drop / allow (enum brk_filter_action's values)
 * x IPv4 / IPv6 (FILTER_IPV4, FILTER_IPV6). */
enum { BRK_XDP_FILTER_DROP = 0, BRK_XDP_FILTER_ALLOW = 1 };
#define BRK_XDP_FILTER_CLASS(action, family) ((action) * 2 + (family))
#define BRK_XDP_FILTER_CLASSES 4

/* The masks of one class of one generation, most specific first (tuple space
 * search, as filter_rules.c orders them). brk_filter_shapes index:
 * (filter * 2 + (generation & 1)) * BRK_XDP_FILTER_CLASSES + class. */
struct brk_xdp_filter_shapes {
    uint32_t generation;
    uint32_t count;
    uint32_t guarded;                /* look the candidates up in brk_filter_prefixes first */
    uint32_t padding;
    uint64_t open[2];                /* shapes whose source (0) / destination (1) prefix is empty */
    uint32_t mask_id[BRK_XDP_FILTER_MAX_SHAPES];   /* the rule keys' name of each shape's mask */
    /* Bit s of open and of the trie's values stands for shape s, bit 63 for 63 and every later one
     * (filter_rules.c's guard does the same). */
    uint32_t mask[BRK_XDP_FILTER_MAX_SHAPES][FILTER_KEY_WORDS];
};

static inline __attribute__((always_inline)) uint64_t brk_xdp_filter_shape_bit(unsigned shape)
{
    return 1ull << (shape < 63 ? shape : 63);
}

/* brk_filter_rules: one masked key of a rule. */
struct brk_xdp_filter_rule_key {
    uint8_t filter;
    uint8_t rule_class;
    uint16_t mask_id;                /* < BRK_XDP_FILTER_MASK_IDS */
    uint32_t word[FILTER_KEY_WORDS];
};
/* Masks named at once, per Filter: 4 classes x 256 in a set, more while one replaces another. */
#define BRK_XDP_FILTER_MASK_IDS 4096
#define BRK_XDP_FILTER_GUARD_MIN_SHAPES 8   /* fewer shapes: each probed, no trie lookups */

struct brk_xdp_filter_rule {
    uint64_t id;
    uint64_t expires_ns;             /* CLOCK_MONOTONIC_COARSE; 0 = never */
};

/* brk_filter_prefixes (an LPM trie): the shapes a source or destination
 * address may match, from its longest stored prefix (whose value holds the
 * shapes of every shorter stored prefix covering it too). prefix_length
 * counts the 64 bits before the address. */
struct brk_xdp_filter_prefix_key {
    uint32_t prefix_length;
    uint8_t filter;
    uint8_t rule_class;
    uint8_t side;                    /* 0 source, 1 destination */
    uint8_t padding;
    uint32_t generation;
    uint8_t address[16];
};
#define BRK_XDP_FILTER_PREFIX_HEADER_BITS 64

/* Fills a trie key's address from the address_words host-order words of a key (the rest zero). */
BRK_DISSECT_FUNCTION void brk_xdp_filter_prefix_address(struct brk_xdp_filter_prefix_key *prefix,
                                                        const uint32_t *words, unsigned address_words)
{
    for (unsigned w = 0; w < 4; w++) {
        uint32_t word = w < address_words ? words[w] : 0;
        prefix->address[4 * w] = (uint8_t)(word >> 24);
        prefix->address[4 * w + 1] = (uint8_t)(word >> 16);
        prefix->address[4 * w + 2] = (uint8_t)(word >> 8);
        prefix->address[4 * w + 3] = (uint8_t)word;
    }
}

/* brk_filter_counters (per-CPU hash): one rule's counters, kept across generations. */
struct brk_xdp_filter_counter_key {
    uint64_t filter;
    uint64_t id;
};

struct brk_xdp_filter_counters {
    uint64_t hits;
    uint64_t bytes;
};

#ifndef __bpf__
/* io_xdp.c's, for xdp_filter.c: a map of the loaded program by name (-1:
 * none), the CPUs its per-CPU maps hold values for. */
int brk_xdp_map(brk_xdp *xdp, const char *name);
int brk_xdp_cpus(brk_xdp *xdp);
/* Where the program keeps the binding of its Filter numbered filter (NULL: no such number). */
struct brk_xdp_filter;
struct brk_xdp_filter **brk_xdp_filter_slot(brk_xdp *xdp, unsigned filter);
/* xdp_filter.c's, for io_xdp.c when the program closes. */
void brk_xdp_filter_unbind(struct brk_xdp_filter *binding);
#endif

#endif
