/* The Filter's rule sets: what one published set holds (a classifier of
 * hash tables per mask, tuple space search), the counters its rules point
 * at, and the hook for a reader outside this process (the XDP program's
 * maps). Apart from filter_rules.h so that code which also needs
 * <linux/bpf.h> (xdp_filter.c) need not include libpcap's <pcap/bpf.h>. */
#ifndef BRK_FILTER_SET_H
#define BRK_FILTER_SET_H

#include "internal.h"
#include "filter_key.h"

#include <time.h>

#define FILTER_CACHE_LINE 64

/* Counters of one rule, in chunks that never move: both the old and the new
 * rule set point at the same counters, so republishing loses no count. */
struct filter_rule_counter {
    uint64_t hits;
    uint64_t bytes;
};

/* What a rule set needs of a rule while matching. */
struct filter_active_rule {
    uint64_t expires_ns;                  /* CLOCK_MONOTONIC_COARSE; 0 = never */
    struct filter_rule_counter *counter;
    uint64_t id;                          /* for a mirror: the engine thread never reads it */
};

/* One mask over the key (tuple space search): every rule of one action and
 * family with this exact mask sits in one open-addressing hash table keyed by
 * the masked key. A slot is rule index + 1 (0 = empty), then the masked key,
 * padded to a power of two (IPv4 32 bytes, IPv6 64) in a 64-byte aligned
 * array: a slot never straddles two cache lines, so one prefetch brings it. */
struct filter_shape {
    struct filter_key mask;
    unsigned specificity;                 /* bits in mask: most specific first */
    uint32_t slot_mask;                   /* slots - 1 (a power of two) */
    uint32_t *slots;
};

/* With many shapes (prefix rules of many lengths), probing each would cost a
 * cache miss per shape. The guard tells, from the top bits of the source
 * (side 0) and of the destination (side 1), which shapes can hold a match:
 * bit s of guard[side][word >> guard_shift] | open[side] set = shape s may
 * match. Shape 63 stands for itself and every later one.
 *
 * The guard is sized to the set (filter_rules.c, guard_bits): 8 top bits for
 * a few keys (2 x 2 KiB, built in microseconds), growing with the key count
 * to 16 bits (2 x 512 KiB) from a few thousand keys on. A small set's shape
 * tables are small enough to stay in cache, so a coarser guard costs it an
 * extra probe now and then, not a miss; a big set gets the fine guard that
 * spares it one miss per shape. Publishing a 16-rule set used to allocate,
 * fault in and fill the full 1 MiB guard, which was nearly all its cost. */
#define FILTER_GUARD_MIN_SHAPES 3
#define FILTER_GUARD_MIN_BITS 8u
#define FILTER_GUARD_MAX_BITS 16u
#define FILTER_GUARD_OVERFLOW 63u

struct filter_classifier {
    unsigned shape_count;
    struct filter_shape *shapes;
    uint32_t *slot_memory;                /* every shape's slots, in one allocation */
    uint64_t *guard[2];                   /* NULL below FILTER_GUARD_MIN_SHAPES shapes; one allocation, at guard[0] */
    uint64_t open[2];                     /* shapes that do not look at that side's guard bits */
    unsigned guard_shift;                 /* 32 - the guard's bits: entry = address word >> guard_shift */
};

/* Immutable once published. */
struct filter_rule_set {
    struct filter_classifier drop[FILTER_FAMILIES];
    struct filter_classifier allow[FILTER_FAMILIES];
    unsigned rule_count;
    struct filter_active_rule *rules;
};

/* Another reader of the published sets, outside this process's memory (the
 * XDP program's rule maps, xdp_filter.c): shown every new set before it is
 * published, which it may refuse (nothing changes then), and asked for a
 * rule's counts, which add to the table's own. Called under table->lock. */
/* A rule a publication adds or removes. */
struct filter_change {
    const struct brk_filter_rule *rule;
    int removed;
};

struct filter_mirror {
    /* changes NULL: the first set the mirror sees, all of it new. */
    int (*publish)(void *context, const struct filter_rule_set *set, const struct filter_change *changes,
                   unsigned change_count, char *error, size_t error_size);
    void (*counts)(void *context, uint64_t id, struct filter_rule_counter *out);
    void *context;
};

struct brk_filter_table;

/* Whether rule applies to packets of family (FILTER_IPV4, FILTER_IPV6). */
int filter_rule_applies_to(const struct brk_filter_rule *rule, int family);
/* Calls visit for every (key, mask) rule occupies in family: once, or twice
 * when it is bidirectional and its reverse differs. The key is masked. */
typedef int (*filter_key_visitor)(void *context, const struct filter_key *key, const struct filter_key *mask,
                                  uint32_t rule_index);
int filter_visit_rule_keys(const struct brk_filter_rule *rule, int family, uint32_t rule_index,
                           filter_key_visitor visit, void *context);

/* Makes mirror see the current set now and every later one; -1 (with the
 * mirror's reason) when it refuses the current set or another mirror is set. */
int filter_table_set_mirror(struct brk_filter_table *table, const struct filter_mirror *mirror,
                            char *error, size_t error_size);
/* Ends the mirror, its counts added to the rules' own first. */
void filter_table_clear_mirror(struct brk_filter_table *table);

/* Words of the key for a family: IPv4 4, IPv6 10 (always even). */
static inline unsigned filter_key_words(int family)
{
    return family == FILTER_IPV4 ? FILTER_IPV4_KEY_WORDS : FILTER_KEY_WORDS;
}

/* Words of a slot for keys of key_words: IPv4 8, IPv6 16. */
static inline unsigned filter_slot_words(unsigned key_words)
{
    return key_words == FILTER_IPV4_KEY_WORDS ? 8 : 16;
}

/* Multiply-xorshift over 64-bit pairs of the masked key: a few cycles, and
 * good enough spread for linear probing at half load. */
static inline __attribute__((always_inline)) uint32_t filter_hash(const uint32_t *words, unsigned count)
{
    uint64_t hash = 0x9e3779b97f4a7c15ull;
    for (unsigned i = 0; i < count; i += 2) {
        hash = (hash ^ (words[i] | (uint64_t)words[i + 1] << 32)) * 0xff51afd7ed558ccdull;
        hash ^= hash >> 29;
    }
    return (uint32_t)(hash >> 32) ^ (uint32_t)hash;
}

static inline uint64_t filter_coarse_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

#endif
