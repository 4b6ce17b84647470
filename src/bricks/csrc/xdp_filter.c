/* The XDP back-end's Filter: keeps the rule maps of a loaded program equal to
 * a Filter's rule table (xdp_filter_maps.h says how), and reads the rules'
 * counters back for f:rules(). A publication writes the keys of the rules it
 * adds or removes (filter_rules.c says which), so its cost follows the
 * change, not the set; the shapes (and the prefix trie of a set with many)
 * are written whole, as a new generation. Runs on whichever thread changes
 * the rules, under the table's lock; the frames never wait for it. */
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
    int generation_fd, has_drops_fd, shapes_fd, rules_fd, prefixes_fd, counters_fd;
    struct item_list prefix_keys;         /* struct brk_xdp_filter_prefix_key: the current generation's */
    struct named_mask *masks;             /* BRK_XDP_FILTER_MASK_IDS */
    unsigned mask_ids_used;               /* ids below it were used once */
};

/* A prefix of one side of a guarded class and the shapes it leads to. */
struct pending_prefix {
    struct brk_xdp_filter_prefix_key key;
    uint64_t shapes;
};

/* What one publication writes. */
struct generation {
    uint32_t number;
    const struct filter_rule_set *set;
    int everything;                       /* the first set: every key is new */
    struct item_list upserts;             /* struct rule_entry: keys to write before the set is current */
    struct item_list replaced;            /* struct rule_entry: what upserts overwrote, for an undo */
    struct item_list deletes;             /* struct brk_xdp_filter_rule_key: keys to delete after */
    struct item_list prefix_keys;         /* struct brk_xdp_filter_prefix_key: this generation's */
    struct item_list new_ids, gone_ids;   /* uint64_t: counter entries made, to delete after */
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
    for (size_t i = 0; i < keys->count; i++)   /* a map without batch deletes (the trie), or a key gone: one by one */
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

static int out_of_memory(char *error, size_t error_size)
{
    brk_fail(error, error_size, "out of memory");
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
            return out_of_memory(error, error_size);
        *written = prefix->key;
    }
    prefixes->count = 0;
    return 0;
}

/* A side's prefix (length bits of the shape's mask, not 0) of a masked key, queued with its shape. */
static int queue_prefix(struct brk_xdp_filter *binding, struct generation *next, unsigned rule_class,
                        unsigned shape, unsigned side, unsigned length, unsigned address_words, const uint32_t *words)
{
    struct pending_prefix *prefix = item_add(&next->prefixes);
    if (!prefix)
        return -1;
    prefix->key.prefix_length = BRK_XDP_FILTER_PREFIX_HEADER_BITS + length;
    prefix->key.filter = (uint8_t)binding->filter;
    prefix->key.rule_class = (uint8_t)rule_class;
    prefix->key.side = (uint8_t)side;
    prefix->key.generation = next->number;
    brk_xdp_filter_prefix_address(&prefix->key, words + side * address_words, address_words);
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

/* The id of a mask of rule_class in the set being written (in_next), or in the current one; -1: none. */
static int find_mask_id(const struct brk_xdp_filter *binding, unsigned rule_class, const struct filter_key *mask,
                        int in_next)
{
    for (unsigned id = 0; id < binding->mask_ids_used; id++) {
        const struct named_mask *named = &binding->masks[id];
        if ((in_next ? named->in_next : named->in_current) && same_mask(named, rule_class, mask->word))
            return (int)id;
    }
    return -1;
}

static const struct filter_classifier *classifier_of(const struct filter_rule_set *set, unsigned rule_class)
{
    int family = rule_class & 1;
    return rule_class >> 1 == BRK_XDP_FILTER_DROP ? &set->drop[family] : &set->allow[family];
}

/* One class of set as generation next: its shapes and prefixes written, its keys listed. */
static int write_class(struct brk_xdp_filter *binding, const struct filter_rule_set *set, int action, int family,
                       struct generation *next, char *error, size_t error_size)
{
    unsigned rule_class = BRK_XDP_FILTER_CLASS(action, family);
    const struct filter_classifier *classifier = classifier_of(set, rule_class);
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
        unsigned side_length[2] = { 0, 0 };   /* prefix bits of the source and destination; 0: open */
        for (unsigned side = 0; side < 2; side++) {
            for (unsigned w = 0; w < address_words; w++)
                side_length[side] += (unsigned)__builtin_popcount(shape->mask.word[side * address_words + w]);
            if (!side_length[side])
                shapes->open[side] |= brk_xdp_filter_shape_bit(s);
        }
        /* The keys themselves only for the first set; the prefixes of a guarded class every time. */
        for (uint32_t slot = 0; (next->everything || shapes->guarded) && slot <= shape->slot_mask; slot++) {
            const uint32_t *entry = shape->slots + (size_t)slot * stride;
            if (!entry[0])
                continue;
            if (next->everything) {
                const struct filter_active_rule *rule = &set->rules[entry[0] - 1];
                struct rule_entry *upsert = item_add(&next->upserts);
                if (!upsert)
                    return out_of_memory(error, error_size);
                upsert->key.filter = (uint8_t)binding->filter;
                upsert->key.rule_class = (uint8_t)rule_class;
                upsert->key.mask_id = (uint16_t)mask_id;
                memcpy(upsert->key.word, entry + 1, words * sizeof(uint32_t));
                upsert->rule = (struct brk_xdp_filter_rule){ rule->id, rule->expires_ns };
            }
            for (unsigned side = 0; shapes->guarded && side < 2; side++)
                if (side_length[side] && queue_prefix(binding, next, rule_class, s, side, side_length[side],
                                                      address_words, entry + 1))
                    return out_of_memory(error, error_size);
        }
    }
    uint32_t index = (binding->filter * 2 + (next->number & 1)) * BRK_XDP_FILTER_CLASSES + rule_class;
    if (bpf_map_update_elem(binding->shapes_fd, &index, shapes, BPF_ANY))
        return fail_with_errno(error, error_size, "this Filter's rule shapes");
    return write_prefixes(binding, next, error, error_size);
}

/* The rule a masked key of rule_class leads to in the set (NULL: none),
 * found as the Filter brick finds it; *shape_index the shape holding that
 * mask (-1: the set has no such mask). */
static const struct filter_active_rule *owner_of(const struct filter_rule_set *set, unsigned rule_class,
                                                 const struct filter_key *key, const struct filter_key *mask,
                                                 int *shape_index)
{
    const struct filter_classifier *classifier = classifier_of(set, rule_class);
    unsigned words = filter_key_words(rule_class & 1), stride = filter_slot_words(words);
    *shape_index = -1;
    for (unsigned s = 0; s < classifier->shape_count; s++) {
        const struct filter_shape *shape = &classifier->shapes[s];
        if (memcmp(shape->mask.word, mask->word, words * sizeof(uint32_t)) != 0)
            continue;
        *shape_index = (int)s;
        for (uint32_t slot = filter_hash(key->word, words) & shape->slot_mask;;
             slot = (slot + 1) & shape->slot_mask) {
            const uint32_t *entry = shape->slots + (size_t)slot * stride;
            if (!entry[0])
                return NULL;
            if (memcmp(entry + 1, key->word, words * sizeof(uint32_t)) == 0)
                return &set->rules[entry[0] - 1];
        }
    }
    return NULL;
}

/* What visit_changed_key needs. */
struct change_visit {
    struct brk_xdp_filter *binding;
    struct generation *next;
    unsigned rule_class;
    int failed;
};

/* A key of a rule added or removed: written as the new set has it (its
 * earliest rule, which may be another one with the same key), or deleted
 * once no rule of the set has it. */
static int visit_changed_key(void *context, const struct filter_key *key, const struct filter_key *mask,
                             uint32_t rule_index)
{
    struct change_visit *visit = context;
    struct brk_xdp_filter *binding = visit->binding;
    struct generation *next = visit->next;
    int shape_index;
    (void)rule_index;
    const struct filter_active_rule *owner = owner_of(next->set, visit->rule_class, key, mask, &shape_index);
    struct brk_xdp_filter_rule_key map_key = { (uint8_t)binding->filter, (uint8_t)visit->rule_class, 0, { 0 } };
    memcpy(map_key.word, key->word, sizeof(map_key.word));
    if (shape_index >= 0) {
        map_key.mask_id = (uint16_t)find_mask_id(binding, visit->rule_class, mask, 1);
    } else {
        int id = find_mask_id(binding, visit->rule_class, mask, 0);
        if (id < 0)
            return 0;   /* never written */
        map_key.mask_id = (uint16_t)id;
    }
    if (!owner) {
        struct brk_xdp_filter_rule_key *gone = item_add(&next->deletes);
        if (!gone)
            return visit->failed = -1;
        *gone = map_key;
        return 0;
    }
    struct rule_entry *upsert = item_add(&next->upserts);
    if (!upsert)
        return visit->failed = -1;
    upsert->key = map_key;
    upsert->rule = (struct brk_xdp_filter_rule){ owner->id, owner->expires_ns };
    return 0;
}

/* The keys of the rules a publication adds or removes, and their counters. */
static int write_changes(struct brk_xdp_filter *binding, struct generation *next, const struct filter_change *changes,
                         unsigned change_count, char *error, size_t error_size)
{
    struct change_visit visit = { binding, next, 0, 0 };
    for (unsigned c = 0; c < change_count; c++) {
        const struct brk_filter_rule *rule = changes[c].rule;
        uint64_t *id = item_add(changes[c].removed ? &next->gone_ids : &next->new_ids);
        if (!id)
            return out_of_memory(error, error_size);
        *id = rule->id;
        for (int family = 0; family < FILTER_FAMILIES; family++) {
            if (!filter_rule_applies_to(rule, family))
                continue;
            visit.rule_class = BRK_XDP_FILTER_CLASS(rule->action == BRK_FILTER_ALLOW, family);
            if (filter_visit_rule_keys(rule, family, 0, visit_changed_key, &visit) || visit.failed)
                return out_of_memory(error, error_size);
        }
    }
    return 0;
}

/* Writes the upserts, remembering what they overwrite (an undo restores it). */
static int write_upserts(struct brk_xdp_filter *binding, struct generation *next, char *error, size_t error_size)
{
    for (size_t i = 0; i < next->upserts.count && !next->everything; i++) {
        const struct rule_entry *upsert = item_at(&next->upserts, i);
        struct rule_entry *replaced = item_add(&next->replaced);
        if (!replaced)
            return out_of_memory(error, error_size);
        replaced->key = upsert->key;
        if (bpf_map_lookup_elem(binding->rules_fd, &upsert->key, &replaced->rule))
            next->replaced.count--;   /* a new key */
    }
    for (size_t i = 0; i < next->upserts.count; i++) {
        const struct rule_entry *upsert = item_at(&next->upserts, i);
        if (bpf_map_update_elem(binding->rules_fd, &upsert->key, &upsert->rule, BPF_ANY))
            return fail_with_errno(error, error_size, "this Filter's rules");
    }
    return 0;
}

static int write_counters(struct brk_xdp_filter *binding, struct generation *next, char *error, size_t error_size)
{
    size_t values_size = (size_t)binding->cpus * sizeof(struct brk_xdp_filter_counters);
    void *zeros = calloc(1, values_size);
    if (!zeros)
        return out_of_memory(error, error_size);
    for (size_t i = 0; i < next->new_ids.count; i++) {
        struct brk_xdp_filter_counter_key key = { binding->filter, *(uint64_t *)item_at(&next->new_ids, i) };
        if (bpf_map_update_elem(binding->counters_fd, &key, zeros, BPF_ANY)) {
            next->new_ids.count = i;   /* the undo deletes those made */
            free(zeros);
            return fail_with_errno(error, error_size, "this Filter's rule counters");
        }
    }
    free(zeros);
    return 0;
}

static void delete_counters(struct brk_xdp_filter *binding, const struct item_list *ids)
{
    for (size_t i = 0; i < ids->count; i++) {
        struct brk_xdp_filter_counter_key key = { binding->filter, *(uint64_t *)item_at(ids, i) };
        bpf_map_delete_elem(binding->counters_fd, &key);
    }
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

static void generation_free(struct generation *next)
{
    struct item_list *lists[] = { &next->upserts, &next->replaced, &next->deletes, &next->prefix_keys,
                                  &next->new_ids, &next->gone_ids, &next->prefixes };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        item_list_free(lists[i]);
}

/* filter_mirror.publish: writes the shapes (and prefixes) of set as the next
 * generation and the keys of the rules that changed, makes the generation
 * current with one store, then deletes the keys and counters set no longer
 * has. Refused (the maps full, too many shapes): what it wrote is taken
 * back, the current set stays whole. */
static int publish_set(void *context, const struct filter_rule_set *set, const struct filter_change *changes,
                       unsigned change_count, char *error, size_t error_size)
{
    struct brk_xdp_filter *binding = context;
    struct generation *next = calloc(1, sizeof(*next));
    int result = -1;
    if (!next)
        return out_of_memory(error, error_size);
    next->number = binding->generation + 1;
    next->set = set;
    next->everything = changes == NULL;
    next->upserts.item_size = next->replaced.item_size = sizeof(struct rule_entry);
    next->deletes.item_size = sizeof(struct brk_xdp_filter_rule_key);
    next->prefix_keys.item_size = sizeof(struct brk_xdp_filter_prefix_key);
    next->new_ids.item_size = next->gone_ids.item_size = sizeof(uint64_t);
    next->prefixes.item_size = sizeof(struct pending_prefix);
    if (next->everything) {
        for (unsigned i = 0; i < set->rule_count; i++) {
            uint64_t *id = item_add(&next->new_ids);
            if (!id)
                goto out_of_memory;
            *id = set->rules[i].id;
        }
    }

    for (int action = BRK_XDP_FILTER_DROP; action <= BRK_XDP_FILTER_ALLOW; action++)
        for (int family = 0; family < FILTER_FAMILIES; family++)
            if (write_class(binding, set, action, family, next, error, error_size))
                goto undo;
    if ((changes && write_changes(binding, next, changes, change_count, error, error_size))
            || write_upserts(binding, next, error, error_size) || write_counters(binding, next, error, error_size))
        goto undo;
    if (bpf_map_update_elem(binding->generation_fd, &binding->filter, &next->number, BPF_ANY)) {
        fail_with_errno(error, error_size, "a new rule generation");
        goto undo;
    }
    /* After the store: in between, a frame takes the old flag with the new set, both whole. */
    uint32_t has_drops = set->drop[FILTER_IPV4].shape_count || set->drop[FILTER_IPV6].shape_count;
    bpf_map_update_elem(binding->has_drops_fd, &binding->filter, &has_drops, BPF_ANY);
    /* Current: frames still matching the old generation see it move and match again. */
    delete_keys(binding->rules_fd, &next->deletes);
    delete_keys(binding->prefixes_fd, &binding->prefix_keys);
    delete_counters(binding, &next->gone_ids);
    end_masks(binding, 1);
    item_list_free(&binding->prefix_keys);
    binding->prefix_keys = next->prefix_keys;
    next->prefix_keys = (struct item_list){ 0 };
    binding->generation = next->number;
    result = 0;
    goto done;
out_of_memory:
    out_of_memory(error, error_size);
undo:
    for (size_t i = 0; i < next->upserts.count; i++)
        bpf_map_delete_elem(binding->rules_fd, &((struct rule_entry *)item_at(&next->upserts, i))->key);
    for (size_t i = 0; i < next->replaced.count; i++) {
        const struct rule_entry *replaced = item_at(&next->replaced, i);
        bpf_map_update_elem(binding->rules_fd, &replaced->key, &replaced->rule, BPF_ANY);
    }
    delete_keys(binding->prefixes_fd, &next->prefix_keys);
    delete_counters(binding, &next->new_ids);
    end_masks(binding, 0);
done:
    generation_free(next);
    free(next);
    return result;
}

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
        return out_of_memory(error, error_size);
    binding->table = table;
    binding->filter = filter;
    binding->cpus = brk_xdp_cpus(xdp);
    binding->generation_fd = brk_xdp_map(xdp, "brk_filter_generation");
    binding->has_drops_fd = brk_xdp_map(xdp, "brk_filter_has_drops");
    binding->shapes_fd = brk_xdp_map(xdp, "brk_filter_shapes");
    binding->rules_fd = brk_xdp_map(xdp, "brk_filter_rules");
    binding->prefixes_fd = brk_xdp_map(xdp, "brk_filter_prefixes");
    binding->counters_fd = brk_xdp_map(xdp, "brk_filter_counters");
    binding->masks = calloc(BRK_XDP_FILTER_MASK_IDS, sizeof(*binding->masks));
    binding->prefix_keys.item_size = sizeof(struct brk_xdp_filter_prefix_key);
    binding->mirror = (struct filter_mirror){ publish_set, read_counts, binding };
    if (!binding->masks) {
        free(binding);
        return out_of_memory(error, error_size);
    }
    if (binding->generation_fd < 0 || binding->has_drops_fd < 0 || binding->shapes_fd < 0 || binding->rules_fd < 0
            || binding->prefixes_fd < 0 || binding->counters_fd < 0) {
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
    item_list_free(&binding->prefix_keys);
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
