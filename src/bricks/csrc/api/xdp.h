/* The XDP back-end (io_xdp.c): a tree of bricks loaded as one XDP program
 * (xdp/bricks.bpf.c) on input interfaces, its outputs DEVMAP entries, its
 * counters per-CPU maps. The structs are shared with the BPF program. */

typedef struct brk_xdp brk_xdp;

enum brk_xdp_kind {
    BRK_XDP_UNUSED = 0,
    BRK_XDP_DUMMY = 1,
    BRK_XDP_LOADBALANCER = 2,
    BRK_XDP_DUPLICATOR = 3,
    BRK_XDP_FILTER = 4
};

enum brk_xdp_limit {
    BRK_XDP_MAX_NODES = 32,          /* bricks in one program */
    BRK_XDP_MAX_NODE_OUTPUTS = 64,   /* outputs of one brick (the C engine's limit) */
    BRK_XDP_MAX_OUTPUTS = 256,       /* outputs of all bricks together */
    BRK_XDP_MAX_LEVELS = 8,          /* bricks a frame goes through, root included */
    BRK_XDP_MAX_DUPLICATORS = 4,     /* one broadcast map each */
    BRK_XDP_FRAGMENT_SLOTS = 16384,  /* first fragments remembered (LRU, all LoadBalancers) */
    BRK_XDP_MAX_FILTERS = 8,         /* Filters in one program */
    BRK_XDP_FILTER_MAX_SHAPES = 256, /* distinct rule masks per Filter, action and family */
    BRK_XDP_FILTER_MAX_KEYS = 262144 /* rule keys of all Filters (a two-way rule takes two) */
};

/* Modes of brk_xdp_attach. */
enum brk_xdp_mode {
    BRK_XDP_MODE_AUTO = 0,           /* native (driver) mode, else generic */
    BRK_XDP_MODE_NATIVE = 1,
    BRK_XDP_MODE_GENERIC = 2
};

/* One brick of the tree; node 0 is the one linked to the input. */
struct brk_xdp_node {
    uint32_t kind;                   /* enum brk_xdp_kind */
    uint32_t split;                  /* LoadBalancer: 2 or 4 */
    uint32_t depth;                  /* LoadBalancer: 0 = linked to the input */
    uint32_t output_count;
    uint32_t first_output;           /* its outputs are program outputs first_output.. */
    uint32_t duplicator;             /* Duplicator: its broadcast map, 0..BRK_XDP_MAX_DUPLICATORS-1 */
    uint32_t filter;                 /* Filter: its rule maps' number, 0..BRK_XDP_MAX_FILTERS-1 */
    int32_t child[64];               /* output i feeds node child[i], or -1: the device of that output */
};

/* Per brick, summed over the CPUs. */
struct brk_xdp_node_counters {
    uint64_t received_packets;
    uint64_t received_bytes;
    uint64_t malformed;              /* truncated headers (still forwarded, as in the C engine) */
    uint64_t fragment_fallbacks;     /* non-first fragment before its first: address pair */
    uint64_t jumbo_drops;            /* Duplicator: a frame in several buffers (larger than about
                                      * 3.5 KB on a veth), which XDP cannot broadcast: dropped */
    /* Filter: as the Filter brick's counters (enum brk_filter_counter). */
    uint64_t filtered;               /* rejected without a reject output: dropped on purpose */
    uint64_t passed;
    uint64_t rule_dropped;           /* a drop rule decided */
    uint64_t rule_allowed;           /* a drop rule matched, an allow rule overrode it */
};

/* Per program output, summed over the CPUs. */
struct brk_xdp_output_counters {
    uint64_t packets;                /* handed to the device (or to the next brick) */
    uint64_t bytes;
    uint64_t redirect_failures;      /* dropped: no device in the output's DEVMAP slot */
};

/* Opens and loads object_path (bricks.bpf.o) for the tree nodes[0..node_count)
 * whose device outputs are output_ifindexes[i] (0 where output i feeds a
 * brick). Checks the tree (kinds, links, limits) first. Pins nothing. */
brk_xdp *brk_xdp_open(const char *object_path, const struct brk_xdp_node *nodes, unsigned node_count,
                      const int *output_ifindexes, unsigned output_count, char *error, size_t error_size);
/* Attaches the program to ifindex (mode: enum brk_xdp_mode) by a BPF link,
 * which the kernel detaches when this process ends, even by SIGKILL; *generic
 * tells which mode it got. Refuses when any XDP program is already there. */
int brk_xdp_attach(brk_xdp *xdp, int ifindex, int mode, int *generic, char *error, size_t error_size);
/* Attaches the program's XDP_PASS companion to ifindex, the consumer end of
 * a veth pipe fed by a DEVMAP output: it gives that end the NAPI a veth needs
 * to receive redirected frames (without it they vanish, counted nowhere).
 * Keep GRO off on that end: this NAPI would merge TCP segments. Same
 * refusals; detached with the rest by brk_xdp_detach/brk_xdp_close. */
int brk_xdp_attach_pass(brk_xdp *xdp, int ifindex, char *error, size_t error_size);
/* Detaches the program (or its companion) from ifindex; 0 or -errno. */
int brk_xdp_detach(brk_xdp *xdp, int ifindex);
/* Detaches from every interface and frees programs and maps. */
void brk_xdp_close(brk_xdp *xdp);
int brk_xdp_node_counters(brk_xdp *xdp, unsigned node, struct brk_xdp_node_counters *out);
int brk_xdp_output_counters(brk_xdp *xdp, unsigned output, struct brk_xdp_output_counters *out);
/* Runs the program repeat times on frame (BPF_PROG_RUN, nothing transmitted):
 * its XDP action in *action, the kernel's mean time per run in *nanoseconds. */
int brk_xdp_test_run(brk_xdp *xdp, const uint8_t *frame, uint32_t length, unsigned repeat, uint32_t *action,
                     uint32_t *nanoseconds, char *error, size_t error_size);
/* A full pipe: frames a veth could not take from XDP redirects (its ethtool
 * counters tx_queue_<n>_xdp_xmit_errors, summed), dropped after the program
 * counted them delivered. 0, -ENOENT (no such counters) or -errno. */
int brk_xdp_transmit_errors(const char *ifname, uint64_t *errors);
/* Runs the rules of a Filter's table in the program's Filter numbered filter
 * (its node's filter field): written into the program's maps now, and again
 * at every change to the table, from any thread (xdp_filter.c); f:rules()
 * adds the program's counts. Ends when the program closes, the counts then
 * added to the table's own. -1 with a one-line reason (a set the program
 * cannot hold, the table already in another program). */
int brk_xdp_filter_bind(brk_xdp *xdp, unsigned filter, brk_filter_table *table, char *error, size_t error_size);
/* The id of the XDP program attached to ifindex (0: none); 0 or -errno. */
int brk_xdp_attached_id(int ifindex, uint32_t *program_id);
