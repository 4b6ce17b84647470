/* AF_PACKET back-end: a TPACKET_V3 memory-mapped RX ring reading an interface
 * promiscuously, and a TPACKET_V2 TX ring writing to one with qdisc bypass. */
#include "internal.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RX_BLOCK_MIN_BYTES (32u << 10)   /* holds three 9000-byte jumbo frames */
#define RX_BLOCK_MAX_BYTES (1u << 20)
#define RX_BLOCKS_WANTED 64u
#define RX_BLOCKS_MIN 4u
#define RX_FRAME_BYTES 2048u             /* V3 packs packets; only the setsockopt checks it */
#define RX_BLOCK_TIMEOUT_MS 2u           /* a partly filled block reaches us after at most this */
#define RX_RING_MIN_FRAMES 32768u        /* full-size frames the ring holds at least (rx_ring_bytes) */
#define RX_RING_FRAMES_MAX_BYTES (64u << 20)   /* that floor's limit (jumbo MTUs) */
#define RX_FALLBACK_MTU 1500u
#define TX_FRAMES_PER_BLOCK_WANTED 64u   /* frame headers at every cache-line offset of a page */
#define TX_BLOCK_MAX_BYTES (128u << 10)
#define VLAN_TAG_BYTES 4u
#define ETHERNET_ADDRESSES_BYTES 12u     /* destination + source MAC */

static void *socket_fail(char *error, size_t error_size, const char *ifname, const char *what)
{
    return brk_fail(error, error_size, "%s: %s: %s", ifname, what, strerror(errno));
}

/* The index of ifname, or 0 with the message written. */
static unsigned interface_index(const char *ifname, char *error, size_t error_size)
{
    unsigned index = if_nametoindex(ifname);
    if (!index) {
        if (errno == ENODEV || errno == ENXIO)
            brk_fail(error, error_size, "%s: no such interface", ifname);
        else
            socket_fail(error, error_size, ifname, "interface lookup");
    }
    return index;
}

static int bind_to_interface(int fd, unsigned ifindex, uint16_t protocol)
{
    struct sockaddr_ll address = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons(protocol),
        .sll_ifindex = (int)ifindex,
    };
    return bind(fd, (struct sockaddr *)&address, sizeof(address));
}

static unsigned power_of_two_at_most(unsigned value)
{
    unsigned power = 1;
    while (power <= value / 2)
        power *= 2;
    return power;
}

/*
 * RX. The kernel fills blocks of packets and hands each whole block to us
 * (TP_STATUS_USER); we hand it back (TP_STATUS_KERNEL) once every packet of it
 * has been pushed through the bricks. A batch may end in the middle of a
 * block: the cursor (current_block, packets_left, next_packet) resumes there,
 * and that block stays ours until a later batch finishes it.
 *
 * Invariant between calls: the blocks_read blocks from first_unreleased on
 * (current_block = first_unreleased + blocks_read, mod block_count) are fully
 * read and still ours; release() returns exactly those.
 */
struct afpacket_source {
    struct brk_source base;
    int fd;
    uint8_t *ring;
    size_t ring_size;
    unsigned block_size;
    unsigned block_count;
    unsigned current_block;
    unsigned first_unreleased;
    unsigned blocks_read;
    unsigned packets_left;            /* in current_block; 0 = not started */
    struct tpacket3_hdr *next_packet;
    int skip_outgoing;                /* the kernel lacks PACKET_IGNORE_OUTGOING */
    /* What the source was opened with, to open it again when its interface
     * comes back; and whether it is away. */
    char ifname[IF_NAMESIZE];
    unsigned ifindex;
    unsigned ring_bytes;
    int fanout_group;
    int away;                         /* enum brk_io_status: down or gone */
    uint64_t next_check_ns;
};

static struct tpacket_block_desc *rx_block(struct afpacket_source *source, unsigned index)
{
    return (struct tpacket_block_desc *)(source->ring + (size_t)index * source->block_size);
}

/*
 * The kernel moves a VLAN tag out of the frame into the header (even on
 * software interfaces): put it back in front of the EtherType, so that what
 * the bricks forward is byte for byte what was on the wire. The ring has
 * headroom before tp_mac (the socket sets PACKET_RESERVE), so the MAC
 * addresses move 4 bytes back and the tag goes in between.
 */
static void restore_vlan_tag(const struct tpacket3_hdr *header, struct brk_packet *packet)
{
    uint8_t *frame = (uint8_t *)packet->data;
    uint16_t tpid = (header->tp_status & TP_STATUS_VLAN_TPID_VALID) && header->hv1.tp_vlan_tpid
                        ? header->hv1.tp_vlan_tpid : ETH_P_8021Q;
    uint16_t tag[2] = { htons(tpid), htons((uint16_t)header->hv1.tp_vlan_tci) };
    if (packet->caplen < ETHERNET_ADDRESSES_BYTES)
        return;
    memmove(frame - VLAN_TAG_BYTES, frame, ETHERNET_ADDRESSES_BYTES);
    memcpy(frame - VLAN_TAG_BYTES + ETHERNET_ADDRESSES_BYTES, tag, sizeof(tag));
    packet->data = frame - VLAN_TAG_BYTES;
    packet->caplen += VLAN_TAG_BYTES;
    packet->wirelen += VLAN_TAG_BYTES;
}

static void check_input(struct afpacket_source *source, int now_please);
static void check_idle_input(struct afpacket_source *source);

static unsigned afpacket_next_batch(struct brk_source *base, struct brk_packet *packets, unsigned max)
{
    struct afpacket_source *source = (struct afpacket_source *)base;
    if (BRK_UNLIKELY(source->away))
        check_input(source, 0);
    /* Blocks stay ours until release(), after the batch went through the
     * bricks: leave the kernel at least half the ring to fill meanwhile. */
    unsigned most_blocks = source->block_count / 2;
    unsigned n = 0;
    while (n < max && source->blocks_read < most_blocks) {
        struct tpacket_block_desc *block = rx_block(source, source->current_block);
        if (!source->packets_left) {
            if (!(__atomic_load_n(&block->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
                break;
            source->packets_left = block->hdr.bh1.num_pkts;
            source->next_packet = (struct tpacket3_hdr *)((uint8_t *)block
                                                          + block->hdr.bh1.offset_to_first_pkt);
        }
        while (n < max && source->packets_left) {
            struct tpacket3_hdr *header = source->next_packet;
            source->packets_left--;
            source->next_packet = (struct tpacket3_hdr *)((uint8_t *)header + header->tp_next_offset);
            if (source->skip_outgoing) {
                const struct sockaddr_ll *link = (const struct sockaddr_ll *)
                    ((uint8_t *)header + TPACKET_ALIGN(sizeof(struct tpacket3_hdr)));
                if (link->sll_pkttype == PACKET_OUTGOING)
                    continue;
            }
            packets[n].data = (uint8_t *)header + header->tp_mac;
            packets[n].caplen = header->tp_snaplen;
            packets[n].wirelen = header->tp_len;
            packets[n].ts_nsec = (uint64_t)header->tp_sec * 1000000000ull + header->tp_nsec;
            if (header->tp_status & TP_STATUS_VLAN_VALID)
                restore_vlan_tag(header, &packets[n]);
            n++;
        }
        if (source->packets_left)
            break;
        /* Also reached by a block closed empty: it is simply handed back. */
        source->blocks_read++;
        source->current_block = (source->current_block + 1) % source->block_count;
    }
    if (BRK_UNLIKELY(n == 0))
        check_idle_input(source);
    return n;
}

static void afpacket_release(struct brk_source *base)
{
    struct afpacket_source *source = (struct afpacket_source *)base;
    for (; source->blocks_read; source->blocks_read--) {
        struct tpacket_block_desc *block = rx_block(source, source->first_unreleased);
        __atomic_store_n(&block->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        source->first_unreleased = (source->first_unreleased + 1) % source->block_count;
    }
}

static int afpacket_poll_fd(struct brk_source *base)
{
    return ((struct afpacket_source *)base)->fd;
}

#define RX_RECHECK_INTERVAL_NS 1000000000ull

static uint64_t coarse_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* Whether the interface of that name is up (IFF_UP and IFF_RUNNING). */
static int interface_up(int fd, const char *ifname)
{
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    snprintf(request.ifr_name, sizeof(request.ifr_name), "%s", ifname);
    return ioctl(fd, SIOCGIFFLAGS, &request) == 0 && (request.ifr_flags & IFF_UP);
}

static void afpacket_source_close(struct brk_source *base);

/* Takes over the socket and ring of a source just opened on the same
 * interface (it came back with a new index): the cursor starts afresh. */
static int reopen_input(struct afpacket_source *source)
{
    char error[160];
    struct afpacket_source *fresh = (struct afpacket_source *)brk_source_afpacket_open(
        source->ifname, source->ring_bytes, source->fanout_group, error, sizeof(error));
    if (!fresh)
        return -1;
    struct afpacket_source old = *source;
    source->fd = fresh->fd;
    source->ring = fresh->ring;
    source->ring_size = fresh->ring_size;
    source->block_size = fresh->block_size;
    source->block_count = fresh->block_count;
    source->current_block = source->first_unreleased = source->blocks_read = source->packets_left = 0;
    source->next_packet = NULL;
    source->skip_outgoing = fresh->skip_outgoing;
    source->ifindex = fresh->ifindex;
    fresh->fd = old.fd;
    fresh->ring = old.ring;
    fresh->ring_size = old.ring_size;
    afpacket_source_close(&fresh->base);
    return 0;
}

/*
 * The input went down or away (poll error: check now), or is away and the
 * engine asks for packets (check once a second). A link that comes up again
 * is read again by the kernel itself (the socket's hook returns with
 * NETDEV_UP); an interface deleted and created again has a new index, so the
 * socket is opened anew. The state changes, and so is logged, once per
 * transition.
 */
static void check_input(struct afpacket_source *source, int now_please)
{
    uint64_t now = coarse_now_ns();
    if (!now_please && now < source->next_check_ns)
        return;
    source->next_check_ns = now + RX_RECHECK_INTERVAL_NS;
    unsigned index = if_nametoindex(source->ifname);
    int status = !index ? BRK_IO_GONE : !interface_up(source->fd, source->ifname) ? BRK_IO_FAILING : BRK_IO_UP;
    if (status == BRK_IO_UP && index != source->ifindex && reopen_input(source) != 0)
        return;   /* back, but it cannot be opened yet: try again later */
    if (status == source->away)
        return;
    source->away = status;
    switch (status) {
    case BRK_IO_GONE:
        brk_io_set_state(&source->base.state, status, "input %s is gone (No such device): "
                         "waiting for it to return", source->ifname);
        break;
    case BRK_IO_FAILING:
        brk_io_set_state(&source->base.state, status, "input %s is down", source->ifname);
        break;
    default:
        brk_io_set_state(&source->base.state, status, "input %s is back: reading again", source->ifname);
    }
}

/* The socket's pending error (ENETDOWN when the interface went down or
 * away), cleared by reading it: poll() stops reporting it. */
static int take_socket_error(struct afpacket_source *source)
{
    int pending = 0;
    socklen_t length = sizeof(pending);
    if (getsockopt(source->fd, SOL_SOCKET, SO_ERROR, &pending, &length) != 0)
        return 0;
    return pending;
}

static void afpacket_poll_error(struct brk_source *base)
{
    struct afpacket_source *source = (struct afpacket_source *)base;
    take_socket_error(source);
    check_input(source, 1);
}

/* An input with nothing to read in an engine that never polls (its other
 * sources keep it busy) would never see its poll error: once a second, an
 * idle input looks for it itself. */
static void check_idle_input(struct afpacket_source *source)
{
    if (source->away)
        return;   /* checked on every call already */
    uint64_t now = coarse_now_ns();
    if (now < source->next_check_ns)
        return;
    source->next_check_ns = now + RX_RECHECK_INTERVAL_NS;
    if (take_socket_error(source))
        check_input(source, 1);
}

static uint64_t afpacket_kernel_drops(struct brk_source *base)
{
    struct afpacket_source *source = (struct afpacket_source *)base;
    struct tpacket_stats_v3 stats;
    socklen_t length = sizeof(stats);
    /* Reading the statistics resets them: each call returns what is new. */
    if (getsockopt(source->fd, SOL_PACKET, PACKET_STATISTICS, &stats, &length) != 0)
        return 0;
    return stats.tp_drops;
}

static int afpacket_exhausted(struct brk_source *base)
{
    return 0;
}

static void afpacket_source_close(struct brk_source *base)
{
    struct afpacket_source *source = (struct afpacket_source *)base;
    if (source->ring)
        munmap(source->ring, source->ring_size);
    if (source->fd >= 0)
        close(source->fd);
    free(source);
}

static const struct brk_source_ops afpacket_source_ops = {
    .next_batch = afpacket_next_batch,
    .release = afpacket_release,
    .poll_fd = afpacket_poll_fd,
    .poll_error = afpacket_poll_error,
    .kernel_drops = afpacket_kernel_drops,
    .exhausted = afpacket_exhausted,
    .close = afpacket_source_close,
};

/*
 * The kernel hands a block over when it is full or RX_BLOCK_TIMEOUT_MS after
 * its first packet, so at a low packet rate every block carries only a few
 * packets: the ring then absorbs block_count * timeout of engine stall, not
 * ring_bytes. Many blocks (RX_BLOCKS_WANTED) keep that margin in tens of ms
 * (with 4 blocks of 1 MiB a 2-core machine dropped 10-25% of a slow burst);
 * blocks up to 1 MiB keep big rings from having thousands of them.
 */
static void rx_ring_geometry(unsigned ring_bytes, unsigned *block_size, unsigned *block_count)
{
    unsigned size = power_of_two_at_most(ring_bytes / RX_BLOCKS_WANTED ? ring_bytes / RX_BLOCKS_WANTED : 1);
    if (size < RX_BLOCK_MIN_BYTES)
        size = RX_BLOCK_MIN_BYTES;
    if (size > RX_BLOCK_MAX_BYTES)
        size = RX_BLOCK_MAX_BYTES;
    *block_size = size;
    *block_count = ring_bytes / size < RX_BLOCKS_MIN ? RX_BLOCKS_MIN : ring_bytes / size;
}

static unsigned device_mtu(int fd, const char *ifname, unsigned fallback);

/*
 * The bytes of RX ring for a source asked for ring_bytes on an interface of
 * this MTU: at least RX_RING_MIN_FRAMES frames of the full size. The engine's
 * cost per packet hardly depends on the frame's size, so the ring must cover
 * a stall of the engine in frames, not bytes: 16 MiB holds ~95,000 64-byte
 * frames but ~10,000 of 1514 bytes, and an engine stalled 90 ms every 400 ms
 * (a real-time task on its CPU, bench/RESULTS.md) lost 8% of a 1514-byte
 * stream and none of a 64-byte one. A V3 packet takes its header, the link
 * address, the MAC offset's alignment and the reserved tag room before the
 * frame (tpacket_rcv: ~86 bytes), rounded to 16.
 */
static unsigned rx_ring_bytes(unsigned ring_bytes, unsigned mtu)
{
    unsigned frame = TPACKET_ALIGN(TPACKET_ALIGN(TPACKET3_HDRLEN + 16) + VLAN_TAG_BYTES + ETH_HLEN
                                   + VLAN_TAG_BYTES + mtu);
    uint64_t floor = (uint64_t)RX_RING_MIN_FRAMES * frame;
    if (floor > RX_RING_FRAMES_MAX_BYTES)
        floor = RX_RING_FRAMES_MAX_BYTES;
    return ring_bytes < floor ? (unsigned)floor : ring_bytes;
}

static int set_option(int fd, int name, const void *value, socklen_t length)
{
    return setsockopt(fd, SOL_PACKET, name, value, length);
}

static int set_int_option(int fd, int name, int value)
{
    return set_option(fd, name, &value, sizeof(value));
}

/*
 * The fanout program: which member of a PACKET_FANOUT group (one engine per
 * qid) gets a frame. Not the kernel's flow hash, whose ports put the later
 * fragments of a datagram (no ports) elsewhere than its first, and whose
 * DEFRAG flag hands over reassembled datagrams larger than any output's MTU.
 * This hashes the address pair only, symmetrically (a XOR of the words of
 * both addresses): both directions of a flow and every fragment of every one
 * of its datagrams go to one member. IPv4 and IPv6 past any VLAN/QinQ tags;
 * other frames on their MAC pair. The kernel takes the result modulo the
 * number of members; a frame too short to read returns 0 (member 0).
 *
 * Classic BPF as the kernel runs it here: offset 0 is the network header (the
 * kernel already moved the outer tag to the skb's metadata, so skb->protocol
 * is the inner ethertype; up to two more tags are still in the data, skipped
 * by advancing X), SKF_LL_OFF addresses the Ethernet header.
 * Scratch: M[0] a tag's ethertype, M[1] the XOR so far, M[2] the header offset.
 */
enum {
    FANOUT_TAG_BLOCK = 9,          /* instructions of FANOUT_SKIP_TAG */
    FANOUT_XOR_NET_BLOCK = 5,      /* instructions of FANOUT_XOR_NET_WORD */
    FANOUT_XOR_LINK_BLOCK = 4,     /* instructions of FANOUT_XOR_LINK */
    FANOUT_IPV4_BLOCK = 2 + 2 * FANOUT_XOR_NET_BLOCK,   /* stx, two words, ja */
    FANOUT_IPV6_BLOCK = 2 + 8 * FANOUT_XOR_NET_BLOCK,   /* stx, eight words, ja */
    FANOUT_LINK_BLOCK = 4 * FANOUT_XOR_LINK_BLOCK,
    FANOUT_MIX_WORD = 0x9e3779b1u, /* odd: the multiplication is a bijection */
};

/* If A is a tag's type: A = the type it encloses, X += 4; else jump past the
 * `later` tag blocks that follow. */
#define FANOUT_SKIP_TAG(later)                                                        \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_8021Q, 2, 0),                           \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_8021AD, 1, 0),                          \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_QINQ1, 0, 6 + (later) * FANOUT_TAG_BLOCK), \
    BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),                                            \
    BPF_STMT(BPF_ST, 0),                                                              \
    BPF_STMT(BPF_MISC | BPF_TXA, 0),                                                  \
    BPF_STMT(BPF_ALU | BPF_ADD | BPF_K, VLAN_TAG_BYTES),                              \
    BPF_STMT(BPF_MISC | BPF_TAX, 0),                                                  \
    BPF_STMT(BPF_LD | BPF_MEM, 0)

/* M[1] ^= the 32-bit word at offset past the network header's start M[2]. */
#define FANOUT_XOR_NET_WORD(offset)                                                   \
    BPF_STMT(BPF_LDX | BPF_MEM, 2),                                                   \
    BPF_STMT(BPF_LD | BPF_W | BPF_IND, offset),                                       \
    BPF_STMT(BPF_LDX | BPF_MEM, 1),                                                   \
    BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),                                           \
    BPF_STMT(BPF_ST, 1)

/* M[1] ^= the word or half word (size) at offset of the Ethernet header. */
#define FANOUT_XOR_LINK(size, offset)                                                 \
    BPF_STMT(BPF_LD | (size) | BPF_ABS, (uint32_t)(SKF_LL_OFF + (offset))),           \
    BPF_STMT(BPF_LDX | BPF_MEM, 1),                                                   \
    BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),                                           \
    BPF_STMT(BPF_ST, 1)

static struct sock_filter fanout_program[] = {
    BPF_STMT(BPF_LDX | BPF_IMM, 0),
    BPF_STMT(BPF_STX, 1),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL)),
    FANOUT_SKIP_TAG(1),
    FANOUT_SKIP_TAG(0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, FANOUT_IPV4_BLOCK),
    BPF_STMT(BPF_STX, 2),
    FANOUT_XOR_NET_WORD(12),       /* source address */
    FANOUT_XOR_NET_WORD(16),       /* destination address */
    BPF_STMT(BPF_JMP | BPF_JA, 1 + FANOUT_IPV6_BLOCK + FANOUT_LINK_BLOCK),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, FANOUT_IPV6_BLOCK),
    BPF_STMT(BPF_STX, 2),
    FANOUT_XOR_NET_WORD(8), FANOUT_XOR_NET_WORD(12),    /* source address */
    FANOUT_XOR_NET_WORD(16), FANOUT_XOR_NET_WORD(20),
    FANOUT_XOR_NET_WORD(24), FANOUT_XOR_NET_WORD(28),   /* destination address */
    FANOUT_XOR_NET_WORD(32), FANOUT_XOR_NET_WORD(36),
    BPF_STMT(BPF_JMP | BPF_JA, FANOUT_LINK_BLOCK),
    FANOUT_XOR_LINK(BPF_W, 0), FANOUT_XOR_LINK(BPF_H, 4),   /* destination MAC */
    FANOUT_XOR_LINK(BPF_W, 6), FANOUT_XOR_LINK(BPF_H, 10),  /* source MAC */
    /* Spread the XOR over every bit: h = x * odd; h ^ h >> 16. */
    BPF_STMT(BPF_LD | BPF_MEM, 1),
    BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, FANOUT_MIX_WORD),
    BPF_STMT(BPF_ST, 1),
    BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
    BPF_STMT(BPF_LDX | BPF_MEM, 1),
    BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
    BPF_STMT(BPF_RET | BPF_A, 0),
};

/* Joins fd to fanout group `group` with fanout_program as its demultiplexer.
 * Only after the ring exists and the socket is bound, as the kernel requires. */
static int join_fanout_group(int fd, const char *ifname, int group, char *error, size_t error_size)
{
    struct sock_fprog program = {
        .len = sizeof(fanout_program) / sizeof(fanout_program[0]),
        .filter = fanout_program,
    };
    /* EINVAL also when the group id is in use on another interface (ids are
     * per network namespace) or with another mode. */
    if (set_int_option(fd, PACKET_FANOUT, (group & 0xffff) | (PACKET_FANOUT_CBPF << 16)) != 0) {
        brk_fail(error, error_size, "%s: PACKET_FANOUT group %d: %s", ifname, group & 0xffff,
                 strerror(errno));
        return -1;
    }
    /* Every member sets the same program; until the first does, member 0 gets all. */
    if (set_option(fd, PACKET_FANOUT_DATA, &program, sizeof(program)) != 0) {
        brk_fail(error, error_size, "%s: fanout program of group %d: %s", ifname, group & 0xffff,
                 strerror(errno));
        return -1;
    }
    return 0;
}

brk_source *brk_source_afpacket_open(const char *ifname, unsigned ring_bytes,
                                     int fanout_group, char *error, size_t error_size)
{
    unsigned ifindex = interface_index(ifname, error, error_size);
    if (!ifindex)
        return NULL;
    struct afpacket_source *source = calloc(1, sizeof(*source));
    if (!source)
        return brk_fail(error, error_size, "out of memory");
    source->base.ops = &afpacket_source_ops;
    snprintf(source->ifname, sizeof(source->ifname), "%s", ifname);
    source->ifindex = ifindex;
    source->ring_bytes = ring_bytes;
    source->fanout_group = fanout_group;
    /* Protocol 0: nothing is queued until bind() names the interface. */
    source->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (source->fd < 0) {
        socket_fail(error, error_size, ifname, "AF_PACKET socket");
        goto fail;
    }
    if (set_int_option(source->fd, PACKET_VERSION, TPACKET_V3) != 0) {
        socket_fail(error, error_size, ifname, "TPACKET_V3");
        goto fail;
    }
    if (set_int_option(source->fd, PACKET_RESERVE, VLAN_TAG_BYTES) != 0) {
        socket_fail(error, error_size, ifname, "PACKET_RESERVE");
        goto fail;
    }
    rx_ring_geometry(rx_ring_bytes(ring_bytes, device_mtu(source->fd, ifname, RX_FALLBACK_MTU)),
                     &source->block_size, &source->block_count);
    struct tpacket_req3 request = {
        .tp_block_size = source->block_size,
        .tp_block_nr = source->block_count,
        .tp_frame_size = RX_FRAME_BYTES,
        .tp_frame_nr = source->block_size / RX_FRAME_BYTES * source->block_count,
        .tp_retire_blk_tov = RX_BLOCK_TIMEOUT_MS,
    };
    if (set_option(source->fd, PACKET_RX_RING, &request, sizeof(request)) != 0) {
        socket_fail(error, error_size, ifname, "PACKET_RX_RING");
        goto fail;
    }
    source->ring_size = (size_t)source->block_size * source->block_count;
    source->ring = mmap(NULL, source->ring_size, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_POPULATE, source->fd, 0);
    if (source->ring == MAP_FAILED) {
        source->ring = NULL;
        socket_fail(error, error_size, ifname, "mmap of the RX ring");
        goto fail;
    }
    /* Frames leaving the interface (sent by local programs) are not input. */
    source->skip_outgoing = set_int_option(source->fd, PACKET_IGNORE_OUTGOING, 1) != 0;
    if (bind_to_interface(source->fd, ifindex, ETH_P_ALL) != 0) {
        socket_fail(error, error_size, ifname, "bind");
        goto fail;
    }
    /* The kernel drops the membership, hence promiscuity, with the socket. */
    struct packet_mreq membership = { .mr_ifindex = (int)ifindex, .mr_type = PACKET_MR_PROMISC };
    if (setsockopt(source->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &membership,
                   sizeof(membership)) != 0) {
        socket_fail(error, error_size, ifname, "promiscuous mode");
        goto fail;
    }
    if (fanout_group >= 0 && join_fanout_group(source->fd, ifname, fanout_group, error, error_size) != 0)
        goto fail;
    return &source->base;
fail:
    afpacket_source_close(&source->base);
    return NULL;
}

/*
 * TX. Every frame starts with a virtio-net header whose hdr_len is the whole
 * frame, so the kernel copies it into the skb's own (linear) buffer. Without
 * it the skb would carry the frame as a reference to the ring's page, marked
 * zero-copy, and the first device that must keep the skb beyond the send
 * (veth: dev_forward_skb -> skb_orphan_frags; any tap cloning it) allocates a
 * fresh page and copies into it: a page allocation and free per packet, ~13%
 * of the engine's time on a veth pipe, against a copy from a cache-hot line.
 *
 * Frames are written in ring order at the cursor and marked
 * TP_STATUS_SEND_REQUEST; flush() asks the kernel, without waiting, to send
 * every requested frame. The kernel marks a frame TP_STATUS_AVAILABLE again
 * when its skb is freed. When the frame at the cursor is not available the
 * ring is full: send() asks the kernel to send what is requested (on veth that
 * completes synchronously, so a ring smaller than a batch still works); if
 * that frees nothing the packet is dropped, as is every packet meeting a full
 * ring until the next flush: the engine never waits for a slow consumer.
 *
 * Counting. A frame is delivered when the kernel took it, not when it was
 * queued. The kernel takes requested frames strictly in ring order from its
 * own head, which is our oldest uncounted frame (accounted): a frame it took
 * leaves TP_STATUS_SEND_REQUEST for good (SENDING, then AVAILABLE once its skb
 * is freed; a malformed one goes straight to AVAILABLE under PACKET_LOSS, and
 * our checks before queueing keep malformed frames out). A frame the device
 * refused is put back to SEND_REQUEST and stays the kernel's head. So after
 * each sendto(), counting from accounted on up to the first frame still
 * requested counts exactly the frames the kernel took; the rest stay
 * "queued" in the counters. When the interface is gone (sendto: ENXIO or
 * ENODEV), the kernel will never take them: they are counted as dropped
 * ("gone") and their frames handed back to us.
 */
#define TX_REATTACH_INTERVAL_NS 1000000000ull

struct afpacket_sink {
    struct brk_sink base;
    int fd;
    uint8_t *ring;
    size_t ring_size;
    unsigned frame_size;
    unsigned frame_count;
    unsigned cursor;
    unsigned accounted;               /* the oldest frame whose fate is not counted yet */
    unsigned unaccounted;             /* frames queued from accounted on */
    uint32_t *wire_bytes;             /* per frame: its packet's length on the wire */
    unsigned max_frame_bytes;         /* Ethernet header + MTU */
    unsigned frame_data_offset;       /* of the virtio-net header; the frame follows it */
    int pending;                      /* frames requested since the last successful flush */
    int stalled;                      /* in this batch, a send asked from a full ring freed nothing */
    int gone;                         /* the interface disappeared: drop until it returns */
    uint64_t next_reattach_ns;        /* when gone: the next look for an interface of that name */
    char ifname[IF_NAMESIZE];
    unsigned mtu;                     /* the MTU asked for at open */
};

static struct tpacket2_hdr *tx_frame(struct afpacket_sink *sink, unsigned index)
{
    return (struct tpacket2_hdr *)(sink->ring + (size_t)index * sink->frame_size);
}

/* The kernel's own test (eth_type_vlan in packet_extra_vlan_len_allowed),
 * not a dissection: only an outer 802.1Q or 802.1ad tag earns the 4 extra
 * bytes over the MTU, whatever else dissect.h counts as a tag. */
static int is_vlan_tagged(const struct brk_packet *packet)
{
    if (packet->caplen < ETH_HLEN)
        return 0;
    uint16_t type = (uint16_t)(packet->data[12] << 8 | packet->data[13]);
    return type == ETH_P_8021Q || type == ETH_P_8021AD;
}

static int tx_frame_free(struct tpacket2_hdr *header)
{
    uint32_t status = __atomic_load_n(&header->tp_status, __ATOMIC_ACQUIRE);
    return status == TP_STATUS_AVAILABLE || status == TP_STATUS_WRONG_FORMAT;
}

static unsigned next_frame(const struct afpacket_sink *sink, unsigned index)
{
    return index + 1 == sink->frame_count ? 0 : index + 1;
}

/* Counts as delivered every queued frame the kernel took (see Counting). */
static void account_taken(struct afpacket_sink *sink)
{
    uint64_t taken = 0, bytes = 0;
    while (sink->unaccounted) {
        struct tpacket2_hdr *header = tx_frame(sink, sink->accounted);
        if (__atomic_load_n(&header->tp_status, __ATOMIC_ACQUIRE) == TP_STATUS_SEND_REQUEST)
            break;
        taken++;
        bytes += sink->wire_bytes[sink->accounted];
        sink->accounted = next_frame(sink, sink->accounted);
        sink->unaccounted--;
    }
    if (taken) {
        brk_count_delivered(sink->base.counters, taken, bytes);
        sink->base.counters->queued -= taken;
    }
}

static uint64_t monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* The interface went away: what is still queued will never leave. */
static void output_gone(struct afpacket_sink *sink, int error_number)
{
    account_taken(sink);
    brk_count_drops(sink->base.counters, BRK_DROP_GONE, sink->unaccounted);
    sink->base.counters->queued -= sink->unaccounted;
    for (; sink->unaccounted; sink->unaccounted--) {
        __atomic_store_n(&tx_frame(sink, sink->accounted)->tp_status, TP_STATUS_AVAILABLE, __ATOMIC_RELEASE);
        sink->accounted = next_frame(sink, sink->accounted);
    }
    sink->gone = 1;
    sink->pending = 0;
    sink->next_reattach_ns = monotonic_ns() + TX_REATTACH_INTERVAL_NS;
    brk_io_set_state(&sink->base.state, BRK_IO_GONE, "output %s is gone (%s): its packets are dropped",
                     sink->ifname, strerror(error_number));
}

/*
 * Asks the kernel to send every requested frame, without waiting. When the
 * device refuses a frame (veth: peer down, peer backlog full, frame over the
 * peer's MTU) the kernel leaves that frame and the following ones requested
 * and returns ENOBUFS; asking again retries that same frame first, so it is
 * asked once per flush (pending stays set), at the latest after the engine's
 * idle poll, and never in a loop.
 */
static void request_send(struct afpacket_sink *sink)
{
    if (sendto(sink->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
        sink->pending = 0;
    else if (errno == ENXIO || errno == ENODEV)
        output_gone(sink, errno);
    else if (errno == ENOBUFS)
        sink->base.counters->refused++;   /* the kernel stops at the one frame refused */
    account_taken(sink);
}

static int afpacket_send(struct brk_sink *base, const struct brk_packet *packet)
{
    struct afpacket_sink *sink = (struct afpacket_sink *)base;
    if (BRK_UNLIKELY(sink->gone))
        return BRK_DROP_GONE;
    /* Frames the kernel refuses (too short, over the MTU) would vanish inside
     * it without a trace; refusing them here counts them as drops. */
    uint32_t limit = sink->max_frame_bytes + (is_vlan_tagged(packet) ? VLAN_TAG_BYTES : 0);
    if (BRK_UNLIKELY(packet->caplen < ETH_HLEN))
        return BRK_DROP_TOO_SHORT;
    if (BRK_UNLIKELY(packet->caplen > limit))
        return BRK_DROP_TOO_BIG;
    if (BRK_UNLIKELY(sink->unaccounted == sink->frame_count))
        account_taken(sink);   /* the cursor frame may hold a packet not counted yet */
    struct tpacket2_hdr *header = tx_frame(sink, sink->cursor);
    if (sink->unaccounted == sink->frame_count || !tx_frame_free(header)) {
        if (sink->stalled || !sink->pending)
            return BRK_DROP_FULL;
        request_send(sink);
        if (sink->gone)
            return BRK_DROP_GONE;
        if (sink->unaccounted == sink->frame_count || !tx_frame_free(header)) {
            sink->stalled = 1;
            return BRK_DROP_FULL;
        }
    }
    struct virtio_net_hdr *offloads = (struct virtio_net_hdr *)((uint8_t *)header + sink->frame_data_offset);
    /* The other fields stay 0 (no checksum, no segmentation) from the ring's
     * creation. Past 64 KiB (a 65535-byte MTU) the tail goes as a page reference. */
    offloads->hdr_len = htole16((uint16_t)(packet->caplen > UINT16_MAX ? UINT16_MAX : packet->caplen));
    memcpy(offloads + 1, packet->data, packet->caplen);
    header->tp_len = (uint32_t)sizeof(*offloads) + packet->caplen;
    sink->wire_bytes[sink->cursor] = packet->wirelen;
    __atomic_store_n(&header->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
    sink->cursor = next_frame(sink, sink->cursor);
    sink->unaccounted++;
    sink->base.counters->queued++;
    /* A lap of the rings of every pipe plus the RX ring outgrows the L2: the
     * next frame's header would be a cache miss when its packet comes. */
    __builtin_prefetch(tx_frame(sink, sink->cursor), 1);
    sink->pending = 1;
    return BRK_QUEUED;
}

static int tx_socket_open(struct afpacket_sink *sink, char *error, size_t error_size);

/* When gone: once a second, looks for an interface of the same name (a pipe
 * recreated, a NIC back) and sends on it again. */
static void try_reattach(struct afpacket_sink *sink)
{
    uint64_t now = monotonic_ns();
    if (now < sink->next_reattach_ns)
        return;
    sink->next_reattach_ns = now + TX_REATTACH_INTERVAL_NS;
    if (!if_nametoindex(sink->ifname))
        return;
    int old_fd = sink->fd;
    uint8_t *old_ring = sink->ring;
    size_t old_ring_size = sink->ring_size;
    char error[128];
    if (tx_socket_open(sink, error, sizeof(error)) != 0)
        return;   /* not usable yet (e.g. still down): try again later */
    munmap(old_ring, old_ring_size);
    close(old_fd);
    sink->cursor = sink->accounted = sink->unaccounted = 0;
    sink->gone = 0;
    brk_io_set_state(&sink->base.state, BRK_IO_UP, "output %s is back: sending again", sink->ifname);
}

static void afpacket_flush(struct brk_sink *base)
{
    struct afpacket_sink *sink = (struct afpacket_sink *)base;
    sink->stalled = 0;
    if (BRK_UNLIKELY(sink->gone))
        try_reattach(sink);
    else if (sink->pending)
        request_send(sink);
    else if (sink->unaccounted)
        account_taken(sink);
}

static void afpacket_sink_close(struct brk_sink *base)
{
    struct afpacket_sink *sink = (struct afpacket_sink *)base;
    if (sink->ring)
        munmap(sink->ring, sink->ring_size);
    if (sink->fd >= 0)
        close(sink->fd);
    free(sink->wire_bytes);
    free(sink);
}

static const struct brk_sink_ops afpacket_sink_ops = {
    .send = afpacket_send,
    .flush = afpacket_flush,
    .close = afpacket_sink_close,
};

/* The MTU the device has now, or fallback when it cannot be read. */
static unsigned device_mtu(int fd, const char *ifname, unsigned fallback)
{
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    snprintf(request.ifr_name, sizeof(request.ifr_name), "%s", ifname);
    if (ioctl(fd, SIOCGIFMTU, &request) != 0 || request.ifr_mtu <= 0)
        return fallback;
    return (unsigned)request.ifr_mtu;
}

/*
 * Frame headers (the status word the engine and the kernel check for every
 * packet) spread over the cache-line offsets of a page, hence over the sets
 * of the CPU's caches: power-of-two frames put every header on one of two
 * offsets per page, and 4 pipes of 512 frames then fought over 1/32 of the
 * L2, the status check missing the cache nearly every time (~8% of the
 * engine's time). A block holds frames_per_block frames (a power of two
 * dividing slots, so that the ring has exactly slots frames) spaced an odd
 * multiple of page / frames_per_block apart: frames_per_block distinct
 * offsets, and blocks that are whole pages. Frames are contiguous in the
 * mapping, block after block.
 */
static void tx_ring_geometry(unsigned frame_bytes, unsigned slots, unsigned *frame_size,
                             unsigned *block_size, unsigned *block_count)
{
    unsigned page_size = (unsigned)sysconf(_SC_PAGESIZE);
    unsigned frames_per_block = 1;
    slots = slots ? slots : 1;
    while (slots % (frames_per_block * 2) == 0 && frames_per_block * 2 <= TX_FRAMES_PER_BLOCK_WANTED
           && frames_per_block * 2 * frame_bytes <= TX_BLOCK_MAX_BYTES
           && page_size % (frames_per_block * 2) == 0)
        frames_per_block *= 2;
    unsigned spacing = page_size / frames_per_block;
    unsigned multiple = ((frame_bytes + spacing - 1) / spacing) | 1u;
    *frame_size = multiple * spacing;
    *block_size = frames_per_block * *frame_size;
    *block_count = slots / frames_per_block;
}

/* A socket with its TX ring bound to sink->ifname, into sink's fd / ring;
 * -1 with the message written (sink unchanged but for what it says). */
static int tx_socket_open(struct afpacket_sink *sink, char *error, size_t error_size)
{
    const char *ifname = sink->ifname;
    unsigned ifindex = interface_index(ifname, error, error_size);
    if (!ifindex)
        return -1;
    /* Protocol 0: a sending socket that never receives. */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    uint8_t *ring = MAP_FAILED;
    size_t ring_size = 0;
    if (fd < 0) {
        socket_fail(error, error_size, ifname, "AF_PACKET socket");
        return -1;
    }
    unsigned interface_mtu = device_mtu(fd, ifname, sink->mtu);
    unsigned block_size, block_count, frame_size;
    tx_ring_geometry(TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + (unsigned)sizeof(struct virtio_net_hdr)
                     + sink->mtu + ETH_HLEN + VLAN_TAG_BYTES,
                     sink->frame_count, &frame_size, &block_size, &block_count);
    if (set_int_option(fd, PACKET_VERSION, TPACKET_V2) != 0) {
        socket_fail(error, error_size, ifname, "TPACKET_V2");
        goto fail;
    }
    /* Skip a frame the kernel finds malformed instead of stopping the ring at
     * it (a frame the device refuses is another case: see request_send). */
    if (set_int_option(fd, PACKET_LOSS, 1) != 0) {
        socket_fail(error, error_size, ifname, "PACKET_LOSS");
        goto fail;
    }
    if (set_int_option(fd, PACKET_VNET_HDR, 1) != 0) {
        socket_fail(error, error_size, ifname, "PACKET_VNET_HDR");
        goto fail;
    }
    if (set_int_option(fd, PACKET_QDISC_BYPASS, 1) != 0) {
        socket_fail(error, error_size, ifname, "PACKET_QDISC_BYPASS");
        goto fail;
    }
    struct tpacket_req request = {
        .tp_block_size = block_size,
        .tp_block_nr = block_count,
        .tp_frame_size = frame_size,
        .tp_frame_nr = block_count * (block_size / frame_size),
    };
    if (set_option(fd, PACKET_TX_RING, &request, sizeof(request)) != 0) {
        socket_fail(error, error_size, ifname, "PACKET_TX_RING");
        goto fail;
    }
    ring_size = (size_t)block_size * block_count;
    ring = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (ring == MAP_FAILED) {
        socket_fail(error, error_size, ifname, "mmap of the TX ring");
        goto fail;
    }
    if (bind_to_interface(fd, ifindex, 0) != 0) {
        socket_fail(error, error_size, ifname, "bind");
        goto fail;
    }
    sink->fd = fd;
    sink->ring = ring;
    sink->ring_size = ring_size;
    sink->frame_size = frame_size;
    sink->max_frame_bytes = ETH_HLEN + (interface_mtu < sink->mtu ? interface_mtu : sink->mtu);
    return 0;
fail:
    if (ring != MAP_FAILED)
        munmap(ring, ring_size);
    close(fd);
    return -1;
}

brk_sink *brk_sink_afpacket_open(const char *ifname, unsigned slots, unsigned mtu,
                                 char *error, size_t error_size)
{
    if (strlen(ifname) >= IF_NAMESIZE)
        return brk_fail(error, error_size, "%s: no such interface", ifname);
    struct afpacket_sink *sink = calloc(1, sizeof(*sink));
    if (!sink)
        return brk_fail(error, error_size, "out of memory");
    sink->base.ops = &afpacket_sink_ops;
    sink->fd = -1;
    snprintf(sink->ifname, sizeof(sink->ifname), "%s", ifname);
    sink->mtu = mtu;
    sink->frame_data_offset = TPACKET_ALIGN(sizeof(struct tpacket2_hdr));
    unsigned frame_size, block_size, block_count;
    tx_ring_geometry(sink->frame_data_offset + (unsigned)sizeof(struct virtio_net_hdr)
                     + mtu + ETH_HLEN + VLAN_TAG_BYTES,
                     slots, &frame_size, &block_size, &block_count);
    sink->frame_count = block_count * (block_size / frame_size);
    if (!(sink->wire_bytes = calloc(sink->frame_count, sizeof(*sink->wire_bytes)))) {
        afpacket_sink_close(&sink->base);
        return brk_fail(error, error_size, "out of memory");
    }
    if (tx_socket_open(sink, error, error_size) != 0) {
        afpacket_sink_close(&sink->base);
        return NULL;
    }
    return &sink->base;
}
