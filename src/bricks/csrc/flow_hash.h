/* The flow hash of SPEC §6 computed from a dissector key, in portable C that
 * compiles for BPF too: no tables, no 128-bit arithmetic on BPF, loops of
 * constant length. hash.c uses the mixed hash (depth >= 1) from here and keeps
 * a faster table-driven Toeplitz (depth 0) for the C engine; the unit test
 * test_dissect.py shows both Toeplitz forms give the same value on every vector. */
#ifndef BRK_FLOW_HASH_H
#define BRK_FLOW_HASH_H
#include "dissect.h"

#define BRK_TOEPLITZ_KEY_WORD 0x506d506du

BRK_DISSECT_FUNCTION uint32_t brk_rotate_left32(uint32_t value, unsigned bits)
{
    return bits ? (value << bits) | (value >> (32 - bits)) : value;
}

/* Toeplitz with a key of period 16 bits: bit b (from the top) of the XOR of
 * all 16-bit words of the input selects the key window rotl(key, b). */
BRK_DISSECT_FUNCTION uint32_t brk_toeplitz_of_fold(uint16_t fold)
{
    uint32_t hash = 0;
    /* Branch-free: the bits are random, a branch per bit mispredicts half the time. */
    for (unsigned bit = 0; bit < 16; bit++)
        hash ^= brk_rotate_left32(BRK_TOEPLITZ_KEY_WORD, bit) & (0u - (uint32_t)((fold >> (15 - bit)) & 1));
    return hash;
}

/* XOR of the big-endian 16-bit words of size bytes (size even). */
BRK_DISSECT_FUNCTION uint16_t brk_fold_words(const uint8_t *p, unsigned size)
{
    uint16_t fold = 0;
    for (unsigned i = 0; i + 2 <= size; i += 2)
        fold ^= brk_load_be16(p + i);
    return fold;
}

/* Depth 0: the original's hash, ports adjusted by its seed (+1); on Ethernet
 * addresses bytes 2..5 of each, byte-swapped as the original read them. */
BRK_DISSECT_FUNCTION uint32_t brk_hash_toeplitz(const struct brk_flow_endpoints *key)
{
    uint16_t ports = (uint16_t)(key->source_port + 1) ^ (uint16_t)(key->destination_port + 1);
    switch (key->address_size) {
    case 4:
        return brk_toeplitz_of_fold(brk_fold_words(key->source, 4) ^ brk_fold_words(key->destination, 4) ^ ports);
    case 16:
        return brk_toeplitz_of_fold(brk_fold_words(key->source, 16) ^ brk_fold_words(key->destination, 16) ^ ports);
    case 6: {
        uint16_t addresses = brk_fold_words(key->source + 2, 4) ^ brk_fold_words(key->destination + 2, 4);
        return brk_toeplitz_of_fold((uint16_t)(addresses << 8 | addresses >> 8)
                                    ^ (uint16_t)(BRK_ADDRESS_PAIR_SOURCE_PORT + 1)
                                    ^ (uint16_t)(BRK_ADDRESS_PAIR_DESTINATION_PORT + 1));
    }
    default:
        return brk_toeplitz_of_fold(ports);
    }
}

/* murmur3's 64-bit finaliser: a bijection with full avalanche. */
BRK_DISSECT_FUNCTION uint64_t brk_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* wyhash's step: the 128-bit product of two words folded to 64 bits. BPF has
 * no 128-bit multiply, so there it is built from four 32x32 products; the
 * host uses the one instruction (same value, the hash vectors check it). */
BRK_DISSECT_FUNCTION uint64_t brk_multiply_fold(uint64_t a, uint64_t b)
{
#if defined(__SIZEOF_INT128__) && !defined(__bpf__)
    __uint128_t product = (__uint128_t)a * b;
    return (uint64_t)product ^ (uint64_t)(product >> 64);
#else
    uint64_t a_low = (uint32_t)a, a_high = a >> 32, b_low = (uint32_t)b, b_high = b >> 32;
    uint64_t low_low = a_low * b_low, high_low = a_high * b_low;
    uint64_t low_high = a_low * b_high, high_high = a_high * b_high;
    uint64_t cross = (low_low >> 32) + (uint32_t)high_low + low_high;
    uint64_t high = (high_low >> 32) + (cross >> 32) + high_high;
    uint64_t low = cross << 32 | (uint32_t)low_low;
    return low ^ high;
#endif
}

/* Up to 8 bytes as one little-endian word, zero-padded. A little-endian host
 * copies them in one load; BPF reads byte by byte. */
BRK_DISSECT_FUNCTION uint64_t brk_load_word(const uint8_t *p, unsigned size)
{
    uint64_t word = 0;
#if !defined(__bpf__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    __builtin_memcpy(&word, p, size < 8 ? size : 8);
#else
    for (unsigned i = 0; i < 8 && i < size; i++)
        word |= (uint64_t)p[i] << (8 * i);
#endif
    return word;
}

/* A total order on addresses (only both directions agreeing matters). */
BRK_DISSECT_FUNCTION int brk_address_less(const uint8_t *a, const uint8_t *b, unsigned size)
{
    for (unsigned i = 0; i < size; i += 8) {
        uint64_t x = brk_load_word(a + i, size - i), y = brk_load_word(b + i, size - i);
        if (x != y)
            return x < y;
    }
    return 0;
}

/* Depth >= 1: a seeded mix of the endpoints in a canonical order, so it is
 * symmetric without being the linear fold that made the original's per-depth
 * seed cancel out. The endpoints by pointer: hash.c hashes plain IPv4 with
 * the addresses still in the frame. Inlined per address size so the loops unroll. */
BRK_DISSECT_FUNCTION uint32_t brk_hash_mixed_of(const uint8_t *source, const uint8_t *destination,
                                                uint16_t source_port, uint16_t destination_port,
                                                int has_ports, unsigned depth, unsigned size)
{
    const uint8_t *low = source, *high = destination;
    uint16_t low_port = source_port, high_port = destination_port;
    if (brk_address_less(high, low, size)
        || (!brk_address_less(low, high, size) && low_port > high_port)) {
        low = destination;
        high = source;
        /* Stand-ins belong to no endpoint: swapping them would break symmetry. */
        if (has_ports) {
            low_port = destination_port;
            high_port = source_port;
        }
    }
    uint64_t words[5] = { 0, 0, 0, 0, 0 };
    unsigned count = 0;
    if (size == 4) {
        words[count++] = brk_load_word(low, 4) << 32 | brk_load_word(high, 4);
    } else {
        for (unsigned i = 0; i < size; i += 8)
            words[count++] = brk_load_word(low + i, size - i);
        for (unsigned i = 0; i < size; i += 8)
            words[count++] = brk_load_word(high + i, size - i);
    }
    words[count++] = (uint64_t)size << 32 | (uint32_t)low_port << 16 | high_port;

    uint64_t h = 0x9e3779b97f4a7c15ull * (depth + 1);
    for (unsigned i = 0; i < count; i += 2) {
        uint64_t second = i + 1 < count ? words[i + 1] : 0;
        h = brk_multiply_fold(words[i] ^ h ^ 0xa0761d6478bd642full, second ^ 0xe7037ed1a0b428dbull);
    }
    h = brk_mix64(h);
    return (uint32_t)(h ^ h >> 32);
}

BRK_DISSECT_FUNCTION uint32_t brk_hash_mixed_sized(const struct brk_flow_endpoints *key, unsigned depth,
                                                   unsigned size)
{
    return brk_hash_mixed_of(key->source, key->destination, key->source_port, key->destination_port,
                             key->has_ports, depth, size);
}

BRK_DISSECT_FUNCTION uint32_t brk_hash_mixed(const struct brk_flow_endpoints *key, unsigned depth)
{
    switch (key->address_size) {
    case 4:
        return brk_hash_mixed_sized(key, depth, 4);
    case 16:
        return brk_hash_mixed_sized(key, depth, 16);
    case 6:
        return brk_hash_mixed_sized(key, depth, 6);
    default:
        return brk_hash_mixed_sized(key, depth, 0);
    }
}

/* The hash of the endpoints a LoadBalancer at depth hashes on. */
BRK_DISSECT_FUNCTION uint32_t brk_endpoints_hash(const struct brk_flow_endpoints *key, unsigned depth)
{
    return depth == 0 ? brk_hash_toeplitz(key) : brk_hash_mixed(key, depth);
}
#endif
