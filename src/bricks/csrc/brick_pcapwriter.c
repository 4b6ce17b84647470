/* PcapWriter: what reaches it goes to its pcap file outputs (sinks opened by Python). */
#include "internal.h"

static void pcapwriter_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    for (unsigned i = 0; i < brick->outputs; i++)
        brk_output_push(brick, i, packet);
}

const struct brk_brick_kind brk_brick_pcapwriter = {
    .name = "PcapWriter",
    .min_outputs = 1,
    .max_outputs = BRK_MAX_OUTPUTS,
    .push = pcapwriter_push,
};
