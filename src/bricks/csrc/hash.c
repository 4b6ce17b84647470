/* The flow hash of SPEC §6: the original's symmetric Toeplitz hash (table
 * driven) for a brick linked to the engine, a seeded symmetric mix deeper in a
 * chain, a bounds-checked Ethernet/VLAN/IPv4/IPv6/tunnel parser, and the
 * fragment table that sends every fragment of a datagram with its first. */
#include "internal.h"

#include <stdlib.h>

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ETHERTYPE_VLAN 0x8100
#define ETHERTYPE_QINQ 0x88a8
#define ETHERTYPE_QINQ_LEGACY 0x9100
#define ETHERNET_HEADER_SIZE 14
#define VLAN_TAG_SIZE 4
#define MAX_VLAN_TAGS 4
#define MAX_IP_HEADERS 4          /* the outer header plus nested tunnels */
#define MAX_IPV6_EXTENSIONS 8

#define PROTO_HOP_BY_HOP 0
#define PROTO_IPIP 4
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_IPV6 41
#define PROTO_ROUTING 43
#define PROTO_FRAGMENT 44
#define PROTO_AH 51
#define PROTO_DESTINATION_OPTIONS 60
#define PROTO_MOBILITY 135
#define PROTO_HIP 139
#define PROTO_SHIM6 140

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

enum fragment_kind { NOT_FRAGMENT, FIRST_FRAGMENT, LATER_FRAGMENT };

/* One IP header as far as the flow hash cares. */
struct ip_header {
    const uint8_t *source;
    const uint8_t *destination;
    unsigned address_size;
    uint8_t protocol;             /* the upper layer, after IPv6 extension headers */
    int cut;                      /* the header ends past caplen: payload unknown */
    enum fragment_kind fragment;
    uint32_t fragment_id;
    uint8_t fragment_next;        /* the protocol every fragment names (IPv6: the fragment header's next) */
    uint32_t payload_offset;
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

/* Fills header from an IPv4 header; 0 when even the addresses are cut. */
static inline int parse_ipv4(const uint8_t *p, uint32_t length, struct ip_header *header)
{
    if (BRK_UNLIKELY(length < 20))
        return 0;
    uint32_t header_size = (uint32_t)(p[0] & 0x0f) * 4;
    uint16_t fragment_field = load_be16(p + 6);
    header->source = p + 12;
    header->destination = p + 16;
    header->address_size = 4;
    header->protocol = p[9];
    header->payload_offset = header_size;
    header->cut = header_size < 20 || header_size > length;
    header->fragment_id = load_be16(p + 4);
    header->fragment_next = p[9];
    if (BRK_LIKELY((fragment_field & 0x3fff) == 0))
        header->fragment = NOT_FRAGMENT;
    else
        header->fragment = (fragment_field & 0x1fff) ? LATER_FRAGMENT : FIRST_FRAGMENT;
    return 1;
}

/* Fills header from an IPv6 header, walking the extension headers to the
 * upper layer; 0 when even the addresses are cut. */
static int parse_ipv6(const uint8_t *p, uint32_t length, struct ip_header *header)
{
    if (BRK_UNLIKELY(length < 40))
        return 0;
    uint8_t next = p[6];
    uint32_t offset = 40;
    header->source = p + 8;
    header->destination = p + 24;
    header->address_size = 16;
    header->cut = 0;
    header->fragment = NOT_FRAGMENT;
    header->fragment_id = 0;
    header->fragment_next = 0;
    for (unsigned extensions = 0; extensions < MAX_IPV6_EXTENSIONS; extensions++) {
        uint32_t extension_size;
        switch (next) {
        case PROTO_HOP_BY_HOP:
        case PROTO_ROUTING:
        case PROTO_DESTINATION_OPTIONS:
        case PROTO_MOBILITY:
        case PROTO_HIP:
        case PROTO_SHIM6:
            if (offset + 2 > length)
                goto cut;
            extension_size = ((uint32_t)p[offset + 1] + 1) * 8;
            break;
        case PROTO_AH:
            if (offset + 2 > length)
                goto cut;
            extension_size = ((uint32_t)p[offset + 1] + 2) * 4;
            break;
        case PROTO_FRAGMENT: {
            if (offset + 8 > length)
                goto cut;
            uint16_t fragment_field = load_be16(p + offset + 2);
            /* Offset 0 without "more fragments" is an atomic fragment: whole. */
            if (fragment_field & 0xfff8)
                header->fragment = LATER_FRAGMENT;
            else if (fragment_field & 1)
                header->fragment = FIRST_FRAGMENT;
            header->fragment_id = (uint32_t)load_be16(p + offset + 4) << 16 | load_be16(p + offset + 6);
            header->fragment_next = p[offset];
            extension_size = 8;
            if (header->fragment == LATER_FRAGMENT) {
                /* What follows is payload, not headers. */
                header->protocol = p[offset];
                header->payload_offset = offset + extension_size;
                return 1;
            }
            break;
        }
        default:
            if (offset > length)
                goto cut;
            header->protocol = next;
            header->payload_offset = offset;
            return 1;
        }
        next = p[offset];
        offset += extension_size;
    }
cut:
    /* Too many extension headers counts as cut too: the upper layer is unknown. */
    header->protocol = next;
    header->payload_offset = offset;
    header->cut = 1;
    return 1;
}

static inline int depends_on_payload(uint8_t protocol)
{
    return protocol == PROTO_TCP || protocol == PROTO_UDP
        || protocol == PROTO_IPIP || protocol == PROTO_IPV6;
}

/* A later IPv6 fragment names only the first header of the fragmentable part
 * (AH, destination options, ...): its first fragment walked on from there and
 * may have reached TCP, UDP or a tunnel, so the table must be asked. */
static inline int may_depend_on_payload(const struct ip_header *header)
{
    if (depends_on_payload(header->protocol))
        return 1;
    if (header->fragment != LATER_FRAGMENT)
        return 0;
    switch (header->protocol) {
    case PROTO_HOP_BY_HOP:
    case PROTO_ROUTING:
    case PROTO_FRAGMENT:
    case PROTO_AH:
    case PROTO_DESTINATION_OPTIONS:
    case PROTO_MOBILITY:
    case PROTO_HIP:
    case PROTO_SHIM6:
        return 1;
    default:
        return 0;
    }
}

/* Identifies a datagram for the fragment table; never 0 (the empty slot). */
static uint64_t fragment_tag(const struct ip_header *header)
{
    uint64_t h = (uint64_t)header->fragment_next << 32 | header->fragment_id;
    for (unsigned i = 0; i < header->address_size; i += 8) {
        unsigned left = header->address_size - i;
        h = multiply_fold(h ^ load_word(header->source + i, left) ^ 0x8ebc6af09c88c6e3ull,
                          load_word(header->destination + i, left) ^ 0x589965cc75374cc3ull);
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

static inline void key_from_addresses(struct flow_key *key, const struct ip_header *header)
{
    key->source = header->source;
    key->destination = header->destination;
    key->address_size = header->address_size;
    key->source_port = ADDRESS_PAIR_SOURCE_PORT;
    key->destination_port = ADDRESS_PAIR_DESTINATION_PORT;
    key->has_ports = 0;
}

/*
 * Hashes the IP packet at p (and the tunnels inside it, with split 4).
 * Invariants: key always holds the deepest endpoints parsed completely (the
 * caller's Ethernet addresses until an IP header is whole), so a cut header
 * hashes on what came before it; nothing past p + length is read.
 */
static uint32_t hash_ip(const uint8_t *p, uint32_t length, int version, int split, unsigned depth,
                        brk_frag_table *frags, struct flow_key *key, uint32_t *flags)
{
    uint64_t store_tag = 0;
    uint32_t hash;

    for (unsigned nesting = 0; nesting < MAX_IP_HEADERS; nesting++) {
        struct ip_header header;
        int parsed = version == 4 ? parse_ipv4(p, length, &header) : parse_ipv6(p, length, &header);
        if (BRK_UNLIKELY(!parsed)) {
            *flags |= BRK_HASH_TRUNCATED;
            break;
        }
        key_from_addresses(key, &header);
        if (BRK_UNLIKELY(header.cut))
            *flags |= BRK_HASH_TRUNCATED;
        if (BRK_UNLIKELY(header.fragment != NOT_FRAGMENT))
            *flags |= BRK_HASH_FRAGMENT;
        if (split != 4 || header.cut || !may_depend_on_payload(&header))
            break;
        if (BRK_UNLIKELY(header.fragment != NOT_FRAGMENT)) {
            /* Without a table every fragment hashes on its address pair. */
            if (!frags)
                break;
            if (header.fragment == LATER_FRAGMENT) {
                if (fragment_lookup(frags, fragment_tag(&header), &hash))
                    goto found;
                *flags |= BRK_HASH_FRAG_FALLBACK;
                break;
            }
            store_tag = fragment_tag(&header);
        }
        const uint8_t *payload = p + header.payload_offset;
        uint32_t payload_length = length - header.payload_offset;
        if (header.protocol == PROTO_TCP || header.protocol == PROTO_UDP) {
            if (BRK_UNLIKELY(payload_length < 4)) {
                *flags |= BRK_HASH_TRUNCATED;
                break;
            }
            key->source_port = load_be16(payload);
            key->destination_port = load_be16(payload + 2);
            key->has_ports = 1;
            break;
        }
        version = header.protocol == PROTO_IPIP ? 4 : 6;
        p = payload;
        length = payload_length;
    }
    hash = hash_key(key, depth);
found:
    if (store_tag)
        fragment_store(frags, store_tag, hash);
    return hash;
}

/* The common case in straight-line code: an IPv4 packet, no fragment, no
 * tunnel, its header (and with split 4 on TCP/UDP its ports) within length.
 * Returns 0 for anything else, which hash_ip then handles in full. */
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
    struct flow_key key = { frame, frame, 0, 0, 0, 0 };
    uint32_t local_flags = 0;
    uint32_t *out = flags ? flags : &local_flags;
    *out = 0;

    if (BRK_UNLIKELY(caplen < ETHERNET_HEADER_SIZE)) {
        *out = BRK_HASH_TRUNCATED;
        if (caplen >= 12) {
            key.source = frame + 6;
            key.address_size = 6;
        }
        return hash_key(&key, depth);
    }
    key.source = frame + 6;
    key.address_size = 6;
    uint16_t ethertype = load_be16(frame + 12);
    uint32_t offset = ETHERNET_HEADER_SIZE;
    for (unsigned tags = 0; BRK_UNLIKELY(ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ
                                         || ethertype == ETHERTYPE_QINQ_LEGACY); tags++) {
        if (tags == MAX_VLAN_TAGS || offset + VLAN_TAG_SIZE > caplen) {
            *out = BRK_HASH_TRUNCATED;
            return hash_key(&key, depth);
        }
        ethertype = load_be16(frame + offset + 2);
        offset += VLAN_TAG_SIZE;
    }
    uint32_t hash;
    if (BRK_LIKELY(ethertype == ETHERTYPE_IPV4)) {
        if (BRK_LIKELY(hash_plain_ipv4(frame + offset, caplen - offset, split, depth, &hash)))
            return hash;
        return hash_ip(frame + offset, caplen - offset, 4, split, depth, frags, &key, out);
    }
    if (ethertype == ETHERTYPE_IPV6)
        return hash_ip(frame + offset, caplen - offset, 6, split, depth, frags, &key, out);
    *out = BRK_HASH_NON_IP;
    return hash_key(&key, depth);
}
