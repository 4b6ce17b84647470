/* The flow hash of SPEC §6: the original's symmetric Toeplitz hash (table
 * driven) for a brick linked to the engine, a seeded symmetric mix deeper in a
 * chain, over the key of the one dissector (dissect.h: Ethernet, VLAN/QinQ,
 * IPv4/IPv6 with extension headers, tunnels), and the fragment table that
 * sends every fragment of a datagram with its first. */
#include "internal.h"
#include "flow_hash.h"

#include <stdlib.h>

#define ETHERNET_HEADER_SIZE 14

#define FRAGMENT_TABLE_WAYS 4
#define FRAGMENT_TABLE_MAX_SLOTS (1u << 24)

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

__attribute__((constructor)) static void build_toeplitz_tables(void)
{
    for (unsigned byte = 0; byte < 256; byte++) {
        uint32_t high = 0, low = 0;
        for (unsigned bit = 0; bit < 8; bit++) {
            if (byte & (0x80u >> bit)) {
                high ^= brk_rotate_left32(BRK_TOEPLITZ_KEY_WORD, bit);
                low ^= brk_rotate_left32(BRK_TOEPLITZ_KEY_WORD, bit + 8);
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

/* Depth 0: the original's hash, ports adjusted by its seed (+1). The
 * endpoints by pointer: plain IPv4 is hashed with its addresses in the frame. */
static inline uint32_t hash_toeplitz_sized(const uint8_t *source, const uint8_t *destination,
                                           uint16_t source_port, uint16_t destination_port, unsigned size)
{
    uint16_t fold = fold_words(source, size) ^ fold_words(destination, size)
                  ^ (uint16_t)(source_port + 1) ^ (uint16_t)(destination_port + 1);
    return toeplitz_of_fold(fold);
}

/* Depth 0 on Ethernet addresses, as the original hashes a non-IP frame: bytes
 * 2..5 of each address (the first two, mostly the vendor's, left out), read
 * as a 32-bit word in the host order of a little-endian machine, with the
 * stand-in ports (an Ethernet key has none of its own). Swapping the addresses leaves the fold unchanged: symmetric. */
static inline uint32_t hash_toeplitz_ethernet(const struct brk_flow_endpoints *key)
{
    uint16_t addresses = fold_words(key->source + 2, 4) ^ fold_words(key->destination + 2, 4);
    uint16_t fold = __builtin_bswap16(addresses)
                  ^ (uint16_t)(BRK_ADDRESS_PAIR_SOURCE_PORT + 1) ^ (uint16_t)(BRK_ADDRESS_PAIR_DESTINATION_PORT + 1);
    return toeplitz_of_fold(fold);
}

/* Dispatched per address size so that fold_words sees a constant. */
static inline uint32_t hash_toeplitz(const struct brk_flow_endpoints *key)
{
    switch (key->address_size) {
    case 4:
        return hash_toeplitz_sized(key->source, key->destination, key->source_port, key->destination_port, 4);
    case 16:
        return hash_toeplitz_sized(key->source, key->destination, key->source_port, key->destination_port, 16);
    case 6:
        return hash_toeplitz_ethernet(key);
    default:
        return hash_toeplitz_sized(key->source, key->destination, key->source_port, key->destination_port, 0);
    }
}

static inline uint32_t hash_key(const struct brk_flow_endpoints *key, unsigned depth)
{
    return depth == 0 ? hash_toeplitz(key) : brk_hash_mixed(key, depth);
}

/* Identifies a datagram for the fragment table; never 0 (the empty slot). */
static uint64_t fragment_tag(const struct brk_flow_fragment *fragment)
{
    uint64_t h = (uint64_t)fragment->protocol << 32 | fragment->id;
    for (unsigned i = 0; i < fragment->address_size; i += 8) {
        unsigned left = fragment->address_size - i;
        h = brk_multiply_fold(h ^ brk_load_word(fragment->source + i, left) ^ 0x8ebc6af09c88c6e3ull,
                              brk_load_word(fragment->destination + i, left) ^ 0x589965cc75374cc3ull);
    }
    return brk_mix64(h) | 1;
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

/*
 * Hashes what the dissector found: the first IP header's address pair with
 * split 2, the deepest endpoints parsed completely with split 4 (so a cut
 * header hashes on what came before it). With a fragment table a later
 * fragment goes where its datagram's first fragment went (or, unseen, by its
 * address pair: FRAG_FALLBACK), and a first fragment's hash is remembered.
 * Kept out of line: inlined, it bloats brk_flow_hash and slows its plain
 * IPv4 fast path (0.6 ns a packet measured at depth 0).
 */
__attribute__((noinline)) static uint32_t hash_dissected(const uint8_t *frame, uint32_t caplen, int split, unsigned depth,
                               brk_frag_table *frags, uint32_t *flags)
{
    struct brk_flow_keys keys;
    uint32_t hash;
    brk_dissect(frame, frame + caplen, frags && split == 4 ? BRK_DISSECT_PARSE_FIRST_FRAGMENT : 0, &keys);
    if (split != 4) {
        *flags = keys.address_result;
        return hash_key(&keys.address_pair, depth);
    }
    *flags = keys.flow_result;
    if (BRK_UNLIKELY(keys.later_fragment.address_size)) {
        if (fragment_lookup(frags, fragment_tag(&keys.later_fragment), &hash))
            goto found;
        *flags |= BRK_HASH_FRAG_FALLBACK;
    }
    hash = hash_key(&keys.flow, depth);
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
    int has_ports = split == 4 && (protocol == BRK_PROTO_TCP || protocol == BRK_PROTO_UDP);
    int tunnel = split == 4 && (protocol == BRK_PROTO_IPIP || protocol == BRK_PROTO_IPV6);
    if (BRK_UNLIKELY((brk_load_be16(p + 6) & 0x3fff) || tunnel || header_size < 20
                     || header_size + (has_ports ? 4 : 0) > length))
        return 0;
    uint16_t source_port = BRK_ADDRESS_PAIR_SOURCE_PORT, destination_port = BRK_ADDRESS_PAIR_DESTINATION_PORT;
    if (has_ports) {
        source_port = brk_load_be16(p + header_size);
        destination_port = brk_load_be16(p + header_size + 2);
    }
    *hash = depth == 0 ? hash_toeplitz_sized(p + 12, p + 16, source_port, destination_port, 4)
                       : brk_hash_mixed_of(p + 12, p + 16, source_port, destination_port, has_ports, depth, 4);
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
    if (BRK_LIKELY(caplen >= ETHERNET_HEADER_SIZE && brk_load_be16(frame + 12) == BRK_ETHERTYPE_IPV4
                   && hash_plain_ipv4(frame + ETHERNET_HEADER_SIZE, caplen - ETHERNET_HEADER_SIZE, split, depth,
                                      &hash))) {
        *out = 0;
        return hash;
    }
    return hash_dissected(frame, caplen, split, depth, frags, out);
}
