/* Flow-aware balancing shared by the bricks that spread packets over outputs
 * (LoadBalancer, PcapReader): one fragment table and the hash. */
#ifndef BRK_BALANCE_H
#define BRK_BALANCE_H
#include "internal.h"
#include "flow_hash.h"
#include <stdlib.h>

/* Inner-flow balancing enters at most this many encapsulations (the deepest flow reached is hashed). */
#define BRK_BALANCE_MAX_TUNNELS 8

struct brk_balance_state {
    struct brk_balance_config config;
    brk_frag_table *frags;
};

static const char *const brk_balance_counters[] = { "malformed", "fragment_fallbacks", NULL };

static inline int brk_balance_init(struct brk_brick *brick, char *error, size_t error_size)
{
    struct brk_balance_state *state = brick->state;
    state->config = *(const struct brk_balance_config *)brick->config;
    if (state->config.split != 2 && state->config.split != 4) {
        brk_fail(error, error_size, "split must be 2 or 4, not %d", state->config.split);
        return -1;
    }
    if (state->config.tunnels != BRK_BALANCE_OUTER && state->config.tunnels != BRK_BALANCE_INNER) {
        brk_fail(error, error_size, "tunnels must be outer (0) or inner (1), not %u", state->config.tunnels);
        return -1;
    }
    if (state->config.frag_slots && !(state->frags = brk_frag_table_new(state->config.frag_slots))) {
        brk_fail(error, error_size, "out of memory for the fragment table");
        return -1;
    }
    return 0;
}

/* The innermost flow's hash (split 4: its addresses and ports; split 2: its addresses): both directions
 * of an inner connection agree, whatever tunnel carries it.
 * Fragments carry no ports past the first: an inner fragment hashes on its inner address pair and
 * the innermost headers before it, an outer fragment (the tunnel packet itself cut by the network) on
 * the outer address pair; every fragment of one datagram thus lands on one output, though not
 * necessarily on its connection's. Both are counted as fragment_fallbacks. */
static inline uint32_t brk_balance_inner_hash(struct brk_brick *brick, const struct brk_packet *packet)
{
    struct brk_balance_state *state = brick->state;
    struct brk_tunnel_keys tunnel_keys;
    brk_dissect_tunnels(packet->data, packet->data + packet->caplen, BRK_DISSECT_TUNNELS_ONLY,
                        BRK_BALANCE_MAX_TUNNELS, &tunnel_keys);
    if (BRK_UNLIKELY(tunnel_keys.inner_result & (BRK_DISSECT_TRUNCATED | BRK_DISSECT_FRAGMENT))) {
        brick->stats.counters[BRK_BALANCE_MALFORMED] += !!(tunnel_keys.inner_result & BRK_DISSECT_TRUNCATED);
        brick->stats.counters[BRK_BALANCE_FRAGMENT_FALLBACKS] += !!(tunnel_keys.inner_result & BRK_DISSECT_FRAGMENT);
    }
    if (state->config.split == 2) {
        /* Split 2: the innermost address pair alone, with the stand-in ports the default walk gives it. */
        tunnel_keys.inner.source_port = BRK_ADDRESS_PAIR_SOURCE_PORT;
        tunnel_keys.inner.destination_port = BRK_ADDRESS_PAIR_DESTINATION_PORT;
        tunnel_keys.inner.has_ports = 0;
    }
    return brk_endpoints_hash(&tunnel_keys.inner, state->config.depth);
}

static inline void brk_balance_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    struct brk_balance_state *state = brick->state;
    uint32_t flags = 0;
    if (state->config.tunnels == BRK_BALANCE_INNER) {
        brk_output_push(brick, brk_output_for_hash(brick, brk_balance_inner_hash(brick, packet)), packet);
        return;
    }
    uint32_t hash = brk_flow_hash(packet->data, packet->caplen, state->config.split,
                                  state->config.depth, state->frags, &flags);
    if (BRK_UNLIKELY(flags & (BRK_HASH_TRUNCATED | BRK_HASH_FRAG_FALLBACK))) {
        brick->stats.counters[BRK_BALANCE_MALFORMED] += !!(flags & BRK_HASH_TRUNCATED);
        brick->stats.counters[BRK_BALANCE_FRAGMENT_FALLBACKS] += !!(flags & BRK_HASH_FRAG_FALLBACK);
    }
    brk_output_push(brick, brk_output_for_hash(brick, hash), packet);
}

static inline void brk_balance_fini(struct brk_brick *brick)
{
    struct brk_balance_state *state = brick->state;
    brk_frag_table_free(state->frags);
}

#define BRK_BALANCING_KIND(kind_name)               \
    .name = kind_name,                              \
    .min_outputs = 1,                               \
    .max_outputs = BRK_MAX_OUTPUTS,                 \
    .config_size = sizeof(struct brk_balance_config), \
    .config_type = "struct brk_balance_config",     \
    .counters = brk_balance_counters,               \
    .state_size = sizeof(struct brk_balance_state), \
    .init = brk_balance_init,                       \
    .push = brk_balance_push,                       \
    .fini = brk_balance_fini
#endif
