/* Benchmark baseline, never part of the product: the original's 96-step bit-loop
 * Toeplitz hash with the same Ethernet/VLAN/IPv4 parse and % outputs per packet,
 * plus a driver that runs the product's brk_flow_hash through the same loop. */
#include <stdint.h>
#include <string.h>

#define KEY_WINDOWS 96

static uint32_t key_window[KEY_WINDOWS];

/* The original's key cache: window i = the 32 key bits starting at bit i. */
static void build_key_windows(void)
{
    static const uint8_t key[16] = {0x50, 0x6d, 0x50, 0x6d, 0x50, 0x6d, 0x50, 0x6d,
                                    0x50, 0x6d, 0x50, 0x6d, 0x50, 0x6d, 0x50, 0x6d};
    for (unsigned i = 0; i < KEY_WINDOWS; i++) {
        uint32_t window = 0;
        for (unsigned bit = 0; bit < 32; bit++) {
            unsigned at = i + bit;
            window = window << 1 | ((key[at / 8] >> (7 - at % 8)) & 1);
        }
        key_window[i] = window;
    }
}

static uint32_t bitloop_toeplitz(uint32_t sip, uint32_t dip, uint16_t sp, uint16_t dp)
{
    uint32_t result = 0;
    for (int i = 0; i < 32; i++, sip <<= 1)
        if (sip & 0x80000000u)
            result ^= key_window[i];
    for (int i = 0; i < 32; i++, dip <<= 1)
        if (dip & 0x80000000u)
            result ^= key_window[32 + i];
    for (int i = 0; i < 16; i++, sp <<= 1)
        if (sp & 0x8000)
            result ^= key_window[64 + i];
    for (int i = 0; i < 16; i++, dp <<= 1)
        if (dp & 0x8000)
            result ^= key_window[80 + i];
    return result;
}

static uint32_t load32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static uint16_t load16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Depth-0 split-4 hash of an untagged or 802.1Q IPv4 frame; other frames hash 0. */
static uint32_t bitloop_flow_hash(const uint8_t *frame, uint32_t caplen)
{
    uint32_t offset = 14;
    if (caplen < 14)
        return 0;
    uint16_t ethertype = load16(frame + 12);
    if (ethertype == 0x8100 && caplen >= 18) {
        ethertype = load16(frame + 16);
        offset = 18;
    }
    if (ethertype != 0x0800 || caplen < offset + 20)
        return 0;
    const uint8_t *ip = frame + offset;
    uint32_t header_size = (ip[0] & 0x0f) * 4u;
    uint16_t sp = 0xFDFF, dp = 0xFEFF;
    if ((ip[9] == 6 || ip[9] == 17) && (load16(ip + 6) & 0x1fff) == 0 && caplen >= offset + header_size + 4) {
        sp = load16(ip + header_size);
        dp = load16(ip + header_size + 2);
    }
    return bitloop_toeplitz(load32(ip + 12), load32(ip + 16), (uint16_t)(sp + 1), (uint16_t)(dp + 1));
}

typedef uint32_t (*flow_hash_function)(const uint8_t *, uint32_t, int, unsigned, void *, uint32_t *);

/* rounds passes over the frames, hash % outputs per packet, counted per output. */
void bitloop_run(const uint8_t *frames, const uint32_t *lengths, unsigned count, uint64_t rounds,
                 unsigned outputs, uint64_t *per_output)
{
    if (!key_window[0])
        build_key_windows();
    for (uint64_t round = 0; round < rounds; round++) {
        const uint8_t *frame = frames;
        for (unsigned i = 0; i < count; frame += lengths[i], i++)
            per_output[bitloop_flow_hash(frame, lengths[i]) % outputs]++;
    }
}

/* The same loop around the product's brk_flow_hash (passed as a pointer). */
void product_run(void *flow_hash, const uint8_t *frames, const uint32_t *lengths, unsigned count,
                 uint64_t rounds, unsigned outputs, uint64_t *per_output)
{
    flow_hash_function hash = (flow_hash_function)flow_hash;
    for (uint64_t round = 0; round < rounds; round++) {
        const uint8_t *frame = frames;
        for (unsigned i = 0; i < count; frame += lengths[i], i++) {
            uint32_t flags;
            per_output[hash(frame, lengths[i], 4, 0, NULL, &flags) % outputs]++;
        }
    }
}
