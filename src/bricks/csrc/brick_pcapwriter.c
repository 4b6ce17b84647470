/* PcapWriter: what reaches it goes to each of its pcap file outputs (sinks opened by Python). */
#include "internal.h"

const struct brk_brick_kind brk_brick_pcapwriter = {
    .name = "PcapWriter",
    .min_outputs = 1,
    .max_outputs = BRK_MAX_OUTPUTS,
    .push = brk_push_to_every_output,
};
