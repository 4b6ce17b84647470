/* A test XDP program: the dissector's tunnel walk (dissect.h) compiled for
 * BPF and run by the kernel on single frames (BPF_PROG_RUN), its key left in
 * an array map for test_dissect_tunnels_bpf.py to compare with the host's.
 * As in the product's program (csrc/xdp/bricks.bpf.c), each step is a global
 * function the verifier checks once on its own. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dissect.h"

struct brk_test_config {
    uint32_t max_tunnels;
    uint32_t options;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, uint32_t);
    __type(value, struct brk_tunnel_keys);
} brk_test_keys SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, uint32_t);
    __type(value, struct brk_test_config);
} brk_test_config SEC(".maps");

__attribute__((noinline)) int brk_test_default_start(struct xdp_md *context, struct brk_dissect_walk *walk,
                                                     struct brk_flow_keys *keys)
{
    if (!walk || !keys)
        return 0;
    return brk_dissect_start((const uint8_t *)(long)context->data, (const uint8_t *)(long)context->data_end,
                             walk, keys);
}

__attribute__((noinline)) int brk_test_default_step(struct xdp_md *context, struct brk_dissect_walk *walk,
                                                    struct brk_flow_keys *keys, uint32_t options)
{
    if (!walk || !keys)
        return 0;
    return brk_dissect_ip_step((const uint8_t *)(long)context->data, (const uint8_t *)(long)context->data_end,
                               options, walk, keys);
}

__attribute__((noinline)) int brk_test_tunnel_step(struct xdp_md *context, struct brk_tunnel_walk *walk,
                                                   struct brk_tunnel_keys *keys, uint32_t max_tunnels)
{
    if (!walk || !keys)
        return 0;
    return brk_dissect_tunnel_step((const uint8_t *)(long)context->data, (const uint8_t *)(long)context->data_end,
                                   max_tunnels, walk, keys);
}

SEC("xdp")
int brk_test_dissect_tunnels(struct xdp_md *context)
{
    uint32_t zero = 0;
    struct brk_tunnel_keys *keys = bpf_map_lookup_elem(&brk_test_keys, &zero);
    struct brk_test_config *config = bpf_map_lookup_elem(&brk_test_config, &zero);
    if (!keys || !config)
        return XDP_ABORTED;
    uint32_t options = config->options, max_tunnels = config->max_tunnels;
    __builtin_memset(keys, 0, sizeof(*keys));

    struct brk_dissect_walk default_walk;
    __builtin_memset(&default_walk, 0, sizeof(default_walk));
    if (brk_test_default_start(context, &default_walk, &keys->keys))
        for (unsigned nesting = 0; nesting < BRK_DISSECT_MAX_IP_HEADERS; nesting++)
            if (!brk_test_default_step(context, &default_walk, &keys->keys, options))
                break;

    struct brk_tunnel_walk walk;
    brk_dissect_tunnels_start(&walk, options, keys);
    for (unsigned step = 0; step < BRK_DISSECT_MAX_LAYERS; step++)
        if (!brk_test_tunnel_step(context, &walk, keys, max_tunnels))
            break;
    brk_dissect_tunnels_finish(keys);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
