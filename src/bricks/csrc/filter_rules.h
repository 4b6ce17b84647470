/* The Filter brick's rule table as the engine thread reads it: an immutable
 * rule set (filter_set.h) published through one atomic pointer, and the
 * reader's side of the hand-over that tells the control thread when an old
 * set may be freed. */
#ifndef BRK_FILTER_RULES_H
#define BRK_FILTER_RULES_H

#include "filter_set.h"

#include <pcap/pcap.h>
#include <pthread.h>

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
    const struct filter_mirror *mirror;
    char mirror_error[256];               /* why the mirror refused the last set */
};


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
