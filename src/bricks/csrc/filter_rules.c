/* The Filter brick's control side: keeps the rule list, builds an immutable
 * rule set from it (one hash table per mask: exact 5-tuples and every prefix
 * length alike), publishes it with one atomic pointer store and frees the old
 * one once the engine thread can no longer hold it.
 *
 * Invariants, kept under table->lock:
 * - table->current always points at a complete rule set built from exactly
 *   the rules in table->rules (minus those marked removed while building);
 * - a rule's counter slot is neither reused nor zeroed while a published set
 *   may still point at it: slots return to the free list only after
 *   wait_for_reader() following the publication that dropped them.
 */
#include "filter_rules.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Counter chunks double: chunk c holds FIRST_CHUNK_COUNTERS << c counters, so
 * a table of a few rules allocates 1 KiB, not 64, and a million rules take
 * 15 chunks. */
#define FIRST_CHUNK_COUNTERS 64u
#define MIN_SLOTS 8u
#define READER_SPINS 1000
#define HUGE_PAGE_BYTES (2u << 20)

struct stored_rule {
    struct brk_filter_rule rule;
    uint64_t expires_ns;                  /* 0 = never */
    uint32_t counter_slot;
    int removing;                         /* excluded from the set being built */
};

static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;
static int membarrier_available;

static void register_membarrier(void)
{
    membarrier_available =
        syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* ------------------------------------------------------------ rule keys */

/* address words + mask words for prefix bits of a family's address. */
static void address_words(const uint8_t *address, unsigned prefix, unsigned address_words_count,
                          uint32_t *key, uint32_t *mask)
{
    for (unsigned w = 0; w < address_words_count; w++) {
        unsigned bits = prefix > 32 * w ? prefix - 32 * w : 0;
        uint32_t word_mask = bits >= 32 ? UINT32_MAX : bits ? UINT32_MAX << (32 - bits) : 0;
        mask[w] = word_mask;
        key[w] = filter_load_be32(address + 4 * w) & word_mask;
    }
}

/* The key and mask of rule for family, read forwards or with both ends swapped. */
static void rule_key(const struct brk_filter_rule *rule, int family, int swapped,
                     struct filter_key *key, struct filter_key *mask)
{
    unsigned words = family == FILTER_IPV4 ? 1 : 4;
    const uint8_t *src = swapped ? rule->dst : rule->src, *dst = swapped ? rule->src : rule->dst;
    unsigned src_prefix = swapped ? rule->dst_prefix : rule->src_prefix;
    unsigned dst_prefix = swapped ? rule->src_prefix : rule->dst_prefix;
    int has_sport = !!(rule->flags & (swapped ? BRK_FILTER_MATCH_DPORT : BRK_FILTER_MATCH_SPORT));
    int has_dport = !!(rule->flags & (swapped ? BRK_FILTER_MATCH_SPORT : BRK_FILTER_MATCH_DPORT));
    uint16_t sport = swapped ? rule->dport : rule->sport, dport = swapped ? rule->sport : rule->dport;

    memset(key, 0, sizeof(*key));
    memset(mask, 0, sizeof(*mask));
    address_words(src, src_prefix, words, key->word, mask->word);
    address_words(dst, dst_prefix, words, key->word + words, mask->word + words);
    mask->word[2 * words] = (has_sport ? 0xFFFF0000u : 0) | (has_dport ? 0xFFFFu : 0);
    key->word[2 * words] = ((uint32_t)sport << 16 | dport) & mask->word[2 * words];
    if (rule->flags & BRK_FILTER_MATCH_PROTOCOL) {
        mask->word[2 * words + 1] = 0xFF;
        key->word[2 * words + 1] = family == FILTER_IPV4 ? rule->protocol : rule->protocol6;
    }
}

int filter_rule_applies_to(const struct brk_filter_rule *rule, int family)
{
    return rule->family == BRK_FILTER_ANY_FAMILY
        || rule->family == (family == FILTER_IPV4 ? BRK_FILTER_IPV4 : BRK_FILTER_IPV6);
}

int filter_visit_rule_keys(const struct brk_filter_rule *rule, int family, uint32_t rule_index,
                           filter_key_visitor visit, void *context)
{
    struct filter_key key, mask, reverse_key, reverse_mask;
    unsigned words = filter_key_words(family);
    rule_key(rule, family, 0, &key, &mask);
    if (visit(context, &key, &mask, rule_index) != 0)
        return -1;
    if (!(rule->flags & BRK_FILTER_BIDIRECTIONAL))
        return 0;
    rule_key(rule, family, 1, &reverse_key, &reverse_mask);
    if (memcmp(key.word, reverse_key.word, words * 4) == 0
            && memcmp(mask.word, reverse_mask.word, words * 4) == 0)
        return 0;
    return visit(context, &reverse_key, &reverse_mask, rule_index);
}

/* ------------------------------------------------------------ rule sets */

/* Zeroed memory for a classifier's slots. Large tables go on huge pages: a probe
 * lands on a random line, and with 4 KiB pages most probes would also miss
 * the TLB (a page walk costs more than the lookup, twice so under a VM). */
static uint32_t *allocate_slots(size_t bytes)
{
    size_t alignment = bytes < HUGE_PAGE_BYTES ? FILTER_CACHE_LINE : HUGE_PAGE_BYTES;
    bytes = (bytes + alignment - 1) / alignment * alignment;
    uint32_t *slots = aligned_alloc(alignment, bytes);
    if (slots) {
        if (alignment == HUGE_PAGE_BYTES)
            madvise(slots, bytes, MADV_HUGEPAGE);
        memset(slots, 0, bytes);
    }
    return slots;
}

static void free_rule_set(struct filter_rule_set *set)
{
    if (!set)
        return;
    for (int family = 0; family < FILTER_FAMILIES; family++) {
        struct filter_classifier *classifiers[2] = { &set->drop[family], &set->allow[family] };
        for (int c = 0; c < 2; c++) {
            free(classifiers[c]->slot_memory);
            free(classifiers[c]->shapes);
            free(classifiers[c]->guard[0]);   /* guard[1] lies in the same allocation */
        }
    }
    free(set->rules);
    free(set);
}

/* Building one classifier: shapes first counted, then filled. */
struct built_key {
    struct filter_key key, mask;
    uint32_t rule_index;
    uint32_t shape;                       /* index into classifier->shapes, once counted */
};

/* Building one classifier: the keys of its rules gathered once (rule_key per
 * rule and direction, not once per pass), each key's shape found once through
 * a hash of the masks (a linear search over the shapes per key made a
 * publication of 10,000 prefix rules, ~50 shapes, cost 33 ms), then tables
 * filled and the guard marked from that list. The key and count arrays are
 * the rule set's, sized once for all four classifiers (two keys per rule at
 * most, a shape per key at most): a publication makes a handful of
 * allocations, not one per shape and growth step. */
struct shape_builder {
    struct filter_classifier *classifier;
    unsigned words;
    uint32_t *counts;                     /* keys per shape */
    struct built_key *keys;               /* room for two per rule: never grown */
    unsigned key_count;
    uint32_t *shape_of_mask;              /* open addressing over masks: shape index + 1, 0 = empty */
    uint32_t shape_of_mask_mask;          /* entries - 1 */
};

static int collect_key(void *context, const struct filter_key *key, const struct filter_key *mask,
                       uint32_t rule_index)
{
    struct shape_builder *builder = context;
    struct built_key *built = &builder->keys[builder->key_count++];
    built->key = *key;
    built->mask = *mask;
    built->rule_index = rule_index;
    return 0;
}

/* Finds built's shape by its mask, making a new one if none has it; counts the key. */
static void count_key(struct shape_builder *builder, struct built_key *built)
{
    struct filter_classifier *classifier = builder->classifier;
    size_t bytes = builder->words * sizeof(uint32_t);
    uint32_t entry = filter_hash(built->mask.word, builder->words) & builder->shape_of_mask_mask;
    for (;; entry = (entry + 1) & builder->shape_of_mask_mask) {
        uint32_t found = builder->shape_of_mask[entry];
        if (!found)
            break;
        if (memcmp(classifier->shapes[found - 1].mask.word, built->mask.word, bytes) == 0) {
            built->shape = found - 1;
            builder->counts[found - 1]++;
            return;
        }
    }
    struct filter_shape *shape = &classifier->shapes[classifier->shape_count];
    memset(shape, 0, sizeof(*shape));
    shape->mask = built->mask;
    for (unsigned w = 0; w < builder->words; w++)
        shape->specificity += (unsigned)__builtin_popcount(built->mask.word[w]);
    builder->counts[classifier->shape_count] = 1;
    built->shape = classifier->shape_count++;
    builder->shape_of_mask[entry] = classifier->shape_count;
}

/* A duplicate key keeps the earlier rule: it was added first. */
static void insert_key(struct shape_builder *builder, const struct built_key *built)
{
    unsigned words = builder->words, stride = filter_slot_words(words);
    struct filter_shape *shape = &builder->classifier->shapes[built->shape];
    uint32_t slot = filter_hash(built->key.word, words) & shape->slot_mask;
    for (;;) {
        uint32_t *entry = shape->slots + (size_t)slot * stride;
        if (entry[0] == 0) {
            entry[0] = built->rule_index + 1;
            memcpy(entry + 1, built->key.word, words * sizeof(uint32_t));
            return;
        }
        if (memcmp(entry + 1, built->key.word, words * sizeof(uint32_t)) == 0)
            return;
        slot = (slot + 1) & shape->slot_mask;
    }
}

/* Marks, in each side's guard, the top-bit values under which key may match. */
static void guard_key(struct shape_builder *builder, const struct built_key *built)
{
    struct filter_classifier *classifier = builder->classifier;
    const struct filter_key *key = &built->key, *mask = &built->mask;
    unsigned shape = built->shape;
    unsigned bit = shape < FILTER_GUARD_OVERFLOW ? shape : FILTER_GUARD_OVERFLOW;
    unsigned shift = classifier->guard_shift;
    uint32_t entry_mask = UINT32_MAX >> shift;
    for (int side = 0; side < 2; side++) {
        unsigned word = side ? (builder->words - 2) / 2 : 0;
        uint32_t top_mask = mask->word[word] >> shift;
        if (!(classifier->open[side] >> bit & 1)) {
            uint32_t first = key->word[word] >> shift, span = (~top_mask & entry_mask) + 1;
            for (uint32_t entry = first; entry < first + span; entry++)
                classifier->guard[side][entry] |= 1ull << bit;
        }
    }
}

/* The guard's bits for a classifier of keys (rule, direction) entries: about
 * 32 entries per key, so that keys under different top bits mostly land in
 * different entries, within FILTER_GUARD_MIN_BITS..FILTER_GUARD_MAX_BITS. A
 * key filling its prefix's span costs at most 2^bits stores per side. */
static unsigned guard_bits(uint64_t keys)
{
    unsigned bits = FILTER_GUARD_MIN_BITS;
    while (bits < FILTER_GUARD_MAX_BITS && (1ull << bits) < 32 * keys)
        bits++;
    return bits;
}

static int build_guard(struct shape_builder *builder)
{
    struct filter_classifier *classifier = builder->classifier;
    if (classifier->shape_count < FILTER_GUARD_MIN_SHAPES)
        return 0;
    uint64_t keys = 0;
    for (unsigned s = 0; s < classifier->shape_count; s++)
        keys += builder->counts[s];
    unsigned bits = guard_bits(keys);
    size_t entries = (size_t)1 << bits;
    classifier->guard_shift = 32 - bits;
    if (!(classifier->guard[0] = calloc(2 * entries, sizeof(uint64_t))))
        return -1;
    classifier->guard[1] = classifier->guard[0] + entries;
    for (int side = 0; side < 2; side++) {
        unsigned word = side ? (builder->words - 2) / 2 : 0;
        /* A shape is open on a side when its mask leaves that side's guard
         * bits free; the overflow bit is always open. */
        classifier->open[side] = 1ull << FILTER_GUARD_OVERFLOW;
        for (unsigned s = 0; s < classifier->shape_count && s < FILTER_GUARD_OVERFLOW; s++)
            if (!(classifier->shapes[s].mask.word[word] >> classifier->guard_shift))
                classifier->open[side] |= 1ull << s;
    }
    for (unsigned k = 0; k < builder->key_count; k++)
        guard_key(builder, &builder->keys[k]);
    return 0;
}

/* Shape indexes, most specific shape first (then in order of first use). */
static int by_specificity(const void *a, const void *b, void *context)
{
    const struct filter_shape *shapes = context;
    uint32_t left = *(const uint32_t *)a, right = *(const uint32_t *)b;
    if (shapes[left].specificity != shapes[right].specificity)
        return shapes[left].specificity < shapes[right].specificity ? 1 : -1;
    return left < right ? -1 : left > right;
}

/* Puts the shapes most specific first, as lookup() wants them, and renumbers the keys' shapes. */
static int sort_shapes(struct shape_builder *builder)
{
    struct filter_classifier *classifier = builder->classifier;
    unsigned count = classifier->shape_count;
    uint32_t *order = malloc(2 * (size_t)count * sizeof(*order)), *position = order + count;
    struct filter_shape *sorted = malloc(count * sizeof(*sorted));
    if (!order || !sorted) {
        free(order);
        free(sorted);
        return -1;
    }
    for (uint32_t s = 0; s < count; s++)
        order[s] = s;
    qsort_r(order, count, sizeof(*order), by_specificity, classifier->shapes);
    for (uint32_t p = 0; p < count; p++) {
        sorted[p] = classifier->shapes[order[p]];
        position[order[p]] = p;
    }
    for (unsigned k = 0; k < builder->key_count; k++)
        builder->keys[k].shape = position[builder->keys[k].shape];
    free(classifier->shapes);
    classifier->shapes = sorted;
    free(order);
    return 0;
}

static int build_classifier(struct brk_filter_table *table, struct filter_classifier *classifier,
                            int action, int family, struct built_key *keys, uint32_t *counts)
{
    struct shape_builder builder = { .classifier = classifier, .words = filter_key_words(family),
                                     .keys = keys, .counts = counts };
    /* Rule indexes are positions in table->rules; the set's rule array uses the same. */
    for (unsigned i = 0; i < table->rule_count; i++) {
        const struct stored_rule *stored = &table->rules[i];
        if (!stored->removing && stored->rule.action == action && filter_rule_applies_to(&stored->rule, family)
                && filter_visit_rule_keys(&stored->rule, family, i, collect_key, &builder) != 0)
            return -1;
    }
    /* No rule of this action and family: no shapes (and shapes NULL). */
    if (!builder.key_count)
        return 0;
    uint32_t entries = 8;
    while (entries < 2 * builder.key_count)
        entries *= 2;
    builder.shape_of_mask_mask = entries - 1;
    if (!(classifier->shapes = malloc(builder.key_count * sizeof(*classifier->shapes)))
            || !(builder.shape_of_mask = calloc(entries, sizeof(*builder.shape_of_mask))))
        return -1;
    for (unsigned k = 0; k < builder.key_count; k++)
        count_key(&builder, &builder.keys[k]);
    free(builder.shape_of_mask);
    /* Tables at most half full, sized from each shape's key count. */
    for (unsigned s = 0; s < classifier->shape_count; s++) {
        uint32_t slots = MIN_SLOTS;
        while (slots < 2 * builder.counts[s])
            slots *= 2;
        classifier->shapes[s].slot_mask = slots - 1;
    }
    if (sort_shapes(&builder) != 0)
        return -1;
    /* All shapes' tables in one allocation (a whole number of cache lines
     * each), on huge pages once they are large together. */
    size_t slot_bytes = filter_slot_words(builder.words) * sizeof(uint32_t), total_bytes = 0;
    for (unsigned s = 0; s < classifier->shape_count; s++)
        total_bytes += ((size_t)classifier->shapes[s].slot_mask + 1) * slot_bytes;
    if (!(classifier->slot_memory = allocate_slots(total_bytes)))
        return -1;
    for (size_t s = 0, offset = 0; s < classifier->shape_count; s++) {
        classifier->shapes[s].slots = classifier->slot_memory + offset / sizeof(uint32_t);
        offset += ((size_t)classifier->shapes[s].slot_mask + 1) * slot_bytes;
    }
    for (unsigned k = 0; k < builder.key_count; k++)
        insert_key(&builder, &builder.keys[k]);
    return build_guard(&builder);
}

static struct filter_rule_counter *counter_of(struct brk_filter_table *table, uint32_t slot)
{
    /* Chunk c starts at FIRST_CHUNK_COUNTERS * (2^c - 1). */
    uint32_t scaled = slot / FIRST_CHUNK_COUNTERS + 1;
    unsigned chunk = 31u - (unsigned)__builtin_clz(scaled);
    uint32_t start = FIRST_CHUNK_COUNTERS * ((1u << chunk) - 1);
    return &table->counter_chunks[chunk][slot - start];
}

/* A rule set of the rules not marked removing, or NULL when out of memory. */
static struct filter_rule_set *build_rule_set(struct brk_filter_table *table)
{
    struct built_key *keys = NULL;
    uint32_t *counts = NULL;
    struct filter_rule_set *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    set->rule_count = table->rule_count;
    if (table->rule_count && !(set->rules = calloc(table->rule_count, sizeof(*set->rules))))
        goto fail;
    for (unsigned i = 0; i < table->rule_count; i++) {
        set->rules[i].expires_ns = table->rules[i].expires_ns;
        set->rules[i].counter = counter_of(table, table->rules[i].counter_slot);
        set->rules[i].id = table->rules[i].rule.id;
    }
    if (table->rule_count && (!(keys = malloc(2 * (size_t)table->rule_count * sizeof(*keys)))
                              || !(counts = malloc(2 * (size_t)table->rule_count * sizeof(*counts)))))
        goto fail;
    for (int family = 0; family < FILTER_FAMILIES; family++)
        if (build_classifier(table, &set->drop[family], BRK_FILTER_DROP, family, keys, counts) != 0
                || build_classifier(table, &set->allow[family], BRK_FILTER_ALLOW, family, keys, counts) != 0)
            goto fail;
    free(keys);
    free(counts);
    return set;
fail:
    free(keys);
    free(counts);
    free_rule_set(set);
    return NULL;
}

/* Returns once the engine thread holds no rule set older than the current one. */
static void wait_for_reader(struct brk_filter_table *table)
{
    if (membarrier_available)
        syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    else
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint64_t epoch = __atomic_load_n(&table->reader_epoch, __ATOMIC_ACQUIRE);
    if (!(epoch & 1))
        return;
    for (int spins = 0; __atomic_load_n(&table->reader_epoch, __ATOMIC_ACQUIRE) == epoch; spins++) {
        if (spins < READER_SPINS) {
            sched_yield();
        } else {
            struct timespec pause = { 0, 100000 };
            nanosleep(&pause, NULL);
        }
    }
}

static void publish(struct brk_filter_table *table, struct filter_rule_set *set)
{
    struct filter_rule_set *old = __atomic_exchange_n(&table->current, set, __ATOMIC_SEQ_CST);
    table->publications++;
    wait_for_reader(table);
    free_rule_set(old);
}

/* ------------------------------------------------------------ the rule list */

static int allocate_counter_slot(struct brk_filter_table *table, uint32_t *slot)
{
    if (table->free_slot_count) {
        *slot = table->free_slots[--table->free_slot_count];
    } else {
        unsigned chunk = table->chunk_count;
        if (table->next_slot == FIRST_CHUNK_COUNTERS * ((1u << chunk) - 1)) {
            if (chunk == 25)
                return -1;                /* 2^31 counters: the slot numbers' end */
            struct filter_rule_counter **chunks =
                realloc(table->counter_chunks, (table->chunk_count + 1) * sizeof(*chunks));
            if (!chunks)
                return -1;
            table->counter_chunks = chunks;
            if (!(chunks[chunk] = calloc((size_t)FIRST_CHUNK_COUNTERS << chunk, sizeof(**chunks))))
                return -1;
            table->chunk_count++;
            /* Room to give every slot of the new chunk back later. */
            uint32_t *free_slots = realloc(table->free_slots,
                                           (((size_t)1 << table->chunk_count) - 1) * FIRST_CHUNK_COUNTERS
                                           * sizeof(uint32_t));
            if (!free_slots)
                return -1;
            table->free_slots = free_slots;
        }
        *slot = table->next_slot++;
    }
    *counter_of(table, *slot) = (struct filter_rule_counter){ 0, 0 };
    return 0;
}

/* Drops the rules marked removing from the list, their slots to the free
 * list: only after the set that still named them was replaced and waited out. */
static void compact_removed(struct brk_filter_table *table)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < table->rule_count; i++) {
        if (table->rules[i].removing)
            table->free_slots[table->free_slot_count++] = table->rules[i].counter_slot;
        else
            table->rules[kept++] = table->rules[i];
    }
    table->rule_count = kept;
}

static int mark_expired(struct brk_filter_table *table, uint64_t now)
{
    int marked = 0;
    for (unsigned i = 0; i < table->rule_count; i++) {
        uint64_t expires = table->rules[i].expires_ns;
        if (expires && now >= expires) {
            table->rules[i].removing = 1;
            marked = 1;
        }
    }
    return marked;
}

static void unmark(struct brk_filter_table *table)
{
    for (unsigned i = 0; i < table->rule_count; i++)
        table->rules[i].removing = 0;
}

/* Shows the mirror set with what changed since the last one: the rules
 * marked removing, and those from added_from on (just added). */
static int publish_to_mirror(struct brk_filter_table *table, const struct filter_rule_set *set, unsigned added_from)
{
    unsigned count = 0;
    struct filter_change *changes = malloc((table->rule_count + 1) * sizeof(*changes));
    if (!changes) {
        snprintf(table->mirror_error, sizeof(table->mirror_error), "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < table->rule_count; i++)
        if (table->rules[i].removing || i >= added_from)
            changes[count++] = (struct filter_change){ &table->rules[i].rule, table->rules[i].removing };
    int result = table->mirror->publish(table->mirror->context, set, changes, count, table->mirror_error,
                                        sizeof(table->mirror_error));
    free(changes);
    return result;
}

/* Publishes the list minus what is marked, then forgets the marked rules;
 * the rules from added_from on are new. Out of memory, or the mirror refused
 * the set (-2, its reason in table->mirror_error): nothing changes. */
static int republish(struct brk_filter_table *table, unsigned added_from)
{
    struct filter_rule_set *set = build_rule_set(table);
    if (!set) {
        unmark(table);
        return -1;
    }
    if (table->mirror && publish_to_mirror(table, set, added_from) != 0) {
        free_rule_set(set);
        unmark(table);
        return -2;
    }
    publish(table, set);
    compact_removed(table);
    return 0;
}

static void prune_expired(struct brk_filter_table *table)
{
    if (mark_expired(table, filter_coarse_now_ns()))
        republish(table, table->rule_count);
}

/* ------------------------------------------------------------ the API */

brk_filter_table *brk_filter_table_new(const char *expression, char *error, size_t error_size)
{
    struct brk_filter_table *table = aligned_alloc(FILTER_CACHE_LINE,
                                                   (sizeof(*table) + FILTER_CACHE_LINE - 1)
                                                   / FILTER_CACHE_LINE * FILTER_CACHE_LINE);
    if (!table)
        return brk_fail(error, error_size, "out of memory");
    memset(table, 0, sizeof(*table));
    pthread_mutex_init(&table->lock, NULL);
    pthread_once(&membarrier_once, register_membarrier);
    table->reader_needs_fence = !membarrier_available;
    if (!(table->current = calloc(1, sizeof(*table->current)))) {
        brk_filter_table_free(table);
        return brk_fail(error, error_size, "out of memory");
    }
    if (expression && *expression) {
        pcap_t *compiler = pcap_open_dead(DLT_EN10MB, 262144);
        if (!compiler) {
            brk_filter_table_free(table);
            return brk_fail(error, error_size, "out of memory");
        }
        if (pcap_compile(compiler, &table->program, expression, 1, PCAP_NETMASK_UNKNOWN) != 0) {
            brk_fail(error, error_size, "bad filter expression '%s': %s", expression, pcap_geterr(compiler));
            pcap_close(compiler);
            brk_filter_table_free(table);
            return NULL;
        }
        pcap_close(compiler);
        table->has_program = 1;
    }
    return table;
}

void brk_filter_table_free(brk_filter_table *table)
{
    if (!table)
        return;
    if (table->has_program)
        pcap_freecode(&table->program);
    free_rule_set(table->current);
    for (unsigned c = 0; c < table->chunk_count; c++)
        free(table->counter_chunks[c]);
    free(table->counter_chunks);
    free(table->free_slots);
    free(table->rules);
    pthread_mutex_destroy(&table->lock);
    free(table);
}

static const char *rule_problem(const struct brk_filter_rule *rule)
{
    unsigned address_bits = rule->family == BRK_FILTER_IPV6 ? 128 : rule->family == BRK_FILTER_IPV4 ? 32 : 0;
    if (rule->action != BRK_FILTER_DROP && rule->action != BRK_FILTER_ALLOW)
        return "action must be drop or allow";
    if (rule->family != BRK_FILTER_ANY_FAMILY && rule->family != BRK_FILTER_IPV4
            && rule->family != BRK_FILTER_IPV6)
        return "family must be 0, 4 or 6";
    if (rule->src_prefix > address_bits || rule->dst_prefix > address_bits)
        return "prefix longer than the address";
    return NULL;
}

int brk_filter_add(brk_filter_table *table, const struct brk_filter_rule *rules, unsigned count,
                   char *error, size_t error_size)
{
    uint64_t now = filter_coarse_now_ns();
    unsigned added = 0;
    for (unsigned i = 0; i < count; i++) {
        const char *problem = rule_problem(&rules[i]);
        if (problem) {
            brk_fail(error, error_size, "rule %llu: %s", (unsigned long long)rules[i].id, problem);
            return -1;
        }
    }
    pthread_mutex_lock(&table->lock);
    mark_expired(table, now);
    if (table->rule_count + count > table->rule_capacity) {
        unsigned capacity = table->rule_capacity ? table->rule_capacity : 64;
        while (capacity < table->rule_count + count)
            capacity *= 2;
        struct stored_rule *grown = realloc(table->rules, capacity * sizeof(*grown));
        if (!grown)
            goto out_of_memory;
        table->rules = grown;
        table->rule_capacity = capacity;
    }
    for (; added < count; added++) {
        struct stored_rule *stored = &table->rules[table->rule_count + added];
        stored->rule = rules[added];
        stored->expires_ns = rules[added].timeout_ns ? now + rules[added].timeout_ns : 0;
        stored->removing = 0;
        if (allocate_counter_slot(table, &stored->counter_slot) != 0)
            goto out_of_memory;
    }
    table->rule_count += count;
    int published = republish(table, table->rule_count - count);
    if (published != 0) {
        table->rule_count -= count;
        goto refused;
    }
    pthread_mutex_unlock(&table->lock);
    return 0;
out_of_memory:
    published = -1;
refused:
    /* Nothing was published: the new slots were never visible to the engine. */
    while (added--)
        table->free_slots[table->free_slot_count++] = table->rules[table->rule_count + added].counter_slot;
    unmark(table);
    pthread_mutex_unlock(&table->lock);
    brk_fail(error, error_size, "%s", published == -2 ? table->mirror_error : "out of memory");
    return -1;
}

int brk_filter_remove(brk_filter_table *table, uint64_t id)
{
    int found = 0;
    pthread_mutex_lock(&table->lock);
    int expired = mark_expired(table, filter_coarse_now_ns());
    for (unsigned i = 0; i < table->rule_count; i++) {
        if (table->rules[i].rule.id == id && !table->rules[i].removing) {
            table->rules[i].removing = 1;
            found = 1;
        }
    }
    int result = found || expired ? republish(table, table->rule_count) : 0;
    result = found && result == 0 ? 0 : -1;
    pthread_mutex_unlock(&table->lock);
    return result;
}

void brk_filter_clear(brk_filter_table *table)
{
    pthread_mutex_lock(&table->lock);
    for (unsigned i = 0; i < table->rule_count; i++)
        table->rules[i].removing = 1;
    republish(table, table->rule_count);
    pthread_mutex_unlock(&table->lock);
}

unsigned brk_filter_list(brk_filter_table *table, struct brk_filter_rule_state *out, unsigned max)
{
    pthread_mutex_lock(&table->lock);
    prune_expired(table);
    uint64_t now = filter_coarse_now_ns();
    unsigned count = table->rule_count;
    for (unsigned i = 0; i < count && i < max; i++) {
        const struct stored_rule *stored = &table->rules[i];
        const struct filter_rule_counter *counter = counter_of(table, stored->counter_slot);
        out[i].id = stored->rule.id;
        /* The engine thread counts on: a snapshot, each 64-bit load whole. */
        out[i].hits = __atomic_load_n(&counter->hits, __ATOMIC_RELAXED);
        out[i].bytes = __atomic_load_n(&counter->bytes, __ATOMIC_RELAXED);
        if (table->mirror) {
            struct filter_rule_counter mirrored = { 0, 0 };
            table->mirror->counts(table->mirror->context, stored->rule.id, &mirrored);
            out[i].hits += mirrored.hits;
            out[i].bytes += mirrored.bytes;
        }
        out[i].remaining_ns = !stored->expires_ns ? -1
                              : stored->expires_ns > now ? (int64_t)(stored->expires_ns - now) : 0;
    }
    pthread_mutex_unlock(&table->lock);
    return count;
}

int filter_table_set_mirror(struct brk_filter_table *table, const struct filter_mirror *mirror,
                            char *error, size_t error_size)
{
    int result = 0;
    pthread_mutex_lock(&table->lock);
    if (table->mirror) {
        brk_fail(error, error_size, "this Filter's rules already run in another XDP program");
        result = -1;
    } else if (mirror->publish(mirror->context, table->current, NULL, 0, error, error_size) != 0) {
        result = -1;
    } else {
        table->mirror = mirror;
    }
    pthread_mutex_unlock(&table->lock);
    return result;
}

void filter_table_clear_mirror(struct brk_filter_table *table)
{
    pthread_mutex_lock(&table->lock);
    for (unsigned i = 0; table->mirror && i < table->rule_count; i++) {
        struct filter_rule_counter mirrored = { 0, 0 };
        table->mirror->counts(table->mirror->context, table->rules[i].rule.id, &mirrored);
        /* The engine thread may count into the same counter (a tree relinked on packet): atomically. */
        struct filter_rule_counter *counter = counter_of(table, table->rules[i].counter_slot);
        __atomic_fetch_add(&counter->hits, mirrored.hits, __ATOMIC_RELAXED);
        __atomic_fetch_add(&counter->bytes, mirrored.bytes, __ATOMIC_RELAXED);
    }
    table->mirror = NULL;
    pthread_mutex_unlock(&table->lock);
}

uint64_t brk_filter_publications(brk_filter_table *table)
{
    pthread_mutex_lock(&table->lock);
    uint64_t publications = table->publications;
    pthread_mutex_unlock(&table->lock);
    return publications;
}
