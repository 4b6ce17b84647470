/* netmap back-end (SPEC §3): ports opened through /dev/netmap, or a shared
 * region laid out as netmap lays it out and driven by a stand-in for the
 * kernel (the ring tests). The struct layouts are in netmap_abi.h (C only). */

/* struct netmap_slot.flags */
enum brk_netmap_slot_flag {
    NS_BUF_CHANGED = 0x0001,    /* buf_idx changed: the kernel must remap it */
    NS_REPORT      = 0x0002,
    NS_FORWARD     = 0x0004,
    NS_NO_LEARN    = 0x0008,
    NS_INDIRECT    = 0x0010,
    NS_MOREFRAG    = 0x0020     /* the frame goes on in the next slot */
};

/* struct netmap_ring.flags */
enum brk_netmap_ring_flag {
    NR_TIMESTAMP = 0x0002,
    NR_FORWARD   = 0x0004
};

/* struct netmap_if.ni_flags */
enum brk_netmap_if_flag {
    NI_PRIV_MEM = 0x1
};

/* Which rings a registration binds (nmreq_register.nr_mode; the legacy
 * nmreq.nr_flags). Pipes are named `X{N` / `X}N` from API 12 on. */
enum brk_netmap_register_mode {
    NR_REG_DEFAULT     = 0,
    NR_REG_ALL_NIC     = 1,
    NR_REG_SW          = 2,
    NR_REG_NIC_SW      = 3,
    NR_REG_ONE_NIC     = 4,
    NR_REG_PIPE_MASTER = 5,
    NR_REG_PIPE_SLAVE  = 6,
    NR_REG_NULL        = 7,
    NR_REG_ONE_SW      = 8
};

/* nmreq_register.nr_flags */
enum brk_netmap_register_flag {
    NR_MONITOR_TX      = 0x100,
    NR_MONITOR_RX      = 0x200,
    NR_ZCOPY_MON       = 0x400,
    NR_EXCLUSIVE       = 0x800,
    NR_RX_RINGS_ONLY   = 0x2000,
    NR_TX_RINGS_ONLY   = 0x4000,
    NR_ACCEPT_VNET_HDR = 0x8000,
    NR_DO_RX_POLL      = 0x10000,
    NR_NO_TX_POLL      = 0x20000
};

/* nmreq_header.nr_reqtype */
enum brk_netmap_request_type {
    NETMAP_REQ_REGISTER      = 1,
    NETMAP_REQ_PORT_INFO_GET = 2
};

enum brk_netmap_version {
    NETMAP_API = 14,             /* the NIOCCTRL requests declared here */
    BRK_NETMAP_LEGACY_API = 11   /* first try with NIOCREGIF; the module may ask for another */
};

/* Ring direction (struct netmap_ring.dir) and which rings a sync moves. */
enum brk_netmap_direction {
    BRK_NETMAP_TX = 0,
    BRK_NETMAP_RX = 1
};

/* Hands rings to the kernel and back: ioctl(fd, NIOCTXSYNC / NIOCRXSYNC) on
 * a real port, a test's stand-in for the kernel otherwise. 0 or -errno. */
typedef int (*brk_netmap_sync_fn)(void *context, int fd, int direction);

/* A port already bound: where its netmap_if is in which region, which rings
 * to use (indexes as NETMAP_TXRING / NETMAP_RXRING take them), how to sync. */
struct brk_netmap_binding {
    void *region;
    uint64_t region_size;
    uint64_t interface_offset;      /* nmreq_register.nr_offset */
    int fd;                         /* polled for input; -1: none */
    unsigned first_tx_ring;
    unsigned tx_rings;
    unsigned first_rx_ring;
    unsigned rx_rings;
    brk_netmap_sync_fn sync;
    void *sync_context;
};

/* What the module says about a port without binding it (a probe). */
struct brk_netmap_port_facts {
    uint64_t memsize;
    unsigned tx_rings;
    unsigned rx_rings;
    unsigned tx_slots;
    unsigned rx_slots;
    unsigned mem_id;
    unsigned api;                   /* NETMAP_API, or the legacy version that answered */
};

int brk_netmap_port_info(const char *port, struct brk_netmap_port_facts *out,
                         char *error, size_t error_size);

/* The one line for a register request the module refused with error_number:
 * EINVAL for one NIC ring pair at or past nic_rings (0: unknown) names the
 * missing ring. */
void brk_netmap_refusal(const char *port, unsigned mode, unsigned ring, int error_number,
                        unsigned nic_rings, char *error, size_t error_size);

/* Binds port (`eth3`, `eth3{2`, `eth3}2`, `vale0:p`; no ring suffix: mode
 * and ring say which rings) through /dev/netmap. A source reads its RX rings;
 * a sink writes its TX rings, swapping buffers with a source's RX slot when
 * both share a memory region and the packet goes to this one output only. */
brk_source *brk_source_netmap_open(const char *port, unsigned mode, unsigned ring,
                                   char *error, size_t error_size);
brk_sink *brk_sink_netmap_open(const char *port, unsigned mode, unsigned ring,
                               char *error, size_t error_size);

/* The same over a binding made elsewhere; the binding's region outlives them. */
brk_source *brk_source_netmap_attach(const struct brk_netmap_binding *binding,
                                     char *error, size_t error_size);
brk_sink *brk_sink_netmap_attach(const struct brk_netmap_binding *binding,
                                 char *error, size_t error_size);

/* The ABI as this build lays it out: fact i ("sizeof(struct netmap_ring)",
 * "offsetof(struct netmap_ring, tail)", "NIOCCTRL", ...), NULL past the last. */
const char *brk_netmap_abi_fact_name(unsigned index);
int64_t brk_netmap_abi_fact_value(unsigned index);
