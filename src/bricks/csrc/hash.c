/* The flow hash of SPEC §6: the original's symmetric Toeplitz hash (table
 * driven) for a brick linked to the engine, a seeded symmetric mix deeper in a
 * chain, over the key of the one dissector (dissect.h: Ethernet, VLAN/QinQ,
 * IPv4/IPv6 with extension headers, tunnels), and the fragment table that
 * sends every fragment of a datagram with its first. */
#include "internal.h"
#include "dissect.h"

#include <stdlib.h>

#define ETHERTYPE_IPV4 0x0800
#define ETHERNET_HEADER_SIZE 14

#define PROTO_IPIP 4
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_IPV6 41

/* The original's stand-in ports when a flow is hashed on its address pair:
 * ntohs(0xFFFD) and ntohs(0xFFFE) on a little-endian host. */
#define ADDRESS_PAIR_SOURCE_PORT 0xFDFF
#define ADDRESS_PAIR_DESTINATION_PORT 0xFEFF

#define TOEPLITZ_KEY_WORD 0x506d506du
#define FRAGMENT_TABLE_WAYS 4
#define FRAGMENT_TABLE_MAX_SLOTS (1u << 24)

/* What to hash: two endpoints, each an address in the frame plus a port. */
struct flow_key {
    const uint8_t *source;
    const uint8_t *destination;
    unsigned address_size;        /* 4 (IPv4), 16 (IPv6), 6 (Ethernet), 0 (nothing) */
    uint16_t source_port;         /* the ports, or the stand-ins of an address pair */
    uint16_t destination_port;
    int has_ports;                /* 0: the ports are stand-ins, not the endpoints' */
};

struct fragment_entry {
    uint64_t tag;                 /* digest of (src, dst, proto, id); 0 = empty */
    uint32_t hash;
    uint32_t stamp;               /* insertion order, to overwrite the oldest */
};

struct brk_frag_table {
    uint32_t bucket_mask;
    uint32_t clock;
    struct fragment_entry *entries;   /* (bucket_mask + 1) * FRAGMENT_TABLE_WAYS */
};

/* Toeplitz with a key of period 16 bits: bit b of every 16-bit word selects
 * the same key window rotl(key, b), so the hash is a linear function of the
 * XOR of all 16-bit words of the input, taken a byte at a time here. */
static uint32_t toeplitz_high_byte[256];
static uint32_t toeplitz_low_byte[256];

static inline uint32_t rotate_left32(uint32_t value, unsigned bits)
{
    return bits ? (value << bits) | (value >> (32 - bits)) : value;
}

__attribute__((constructor)) static void build_toeplitz_tables(void)
{
    for (unsigned byte = 0; byte < 256; byte++) {
        uint32_t high = 0, low = 0;
        for (unsigned bit = 0; bit < 8; bit++) {
            if (byte & (0x80u >> bit)) {
                high ^= rotate_left32(TOEPLITZ_KEY_WORD, bit);
                low ^= rotate_left32(TOEPLITZ_KEY_WORD, bit + 8);
            }
        }
        toeplitz_high_byte[byte] = high;
        toeplitz_low_byte[byte] = low;
    }
}

static inline uint32_t toeplitz_of_fold(uint16_t fold)
{
    return toeplitz_high_byte[fold >> 8] ^ toeplitz_low_byte[fold & 0xff];
}

static inline uint16_t load_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* XOR of the big-endian 16-bit words of size bytes (size even). XOR commutes
 * with the byte swap, so wide native loads are folded and swapped once. */
static inline uint16_t fold_words(const uint8_t *p, unsigned size)
{
    uint64_t wide = 0;
    uint16_t narrow = 0;
    unsigned i = 0;
    for (; i + 8 <= size; i += 8) {
        uint64_t word;
        memcpy(&word, p + i, sizeof(word));
        wide ^= word;
    }
    if (i + 4 <= size) {
        uint32_t word;
        memcpy(&word, p + i, sizeof(word));
        wide ^= word;
        i += 4;
    }
    for (; i + 2 <= size; i += 2) {
        uint16_t word;
        memcpy(&word, p + i, sizeof(word));
        narrow ^= word;
    }
    wide ^= wide >> 32;
    wide ^= wide >> 16;
    narrow ^= (uint16_t)wide;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    narrow = __builtin_bswap16(narrow);
#endif
    return narrow;
}

uint32_t brk_toeplitz_ipv4(uint32_t sip, uint32_t dip, uint16_t sp, uint16_t dp)
{
    uint32_t fold32 = sip ^ dip;
    return toeplitz_of_fold((uint16_t)(fold32 ^ (fold32 >> 16) ^ sp ^ dp));
}

/* Depth 0: the original's hash, ports adjusted by its seed (+1). */
static inline uint32_t hash_toeplitz_sized(const struct flow_key *key, unsigned size)
{
    uint16_t fold = fold_words(key->source, size) ^ fold_words(key->destination, size)
                  ^ (uint16_t)(key->source_port + 1) ^ (uint16_t)(key->destination_port + 1);
    return toeplitz_of_fold(fold);
}

/* Depth 0 on Ethernet addresses, as the original hashes a non-IP frame: bytes
 * 2..5 of each address (the first two, mostly the vendor's, left out), read
 * as a 32-bit word in the host order of a little-endian machine, with the
 * stand-in ports (an Ethernet key has none of its own). Swapping the addresses leaves the fold unchanged: symmetric. */
static inline uint32_t hash_toeplitz_ethernet(const struct flow_key *key)
{
    uint16_t addresses = fold_words(key->source + 2, 4) ^ fold_words(key->destination + 2, 4);
    uint16_t fold = __builtin_bswap16(addresses)
                  ^ (uint16_t)(ADDRESS_PAIR_SOURCE_PORT + 1) ^ (uint16_t)(ADDRESS_PAIR_DESTINATION_PORT + 1);
    return toeplitz_of_fold(fold);
}

/* Dispatched per address size so that fold_words sees a constant. */
static inline uint32_t hash_toeplitz(const struct flow_key *key)
{
    switch (key->address_size) {
    case 4:
        return hash_toeplitz_sized(key, 4);
    case 16:
        return hash_toeplitz_sized(key, 16);
    case 6:
        return hash_toeplitz_ethernet(key);
    default:
        return hash_toeplitz_sized(key, 0);
    }
}

/* murmur3's 64-bit finaliser: a bijection with full avalanche. */
static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* wyhash's step: the 128-bit product of two words folded to 64 bits, which
 * mixes 128 input bits with one multiplication. */
static inline uint64_t multiply_fold(uint64_t a, uint64_t b)
{
    __uint128_t product = (__uint128_t)a * b;
    return (uint64_t)product ^ (uint64_t)(product >> 64);
}

/* Up to 8 bytes as one word, zero-padded: the words only feed the mix. */
static inline uint64_t load_word(const uint8_t *p, unsigned size)
{
    uint64_t word = 0;
    memcpy(&word, p, size < 8 ? size : 8);
    return word;
}

/* A total order on addresses (not numeric: only both directions agreeing matters). */
static inline int address_less(const uint8_t *a, const uint8_t *b, unsigned size)
{
    for (unsigned i = 0; i < size; i += 8) {
        uint64_t x = load_word(a + i, size - i), y = load_word(b + i, size - i);
        if (x != y)
            return x < y;
    }
    return 0;
}

/* Depth >= 1: a seeded mix of the endpoints in a canonical order, so it is
 * symmetric without being the linear fold that made the original's per-depth
 * seed cancel out. Inlined per address size so the loops unroll. */
static inline uint32_t hash_mixed_sized(const struct flow_key *key, unsigned depth, unsigned size)
{
    const uint8_t *low = key->source, *high = key->destination;
    uint16_t low_port = key->source_port, high_port = key->destination_port;
    if (address_less(high, low, size)
        || (!address_less(low, high, size) && low_port > high_port)) {
        low = key->destination;
        high = key->source;
        /* Stand-ins belong to no endpoint: swapping them would break symmetry. */
        if (key->has_ports) {
            low_port = key->destination_port;
            high_port = key->source_port;
        }
    }
    uint64_t words[5];
    unsigned count = 0;
    if (size == 4) {
        words[count++] = load_word(low, 4) << 32 | load_word(high, 4);
    } else {
        for (unsigned i = 0; i < size; i += 8)
            words[count++] = load_word(low + i, size - i);
        for (unsigned i = 0; i < size; i += 8)
            words[count++] = load_word(high + i, size - i);
    }
    words[count++] = (uint64_t)size << 32 | (uint32_t)low_port << 16 | high_port;

    uint64_t h = 0x9e3779b97f4a7c15ull * (depth + 1);
    for (unsigned i = 0; i < count; i += 2) {
        uint64_t second = i + 1 < count ? words[i + 1] : 0;
        h = multiply_fold(words[i] ^ h ^ 0xa0761d6478bd642full, second ^ 0xe7037ed1a0b428dbull);
    }
    h = mix64(h);
    return (uint32_t)(h ^ h >> 32);
}

static uint32_t hash_mixed(const struct flow_key *key, unsigned depth)
{
    switch (key->address_size) {
    case 4:
        return hash_mixed_sized(key, depth, 4);
    case 16:
        return hash_mixed_sized(key, depth, 16);
    case 6:
        return hash_mixed_sized(key, depth, 6);
    default:
        return hash_mixed_sized(key, depth, 0);
    }
}

static inline uint32_t hash_key(const struct flow_key *key, unsigned depth)
{
    return depth == 0 ? hash_toeplitz(key) : hash_mixed(key, depth);
}

/* Identifies a datagram for the fragment table; never 0 (the empty slot). */
static uint64_t fragment_tag(const struct brk_flow_fragment *fragment)
{
    uint64_t h = (uint64_t)fragment->protocol << 32 | fragment->id;
    for (unsigned i = 0; i < fragment->address_size; i += 8) {
        unsigned left = fragment->address_size - i;
        h = multiply_fold(h ^ load_word(fragment->source + i, left) ^ 0x8ebc6af09c88c6e3ull,
                          load_word(fragment->destination + i, left) ^ 0x589965cc75374cc3ull);
    }
    return mix64(h) | 1;
}

static struct fragment_entry *fragment_bucket(brk_frag_table *table, uint64_t tag)
{
    return &table->entries[(size_t)((tag >> 32) & table->bucket_mask) * FRAGMENT_TABLE_WAYS];
}

static int fragment_lookup(brk_frag_table *table, uint64_t tag, uint32_t *hash)
{
    struct fragment_entry *bucket = fragment_bucket(table, tag);
    for (unsigned way = 0; way < FRAGMENT_TABLE_WAYS; way++) {
        if (bucket[way].tag == tag) {
            *hash = bucket[way].hash;
            return 1;
        }
    }
    return 0;
}

/* Keeps tag -> hash, overwriting the same datagram, else an empty slot, else
 * the oldest of the bucket: old datagrams are long complete. */
static void fragment_store(brk_frag_table *table, uint64_t tag, uint32_t hash)
{
    struct fragment_entry *bucket = fragment_bucket(table, tag);
    struct fragment_entry *victim = &bucket[0];
    for (unsigned way = 0; way < FRAGMENT_TABLE_WAYS; way++) {
        if (bucket[way].tag == tag || bucket[way].tag == 0) {
            victim = &bucket[way];
            break;
        }
        if ((uint32_t)(table->clock - bucket[way].stamp) > (uint32_t)(table->clock - victim->stamp))
            victim = &bucket[way];
    }
    victim->tag = tag;
    victim->hash = hash;
    victim->stamp = ++table->clock;
}

brk_frag_table *brk_frag_table_new(unsigned slots)
{
    struct brk_frag_table *table = calloc(1, sizeof(*table));
    uint32_t buckets = 1;
    if (!table)
        return NULL;
    if (slots > FRAGMENT_TABLE_MAX_SLOTS)
        slots = FRAGMENT_TABLE_MAX_SLOTS;
    while (buckets * FRAGMENT_TABLE_WAYS < slots)
        buckets <<= 1;
    size_t size = (size_t)buckets * FRAGMENT_TABLE_WAYS * sizeof(struct fragment_entry);
    /* One bucket per cache line. */
    table->entries = aligned_alloc(64, size);
    if (!table->entries) {
        free(table);
        return NULL;
    }
    memset(table->entries, 0, size);
    table->bucket_mask = buckets - 1;
    return table;
}

void brk_frag_table_free(brk_frag_table *table)
{
    if (!table)
        return;
    free(table->entries);
    free(table);
}

static inline void key_from_endpoints(struct flow_key *key, const struct brk_flow_endpoints *endpoints)
{
    key->source = endpoints->source;
    key->destination = endpoints->destination;
    key->address_size = endpoints->address_size;
    key->source_port = endpoints->source_port;
    key->destination_port = endpoints->destination_port;
    key->has_ports = endpoints->has_ports;
}

/*
 * Hashes what the dissector found: the first IP header's address pair with
 * split 2, the deepest endpoints parsed completely with split 4 (so a cut
 * header hashes on what came before it). With a fragment table a later
 * fragment goes where its datagram's first fragment went (or, unseen, by its
 * address pair: FRAG_FALLBACK), and a first fragment's hash is remembered.
 */
static uint32_t hash_dissected(const uint8_t *frame, uint32_t caplen, int split, unsigned depth,
                               brk_frag_table *frags, uint32_t *flags)
{
    struct brk_flow_keys keys;
    struct flow_key key;
    uint32_t hash;
    brk_dissect(frame, frame + caplen, frags && split == 4 ? BRK_DISSECT_PARSE_FIRST_FRAGMENT : 0, &keys);
    if (split != 4) {
        *flags = keys.address_result;
        key_from_endpoints(&key, &keys.address_pair);
        return hash_key(&key, depth);
    }
    *flags = keys.flow_result;
    if (BRK_UNLIKELY(keys.later_fragment.address_size)) {
        if (fragment_lookup(frags, fragment_tag(&keys.later_fragment), &hash))
            goto found;
        *flags |= BRK_HASH_FRAG_FALLBACK;
    }
    key_from_endpoints(&key, &keys.flow);
    hash = hash_key(&key, depth);
found:
    if (BRK_UNLIKELY(keys.first_fragment.address_size))
        fragment_store(frags, fragment_tag(&keys.first_fragment), hash);
    return hash;
}

/* The common case in straight-line code: an IPv4 packet, no fragment, no
 * tunnel, its header (and with split 4 on TCP/UDP its ports) within length.
 * Returns 0 for anything else, which the dissector then handles in full. */
static inline int hash_plain_ipv4(const uint8_t *p, uint32_t length, int split, unsigned depth,
                                  uint32_t *hash)
{
    if (BRK_UNLIKELY(length < 20))
        return 0;
    uint32_t header_size = (uint32_t)(p[0] & 0x0f) * 4;
    uint8_t protocol = p[9];
    int has_ports = split == 4 && (protocol == PROTO_TCP || protocol == PROTO_UDP);
    int tunnel = split == 4 && (protocol == PROTO_IPIP || protocol == PROTO_IPV6);
    if (BRK_UNLIKELY((load_be16(p + 6) & 0x3fff) || tunnel || header_size < 20
                     || header_size + (has_ports ? 4 : 0) > length))
        return 0;
    struct flow_key key = { p + 12, p + 16, 4, ADDRESS_PAIR_SOURCE_PORT, ADDRESS_PAIR_DESTINATION_PORT, 0 };
    if (has_ports) {
        key.source_port = load_be16(p + header_size);
        key.destination_port = load_be16(p + header_size + 2);
        key.has_ports = 1;
    }
    *hash = depth == 0 ? hash_toeplitz_sized(&key, 4) : hash_mixed_sized(&key, depth, 4);
    return 1;
}

uint32_t brk_flow_hash(const uint8_t *frame, uint32_t caplen, int split,
                       unsigned depth, brk_frag_table *frags, uint32_t *flags)
{
    uint32_t local_flags = 0;
    uint32_t *out = flags ? flags : &local_flags;
    uint32_t hash;
    /* Untagged plain IPv4 (most traffic) without the dissector's copies: the
     * same value, which the hash vectors check both ways. */
    if (BRK_LIKELY(caplen >= ETHERNET_HEADER_SIZE && load_be16(frame + 12) == ETHERTYPE_IPV4
                   && hash_plain_ipv4(frame + ETHERNET_HEADER_SIZE, caplen - ETHERNET_HEADER_SIZE, split, depth,
                                      &hash))) {
        *out = 0;
        return hash;
    }
    return hash_dissected(frame, caplen, split, depth, frags, out);
}
