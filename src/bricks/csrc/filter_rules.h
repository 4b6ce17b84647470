/* The Filter brick's rule table as the engine thread reads it: an immutable
 * rule set published through one atomic pointer, and the reader's side of the
 * hand-over that tells the control thread when an old set may be freed. */
#ifndef BRK_FILTER_RULES_H
#define BRK_FILTER_RULES_H

#include "internal.h"

#include <pcap/pcap.h>
#include <pthread.h>
#include <time.h>

#define FILTER_KEY_WORDS 10       /* IPv6: src(4) dst(4) ports(1) protocol(1) */
#define FILTER_IPV4_KEY_WORDS 4   /* IPv4: src dst ports protocol */
#define FILTER_CACHE_LINE 64

/* A packet's (or a rule's) 5-tuple as words: addresses in host order so that
 * a prefix mask keeps the high bits; ports = sport << 16 | dport. */
struct filter_key {
    uint32_t word[FILTER_KEY_WORDS];
};

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

enum { FILTER_IPV4 = 0, FILTER_IPV6 = 1, FILTER_FAMILIES = 2 };

/* Immutable once published. */
struct filter_rule_set {
    struct filter_classifier drop[FILTER_FAMILIES];
    struct filter_classifier allow[FILTER_FAMILIES];
    unsigned rule_count;
    struct filter_active_rule *rules;
};

struct brk_filter_table {
    /* Read by the engine thread per packet. */
    struct filter_rule_set *current;      /* atomic: store release, load acquire */
    struct bpf_program program;
    int has_program;
    int reader_needs_fence;               /* no membarrier(): the reader fences itself */

    /* Written by the engine thread only: odd while a packet is being matched. */
    uint64_t reader_epoch __attribute__((aligned(FILTER_CACHE_LINE)));

    /* The control side, under lock. */
    pthread_mutex_t lock __attribute__((aligned(FILTER_CACHE_LINE)));
    struct stored_rule *rules;
    unsigned rule_count, rule_capacity;
    struct filter_rule_counter **counter_chunks;
    unsigned chunk_count;
    uint32_t *free_slots;
    unsigned free_slot_count;
    uint32_t next_slot;
    uint64_t publications;
    int attached;
};

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

/* The reader's side of the hand-over (a userspace RCU over membarrier()):
 * an odd epoch while it holds a rule set. The control thread publishes, forces
 * a barrier on this thread with membarrier(), then waits for an even epoch or
 * for the epoch to move, after which no one holds the old set. The reader
 * itself pays two plain stores per packet. */
static inline const struct filter_rule_set *filter_read_begin(struct brk_filter_table *table,
                                                              uint64_t *epoch)
{
    __atomic_store_n(&table->reader_epoch, ++*epoch, __ATOMIC_RELAXED);
    if (BRK_UNLIKELY(table->reader_needs_fence))
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    else
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(&table->current, __ATOMIC_ACQUIRE);
}

static inline void filter_read_end(struct brk_filter_table *table, uint64_t *epoch)
{
    __atomic_store_n(&table->reader_epoch, ++*epoch, __ATOMIC_RELEASE);
}

#endif
