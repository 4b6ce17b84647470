/* An AF_XDP reader for the tests: an XSK socket (copy mode, queue 0) bound to
 * an interface, with its own XDP program there, which redirects every frame
 * into the socket through an XSKMAP: the way a consumer such as Suricata's
 * af-xdp capture reads a pipe's `}` end, with no socket buffer at all.
 *
 *   xsk_reader IFNAME COUNT TIMEOUT_S
 *
 * Writes "ready" on stderr once the socket is bound and the program attached,
 * then every frame to stdout as a 4-byte little-endian length and its bytes,
 * until COUNT frames arrived or TIMEOUT_S passed (or SIGTERM/SIGINT). At the
 * end, on stderr: "received N dropped D ring_full R fill_empty F" (the
 * socket's own drop counters, XDP_STATISTICS), and the program is detached.
 * Refuses to replace another XDP program on IFNAME. Built by tests/xsk.py. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef AF_XDP
#define AF_XDP 44
#endif

#define FRAME_SIZE 4096u          /* one UMEM chunk per frame: up to a page, 1514-byte frames and more */
#define FRAMES 4096u              /* UMEM chunks, and the size of every ring */
#define POLL_MS 100

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number)
{
    (void)signal_number;
    stop_requested = 1;
}

/* One mapped ring: its producer and consumer indexes and its entries. */
struct ring {
    uint32_t *producer;
    uint32_t *consumer;
    void *entries;
};

static int fail(const char *what)
{
    fprintf(stderr, "xsk_reader: %s: %s\n", what, strerror(errno));
    return 1;
}

static int map_ring(int fd, const struct xdp_ring_offset *offsets, size_t entry_size, off_t page_offset,
                    struct ring *ring)
{
    size_t size = offsets->desc + FRAMES * entry_size;
    uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, page_offset);
    if (base == MAP_FAILED)
        return -1;
    ring->producer = (uint32_t *)(base + offsets->producer);
    ring->consumer = (uint32_t *)(base + offsets->consumer);
    ring->entries = base + offsets->desc;
    return 0;
}

/* The program: return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS). */
static int load_redirect_program(int map_fd)
{
    struct bpf_insn program[] = {
        { .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_1,
          .off = offsetof(struct xdp_md, rx_queue_index) },
        { .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = BPF_REG_1, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd },
        { .code = 0 },   /* second half of the 64-bit immediate */
        { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_3, .imm = XDP_PASS },
        { .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect_map },
        { .code = BPF_JMP | BPF_EXIT },
    };
    return bpf_prog_load(BPF_PROG_TYPE_XDP, "xsk_redirect", "GPL", program, sizeof(program) / sizeof(program[0]),
                         NULL);
}

static double now_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static int write_frame(const uint8_t *data, uint32_t length)
{
    uint8_t prefix[4] = { (uint8_t)length, (uint8_t)(length >> 8), (uint8_t)(length >> 16),
                          (uint8_t)(length >> 24) };
    return fwrite(prefix, 1, sizeof(prefix), stdout) == sizeof(prefix)
           && fwrite(data, 1, length, stdout) == length ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: xsk_reader IFNAME COUNT TIMEOUT_S\n");
        return 2;
    }
    int ifindex = (int)if_nametoindex(argv[1]);
    unsigned long long wanted = strtoull(argv[2], NULL, 10);
    double deadline = now_s() + atof(argv[3]);
    if (!ifindex)
        return fail(argv[1]);
    signal(SIGTERM, request_stop);
    signal(SIGINT, request_stop);

    int fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail("AF_XDP socket");
    uint8_t *umem = mmap(NULL, (size_t)FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (umem == MAP_FAILED)
        return fail("UMEM");
    struct xdp_umem_reg registration = { .addr = (uintptr_t)umem, .len = (uint64_t)FRAMES * FRAME_SIZE,
                                         .chunk_size = FRAME_SIZE };
    unsigned ring_size = FRAMES;
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &registration, sizeof(registration))
        || setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &ring_size, sizeof(ring_size))
        || setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &ring_size, sizeof(ring_size))
        || setsockopt(fd, SOL_XDP, XDP_RX_RING, &ring_size, sizeof(ring_size)))
        return fail("UMEM and rings");
    struct xdp_mmap_offsets offsets;
    socklen_t offsets_size = sizeof(offsets);
    struct ring fill, rx;
    if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &offsets, &offsets_size)
        || map_ring(fd, &offsets.fr, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING, &fill)
        || map_ring(fd, &offsets.rx, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING, &rx))
        return fail("ring mmap");

    /* Every chunk to the kernel before the first frame can arrive. */
    uint64_t *fill_addresses = fill.entries;
    for (unsigned i = 0; i < FRAMES; i++)
        fill_addresses[i] = (uint64_t)i * FRAME_SIZE;
    __atomic_store_n(fill.producer, FRAMES, __ATOMIC_RELEASE);

    struct sockaddr_xdp address = { .sxdp_family = AF_XDP, .sxdp_ifindex = (uint32_t)ifindex, .sxdp_queue_id = 0,
                                    .sxdp_flags = XDP_COPY };
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)))
        return fail("bind (queue 0, copy mode)");
    int map_fd = bpf_map_create(BPF_MAP_TYPE_XSKMAP, "xsks", sizeof(uint32_t), sizeof(uint32_t), 1, NULL);
    uint32_t queue = 0;
    if (map_fd < 0 || bpf_map_update_elem(map_fd, &queue, &fd, BPF_ANY))
        return fail("XSKMAP");
    int program_fd = load_redirect_program(map_fd);
    if (program_fd < 0)
        return fail("XDP program");
    if (bpf_xdp_attach(ifindex, program_fd, XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL))
        return fail("attach (another XDP program there?)");
    fprintf(stderr, "ready\n");

    unsigned long long received = 0;
    struct xdp_desc *descriptors = rx.entries;
    int status = 0;
    while (received < wanted && !stop_requested && now_s() < deadline) {
        struct pollfd waiting = { .fd = fd, .events = POLLIN };
        uint32_t consumer = *rx.consumer;
        uint32_t producer = __atomic_load_n(rx.producer, __ATOMIC_ACQUIRE);
        if (consumer == producer) {
            poll(&waiting, 1, POLL_MS);
            continue;
        }
        uint32_t fill_producer = *fill.producer;
        for (; consumer != producer; consumer++) {
            const struct xdp_desc *descriptor = &descriptors[consumer & (FRAMES - 1)];
            if (write_frame(umem + descriptor->addr, descriptor->len)) {
                status = fail("stdout");
                break;
            }
            received++;
            /* The chunk goes back to the kernel as soon as its frame is written: the fill ring has room for
             * every chunk, so it is never full. */
            fill_addresses[fill_producer++ & (FRAMES - 1)] = descriptor->addr & ~(uint64_t)(FRAME_SIZE - 1);
        }
        __atomic_store_n(rx.consumer, consumer, __ATOMIC_RELEASE);
        __atomic_store_n(fill.producer, fill_producer, __ATOMIC_RELEASE);
        if (status)
            break;
    }
    fflush(stdout);
    struct xdp_statistics statistics;
    socklen_t statistics_size = sizeof(statistics);
    memset(&statistics, 0, sizeof(statistics));
    if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &statistics, &statistics_size))
        status = fail("XDP_STATISTICS");
    bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL);
    fprintf(stderr, "received %llu dropped %llu ring_full %llu fill_empty %llu\n", received,
            (unsigned long long)statistics.rx_dropped, (unsigned long long)statistics.rx_ring_full,
            (unsigned long long)statistics.rx_fill_ring_empty_descs);
    return status;
}
