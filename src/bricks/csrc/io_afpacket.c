/* PLACEHOLDER: AF_PACKET back-end, being written. */
#include "internal.h"
brk_source *brk_source_afpacket_open(const char *ifname, unsigned ring_bytes, int fanout_group, char *error, size_t error_size) { return brk_fail(error, error_size, "todo"); }
brk_sink *brk_sink_afpacket_open(const char *ifname, unsigned slots, unsigned mtu, char *error, size_t error_size) { return brk_fail(error, error_size, "todo"); }
