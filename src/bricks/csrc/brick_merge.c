/* Merge: several inputs (sources of the engine, or internal edges) to one output. */
#include "internal.h"

static void merge_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    brk_output_push(brick, 0, packet);
}

const struct brk_brick_kind brk_brick_merge = {
    .name = "Merge",
    .min_outputs = 1,
    .max_outputs = 1,
    .push = merge_push,
};
