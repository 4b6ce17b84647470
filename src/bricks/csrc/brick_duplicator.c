/* Duplicator: every packet to every output. */
#include "internal.h"

const struct brk_brick_kind brk_brick_duplicator = {
    .name = "Duplicator",
    .min_outputs = 1,
    .max_outputs = BRK_MAX_OUTPUTS,
    .push = brk_push_to_every_output,
};
