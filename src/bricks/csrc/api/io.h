/* Back-ends: where packets come from (sources) and go to (sinks). */

/* Whether a source or sink works, and the last thing that happened to it, in
 * one line. changes counts the transitions: a reader that saw the same value
 * last time has nothing new to log. */
enum brk_io_status {
    BRK_IO_UP = 0,
    BRK_IO_GONE = 1,        /* the interface disappeared; re-attached if it returns */
    BRK_IO_FAILING = 2      /* writes or reads fail (disk full, malformed records) */
};

struct brk_io_state {
    int status;             /* enum brk_io_status */
    uint64_t changes;
    char reason[512];
};

void brk_source_state(brk_source *source, struct brk_io_state *out);
void brk_sink_state(brk_sink *sink, struct brk_io_state *out);

/* AF_PACKET TPACKET_V3 RX ring on ifname, promiscuous. fanout_group >= 0
 * joins a PACKET_FANOUT hash group so several engines share the interface. */
brk_source *brk_source_afpacket_open(const char *ifname, unsigned ring_bytes,
                                     int fanout_group, char *error, size_t error_size);
/* Reads the pcap files in order, once, as fast as the engine takes them. */
brk_source *brk_source_pcap_open(const char *const *paths, unsigned count,
                                 char *error, size_t error_size);
/* Replays count in-memory frames (concatenated in frames, sizes in lengths)
 * rounds times: for benchmarks and tests without a kernel. */
brk_source *brk_source_memory_new(const uint8_t *frames, const uint32_t *lengths,
                                  unsigned count, uint64_t rounds);
/* A source that never has a frame and sleeps the engine thread until it is
 * stopped (io_xdp.c): what the engine reads for a tree running in XDP. */
brk_source *brk_source_xdp_idle_new(void);
void brk_source_close(brk_source *source);

/* AF_PACKET TPACKET_V2 TX ring on ifname with qdisc bypass; frames up to mtu. */
brk_sink *brk_sink_afpacket_open(const char *ifname, unsigned slots, unsigned mtu,
                                 char *error, size_t error_size);
/* Appends to a new pcap file (microsecond timestamps, DLT_EN10MB). */
brk_sink *brk_sink_pcap_open(const char *path, unsigned snaplen,
                             char *error, size_t error_size);
/* Counts and discards: for benchmarks. */
brk_sink *brk_sink_null_new(void);
void brk_sink_close(brk_sink *sink);
