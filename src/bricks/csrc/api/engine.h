/* Engines, bricks and their counters: what Python builds and reads. */

typedef struct brk_engine brk_engine;
typedef struct brk_brick brk_brick;
typedef struct brk_brick_kind brk_brick_kind;
typedef struct brk_sink brk_sink;
typedef struct brk_source brk_source;

/* One output's counters. Every packet handed to it is exactly one of:
 * delivered (packets), dropped (drops, split by cause below) or queued. */
struct brk_counters {
    uint64_t packets;       /* delivered: taken by the kernel, written to the file */
    uint64_t bytes;
    uint64_t drops;         /* every cause below */
    uint64_t full;          /* the output's ring was full */
    uint64_t too_big;       /* longer than the output's MTU allows */
    uint64_t too_short;     /* shorter than an Ethernet header */
    uint64_t gone;          /* the output's interface no longer exists */
    uint64_t write_errors;  /* the file could not be written (disk full, I/O error) */
    uint64_t queued;        /* in the output's ring, not yet taken by the kernel */
    /* Not packets but attempts: sends the device refused (a veth whose peer
     * is down or whose backlog is full). The kernel counts each one in the
     * device's tx_dropped, yet the frame stays queued and is tried again. */
    uint64_t refused;
};

/* A brick's counters: the two every brick has, then its kind's own, whose
 * names its descriptor lists (brk_brick_kind_counter). */
enum { BRK_MAX_KIND_COUNTERS = 8 };
struct brk_brick_stats {
    uint64_t received_packets;
    uint64_t received_bytes;
    uint64_t counters[BRK_MAX_KIND_COUNTERS];
    unsigned outputs;
};

struct brk_engine_stats {
    uint64_t received_packets;  /* handed to the brick tree by the sources */
    uint64_t received_bytes;
    uint64_t kernel_drops;      /* dropped by the kernel before bricks saw them */
    uint64_t output_drops;      /* dropped at outputs, every cause, summed over every brick */
    uint64_t output_full;       /* ... of which at full outputs */
    uint64_t output_too_big;
    uint64_t output_too_short;
    uint64_t output_gone;
    uint64_t output_write_errors;
    uint64_t output_queued;     /* in output rings, not yet taken by the kernel */
    uint64_t input_malformed;   /* records of an input file that could not be read */
    uint64_t batches;
    int running;
    int finished;               /* every source is exhausted (pcap input) */
};

/* config: the kind's own config struct (filled and checked by Python; C
 * never parses strings), or NULL for a kind that has none. */
brk_brick *brk_brick_new(const brk_brick_kind *kind, const void *config, char *error, size_t error_size);
/* The kind whose C name is name (e.g. "LoadBalancer"), or NULL. */
const brk_brick_kind *brk_brick_kind_find(const char *name);
/* The C type of the kind's config ("struct brk_balance_config"), or NULL when it takes none. */
const char *brk_brick_kind_config_type(const brk_brick_kind *kind);
/* The name of the kind's counter i (brk_brick_stats.counters[i]), or NULL past its last. */
const char *brk_brick_kind_counter(const brk_brick_kind *kind, unsigned i);
const brk_brick_kind *brk_brick_kind_of(const brk_brick *brick);
/* 0, or -1 when the brick has all the outputs its kind (or BRK_MAX_OUTPUTS) allows. */
int brk_brick_add_child(brk_brick *brick, brk_brick *child);
int brk_brick_add_sink(brk_brick *brick, brk_sink *sink);
void brk_brick_stats(const brk_brick *brick, struct brk_brick_stats *out);
int brk_brick_output_stats(const brk_brick *brick, unsigned output, struct brk_counters *out);
void brk_brick_free(brk_brick *brick);

brk_engine *brk_engine_new(unsigned batch, int cpu);
/* An engine takes any number of sources (and their trees' bricks and sinks).
 * 0, or -ENOMEM: the engine must then be freed, not run. */
int brk_engine_add_source(brk_engine *engine, brk_source *source, brk_brick *target);
/* Runs the RX loop in the calling thread until brk_engine_stop() or until
 * every source is exhausted. Returns 0, or -errno when waiting for input
 * failed (poll): the run then ended early, its sinks flushed. */
int brk_engine_run(brk_engine *engine);
/* Clears a past stop request; call before every brk_engine_run. */
void brk_engine_rearm(brk_engine *engine);
void brk_engine_stop(brk_engine *engine);
void brk_engine_stats(brk_engine *engine, struct brk_engine_stats *out);
void brk_engine_free(brk_engine *engine);
