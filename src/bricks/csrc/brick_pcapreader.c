/* PcapReader: pcap files as the source; several outputs are balanced by flow. */
#include "balance.h"

const struct brk_brick_kind brk_brick_pcapreader = { BRK_BALANCING_KIND("PcapReader") };
