/* PLACEHOLDER: pcap back-end, being written. */
#include "internal.h"
brk_source *brk_source_pcap_open(const char *const *paths, unsigned count, char *error, size_t error_size) { return brk_fail(error, error_size, "todo"); }
brk_sink *brk_sink_pcap_open(const char *path, unsigned snaplen, char *error, size_t error_size) { return brk_fail(error, error_size, "todo"); }
