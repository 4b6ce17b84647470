/* Host entry points of the one dissector (dissect.h) and of the key's flow
 * hash (flow_hash.h), for the tests that compare them with hash.c. */
#include "internal.h"
#include "flow_hash.h"

_Static_assert((int)BRK_DISSECT_NON_IP == (int)BRK_HASH_NON_IP
               && (int)BRK_DISSECT_TRUNCATED == (int)BRK_HASH_TRUNCATED
               && (int)BRK_DISSECT_FRAGMENT == (int)BRK_HASH_FRAGMENT,
               "the dissector's result bits are the flow hash's flags");

void brk_dissect_frame(const uint8_t *frame, uint32_t caplen, unsigned options, struct brk_flow_keys *keys)
{
    brk_dissect(frame, frame + caplen, options, keys);
}

uint32_t brk_dissect_flow_hash(const struct brk_flow_keys *keys, int split, unsigned depth)
{
    return brk_endpoints_hash(split == 4 ? &keys->flow : &keys->address_pair, depth);
}

void brk_dissect_tunnels_frame(const uint8_t *frame, uint32_t caplen, unsigned options, unsigned max_tunnels,
                               struct brk_tunnel_keys *tunnel_keys)
{
    brk_dissect_tunnels(frame, frame + caplen, options, max_tunnels, tunnel_keys);
}

uint32_t brk_dissect_inner_hash(const struct brk_tunnel_keys *tunnel_keys, unsigned depth)
{
    return brk_endpoints_hash(&tunnel_keys->inner, depth);
}
