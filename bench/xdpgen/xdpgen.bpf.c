/* The live-frames generator's XDP program (bench only): run by BPF_PROG_RUN
 * with BPF_F_TEST_XDP_LIVE_FRAMES on the namespace end of the input veth, it
 * rewrites the template frame into the next of FLOWS UDP flows (source
 * address and port) and returns XDP_TX, which sends it to the veth's peer,
 * the forwarder's input. Only transmit_per_1024 of every 1024 runs transmit,
 * the others drop at once: a rate below the generator's top without the
 * bursts of pacing by syscalls (each costs ~20 ms of set-up). The counters
 * are plain increments: the test run is single-threaded, and an atomic add
 * crashes Debian's clang 14 BPF back-end. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FLOWS 1024u
#define FIRST_SOURCE_PORT 1024u
#define SOURCE_NETWORK 0x0a000000u     /* 10.0.0.0: flow n comes from 10.0.(n / 256).(n % 256) */

/* In .data, set by the driver after loading. */
struct brk_xdpgen_state {
    __u32 next_flow;
    __u32 phase;                       /* runs mod 1024 */
    __u32 transmit_per_1024;
} brk_xdpgen_state = { 0, 0, 1024 };

/* The IPv4 header checksum over its 10 words (no options in the template). */
static __always_inline __u16 ipv4_checksum(const __u16 *words)
{
    __u32 sum = 0;
#pragma unroll
    for (int i = 0; i < 10; i++)
        sum += words[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

SEC("xdp")
int brk_xdpgen(struct xdp_md *context)
{
    void *data = (void *)(long)context->data;
    void *data_end = (void *)(long)context->data_end;
    struct ethhdr *ethernet = data;
    struct iphdr *ip = (struct iphdr *)(ethernet + 1);
    struct udphdr *udp = (struct udphdr *)(ip + 1);
    if ((void *)(udp + 1) > data_end)
        return XDP_ABORTED;
    struct brk_xdpgen_state *state = &brk_xdpgen_state;
    __u32 phase = state->phase;
    state->phase = (phase + 1) & 1023;
    if (phase >= state->transmit_per_1024)
        return XDP_DROP;
    __u32 flow = state->next_flow;
    state->next_flow = flow + 1 == FLOWS ? 0 : flow + 1;
    ip->saddr = bpf_htonl(SOURCE_NETWORK | flow);
    ip->check = 0;
    ip->check = ipv4_checksum((const __u16 *)ip);
    udp->source = bpf_htons((__u16)(FIRST_SOURCE_PORT + flow));
    udp->check = 0;
    return XDP_TX;
}

/* The baseline: on the input's host end, the generator alone costs the
 * transmission and the input's NAPI up to its XDP hook. */
SEC("xdp")
int brk_xdpgen_drop(struct xdp_md *context __attribute__((unused)))
{
    return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
