/* The XDP back-end's one program: a tree of bricks (LoadBalancer, Duplicator,
 * Dummy) described in the brk_nodes map, run on every frame of the input in
 * the driver, before any socket buffer exists; a frame leaves by
 * bpf_redirect_map into the DEVMAP slot of the output it chose.
 *
 * The LoadBalancer hashes the key of the one dissector (dissect.h) with the
 * portable flow hash (flow_hash.h), so it chooses the output the C engine
 * chooses; first fragments are remembered in an LRU map so later ones follow.
 * Counters are per-CPU with plain increments (Debian's clang 14 BPF back-end
 * crashes on some atomics). Compiled at install: clang -target bpf -O2 -g. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "../dissect.h"
#include "../flow_hash.h"
#include "../api/xdp.h"

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
        if (node->kind == BRK_XDP_LOADBALANCER) {
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
