/* The XDP back-end's Filter: keeps the rule maps of a loaded program equal to
 * a Filter's rule table (xdp_filter_maps.h says how), one generation per set
 * filter_rules.c publishes, and reads the rules' counters back for
 * f:rules(). Runs on whichever thread changes the rules, under the table's
 * lock; the frames never wait for it. */
#include "filter_set.h"
#include "api/xdp.h"
#include "xdp_filter_maps.h"

#include <errno.h>
#include <stdlib.h>

#ifdef BRK_HAVE_LIBBPF
#include <bpf/bpf.h>

/* Items of one size in a growing array. */
struct item_list {
    uint8_t *items;
    size_t count, capacity, item_size;
};

/* A rule key and what it leads to, as the map holds it. */
struct rule_entry {
    struct brk_xdp_filter_rule_key key;
    struct brk_xdp_filter_rule rule;
};

/* Finds entries by key: open addressing, slot = entry index + 1 (0 = empty), at most half full. */
struct entry_index {
    uint32_t *slots;
    uint32_t slot_mask;
};

/* A mask a rule key names by its id (its index in brk_xdp_filter.masks). */
struct named_mask {
    uint8_t in_current, in_next;          /* used by the current set, by the one being written */
    uint8_t rule_class;
    uint32_t word[FILTER_KEY_WORDS];
};

struct brk_xdp_filter {
    struct brk_filter_table *table;
    struct filter_mirror mirror;
    unsigned filter;
    uint32_t generation;                  /* the current one; 0: nothing written yet */
    int cpus;
    int generation_fd, shapes_fd, rules_fd, prefixes_fd, counters_fd;
    struct item_list entries;             /* struct rule_entry: the map's rule keys */
    struct entry_index index;             /* of entries */
    struct item_list prefix_keys;         /* struct brk_xdp_filter_prefix_key: the current generation's */
    struct item_list ids;                 /* uint64_t: the rules that have a counter entry, ascending */
    struct named_mask *masks;             /* BRK_XDP_FILTER_MASK_IDS */
    unsigned mask_ids_used;               /* ids below it were used once */
};

/* A prefix of one side of a guarded class and the shapes it leads to. */
struct pending_prefix {
    struct brk_xdp_filter_prefix_key key;
    uint64_t shapes;
};

/* What one publication writes before it becomes current. */
struct generation {
    uint32_t number;
    struct item_list entries;             /* struct rule_entry: the set's keys */
    struct entry_index index;             /* of entries */
    struct item_list upserts;             /* struct rule_entry: new keys and keys whose rule changed */
    struct item_list upsert_keys, upsert_values, replaced, deletes;
    struct item_list prefix_keys, ids, new_ids;
    struct item_list prefixes;            /* struct pending_prefix, of the class being written */
    struct brk_xdp_filter_shapes shapes;  /* of the class being written */
};

static void *item_add(struct item_list *list)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 64;
        uint8_t *grown = realloc(list->items, capacity * list->item_size);
        if (!grown)
            return NULL;
        list->items = grown;
        list->capacity = capacity;
    }
    return memset(list->items + list->count++ * list->item_size, 0, list->item_size);
}

static void *item_at(const struct item_list *list, size_t index)
{
    return list->items + index * list->item_size;
}

static void item_list_free(struct item_list *list)
{
    free(list->items);
    list->items = NULL;
    list->count = list->capacity = 0;
}

static void delete_keys(int fd, struct item_list *keys)
{
    uint32_t count = (uint32_t)keys->count;
    if (count && bpf_map_delete_batch(fd, keys->items, &count, NULL) == 0)
        return;
    for (size_t i = 0; i < keys->count; i++)   /* a map without batch deletes (the trie): one by one */
        bpf_map_delete_elem(fd, item_at(keys, i));
}

static int fail_with_errno(char *error, size_t error_size, const char *what)
{
    int code = errno;
    if (code == E2BIG || code == ENOMEM || code == ENOSPC)
        brk_fail(error, error_size, "the XDP program cannot hold %s: its Filters take at most %d rule keys",
                 what, BRK_XDP_FILTER_MAX_KEYS);
    else
        brk_fail(error, error_size, "the XDP program refused %s: %s", what, strerror(code));
    return -1;
}

static int by_length(const void *a, const void *b)
{
    const struct pending_prefix *left = a, *right = b;
    if (left->key.prefix_length != right->key.prefix_length)
        return left->key.prefix_length < right->key.prefix_length ? -1 : 1;
    return memcmp(&left->key, &right->key, sizeof(left->key));
}

/* Stores a guarded class's prefixes, shortest first, each with the shapes of
 * every shorter stored prefix covering it (found in the trie itself: a lookup
 * one bit shorter returns the longest of them), so that a frame needs one
 * lookup per side: its longest match. */
static int write_prefixes(struct brk_xdp_filter *binding, struct generation *next, char *error, size_t error_size)
{
    struct item_list *prefixes = &next->prefixes;
    qsort(prefixes->items, prefixes->count, prefixes->item_size, by_length);
    for (size_t i = 0; i < prefixes->count; i++) {
        struct pending_prefix *prefix = item_at(prefixes, i);
        if (i + 1 < prefixes->count && by_length(prefix, prefix + 1) == 0) {
            prefix[1].shapes |= prefix->shapes;   /* the same prefix in several shapes */
            continue;
        }
        struct brk_xdp_filter_prefix_key shorter = prefix->key;
        uint64_t covering = 0;
        shorter.prefix_length--;
        if (bpf_map_lookup_elem(binding->prefixes_fd, &shorter, &covering) == 0)
            prefix->shapes |= covering;
        if (bpf_map_update_elem(binding->prefixes_fd, &prefix->key, &prefix->shapes, BPF_ANY))
            return fail_with_errno(error, error_size, "this Filter's prefixes");
        struct brk_xdp_filter_prefix_key *written = item_add(&next->prefix_keys);
        if (!written)
            return brk_fail(error, error_size, "out of memory"), -1;
        *written = prefix->key;
    }
    prefixes->count = 0;
    return 0;
}

/* A side's prefix of a masked key, queued with its shape when it has one. */
static int queue_prefix(struct brk_xdp_filter *binding, struct generation *next, unsigned rule_class,
                        unsigned shape, unsigned side, unsigned address_words, const uint32_t *words)
{
    unsigned length = 0;
    for (unsigned w = 0; w < address_words; w++)
        length += (unsigned)__builtin_popcount(next->shapes.mask[shape][side * address_words + w]);
    if (!length)
        return 0;   /* the shape is open on that side */
    struct pending_prefix *prefix = item_add(&next->prefixes);
    if (!prefix)
        return -1;
    prefix->key.prefix_length = BRK_XDP_FILTER_PREFIX_HEADER_BITS + length;
    prefix->key.filter = (uint8_t)binding->filter;
    prefix->key.rule_class = (uint8_t)rule_class;
    prefix->key.side = (uint8_t)side;
    prefix->key.generation = next->number;
    for (unsigned w = 0; w < address_words; w++) {
        uint32_t word = words[side * address_words + w];
        prefix->key.address[4 * w] = (uint8_t)(word >> 24);
        prefix->key.address[4 * w + 1] = (uint8_t)(word >> 16);
        prefix->key.address[4 * w + 2] = (uint8_t)(word >> 8);
        prefix->key.address[4 * w + 3] = (uint8_t)word;
    }
    prefix->shapes = brk_xdp_filter_shape_bit(shape);
    return 0;
}

static int same_mask(const struct named_mask *named, unsigned rule_class, const uint32_t *words)
{
    return named->rule_class == rule_class && memcmp(named->word, words, sizeof(named->word)) == 0;
}

/* The id of a mask of rule_class for the set being written: the one it had, else a free one (-1: none). */
static int mask_id_of(struct brk_xdp_filter *binding, unsigned rule_class, const uint32_t *words)
{
    int free_id = -1;
    for (unsigned id = 0; id < binding->mask_ids_used; id++) {
        struct named_mask *named = &binding->masks[id];
        if ((named->in_current || named->in_next) && same_mask(named, rule_class, words)) {
            named->in_next = 1;
            return (int)id;
        }
        if (!named->in_current && !named->in_next && free_id < 0)
            free_id = (int)id;
    }
    if (free_id < 0) {
        if (binding->mask_ids_used == BRK_XDP_FILTER_MASK_IDS)
            return -1;
        free_id = (int)binding->mask_ids_used++;
    }
    struct named_mask *named = &binding->masks[free_id];
    named->in_next = 1;
    named->rule_class = (uint8_t)rule_class;
    memcpy(named->word, words, sizeof(named->word));
    return free_id;
}

/* One class of set as generation next: its shapes and prefixes written, its keys listed. */
static int write_class(struct brk_xdp_filter *binding, const struct filter_rule_set *set, int action, int family,
                       struct generation *next, char *error, size_t error_size)
{
    const struct filter_classifier *classifier = action == BRK_XDP_FILTER_DROP ? &set->drop[family]
                                                                              : &set->allow[family];
    unsigned rule_class = BRK_XDP_FILTER_CLASS(action, family);
    unsigned words = filter_key_words(family), address_words = family == FILTER_IPV4 ? 1 : 4;
    struct brk_xdp_filter_shapes *shapes = &next->shapes;
    if (classifier->shape_count > BRK_XDP_FILTER_MAX_SHAPES) {
        brk_fail(error, error_size, "the XDP program's Filter takes at most %d rule shapes per action and family "
                 "(combinations of prefix lengths, ports and protocol), this set has %u",
                 BRK_XDP_FILTER_MAX_SHAPES, classifier->shape_count);
        return -1;
    }
    memset(shapes, 0, sizeof(*shapes));
    shapes->generation = next->number;
    shapes->count = classifier->shape_count;
    shapes->guarded = classifier->shape_count >= BRK_XDP_FILTER_GUARD_MIN_SHAPES;
    for (unsigned s = 0; s < classifier->shape_count; s++) {
        const struct filter_shape *shape = &classifier->shapes[s];
        unsigned stride = filter_slot_words(words);
        memcpy(shapes->mask[s], shape->mask.word, words * sizeof(uint32_t));
        int mask_id = mask_id_of(binding, rule_class, shapes->mask[s]);
        if (mask_id < 0)
            return brk_fail(error, error_size, "the XDP program's Filter has too many rule shapes in use "
                            "(%d at most, with the ones of the set it replaces)", BRK_XDP_FILTER_MASK_IDS), -1;
        shapes->mask_id[s] = (uint32_t)mask_id;
        for (unsigned side = 0; side < 2; side++) {
            uint32_t side_bits = 0;
            for (unsigned w = 0; w < address_words; w++)
                side_bits |= shape->mask.word[side * address_words + w];
            if (!side_bits)
                shapes->open[side] |= brk_xdp_filter_shape_bit(s);
        }
        for (uint32_t slot = 0; slot <= shape->slot_mask; slot++) {
            const uint32_t *entry = shape->slots + (size_t)slot * stride;
            if (!entry[0])
                continue;
            const struct filter_active_rule *rule = &set->rules[entry[0] - 1];
            struct rule_entry *listed = item_add(&next->entries);
            if (!listed)
                return brk_fail(error, error_size, "out of memory"), -1;
            listed->key.filter = (uint8_t)binding->filter;
            listed->key.rule_class = (uint8_t)rule_class;
            listed->key.mask_id = (uint16_t)mask_id;
            memcpy(listed->key.word, entry + 1, words * sizeof(uint32_t));
            listed->rule.id = rule->id;
            listed->rule.expires_ns = rule->expires_ns;
            if (shapes->guarded
                    && (queue_prefix(binding, next, rule_class, s, 0, address_words, listed->key.word)
                        || queue_prefix(binding, next, rule_class, s, 1, address_words, listed->key.word)))
                return brk_fail(error, error_size, "out of memory"), -1;
        }
    }
    uint32_t index = (binding->filter * 2 + (next->number & 1)) * BRK_XDP_FILTER_CLASSES + rule_class;
    if (bpf_map_update_elem(binding->shapes_fd, &index, shapes, BPF_ANY))
        return fail_with_errno(error, error_size, "this Filter's rule shapes");
    return write_prefixes(binding, next, error, error_size);
}

static int by_value(const void *a, const void *b)
{
    uint64_t left = *(const uint64_t *)a, right = *(const uint64_t *)b;
    return left < right ? -1 : left > right;
}

/* The counter entries of set's rules: new ones made zero, the ids in next->ids. */
static int write_counters(struct brk_xdp_filter *binding, const struct filter_rule_set *set,
                          struct generation *next, char *error, size_t error_size)
{
    size_t values_size = (size_t)binding->cpus * sizeof(struct brk_xdp_filter_counters);
    void *zeros = calloc(1, values_size);
    if (!zeros)
        return brk_fail(error, error_size, "out of memory"), -1;
    for (unsigned i = 0; i < set->rule_count; i++) {
        uint64_t *id = item_add(&next->ids);
        if (!id)
            goto out_of_memory;
        *id = set->rules[i].id;
    }
    int ascending = 1;   /* as the table keeps them when ids grow with each add, as Python's do */
    for (size_t i = 1; i < next->ids.count && ascending; i++)
        ascending = *(uint64_t *)item_at(&next->ids, i - 1) < *(uint64_t *)item_at(&next->ids, i);
    if (!ascending)
        qsort(next->ids.items, next->ids.count, sizeof(uint64_t), by_value);
    for (size_t i = 0, old = 0; i < next->ids.count; i++) {
        uint64_t id = *(uint64_t *)item_at(&next->ids, i);
        while (old < binding->ids.count && *(uint64_t *)item_at(&binding->ids, old) < id)
            old++;
        if (old < binding->ids.count && *(uint64_t *)item_at(&binding->ids, old) == id)
            continue;
        struct brk_xdp_filter_counter_key key = { binding->filter, id };
        uint64_t *made = item_add(&next->new_ids);
        if (!made)
            goto out_of_memory;
        *made = id;
        if (bpf_map_update_elem(binding->counters_fd, &key, zeros, BPF_ANY)) {
            next->new_ids.count--;
            free(zeros);
            return fail_with_errno(error, error_size, "this Filter's rule counters");
        }
    }
    free(zeros);
    return 0;
out_of_memory:
    free(zeros);
    return brk_fail(error, error_size, "out of memory"), -1;
}

static void delete_counters(struct brk_xdp_filter *binding, const struct item_list *ids)
{
    for (size_t i = 0; i < ids->count; i++) {
        struct brk_xdp_filter_counter_key key = { binding->filter, *(uint64_t *)item_at(ids, i) };
        bpf_map_delete_elem(binding->counters_fd, &key);
    }
}

/* The ids of binding->ids that next->ids lacks: rules removed by this set. */
static int removed_ids(struct brk_xdp_filter *binding, struct generation *next, struct item_list *removed)
{
    for (size_t i = 0, kept = 0; i < binding->ids.count; i++) {
        uint64_t id = *(uint64_t *)item_at(&binding->ids, i);
        while (kept < next->ids.count && *(uint64_t *)item_at(&next->ids, kept) < id)
            kept++;
        if (kept < next->ids.count && *(uint64_t *)item_at(&next->ids, kept) == id)
            continue;
        uint64_t *gone = item_add(removed);
        if (!gone)
            return -1;
        *gone = id;
    }
    return 0;
}

static int add_key(struct item_list *keys, const struct brk_xdp_filter_rule_key *key)
{
    struct brk_xdp_filter_rule_key *added = item_add(keys);
    if (added)
        *added = *key;
    return added ? 0 : -1;
}

static uint32_t key_hash(const struct brk_xdp_filter_rule_key *key)
{
    uint32_t words[sizeof(*key) / sizeof(uint32_t)];
    memcpy(words, key, sizeof(words));
    return filter_hash(words, sizeof(words) / sizeof(uint32_t) & ~1u) ^ words[sizeof(words) / sizeof(uint32_t) - 1];
}

static int index_entries(struct entry_index *index, const struct item_list *entries)
{
    size_t slots = 16;
    while (slots < 2 * entries->count)
        slots *= 2;
    if (!(index->slots = calloc(slots, sizeof(uint32_t))))
        return -1;
    index->slot_mask = (uint32_t)(slots - 1);
    for (size_t i = 0; i < entries->count; i++) {
        const struct rule_entry *entry = item_at(entries, i);
        uint32_t slot = key_hash(&entry->key) & index->slot_mask;
        while (index->slots[slot])
            slot = (slot + 1) & index->slot_mask;
        index->slots[slot] = (uint32_t)i + 1;
    }
    return 0;
}

static const struct rule_entry *find_entry(const struct entry_index *index, const struct item_list *entries,
                                           const struct brk_xdp_filter_rule_key *key)
{
    if (!index->slots)
        return NULL;
    for (uint32_t slot = key_hash(key) & index->slot_mask; index->slots[slot];
         slot = (slot + 1) & index->slot_mask) {
        const struct rule_entry *entry = item_at(entries, index->slots[slot] - 1);
        if (memcmp(&entry->key, key, sizeof(*key)) == 0)
            return entry;
    }
    return NULL;
}

/* Compares the set's keys with the map's: the keys to write (new ones, and
 * ones that lead to another rule now: a duplicate's earlier rule removed),
 * with the entries they replace, and the keys to delete once it is current.
 * Hashed, not sorted: a publication of 10,000 rules costs about as much as
 * the rule set's own. */
static int diff_entries(struct brk_xdp_filter *binding, struct generation *next)
{
    if (index_entries(&next->index, &next->entries))
        return -1;
    for (size_t i = 0; i < next->entries.count; i++) {
        const struct rule_entry *wanted = item_at(&next->entries, i);
        const struct rule_entry *current = find_entry(&binding->index, &binding->entries, &wanted->key);
        if (current && memcmp(&current->rule, &wanted->rule, sizeof(wanted->rule)) == 0)
            continue;
        if (current) {
            struct rule_entry *replaced = item_add(&next->replaced);
            if (!replaced)
                return -1;
            *replaced = *current;
        }
        struct brk_xdp_filter_rule *value = item_add(&next->upsert_values);
        if (!value || add_key(&next->upsert_keys, &wanted->key))
            return -1;
        *value = wanted->rule;
    }
    for (size_t i = 0; i < binding->entries.count; i++) {
        const struct rule_entry *current = item_at(&binding->entries, i);
        if (!find_entry(&next->index, &next->entries, &current->key) && add_key(&next->deletes, &current->key))
            return -1;
    }
    return 0;
}

static void generation_free(struct generation *next)
{
    free(next->index.slots);
    struct item_list *lists[] = { &next->entries, &next->upsert_keys, &next->upsert_values, &next->replaced,
                                  &next->deletes, &next->prefix_keys, &next->ids, &next->new_ids,
                                  &next->prefixes };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        item_list_free(lists[i]);
}

static void end_masks(struct brk_xdp_filter *binding, int published)
{
    for (unsigned id = 0; id < binding->mask_ids_used; id++) {
        struct named_mask *named = &binding->masks[id];
        if (published)
            named->in_current = named->in_next;
        named->in_next = 0;
    }
}

/* filter_mirror.publish: writes the keys set adds or changes and its shapes
 * and prefixes as the next generation, makes that current with one store,
 * then deletes what the set no longer has. Refused (the maps full, too many
 * shapes): everything written is taken back, the current set stays whole. */
static int publish_set(void *context, const struct filter_rule_set *set, char *error, size_t error_size)
{
    struct brk_xdp_filter *binding = context;
    struct generation *next = calloc(1, sizeof(*next));
    struct item_list removed = { .item_size = sizeof(uint64_t) };
    int result = -1;
    if (!next)
        return brk_fail(error, error_size, "out of memory"), -1;
    next->number = binding->generation + 1;
    next->entries.item_size = next->replaced.item_size = sizeof(struct rule_entry);
    next->upsert_keys.item_size = next->deletes.item_size = sizeof(struct brk_xdp_filter_rule_key);
    next->upsert_values.item_size = sizeof(struct brk_xdp_filter_rule);
    next->prefix_keys.item_size = sizeof(struct brk_xdp_filter_prefix_key);
    next->ids.item_size = next->new_ids.item_size = sizeof(uint64_t);
    next->prefixes.item_size = sizeof(struct pending_prefix);

    for (int action = BRK_XDP_FILTER_DROP; action <= BRK_XDP_FILTER_ALLOW; action++)
        for (int family = 0; family < FILTER_FAMILIES; family++)
            if (write_class(binding, set, action, family, next, error, error_size))
                goto undo;
    if (diff_entries(binding, next)) {
        brk_fail(error, error_size, "out of memory");
        goto undo;
    }
    uint32_t count = (uint32_t)next->upsert_keys.count;
    if (count && bpf_map_update_batch(binding->rules_fd, next->upsert_keys.items, next->upsert_values.items,
                                      &count, NULL)) {
        fail_with_errno(error, error_size, "this Filter's rules");
        goto undo;
    }
    if (write_counters(binding, set, next, error, error_size) || removed_ids(binding, next, &removed))
        goto undo;
    if (bpf_map_update_elem(binding->generation_fd, &binding->filter, &next->number, BPF_ANY)) {
        fail_with_errno(error, error_size, "a new rule generation");
        goto undo;
    }
    /* Current: frames still matching the old generation see it move and match again. */
    delete_keys(binding->rules_fd, &next->deletes);
    delete_keys(binding->prefixes_fd, &binding->prefix_keys);
    delete_counters(binding, &removed);
    end_masks(binding, 1);
    item_list_free(&binding->entries);
    item_list_free(&binding->prefix_keys);
    item_list_free(&binding->ids);
    free(binding->index.slots);
    binding->index = next->index;
    next->index.slots = NULL;
    binding->entries = next->entries;
    binding->prefix_keys = next->prefix_keys;
    binding->ids = next->ids;
    next->entries = next->prefix_keys = next->ids = (struct item_list){ 0 };
    binding->generation = next->number;
    result = 0;
    goto done;
undo:
    delete_keys(binding->rules_fd, &next->upsert_keys);
    for (size_t i = 0; i < next->replaced.count; i++) {
        const struct rule_entry *replaced = item_at(&next->replaced, i);
        bpf_map_update_elem(binding->rules_fd, &replaced->key, &replaced->rule, BPF_ANY);
    }
    delete_keys(binding->prefixes_fd, &next->prefix_keys);
    delete_counters(binding, &next->new_ids);
    end_masks(binding, 0);
done:
    item_list_free(&removed);
    generation_free(next);
    free(next);
    return result;
}

/* filter_mirror.counts: a rule's counters summed over the CPUs. */
static void read_counts(void *context, uint64_t id, struct filter_rule_counter *out)
{
    struct brk_xdp_filter *binding = context;
    struct brk_xdp_filter_counter_key key = { binding->filter, id };
    struct brk_xdp_filter_counters *values = calloc((size_t)binding->cpus, sizeof(*values));
    if (values && bpf_map_lookup_elem(binding->counters_fd, &key, values) == 0)
        for (int cpu = 0; cpu < binding->cpus; cpu++) {
            out->hits += values[cpu].hits;
            out->bytes += values[cpu].bytes;
        }
    free(values);
}

int brk_xdp_filter_bind(brk_xdp *xdp, unsigned filter, brk_filter_table *table, char *error, size_t error_size)
{
    struct brk_xdp_filter **slot = brk_xdp_filter_slot(xdp, filter);
    if (!slot || *slot)
        return brk_fail(error, error_size, "XDP: Filter %u is not free in this program", filter), -1;
    struct brk_xdp_filter *binding = calloc(1, sizeof(*binding));
    if (!binding)
        return brk_fail(error, error_size, "out of memory"), -1;
    binding->table = table;
    binding->filter = filter;
    binding->cpus = brk_xdp_cpus(xdp);
    binding->generation_fd = brk_xdp_map(xdp, "brk_filter_generation");
    binding->shapes_fd = brk_xdp_map(xdp, "brk_filter_shapes");
    binding->rules_fd = brk_xdp_map(xdp, "brk_filter_rules");
    binding->prefixes_fd = brk_xdp_map(xdp, "brk_filter_prefixes");
    binding->counters_fd = brk_xdp_map(xdp, "brk_filter_counters");
    binding->entries.item_size = sizeof(struct rule_entry);
    binding->masks = calloc(BRK_XDP_FILTER_MASK_IDS, sizeof(*binding->masks));
    binding->prefix_keys.item_size = sizeof(struct brk_xdp_filter_prefix_key);
    binding->ids.item_size = sizeof(uint64_t);
    binding->mirror = (struct filter_mirror){ publish_set, read_counts, binding };
    if (!binding->masks) {
        free(binding);
        return brk_fail(error, error_size, "out of memory"), -1;
    }
    if (binding->generation_fd < 0 || binding->shapes_fd < 0 || binding->rules_fd < 0 || binding->prefixes_fd < 0
            || binding->counters_fd < 0) {
        free(binding->masks);
        free(binding);
        return brk_fail(error, error_size, "XDP: the program has no Filter maps: reinstall bricks"), -1;
    }
    if (filter_table_set_mirror(table, &binding->mirror, error, error_size)) {
        free(binding->masks);
        free(binding);
        return -1;
    }
    *slot = binding;
    return 0;
}

void brk_xdp_filter_unbind(struct brk_xdp_filter *binding)
{
    if (!binding)
        return;
    filter_table_clear_mirror(binding->table);   /* the program's counts join the table's own */
    free(binding->masks);
    free(binding->index.slots);
    item_list_free(&binding->entries);
    item_list_free(&binding->prefix_keys);
    item_list_free(&binding->ids);
    free(binding);
}

#else
int brk_xdp_filter_bind(brk_xdp *xdp, unsigned filter, brk_filter_table *table, char *error, size_t error_size)
{
    return brk_fail(error, error_size, "XDP: bricks was built without libbpf"), -1;
}

void brk_xdp_filter_unbind(struct brk_xdp_filter *binding)
{
}
#endif
