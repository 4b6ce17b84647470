/* Dummy: forwards every packet unchanged to its one output (performance testing). */
#include "internal.h"

static void dummy_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    brk_output_push(brick, 0, packet);
}

const struct brk_brick_kind brk_brick_dummy = {
    .name = "Dummy",
    .min_outputs = 1,
    .max_outputs = 1,
    .push = dummy_push,
};
