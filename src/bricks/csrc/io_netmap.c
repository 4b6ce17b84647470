/* netmap back-end: sources that read RX rings and sinks that fill TX rings of
 * netmap ports, forwarding by swapping buffer indices when the packet goes to
 * one output of the same memory region, by copying otherwise (SPEC §3).
 *
 * Ownership, as netmap defines it: the slots [head, tail) of a ring and their
 * buffers belong to us, the others to the kernel, and only a sync (or poll)
 * moves the boundary. A swap exchanges the buffer of a TX slot we own with the
 * buffer of an RX slot we own, and marks both NS_BUF_CHANGED; so every buffer
 * index stays in exactly one slot. A source hands its RX slots over for one
 * batch: release() gives them back by advancing head, after every sink of the
 * tree had its chance to swap them, and before the next sync.
 */
#include "netmap_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NETMAP_DEVICE "/dev/netmap"
#define MAX_RINGS 128

/* One mapping per memory allocator for the whole process, as libnetmap does:
 * ports of one allocator then see every buffer at the same address, which is
 * what lets a sink swap buffers with another port's RX slot. */
struct mapped_region {
    unsigned mem_id;
    void *base;
    size_t size;
    unsigned users;
    struct mapped_region *next;
};

static struct mapped_region *mapped_regions;
static pthread_mutex_t mapped_regions_lock = PTHREAD_MUTEX_INITIALIZER;

/* A bound port: its rings of one direction, and how to sync them. */
struct port {
    const void *region;          /* zero copy needs the same region on both sides */
    struct mapped_region *mapping;
    int fd;
    int owns_fd;
    brk_netmap_sync_fn sync;
    void *sync_context;
    unsigned rings;
    struct netmap_ring *ring[MAX_RINGS];
};

/* ------------------------------------------------------------ registration */

struct registration {
    uint64_t offset;
    uint64_t memsize;
    unsigned mem_id;
    unsigned api;
};

static int kernel_sync(void *context, int fd, int direction)
{
    return ioctl(fd, direction == BRK_NETMAP_TX ? BRK_NIOCTXSYNC : BRK_NIOCRXSYNC) == 0 ? 0 : -errno;
}

/* errno values by which a module tells that it does not speak NIOCCTRL (API 14).
 * Not EINVAL: a module of API 14 answers EINVAL to a request it understands
 * but cannot serve (a ring pair the port lacks), which NIOCREGIF cannot fix. */
static int means_older_module(int error)
{
    return error == ENOTTY || error == EOPNOTSUPP || error == ENOSYS;
}

void brk_netmap_refusal(const char *port, unsigned mode, unsigned ring, int error_number,
                        unsigned nic_rings, char *error, size_t error_size)
{
    if (error_number == EINVAL && mode == NR_REG_ONE_NIC && nic_rings > 0 && ring >= nic_rings)
        brk_fail(error, error_size, "netmap port %s has no ring pair %u (it has %u, so qid 0..%d): "
                 "link fewer engines per queue, or use --backend packet, which fans out to any number",
                 port, ring, nic_rings, (int)nic_rings - 1);
    else
        brk_fail(error, error_size, "netmap port %s: %s", port, strerror(error_number));
}

/* `eth3{2` -> name `eth3`, pipe mode and number, as the legacy request wants them. */
static void legacy_request(const char *port, unsigned mode, unsigned ring, struct nmreq *request)
{
    const char *brace = strpbrk(port, "{}");
    size_t length = brace ? (size_t)(brace - port) : strlen(port);
    memset(request, 0, sizeof(*request));
    memcpy(request->nr_name, port, length < sizeof(request->nr_name) ? length : sizeof(request->nr_name) - 1);
    request->nr_flags = mode;
    request->nr_ringid = (uint16_t)ring;
    if (brace) {
        request->nr_flags = *brace == '{' ? NR_REG_PIPE_MASTER : NR_REG_PIPE_SLAVE;
        request->nr_ringid = (uint16_t)strtoul(brace + 1, NULL, 10);
    }
}

/* NIOCREGIF at the module's version: API 11 first, then the one it answers with. */
static int register_legacy(int fd, const char *port, unsigned mode, unsigned ring,
                           struct registration *out)
{
    struct nmreq request;
    uint32_t version = BRK_NETMAP_LEGACY_API;
    for (int attempt = 0; attempt < 2; attempt++) {
        legacy_request(port, mode, ring, &request);
        request.nr_version = version;
        if (ioctl(fd, BRK_NIOCREGIF, &request) == 0) {
            out->offset = request.nr_offset;
            out->memsize = request.nr_memsize;
            out->mem_id = request.nr_arg2;
            out->api = request.nr_version;
            return 0;
        }
        if (errno != EINVAL || request.nr_version == version)
            break;
        version = request.nr_version;
    }
    return -errno;
}

static int register_port(int fd, const char *port, unsigned mode, unsigned ring, uint64_t flags,
                         struct registration *out, char *error, size_t error_size)
{
    struct nmreq_header header;
    struct nmreq_register request;
    int ctrl_error, legacy_error;

    memset(&header, 0, sizeof(header));
    memset(&request, 0, sizeof(request));
    header.nr_version = NETMAP_API;
    header.nr_reqtype = NETMAP_REQ_REGISTER;
    snprintf(header.nr_name, sizeof(header.nr_name), "%s", port);
    header.nr_body = (uint64_t)(uintptr_t)&request;
    request.nr_mode = mode;
    request.nr_ringid = (uint16_t)ring;
    request.nr_flags = flags;
    if (ioctl(fd, BRK_NIOCCTRL, &header) == 0) {
        out->offset = request.nr_offset;
        out->memsize = request.nr_memsize;
        out->mem_id = request.nr_mem_id;
        out->api = NETMAP_API;
        return 0;
    }
    ctrl_error = errno;
    if (!means_older_module(ctrl_error)) {
        struct brk_netmap_port_facts facts;
        char ignored[8];
        unsigned nic_rings = 0;    /* unknown */
        /* A ring pair the port lacks is the usual EINVAL for one pair: count its rings to say so. */
        if (ctrl_error == EINVAL && mode == NR_REG_ONE_NIC
                && brk_netmap_port_info(port, &facts, ignored, sizeof(ignored)) == 0)
            nic_rings = facts.rx_rings < facts.tx_rings ? facts.rx_rings : facts.tx_rings;
        brk_netmap_refusal(port, mode, ring, ctrl_error, nic_rings, error, error_size);
        return -1;
    }
    legacy_error = register_legacy(fd, port, mode, ring, out);
    if (legacy_error == 0)
        return 0;
    brk_fail(error, error_size, "netmap port %s: %s (legacy NIOCREGIF: %s)",
             port, strerror(ctrl_error), strerror(-legacy_error));
    return -1;
}

static struct mapped_region *map_region(int fd, const struct registration *registration,
                                        char *error, size_t error_size)
{
    struct mapped_region *region;
    pthread_mutex_lock(&mapped_regions_lock);
    for (region = mapped_regions; region && region->mem_id != registration->mem_id; region = region->next)
        ;
    if (!region) {
        void *base = mmap(NULL, registration->memsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED) {
            pthread_mutex_unlock(&mapped_regions_lock);
            return brk_fail(error, error_size, "netmap: mmap of %llu bytes: %s",
                            (unsigned long long)registration->memsize, strerror(errno));
        }
        if (!(region = calloc(1, sizeof(*region)))) {
            munmap(base, registration->memsize);
            pthread_mutex_unlock(&mapped_regions_lock);
            return brk_fail(error, error_size, "out of memory");
        }
        region->mem_id = registration->mem_id;
        region->base = base;
        region->size = registration->memsize;
        region->next = mapped_regions;
        mapped_regions = region;
    }
    region->users++;
    pthread_mutex_unlock(&mapped_regions_lock);
    return region;
}

static void unmap_region(struct mapped_region *region)
{
    pthread_mutex_lock(&mapped_regions_lock);
    if (--region->users == 0) {
        struct mapped_region **link = &mapped_regions;
        while (*link != region)
            link = &(*link)->next;
        *link = region->next;
        munmap(region->base, region->size);
        free(region);
    }
    pthread_mutex_unlock(&mapped_regions_lock);
}

/* The rings of one direction that a registration in mode bound, as
 * NETMAP_TXRING / NETMAP_RXRING index them. */
static void bound_rings(const struct netmap_if *nifp, int direction, unsigned mode, unsigned ring,
                        unsigned *first, unsigned *count)
{
    unsigned hardware = direction == BRK_NETMAP_TX ? nifp->ni_tx_rings : nifp->ni_rx_rings;
    unsigned host = direction == BRK_NETMAP_TX ? nifp->ni_host_tx_rings : nifp->ni_host_rx_rings;
    host = host ? host : 1;
    switch (mode) {
    case NR_REG_ONE_NIC: *first = ring; *count = 1; break;
    case NR_REG_SW:      *first = hardware; *count = host; break;
    case NR_REG_ONE_SW:  *first = hardware + ring; *count = 1; break;
    case NR_REG_NIC_SW:  *first = 0; *count = hardware + host; break;
    default:             *first = 0; *count = hardware; break;
    }
}

/* --------------------------------------------------------------- the port */

/* Fills port from binding: the rings of direction whose offsets are set (a
 * module of API 14 leaves the rings it did not bind at offset 0). */
static int port_attach(struct port *port, const struct brk_netmap_binding *binding, int direction,
                       char *error, size_t error_size)
{
    struct netmap_if *nifp;
    unsigned first = direction == BRK_NETMAP_TX ? binding->first_tx_ring : binding->first_rx_ring;
    unsigned count = direction == BRK_NETMAP_TX ? binding->tx_rings : binding->rx_rings;
    const char *what = direction == BRK_NETMAP_TX ? "TX" : "RX";

    if (!binding->region || !binding->sync
            || binding->interface_offset + sizeof(struct netmap_if) > binding->region_size) {
        brk_fail(error, error_size, "netmap: the binding has no region, no sync, or its interface lies outside");
        return -1;
    }
    nifp = brk_netmap_if(binding->region, binding->interface_offset);
    port->region = binding->region;
    port->fd = binding->fd;
    port->sync = binding->sync;
    port->sync_context = binding->sync_context;
    port->rings = 0;
    for (unsigned i = first; i < first + count; i++) {
        uint32_t index = direction == BRK_NETMAP_TX ? i
            : i + nifp->ni_tx_rings + brk_netmap_host_tx_rings(nifp);
        struct netmap_ring *ring;
        uint64_t ring_offset;
        if (nifp->ring_ofs[index] == 0)
            continue;
        ring_offset = binding->interface_offset + (uint64_t)nifp->ring_ofs[index];
        if (ring_offset + sizeof(struct netmap_ring) > binding->region_size) {
            brk_fail(error, error_size, "netmap: %s ring %u lies outside the region", what, i);
            return -1;
        }
        ring = direction == BRK_NETMAP_TX ? brk_netmap_txring(nifp, i) : brk_netmap_rxring(nifp, i);
        if (ring->num_slots == 0 || ring_offset + sizeof(struct netmap_ring)
                + (uint64_t)ring->num_slots * sizeof(struct netmap_slot) > binding->region_size) {
            brk_fail(error, error_size, "netmap: %s ring %u has a bad slot count (%u)", what, i, ring->num_slots);
            return -1;
        }
        if (port->rings == MAX_RINGS) {
            brk_fail(error, error_size, "netmap: more than %d %s rings", MAX_RINGS, what);
            return -1;
        }
        port->ring[port->rings++] = ring;
    }
    if (port->rings == 0) {
        brk_fail(error, error_size, "netmap: the port has no %s ring bound", what);
        return -1;
    }
    return 0;
}

/* Registers port through /dev/netmap and maps its region. */
static int port_open(struct port *port, const char *name, unsigned mode, unsigned ring, int direction,
                     char *error, size_t error_size)
{
    struct registration registration = { 0 };
    struct brk_netmap_binding binding;
    struct netmap_if *nifp;
    uint64_t only = direction == BRK_NETMAP_TX ? NR_TX_RINGS_ONLY : NR_RX_RINGS_ONLY;
    int fd = open(NETMAP_DEVICE, O_RDWR | O_CLOEXEC);

    if (fd < 0) {
        brk_fail(error, error_size, "netmap port %s: %s: %s", name, NETMAP_DEVICE, strerror(errno));
        return -1;
    }
    if (register_port(fd, name, mode, ring, only, &registration, error, error_size) != 0
            || !(port->mapping = map_region(fd, &registration, error, error_size))) {
        close(fd);
        return -1;
    }
    memset(&binding, 0, sizeof(binding));
    binding.region = port->mapping->base;
    binding.region_size = port->mapping->size;
    binding.interface_offset = registration.offset;
    binding.fd = fd;
    binding.sync = kernel_sync;
    nifp = brk_netmap_if(binding.region, registration.offset);
    if (direction == BRK_NETMAP_TX)
        bound_rings(nifp, direction, mode, ring, &binding.first_tx_ring, &binding.tx_rings);
    else
        bound_rings(nifp, direction, mode, ring, &binding.first_rx_ring, &binding.rx_rings);
    if (port_attach(port, &binding, direction, error, error_size) != 0) {
        unmap_region(port->mapping);
        close(fd);
        return -1;
    }
    port->owns_fd = 1;
    return 0;
}

static void port_close(struct port *port)
{
    if (port->mapping)
        unmap_region(port->mapping);
    if (port->owns_fd)
        close(port->fd);
}

static void port_sync(struct port *port, int direction)
{
    /* A failed sync leaves the ring as it was: the next batch tries again. */
    port->sync(port->sync_context, port->fd, direction);
}

int brk_netmap_port_info(const char *port, struct brk_netmap_port_facts *out,
                         char *error, size_t error_size)
{
    struct nmreq_header header;
    struct nmreq_port_info_get info;
    struct nmreq legacy;
    int fd = open(NETMAP_DEVICE, O_RDWR | O_CLOEXEC);

    memset(out, 0, sizeof(*out));
    if (fd < 0) {
        brk_fail(error, error_size, "netmap port %s: %s: %s", port, NETMAP_DEVICE, strerror(errno));
        return -1;
    }
    memset(&header, 0, sizeof(header));
    memset(&info, 0, sizeof(info));
    header.nr_version = NETMAP_API;
    header.nr_reqtype = NETMAP_REQ_PORT_INFO_GET;
    snprintf(header.nr_name, sizeof(header.nr_name), "%s", port);
    header.nr_body = (uint64_t)(uintptr_t)&info;
    if (ioctl(fd, BRK_NIOCCTRL, &header) == 0) {
        *out = (struct brk_netmap_port_facts){
            .memsize = info.nr_memsize, .tx_rings = info.nr_tx_rings, .rx_rings = info.nr_rx_rings,
            .tx_slots = info.nr_tx_slots, .rx_slots = info.nr_rx_slots, .mem_id = info.nr_mem_id,
            .api = NETMAP_API,
        };
        close(fd);
        return 0;
    }
    if (means_older_module(errno)) {
        legacy_request(port, NR_REG_ALL_NIC, 0, &legacy);
        legacy.nr_version = BRK_NETMAP_LEGACY_API;
        if (ioctl(fd, BRK_NIOCGINFO, &legacy) == 0) {
            *out = (struct brk_netmap_port_facts){
                .memsize = legacy.nr_memsize, .tx_rings = legacy.nr_tx_rings,
                .rx_rings = legacy.nr_rx_rings, .tx_slots = legacy.nr_tx_slots,
                .rx_slots = legacy.nr_rx_slots, .mem_id = legacy.nr_arg2, .api = legacy.nr_version,
            };
            close(fd);
            return 0;
        }
    }
    brk_fail(error, error_size, "netmap port %s: %s", port, strerror(errno));
    close(fd);
    return -1;
}

/* ----------------------------------------------------------------- source */

struct netmap_source {
    struct brk_source base;
    struct port port;
    unsigned first_ring;                 /* where the next batch starts: no ring starves */
    uint32_t consumed_until[MAX_RINGS];  /* per ring: the slot after the last one handed over */
    struct brk_packet *batch;            /* the engine's array, to clear what it lent */
    unsigned batch_size;
};

static uint64_t wall_clock_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* Takes up to max frames from [head, tail) of each ring. A frame spread over
 * several slots (NS_MOREFRAG) is handed over as its first buffer (caplen <
 * wirelen) and never swapped; one whose last slot has not arrived waits. */
static unsigned collect(struct netmap_source *source, struct brk_packet *packets, unsigned max)
{
    unsigned n = 0;
    uint64_t now = wall_clock_ns();
    for (unsigned k = 0; k < source->port.rings; k++) {
        unsigned r = (source->first_ring + k) % source->port.rings;
        struct netmap_ring *ring = source->port.ring[r];
        uint32_t i = ring->head, tail = ring->tail;
        while (i != tail && n < max) {
            struct netmap_slot *slot = &ring->slot[i];
            uint32_t next = brk_netmap_ring_next(ring, i), wirelen = slot->len;
            int whole = !(slot->flags & NS_MOREFRAG);
            if (BRK_UNLIKELY(!whole)) {
                struct netmap_slot *fragment = slot;
                while ((fragment->flags & NS_MOREFRAG) && next != tail) {
                    fragment = &ring->slot[next];
                    wirelen += fragment->len;
                    next = brk_netmap_ring_next(ring, next);
                }
                if (fragment->flags & NS_MOREFRAG)
                    break;
            }
            packets[n].data = brk_netmap_buf(ring, slot->buf_idx);
            packets[n].caplen = slot->len < ring->nr_buf_size ? slot->len : ring->nr_buf_size;
            packets[n].wirelen = wirelen;
            packets[n].ts_nsec = now;
            packets[n].swappable_slot = whole ? slot : NULL;
            packets[n].slot_region = source->port.region;
            n++;
            i = next;
        }
        source->consumed_until[r] = i;
    }
    source->first_ring = source->port.rings > 1 ? (source->first_ring + 1) % source->port.rings : 0;
    return n;
}

static unsigned netmap_next_batch(struct brk_source *base, struct brk_packet *packets, unsigned max)
{
    struct netmap_source *source = (struct netmap_source *)base;
    unsigned n = collect(source, packets, max);
    if (n == 0) {
        /* Give back what was released and take what arrived. */
        port_sync(&source->port, BRK_NETMAP_RX);
        n = collect(source, packets, max);
    }
    source->batch = packets;
    source->batch_size = n;
    return n;
}

static void netmap_release(struct brk_source *base)
{
    struct netmap_source *source = (struct netmap_source *)base;
    for (unsigned r = 0; r < source->port.rings; r++) {
        struct netmap_ring *ring = source->port.ring[r];
        ring->head = ring->cur = source->consumed_until[r];
    }
    /* The engine's array is shared with other sources, which do not set these. */
    for (unsigned i = 0; i < source->batch_size; i++)
        source->batch[i].swappable_slot = NULL;
    source->batch_size = 0;
}

static int netmap_poll_fd(struct brk_source *base)
{
    return ((struct netmap_source *)base)->port.fd;
}

/* netmap keeps no count of the frames a full RX ring lost. */
static uint64_t netmap_kernel_drops(struct brk_source *base) { return 0; }
static int netmap_exhausted(struct brk_source *base) { return 0; }

static void netmap_source_close(struct brk_source *base)
{
    struct netmap_source *source = (struct netmap_source *)base;
    port_close(&source->port);
    free(source);
}

static const struct brk_source_ops netmap_source_ops = {
    .next_batch = netmap_next_batch,
    .release = netmap_release,
    .poll_fd = netmap_poll_fd,
    .kernel_drops = netmap_kernel_drops,
    .exhausted = netmap_exhausted,
    .close = netmap_source_close,
};

static struct netmap_source *source_new(char *error, size_t error_size)
{
    struct netmap_source *source = calloc(1, sizeof(*source));
    if (!source)
        return brk_fail(error, error_size, "out of memory");
    source->base.ops = &netmap_source_ops;
    source->port.fd = -1;
    return source;
}

static brk_source *source_ready(struct netmap_source *source)
{
    for (unsigned r = 0; r < source->port.rings; r++)
        source->consumed_until[r] = source->port.ring[r]->head;
    return &source->base;
}

brk_source *brk_source_netmap_open(const char *port, unsigned mode, unsigned ring,
                                   char *error, size_t error_size)
{
    struct netmap_source *source = source_new(error, error_size);
    if (!source)
        return NULL;
    if (port_open(&source->port, port, mode, ring, BRK_NETMAP_RX, error, error_size) != 0) {
        free(source);
        return NULL;
    }
    return source_ready(source);
}

brk_source *brk_source_netmap_attach(const struct brk_netmap_binding *binding,
                                     char *error, size_t error_size)
{
    struct netmap_source *source = source_new(error, error_size);
    if (!source)
        return NULL;
    if (port_attach(&source->port, binding, BRK_NETMAP_RX, error, error_size) != 0) {
        free(source);
        return NULL;
    }
    return source_ready(source);
}

/* ------------------------------------------------------------------- sink */

struct netmap_sink {
    struct brk_sink base;
    struct port port;
    unsigned current;       /* the ring being filled */
    int queued;             /* slots filled since the last TX sync */
    int reclaimed;          /* this batch already synced to make room */
};

/* A TX ring with a free slot, starting at the current one; NULL when all are full. */
static struct netmap_ring *ring_with_room(struct netmap_sink *sink)
{
    for (unsigned k = 0; k < sink->port.rings; k++) {
        struct netmap_ring *ring = sink->port.ring[sink->current];
        if (ring->head != ring->tail)
            return ring;
        sink->current = sink->current + 1 == sink->port.rings ? 0 : sink->current + 1;
    }
    return NULL;
}

static int netmap_send(struct brk_sink *base, const struct brk_packet *packet)
{
    struct netmap_sink *sink = (struct netmap_sink *)base;
    struct netmap_ring *ring = ring_with_room(sink);
    struct netmap_slot *slot;

    if (BRK_UNLIKELY(!ring)) {
        /* Full: one sync per batch may find slots the kernel has sent since;
         * never more, so a stalled consumer costs no syscall per packet. */
        if (sink->reclaimed)
            return -1;
        sink->reclaimed = 1;
        port_sync(&sink->port, BRK_NETMAP_TX);
        sink->queued = 0;
        if (!(ring = ring_with_room(sink)))
            return -1;
    }
    slot = &ring->slot[ring->head];
    /* The zero-copy rule (internal.h): swap only a buffer that starts with
     * this packet's bytes (slot->len below is caplen, so a shortened packet
     * swaps too); a brick that moved data gets its bytes copied. */
    if (packet->swappable_slot && packet->slot_region == sink->port.region
            && packet->data == brk_netmap_buf(ring, packet->swappable_slot->buf_idx)) {
        struct netmap_slot *received = packet->swappable_slot;
        uint32_t buffer = slot->buf_idx;
        slot->buf_idx = received->buf_idx;
        slot->len = (uint16_t)packet->caplen;
        slot->flags = NS_BUF_CHANGED;
        received->buf_idx = buffer;
        received->flags |= NS_BUF_CHANGED;
    } else {
        uint32_t length = packet->caplen < ring->nr_buf_size ? packet->caplen : ring->nr_buf_size;
        memcpy(brk_netmap_buf(ring, slot->buf_idx), packet->data, length);
        slot->len = (uint16_t)length;
        slot->flags = 0;
    }
    ring->head = ring->cur = brk_netmap_ring_next(ring, ring->head);
    sink->queued = 1;
    return 0;
}

static void netmap_flush(struct brk_sink *base)
{
    struct netmap_sink *sink = (struct netmap_sink *)base;
    if (sink->queued)
        port_sync(&sink->port, BRK_NETMAP_TX);
    sink->queued = 0;
    sink->reclaimed = 0;
}

static void netmap_sink_close(struct brk_sink *base)
{
    struct netmap_sink *sink = (struct netmap_sink *)base;
    netmap_flush(base);
    port_close(&sink->port);
    free(sink);
}

static const struct brk_sink_ops netmap_sink_ops = {
    .send = netmap_send,
    .flush = netmap_flush,
    .close = netmap_sink_close,
};

static struct netmap_sink *sink_new(char *error, size_t error_size)
{
    struct netmap_sink *sink = calloc(1, sizeof(*sink));
    if (!sink)
        return brk_fail(error, error_size, "out of memory");
    sink->base.ops = &netmap_sink_ops;
    sink->port.fd = -1;
    return sink;
}

brk_sink *brk_sink_netmap_open(const char *port, unsigned mode, unsigned ring,
                               char *error, size_t error_size)
{
    struct netmap_sink *sink = sink_new(error, error_size);
    if (!sink)
        return NULL;
    if (port_open(&sink->port, port, mode, ring, BRK_NETMAP_TX, error, error_size) != 0) {
        free(sink);
        return NULL;
    }
    return &sink->base;
}

brk_sink *brk_sink_netmap_attach(const struct brk_netmap_binding *binding,
                                 char *error, size_t error_size)
{
    struct netmap_sink *sink = sink_new(error, error_size);
    if (!sink)
        return NULL;
    if (port_attach(&sink->port, binding, BRK_NETMAP_TX, error, error_size) != 0) {
        free(sink);
        return NULL;
    }
    return &sink->base;
}

/* ------------------------------------------------------------- ABI facts */

struct abi_fact {
    const char *name;
    int64_t value;
};

#define SIZE_FACT(type) { "sizeof(" #type ")", (int64_t)sizeof(type) }
#define FIELD_FACT(type, field) { "offsetof(" #type ", " #field ")", (int64_t)offsetof(type, field) }
#define NUMBER_FACT(name, value) { name, (int64_t)(value) }

static const struct abi_fact abi_facts[] = {
    SIZE_FACT(struct netmap_slot),
    FIELD_FACT(struct netmap_slot, buf_idx),
    FIELD_FACT(struct netmap_slot, len),
    FIELD_FACT(struct netmap_slot, flags),
    FIELD_FACT(struct netmap_slot, ptr),
    SIZE_FACT(struct netmap_ring),
    FIELD_FACT(struct netmap_ring, buf_ofs),
    FIELD_FACT(struct netmap_ring, num_slots),
    FIELD_FACT(struct netmap_ring, nr_buf_size),
    FIELD_FACT(struct netmap_ring, ringid),
    FIELD_FACT(struct netmap_ring, dir),
    FIELD_FACT(struct netmap_ring, head),
    FIELD_FACT(struct netmap_ring, cur),
    FIELD_FACT(struct netmap_ring, tail),
    FIELD_FACT(struct netmap_ring, flags),
    FIELD_FACT(struct netmap_ring, ts),
    FIELD_FACT(struct netmap_ring, sem),
    FIELD_FACT(struct netmap_ring, slot),
    SIZE_FACT(struct netmap_if),
    FIELD_FACT(struct netmap_if, ni_name),
    FIELD_FACT(struct netmap_if, ni_version),
    FIELD_FACT(struct netmap_if, ni_flags),
    FIELD_FACT(struct netmap_if, ni_tx_rings),
    FIELD_FACT(struct netmap_if, ni_rx_rings),
    FIELD_FACT(struct netmap_if, ni_bufs_head),
    FIELD_FACT(struct netmap_if, ni_host_tx_rings),
    FIELD_FACT(struct netmap_if, ni_host_rx_rings),
    FIELD_FACT(struct netmap_if, ni_spare1),
    FIELD_FACT(struct netmap_if, ring_ofs),
    SIZE_FACT(struct nmreq_header),
    FIELD_FACT(struct nmreq_header, nr_version),
    FIELD_FACT(struct nmreq_header, nr_reqtype),
    FIELD_FACT(struct nmreq_header, nr_reserved),
    FIELD_FACT(struct nmreq_header, nr_name),
    FIELD_FACT(struct nmreq_header, nr_options),
    FIELD_FACT(struct nmreq_header, nr_body),
    SIZE_FACT(struct nmreq_register),
    FIELD_FACT(struct nmreq_register, nr_offset),
    FIELD_FACT(struct nmreq_register, nr_memsize),
    FIELD_FACT(struct nmreq_register, nr_tx_slots),
    FIELD_FACT(struct nmreq_register, nr_rx_slots),
    FIELD_FACT(struct nmreq_register, nr_tx_rings),
    FIELD_FACT(struct nmreq_register, nr_rx_rings),
    FIELD_FACT(struct nmreq_register, nr_host_tx_rings),
    FIELD_FACT(struct nmreq_register, nr_host_rx_rings),
    FIELD_FACT(struct nmreq_register, nr_mem_id),
    FIELD_FACT(struct nmreq_register, nr_ringid),
    FIELD_FACT(struct nmreq_register, nr_mode),
    FIELD_FACT(struct nmreq_register, nr_extra_bufs),
    FIELD_FACT(struct nmreq_register, nr_flags),
    SIZE_FACT(struct nmreq_port_info_get),
    FIELD_FACT(struct nmreq_port_info_get, nr_memsize),
    FIELD_FACT(struct nmreq_port_info_get, nr_tx_slots),
    FIELD_FACT(struct nmreq_port_info_get, nr_rx_slots),
    FIELD_FACT(struct nmreq_port_info_get, nr_tx_rings),
    FIELD_FACT(struct nmreq_port_info_get, nr_rx_rings),
    FIELD_FACT(struct nmreq_port_info_get, nr_host_tx_rings),
    FIELD_FACT(struct nmreq_port_info_get, nr_host_rx_rings),
    FIELD_FACT(struct nmreq_port_info_get, nr_mem_id),
    SIZE_FACT(struct nmreq),
    FIELD_FACT(struct nmreq, nr_name),
    FIELD_FACT(struct nmreq, nr_version),
    FIELD_FACT(struct nmreq, nr_offset),
    FIELD_FACT(struct nmreq, nr_memsize),
    FIELD_FACT(struct nmreq, nr_tx_slots),
    FIELD_FACT(struct nmreq, nr_rx_slots),
    FIELD_FACT(struct nmreq, nr_tx_rings),
    FIELD_FACT(struct nmreq, nr_rx_rings),
    FIELD_FACT(struct nmreq, nr_ringid),
    FIELD_FACT(struct nmreq, nr_cmd),
    FIELD_FACT(struct nmreq, nr_arg1),
    FIELD_FACT(struct nmreq, nr_arg2),
    FIELD_FACT(struct nmreq, nr_arg3),
    FIELD_FACT(struct nmreq, nr_flags),
    NUMBER_FACT("NIOCGINFO", BRK_NIOCGINFO),
    NUMBER_FACT("NIOCREGIF", BRK_NIOCREGIF),
    NUMBER_FACT("NIOCTXSYNC", BRK_NIOCTXSYNC),
    NUMBER_FACT("NIOCRXSYNC", BRK_NIOCRXSYNC),
    NUMBER_FACT("NIOCCTRL", BRK_NIOCCTRL),
};

const char *brk_netmap_abi_fact_name(unsigned index)
{
    return index < sizeof(abi_facts) / sizeof(abi_facts[0]) ? abi_facts[index].name : NULL;
}

int64_t brk_netmap_abi_fact_value(unsigned index)
{
    return index < sizeof(abi_facts) / sizeof(abi_facts[0]) ? abi_facts[index].value : -1;
}
