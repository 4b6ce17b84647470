/* The XDP back-end's one program: a tree of bricks (LoadBalancer, Duplicator,
 * Dummy, Filter) described in the brk_nodes map, run on every frame of the input in
 * the driver, before any socket buffer exists; a frame leaves by
 * bpf_redirect_map into the DEVMAP slot of the output it chose.
 *
 * The LoadBalancer hashes the key of the one dissector (dissect.h) with the
 * portable flow hash (flow_hash.h), so it chooses the output the C engine
 * chooses; first fragments are remembered in an LRU map so later ones follow.
 * The Filter matches filter_key.h's key against its runtime rules as the
 * Filter brick does (most specific rule of each action, allow over drop),
 * in maps xdp_filter.c keeps equal to the rule table's published set.
 * Counters are per-CPU with plain increments (Debian's clang 14 BPF back-end
 * crashes on some atomics). Compiled at install: clang -target bpf -O2 -g. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "../dissect.h"
#include "../flow_hash.h"
typedef struct brk_filter_table brk_filter_table;   /* api/filter.h's, named in api/xdp.h */
#include "../api/xdp.h"
#include "../xdp_filter_maps.h"

/* Key of a remembered first fragment: its datagram, per LoadBalancer (the
 * hash depends on the brick's depth). */
struct brk_xdp_fragment_key {
    uint32_t node;
    struct brk_flow_fragment fragment;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BRK_XDP_MAX_NODES);
    __type(key, uint32_t);
    __type(value, struct brk_xdp_node);
} brk_nodes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP);
    __uint(max_entries, BRK_XDP_MAX_OUTPUTS);
    __type(key, uint32_t);
    __type(value, uint32_t);
} brk_outputs SEC(".maps");

/* One broadcast map per Duplicator: BPF_F_BROADCAST sends to all its entries. */
#define BRK_DUPLICATOR_MAP(name)                              \
    struct {                                                  \
        __uint(type, BPF_MAP_TYPE_DEVMAP_HASH);               \
        __uint(max_entries, BRK_XDP_MAX_NODE_OUTPUTS);        \
        __type(key, uint32_t);                                \
        __type(value, uint32_t);                              \
    } name SEC(".maps")
BRK_DUPLICATOR_MAP(brk_duplicator0);
BRK_DUPLICATOR_MAP(brk_duplicator1);
BRK_DUPLICATOR_MAP(brk_duplicator2);
BRK_DUPLICATOR_MAP(brk_duplicator3);

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, BRK_XDP_MAX_NODES);
    __type(key, uint32_t);
    __type(value, struct brk_xdp_node_counters);
} brk_node_counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, BRK_XDP_MAX_OUTPUTS);
    __type(key, uint32_t);
    __type(value, struct brk_xdp_output_counters);
} brk_output_counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, BRK_XDP_FRAGMENT_SLOTS);
    __type(key, struct brk_xdp_fragment_key);
    __type(value, uint32_t);
} brk_fragments SEC(".maps");

/* The Filter's rules: see xdp_filter_maps.h. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BRK_XDP_MAX_FILTERS);
    __type(key, uint32_t);
    __type(value, uint32_t);
} brk_filter_generation SEC(".maps");

/* 1 while a Filter's set has drop rules: without any, a frame passes untouched (no key taken). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BRK_XDP_MAX_FILTERS);
    __type(key, uint32_t);
    __type(value, uint32_t);
} brk_filter_has_drops SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BRK_XDP_MAX_FILTERS * 2 * BRK_XDP_FILTER_CLASSES);
    __type(key, uint32_t);
    __type(value, struct brk_xdp_filter_shapes);
} brk_filter_shapes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);   /* memory as rules come, not for the maximum */
    __uint(max_entries, 2 * BRK_XDP_FILTER_MAX_KEYS);   /* a set's new keys while the old ones are still there */
    __type(key, struct brk_xdp_filter_rule_key);
    __type(value, struct brk_xdp_filter_rule);
} brk_filter_rules SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, 2 * BRK_XDP_FILTER_MAX_KEYS);
    __type(key, struct brk_xdp_filter_prefix_key);
    __type(value, uint64_t);
} brk_filter_prefixes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, BRK_XDP_FILTER_MAX_KEYS);
    __type(key, struct brk_xdp_filter_counter_key);
    __type(value, struct brk_xdp_filter_counters);
} brk_filter_counters SEC(".maps");

/* The Filter's work space, per CPU: off the stack, which the calls of a
 * Filter below a LoadBalancer would otherwise overflow (512 bytes for all). */
struct brk_xdp_filter_scratch {
    struct brk_flow_keys link;
    struct filter_key key;
    struct brk_xdp_filter_rule_key rule_key;
    struct brk_xdp_filter_prefix_key prefix;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, uint32_t);
    __type(value, struct brk_xdp_filter_scratch);
} brk_filter_scratch SEC(".maps");

static __always_inline struct brk_xdp_filter_scratch *brk_filter_scratch_space(void)
{
    uint32_t zero = 0;
    return bpf_map_lookup_elem(&brk_filter_scratch, &zero);
}

static __always_inline void brk_fragment_key(struct brk_xdp_fragment_key *key, uint32_t node,
                                             const struct brk_flow_fragment *fragment)
{
    __builtin_memset(key, 0, sizeof(*key));
    key->node = node;
    key->fragment = *fragment;
}

/* Global (not static) functions are verified once each, on their own, with
 * their arguments typed from BTF; the tree walk then sees a call returning a
 * scalar, which keeps the verifier's work far below its limit. Pointer
 * arguments may be NULL as far as the verifier knows: checked. */

/* The one dissection of a frame, a layer at a time: dissect.h's own walk. */
__attribute__((noinline)) int brk_xdp_dissect_start(struct xdp_md *context, struct brk_dissect_walk *walk,
                                                    struct brk_flow_keys *keys)
{
    if (!walk || !keys)
        return 0;
    return brk_dissect_start((const uint8_t *)(long)context->data, (const uint8_t *)(long)context->data_end,
                             walk, keys);
}

__attribute__((noinline)) int brk_xdp_dissect_ip_step(struct xdp_md *context, struct brk_dissect_walk *walk,
                                                      struct brk_flow_keys *keys)
{
    if (!walk || !keys)
        return 0;
    return brk_dissect_ip_step((const uint8_t *)(long)context->data, (const uint8_t *)(long)context->data_end,
                               BRK_DISSECT_PARSE_FIRST_FRAGMENT, walk, keys);
}

static __always_inline int brk_xdp_dissect(struct xdp_md *context, struct brk_flow_keys *keys)
{
    struct brk_dissect_walk walk;
    __builtin_memset(&walk, 0, sizeof(walk));
    if (brk_xdp_dissect_start(context, &walk, keys))
        for (unsigned nesting = 0; nesting < BRK_DISSECT_MAX_IP_HEADERS; nesting++)
            if (!brk_xdp_dissect_ip_step(context, &walk, keys))
                break;
    return 1;
}

__attribute__((noinline)) uint32_t brk_xdp_endpoints_hash(const struct brk_flow_endpoints *key, uint32_t depth)
{
    return key ? brk_endpoints_hash(key, depth) : 0;
}

/* The LoadBalancer's hash: hash.c's brk_flow_hash with a fragment table. */
__attribute__((noinline)) uint32_t brk_xdp_balance_hash(const struct brk_flow_keys *keys, uint32_t index,
                                                        uint32_t split, uint32_t depth,
                                                        struct brk_xdp_node_counters *counters)
{
    if (!keys || !counters)
        return 0;
    if (split != 4) {
        counters->malformed += !!(keys->address_result & BRK_DISSECT_TRUNCATED);
        return brk_xdp_endpoints_hash(&keys->address_pair, depth);
    }
    counters->malformed += !!(keys->flow_result & BRK_DISSECT_TRUNCATED);
    struct brk_xdp_fragment_key fragment_key;
    uint32_t hash;
    if (keys->later_fragment.address_size) {
        brk_fragment_key(&fragment_key, index, &keys->later_fragment);
        uint32_t *first = bpf_map_lookup_elem(&brk_fragments, &fragment_key);
        if (first) {
            hash = *first;
        } else {
            counters->fragment_fallbacks++;
            hash = brk_xdp_endpoints_hash(&keys->flow, depth);
        }
    } else {
        hash = brk_xdp_endpoints_hash(&keys->flow, depth);
    }
    if (keys->first_fragment.address_size) {
        brk_fragment_key(&fragment_key, index, &keys->first_fragment);
        bpf_map_update_elem(&brk_fragments, &fragment_key, &hash, BPF_ANY);
    }
    return hash;
}

/* The Filter's key of the frame (filter_key.h), or -1: not IP. A step per
 * global function, each verified on its own (together, the tags' and the
 * extension headers' loops multiply past the verifier's limit). */
__attribute__((noinline)) uint32_t brk_xdp_filter_link(struct xdp_md *context, struct brk_flow_keys *link)
{
    if (!link)
        return 0;
    uint32_t offset = filter_link_offset((const uint8_t *)(long)context->data,
                                         (const uint8_t *)(long)context->data_end, link);
    return offset ? offset | (uint32_t)link->ethertype << 16 : 0;
}

__attribute__((noinline)) int brk_xdp_filter_ip_key(struct xdp_md *context, uint32_t offset, uint32_t version,
                                                    struct filter_key *key)
{
    if (!key || offset > BRK_DISSECT_MAX_OFFSET)
        return -1;
    const uint8_t *data = (const uint8_t *)(long)context->data, *end = (const uint8_t *)(long)context->data_end;
    return filter_ip_key(data, end, offset, version, key);
}

static __always_inline int brk_xdp_filter_key(struct xdp_md *context, struct brk_xdp_filter_scratch *scratch)
{
    struct filter_key *key = &scratch->key;
    __builtin_memset(key, 0, sizeof(*key));
    uint32_t found = brk_xdp_filter_link(context, &scratch->link);
    uint32_t offset = found & 0xffff, ethertype = found >> 16;
    if (!found || (ethertype != BRK_ETHERTYPE_IPV4 && ethertype != BRK_ETHERTYPE_IPV6))
        return -1;
    return brk_xdp_filter_ip_key(context, offset, ethertype == BRK_ETHERTYPE_IPV4 ? 4 : 6, key);
}

/* The shapes a prefix of side may match in a guarded class: its longest
 * stored prefix holds every shorter one's too. */
static __always_inline uint64_t brk_filter_prefix_shapes(struct brk_xdp_filter_prefix_key *prefix, uint32_t side,
                                                         const uint32_t *words, unsigned address_words)
{
    prefix->side = (uint8_t)side;
    brk_xdp_filter_prefix_address(prefix, words, address_words);
    uint64_t *shapes = bpf_map_lookup_elem(&brk_filter_prefixes, prefix);
    return shapes ? *shapes : 0;
}

/* The id of the most specific live rule of one class matching the key in
 * the scratch space (0: none), the shapes searched in filter_rules.c's order. */
__attribute__((noinline)) uint64_t brk_xdp_filter_match(uint32_t filter, uint32_t generation, uint32_t rule_class)
{
    struct brk_xdp_filter_scratch *scratch = brk_filter_scratch_space();
    if (!scratch || filter >= BRK_XDP_MAX_FILTERS || rule_class >= BRK_XDP_FILTER_CLASSES)
        return 0;
    uint32_t index = (filter * 2 + (generation & 1)) * BRK_XDP_FILTER_CLASSES + rule_class;
    const struct brk_xdp_filter_shapes *shapes = bpf_map_lookup_elem(&brk_filter_shapes, &index);
    if (!shapes || shapes->generation != generation || shapes->count == 0)
        return 0;
    const uint32_t *key = scratch->key.word;
    unsigned address_words = rule_class & 1 ? 4 : 1;
    uint64_t candidates = ~0ull;
    if (shapes->guarded) {
        struct brk_xdp_filter_prefix_key *prefix = &scratch->prefix;
        prefix->prefix_length = BRK_XDP_FILTER_PREFIX_HEADER_BITS + 128;
        prefix->filter = (uint8_t)filter;
        prefix->rule_class = (uint8_t)rule_class;
        prefix->padding = 0;
        prefix->generation = generation;
        candidates = (brk_filter_prefix_shapes(prefix, 0, key, address_words) | shapes->open[0])
                   & (brk_filter_prefix_shapes(prefix, 1, key + address_words, address_words) | shapes->open[1]);
    }
    struct brk_xdp_filter_rule_key *rule_key = &scratch->rule_key;
    rule_key->filter = (uint8_t)filter;
    rule_key->rule_class = (uint8_t)rule_class;
    uint64_t now = 0;
    for (uint32_t shape = 0; shape < BRK_XDP_FILTER_MAX_SHAPES; shape++) {
        unsigned bit = shape < 63 ? shape : 63;
        if (shape >= shapes->count || !(candidates >> bit))
            break;
        if (!((candidates >> bit) & 1))
            continue;
        rule_key->mask_id = (uint16_t)shapes->mask_id[shape];
        for (unsigned w = 0; w < FILTER_KEY_WORDS; w++)
            rule_key->word[w] = key[w] & shapes->mask[shape][w];
        const struct brk_xdp_filter_rule *rule = bpf_map_lookup_elem(&brk_filter_rules, rule_key);
        if (!rule)
            continue;
        if (rule->expires_ns) {   /* expired: the control side prunes it at its next look */
            if (!now)
                now = bpf_ktime_get_coarse_ns();
            if (now >= rule->expires_ns)
                continue;
        }
        return rule->id;
    }
    return 0;
}

/* Whether the Filter numbered filter lets a frame of family (its key in the
 * scratch space) pass, counted as the Filter brick counts: allow over drop,
 * the deciding rule's hits and bytes. */
__attribute__((noinline)) int brk_xdp_filter_decide(int family, uint32_t filter, uint64_t bytes,
                                                    struct brk_xdp_node_counters *counters)
{
    if (!counters || family < 0 || filter >= BRK_XDP_MAX_FILTERS)
        return 1;
    uint64_t decider = 0;
    int allowed = 0;
    /* A publication in between: match again against the set now current (bounded: a frame never waits). */
    for (int attempt = 0; attempt < 4; attempt++) {
        uint32_t *current = bpf_map_lookup_elem(&brk_filter_generation, &filter);
        if (!current)
            return 1;
        uint32_t generation = *current;
        uint64_t drop = brk_xdp_filter_match(filter, generation, BRK_XDP_FILTER_CLASS(BRK_XDP_FILTER_DROP, family & 1));
        uint64_t allow = drop ? brk_xdp_filter_match(filter, generation,
                                                     BRK_XDP_FILTER_CLASS(BRK_XDP_FILTER_ALLOW, family & 1)) : 0;
        decider = allow ? allow : drop;
        allowed = allow != 0;
        current = bpf_map_lookup_elem(&brk_filter_generation, &filter);
        if (!current || *current == generation)
            break;
    }
    if (!decider)
        return 1;
    struct brk_xdp_filter_counter_key counter_key = { .filter = filter, .id = decider };
    struct brk_xdp_filter_counters *rule_counters = bpf_map_lookup_elem(&brk_filter_counters, &counter_key);
    if (rule_counters) {
        rule_counters->hits++;
        rule_counters->bytes += bytes;
    }
    if (allowed)
        counters->rule_allowed++;
    else
        counters->rule_dropped++;
    return allowed;
}

static __always_inline long brk_broadcast(uint32_t duplicator)
{
    switch (duplicator) {
    case 0:
        return bpf_redirect_map(&brk_duplicator0, 0, BPF_F_BROADCAST | XDP_DROP);
    case 1:
        return bpf_redirect_map(&brk_duplicator1, 0, BPF_F_BROADCAST | XDP_DROP);
    case 2:
        return bpf_redirect_map(&brk_duplicator2, 0, BPF_F_BROADCAST | XDP_DROP);
    case 3:
        return bpf_redirect_map(&brk_duplicator3, 0, BPF_F_BROADCAST | XDP_DROP);
    }
    return XDP_DROP;
}

/* Counts the frame on the outputs first..first+count of a Duplicator. */
static __always_inline void brk_count_broadcast(uint32_t first, uint32_t count, uint64_t bytes, int delivered)
{
    for (uint32_t i = 0; i < BRK_XDP_MAX_NODE_OUTPUTS; i++) {
        if (i >= count)
            break;
        uint32_t output = first + i;
        struct brk_xdp_output_counters *counters = bpf_map_lookup_elem(&brk_output_counters, &output);
        if (!counters)
            break;
        if (delivered) {
            counters->packets++;
            counters->bytes += bytes;
        } else {
            counters->redirect_failures++;
        }
    }
}

SEC("xdp.frags")
int brk_xdp_bricks(struct xdp_md *context)
{
    /* The whole frame, jumbo ones included (data..end is only its first buffer). */
    uint64_t bytes = bpf_xdp_get_buff_len(context);
    struct brk_flow_keys keys;
    int dissected = 0;
    __builtin_memset(&keys, 0, sizeof(keys));
    uint32_t index = 0;

    for (unsigned level = 0; level < BRK_XDP_MAX_LEVELS; level++) {
        const struct brk_xdp_node *node = bpf_map_lookup_elem(&brk_nodes, &index);
        struct brk_xdp_node_counters *counters = bpf_map_lookup_elem(&brk_node_counters, &index);
        if (!node || !counters || node->output_count == 0 || node->output_count > BRK_XDP_MAX_NODE_OUTPUTS)
            return XDP_ABORTED;   /* brk_xdp_open checked the tree: never with a loaded one */
        counters->received_packets++;
        counters->received_bytes += bytes;

        if (node->kind == BRK_XDP_DUPLICATOR) {
            /* The kernel cannot clone a multi-buffer frame; it would drop it after we
             * returned, unseen: drop it here, counted. */
            if (bytes > (uint64_t)(context->data_end - context->data)) {
                counters->jumbo_drops++;
                return XDP_DROP;
            }
            long action = brk_broadcast(node->duplicator);
            brk_count_broadcast(node->first_output, node->output_count, bytes, action == XDP_REDIRECT);
            return action;
        }
        uint32_t choice = 0;
        if (node->kind == BRK_XDP_FILTER) {
            /* Passed to output 0, rejected to output 1 when there is one (the Filter brick's way). */
            /* The key is taken here, not in brk_xdp_filter_decide: the calls' stacks together stay
             * within the verifier's 512 bytes. */
            uint32_t filter = node->filter;
            uint32_t *has_drops = bpf_map_lookup_elem(&brk_filter_has_drops, &filter);
            struct brk_xdp_filter_scratch *scratch = has_drops && *has_drops ? brk_filter_scratch_space() : NULL;
            int family = scratch ? brk_xdp_filter_key(context, scratch) : -1;
            if (brk_xdp_filter_decide(family, node->filter, bytes, counters)) {
                counters->passed++;
            } else if (node->output_count > 1) {
                choice = 1;
            } else {
                counters->filtered++;
                return XDP_DROP;
            }
        } else if (node->kind == BRK_XDP_LOADBALANCER) {
            if (!dissected)
                dissected = brk_xdp_dissect(context, &keys);
            choice = brk_xdp_balance_hash(&keys, index, node->split, node->depth, counters) % node->output_count;
        }
        choice &= BRK_XDP_MAX_NODE_OUTPUTS - 1;
        uint32_t output = node->first_output + choice;
        int32_t child = node->child[choice];
        struct brk_xdp_output_counters *output_counters = bpf_map_lookup_elem(&brk_output_counters, &output);
        if (!output_counters)
            return XDP_ABORTED;
        if (child >= 0) {
            output_counters->packets++;
            output_counters->bytes += bytes;
            index = (uint32_t)child;
            continue;
        }
        long action = bpf_redirect_map(&brk_outputs, output, XDP_DROP);
        if (action == XDP_REDIRECT) {
            output_counters->packets++;
            output_counters->bytes += bytes;
        } else {
            output_counters->redirect_failures++;
        }
        return action;
    }
    return XDP_ABORTED;
}

/* For the consumer end of a pipe: a veth hands redirected frames only to a
 * peer with NAPI (without it they vanish, counted nowhere), which an attached
 * program gives. That end's GRO must stay off, as bricks makes its pipes:
 * this NAPI would otherwise merge a TCP stream's segments. */
SEC("xdp.frags")
int brk_xdp_pass(struct xdp_md *context __attribute__((unused)))
{
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
