/* Merge: several inputs (sources of the engine, or internal edges) to one output. */
#include "internal.h"

const struct brk_brick_kind brk_brick_merge = {
    .name = "Merge",
    .min_outputs = 1,
    .max_outputs = 1,
    .push = brk_push_to_first_output,
};
