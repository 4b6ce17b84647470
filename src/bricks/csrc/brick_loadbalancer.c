/* LoadBalancer: output = flow hash % number of outputs (SPEC §5, §6). */
#include "balance.h"

const struct brk_brick_kind brk_brick_loadbalancer = { BRK_BALANCING_KIND("LoadBalancer") };
