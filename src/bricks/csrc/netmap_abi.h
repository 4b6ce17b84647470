/* The netmap user ABI (API 14, with the legacy NIOCREGIF request as a
 * fallback), declared from the facts of netmap's sys/net/netmap.h,
 * netmap_legacy.h and netmap_user.h so that building needs no netmap header.
 * C only: the ring header's cache alignment cannot be spelt in a cffi cdef;
 * Python checks these layouts through brk_netmap_abi_fact (test_netmap_abi.py). */
#ifndef BRK_NETMAP_ABI_H
#define BRK_NETMAP_ABI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <sys/types.h>

#include "internal.h"   /* and through it the constants of api/netmap.h */

#define BRK_NETMAP_CACHE_ALIGN 128
#define BRK_NETMAP_IFNAMSIZ 16
#define BRK_NETMAP_REQ_IFNAMSIZ 64

/* A buffer descriptor: which buffer holds the frame, and how long it is. */
struct netmap_slot {
    uint32_t buf_idx;
    uint16_t len;
    uint16_t flags;       /* NS_* */
    uint64_t ptr;
};

/* One TX or RX ring. [head, tail) belongs to the application, the rest to
 * the kernel; the slots follow the header. */
struct netmap_ring {
    int64_t buf_ofs;      /* buffers start this far from the ring */
    uint32_t num_slots;
    uint32_t nr_buf_size;
    uint16_t ringid;
    uint16_t dir;         /* BRK_NETMAP_TX or BRK_NETMAP_RX */
    uint32_t head;
    uint32_t cur;
    uint32_t tail;
    uint32_t flags;
    struct timeval ts;
    uint8_t sem[128] __attribute__((aligned(BRK_NETMAP_CACHE_ALIGN)));
    struct netmap_slot slot[];
};

/* One per bound file descriptor: ring counts, then the offsets (from this
 * struct) of the TX rings (NIC, then host) and of the RX rings (NIC, then host). */
struct netmap_if {
    char ni_name[BRK_NETMAP_IFNAMSIZ];
    uint32_t ni_version;
    uint32_t ni_flags;
    uint32_t ni_tx_rings;
    uint32_t ni_rx_rings;
    uint32_t ni_bufs_head;
    uint32_t ni_host_tx_rings;   /* 0 before API 14, when there was always one */
    uint32_t ni_host_rx_rings;
    uint32_t ni_spare1[3];
    ssize_t ring_ofs[];
};

/* NIOCCTRL: every request of API 14 is this header plus a body. */
struct nmreq_header {
    uint16_t nr_version;
    uint16_t nr_reqtype;         /* NETMAP_REQ_* */
    uint32_t nr_reserved;
    char nr_name[BRK_NETMAP_REQ_IFNAMSIZ];
    uint64_t nr_options;
    uint64_t nr_body;            /* address of the body */
};

struct nmreq_register {
    uint64_t nr_offset;          /* where this port's netmap_if is in the region */
    uint64_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_host_tx_rings;
    uint16_t nr_host_rx_rings;
    uint16_t nr_mem_id;
    uint16_t nr_ringid;
    uint32_t nr_mode;            /* NR_REG_* */
    uint32_t nr_extra_bufs;
    uint64_t nr_flags;           /* NR_RX_RINGS_ONLY, ... */
};

struct nmreq_port_info_get {
    uint64_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_host_tx_rings;
    uint16_t nr_host_rx_rings;
    uint16_t nr_mem_id;
    uint16_t pad[3];
};

/* The request of modules older than API 12 (NIOCREGIF / NIOCGINFO). */
struct nmreq {
    char nr_name[BRK_NETMAP_IFNAMSIZ];
    uint32_t nr_version;
    uint32_t nr_offset;
    uint32_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_ringid;          /* the ring, or the pipe number */
    uint16_t nr_cmd;
    uint16_t nr_arg1;
    uint16_t nr_arg2;            /* memory allocator id */
    uint32_t nr_arg3;
    uint32_t nr_flags;           /* NR_REG_* mode */
    uint32_t spare2[1];
};

#define BRK_NIOCGINFO   _IOWR('i', 145, struct nmreq)
#define BRK_NIOCREGIF   _IOWR('i', 146, struct nmreq)
#define BRK_NIOCTXSYNC  _IO('i', 148)
#define BRK_NIOCRXSYNC  _IO('i', 149)
#define BRK_NIOCCTRL    _IOWR('i', 151, struct nmreq_header)

/* netmap_user.h's NETMAP_IF / NETMAP_TXRING / NETMAP_RXRING / NETMAP_BUF. */
static inline struct netmap_if *brk_netmap_if(void *region, uint64_t offset)
{
    return (struct netmap_if *)((char *)region + offset);
}

/* Host rings a netmap_if lists: its count from API 14, always one before. */
static inline uint32_t brk_netmap_host_tx_rings(const struct netmap_if *nifp)
{
    return nifp->ni_host_tx_rings ? nifp->ni_host_tx_rings : 1;
}

static inline struct netmap_ring *brk_netmap_txring(struct netmap_if *nifp, uint32_t index)
{
    return (struct netmap_ring *)((char *)nifp + nifp->ring_ofs[index]);
}

static inline struct netmap_ring *brk_netmap_rxring(struct netmap_if *nifp, uint32_t index)
{
    ssize_t offset = nifp->ring_ofs[index + nifp->ni_tx_rings + brk_netmap_host_tx_rings(nifp)];
    return (struct netmap_ring *)((char *)nifp + offset);
}

static inline uint8_t *brk_netmap_buf(const struct netmap_ring *ring, uint32_t index)
{
    return (uint8_t *)ring + ring->buf_ofs + (size_t)index * ring->nr_buf_size;
}

static inline uint32_t brk_netmap_ring_next(const struct netmap_ring *ring, uint32_t i)
{
    return i + 1 == ring->num_slots ? 0 : i + 1;
}

/* Slots the application may use now: received frames (RX) or free slots (TX). */
static inline uint32_t brk_netmap_ring_space(const struct netmap_ring *ring)
{
    int64_t space = (int64_t)ring->tail - ring->head;
    return (uint32_t)(space < 0 ? space + ring->num_slots : space);
}

#endif
