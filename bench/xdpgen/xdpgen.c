/* The live-frames generator's driver (bench only): loads xdpgen.bpf.o through
 * libbpf and runs it with BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES (batch 64)
 * on a template UDP frame of the given size, as the given interface's
 * ingress, so every XDP_TX leaves that interface: flat out, or paced to a
 * share of its runs (TRANSMIT_PER_1024, default all: the others are dropped
 * in the program, evenly spread). Must run in the interface's namespace,
 * pinned to one CPU.
 *
 *   xdpgen OBJECT IFNAME FRAME_BYTES SECONDS [TRANSMIT_PER_1024]
 *
 * Prints one line: "runs N transmitted T seconds S cpu_ns C" (T: frames
 * offered to the veth, whether or not its peer took them; C: this process's
 * CPU time, the softirq work its runs triggered on its CPU included).
 *
 *   xdpgen OBJECT --drop IFNAME
 *
 * Attaches the object's XDP_DROP program to IFNAME (native mode), prints
 * "attached" and keeps it there until its standard input closes. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
/* Each BPF_PROG_RUN call costs ~20 ms of set-up (page pool, memory model)
 * during which nothing is sent: calls of ~CALL_SECONDS keep that gap to a few
 * % (with 65,536 runs per call it was ~30%, and the forwarder saw bursts 40%
 * above the mean rate, which an RX ring of 1514-byte frames did not absorb). */
#define CALL_SECONDS 0.5
#define MIN_CALL_RUNS (64u * 1024u)
#define MAX_CALL_RUNS (16u * 1024u * 1024u)
#define ETHERNET_BYTES 14
#define IPV4_BYTES 20
#define UDP_BYTES 8
#define MAX_FRAME_BYTES 1514
#define DESTINATION_PORT 4789

static double now_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Ethernet + IPv4 (10.0.0.0 -> 10.0.1.1; the program sets source and checksum) + UDP, zero payload. */
static void template_frame(unsigned char *frame, unsigned size)
{
    static const unsigned char header[] = {
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00,
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 0, 10, 0, 1, 1,
        0x04, 0, DESTINATION_PORT >> 8, DESTINATION_PORT & 0xff, 0, 0, 0, 0,
    };
    unsigned ip_length = size - ETHERNET_BYTES, udp_length = ip_length - IPV4_BYTES;
    memset(frame, 0, size);
    memcpy(frame, header, sizeof(header));
    frame[16] = (unsigned char)(ip_length >> 8);
    frame[17] = (unsigned char)ip_length;
    frame[38] = (unsigned char)(udp_length >> 8);
    frame[39] = (unsigned char)udp_length;
}

/* The program's .data (struct brk_xdpgen_state) with the share to transmit. */
static int set_share(struct bpf_object *object, unsigned transmit_per_1024)
{
    struct bpf_map *map;
    bpf_object__for_each_map(map, object) {
        const char *name = bpf_map__name(map);
        size_t length = strlen(name);
        if (length >= 5 && strcmp(name + length - 5, ".data") == 0) {
            unsigned state[3] = { 0, 0, transmit_per_1024 };
            unsigned key = 0;
            return bpf_map_update_elem(bpf_map__fd(map), &key, state, BPF_ANY);
        }
    }
    errno = ENOENT;
    return -1;
}

static unsigned long long process_cpu_ns(void)
{
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    return (unsigned long long)cpu.tv_sec * 1000000000ull + (unsigned long long)cpu.tv_nsec;
}

static int hold_drop(const char *object_path, const char *ifname)
{
    unsigned ifindex = if_nametoindex(ifname);
    struct bpf_object *object = bpf_object__open_file(object_path, NULL);
    if (!ifindex || !object || bpf_object__load(object)) {
        fprintf(stderr, "xdpgen: no interface %s or cannot load %s\n", ifname, object_path);
        return 1;
    }
    int program = bpf_program__fd(bpf_object__find_program_by_name(object, "brk_xdpgen_drop"));
    if (bpf_xdp_attach((int)ifindex, program, XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL) != 0) {
        fprintf(stderr, "xdpgen: cannot attach XDP_DROP to %s: %s\n", ifname, strerror(errno));
        return 1;
    }
    printf("attached\n");
    fflush(stdout);
    char buffer[64];
    while (read(0, buffer, sizeof(buffer)) > 0)
        continue;
    bpf_xdp_detach((int)ifindex, XDP_FLAGS_DRV_MODE, NULL);
    bpf_object__close(object);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[2], "--drop") == 0)
        return hold_drop(argv[1], argv[3]);
    if (argc < 5) {
        fprintf(stderr, "usage: xdpgen OBJECT IFNAME FRAME_BYTES SECONDS [TRANSMIT_PER_1024]\n"
                        "       xdpgen OBJECT --drop IFNAME\n");
        return 2;
    }
    unsigned ifindex = if_nametoindex(argv[2]);
    unsigned size = (unsigned)atoi(argv[3]);
    double seconds = atof(argv[4]);
    unsigned transmit_per_1024 = argc > 5 ? (unsigned)atoi(argv[5]) : 1024;
    if (!ifindex || size < ETHERNET_BYTES + IPV4_BYTES + UDP_BYTES || size > MAX_FRAME_BYTES
        || transmit_per_1024 < 1 || transmit_per_1024 > 1024) {
        fprintf(stderr, "xdpgen: no interface %s, or frame size %u outside 42..1514, or share outside 1..1024\n",
                argv[2], size);
        return 2;
    }
    struct bpf_object *object = bpf_object__open_file(argv[1], NULL);
    if (!object || bpf_object__load(object)) {
        fprintf(stderr, "xdpgen: cannot load %s\n", argv[1]);
        return 1;
    }
    int program = bpf_program__fd(bpf_object__find_program_by_name(object, "brk_xdpgen"));
    if (set_share(object, transmit_per_1024) != 0) {
        fprintf(stderr, "xdpgen: cannot set the transmitted share: %s\n", strerror(errno));
        return 1;
    }
    unsigned char frame[MAX_FRAME_BYTES];
    template_frame(frame, size);
    struct xdp_md context = { .data_end = size, .ingress_ifindex = ifindex };
    LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = frame, .data_size_in = size, .ctx_in = &context,
                .ctx_size_in = sizeof(context), .repeat = MIN_CALL_RUNS, .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
                .batch_size = BATCH);
    unsigned long long runs = 0;
    double start = now_s(), end = start + seconds;
    for (double now = start; now < end;) {
        if (bpf_prog_test_run_opts(program, &options) != 0) {
            fprintf(stderr, "xdpgen: BPF_PROG_RUN: %s\n", strerror(errno));
            return 1;
        }
        runs += options.repeat;
        double after = now_s(), rate = options.repeat / (after - now);
        double wanted = rate * (end - after < CALL_SECONDS ? end - after : CALL_SECONDS);
        options.repeat = wanted < MIN_CALL_RUNS ? MIN_CALL_RUNS
                         : wanted > MAX_CALL_RUNS ? MAX_CALL_RUNS : (unsigned)wanted / 1024u * 1024u;
        now = after;
    }
    /* The program transmits the first transmit_per_1024 of every 1024 runs. */
    unsigned long long transmitted = runs / 1024 * transmit_per_1024
                                     + (runs % 1024 < transmit_per_1024 ? runs % 1024 : transmit_per_1024);
    printf("runs %llu transmitted %llu seconds %.3f cpu_ns %llu\n", runs, transmitted, now_s() - start,
           process_cpu_ns());
    bpf_object__close(object);
    return 0;
}
