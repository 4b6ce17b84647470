/* Duplicator: every packet to every output. */
#include "internal.h"

static void duplicator_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    for (unsigned i = 0; i < brick->outputs; i++)
        brk_output_push(brick, i, packet);
}

const struct brk_brick_kind brk_brick_duplicator = {
    .name = "Duplicator",
    .min_outputs = 1,
    .max_outputs = BRK_MAX_OUTPUTS,
    .push = duplicator_push,
};
