/* Dummy: forwards every packet unchanged to its one output (performance testing). */
#include "internal.h"

const struct brk_brick_kind brk_brick_dummy = {
    .name = "Dummy",
    .min_outputs = 1,
    .max_outputs = 1,
    .push = brk_push_to_first_output,
};
