/* Dedup: drops the copies of a frame seen again within a time window (the
 * same packet caught on two taps or SPAN ports). First copies go to output 0;
 * copies are counted as deduplicated.
 *
 * Two frames are copies when their bytes are equal once the ignored fields
 * (api/dedup.h: TTL, VLAN tags, MACs, DSCP, IPv4 checksum) are blanked out:
 * the full bytes are compared, the hash only finds candidates. Frames that
 * are not IP (or whose IP header is cut) are compared whole.
 *
 * Memory is sized once, at init: the remembered frames form a FIFO in
 * arrival order (time order), their normalised bytes a ring of bytes in the
 * same order, and an index of hash buckets points into the FIFO. Eviction
 * pops the FIFO's head while it is older than the window; an index slot whose
 * FIFO entry is gone is dead by its sequence number alone, so nothing is ever
 * unlinked. When the FIFO or the byte ring is full of frames still inside the
 * window, the oldest is forgotten early and counted as table_full: a later
 * copy of it then passes, so a full table degrades to forwarding, never to
 * dropping originals. No lock (one engine thread), no allocation per packet. */
#include "internal.h"
#include "dissect.h"
#include "api/dedup.h"

#include <stdlib.h>
#include <time.h>

#define DEDUP_BUCKET_SLOTS 8            /* one cache line of index slots */
#define DEDUP_HEADER_MAX (14 + 60)      /* Ethernet (tags removed or not) + the longest IPv4 header... */
#define DEDUP_NORMAL_MAX (14 + 4 * BRK_DISSECT_MAX_VLAN_TAGS + 60)   /* ... or with its tags kept */
#define DEDUP_HASHED_PAYLOAD 32         /* bytes past the IP header that go into the hash (the L4 header) */
#define DEDUP_CLOCK_EVERY 64            /* packets without a capture time: read the clock once per this many */

static const char *const dedup_counters[] = { "deduplicated", "unique", "table_full", NULL };

/* A remembered frame. */
struct dedup_entry {
    uint64_t hash;
    uint64_t time;          /* ns */
    uint64_t position;      /* of its bytes in the ring, counted from the first byte ever stored */
    uint32_t length;
};

struct dedup_slot {
    uint32_t tag;           /* the hash's high half */
    uint32_t sequence;      /* the entry's FIFO sequence number (low 32 bits) */
};

struct dedup_state {
    uint64_t *counters;             /* the brick's stats.counters: enum brk_dedup_counter */
    uint64_t window;
    uint32_t ignore;
    struct dedup_entry *entries;    /* FIFO of capacity entries (a power of two) */
    uint32_t capacity;
    uint32_t head, tail;            /* sequence numbers: entries head..tail-1 are remembered */
    struct dedup_slot *index;
    uint32_t bucket_mask;
    uint8_t *store;                 /* the byte ring */
    uint64_t store_size;
    uint64_t store_end;             /* position past the last byte stored */
    uint64_t now;                   /* monotonic: never runs back when capture times do */
    uint64_t fake_now;              /* tests: a fixed clock, 0 = capture times */
    uint64_t clock;                 /* the last reading for packets without a capture time */
    unsigned clock_age;
};

extern const struct brk_brick_kind brk_brick_dedup;

/* A frame as compared: a normalised copy of its headers, then its remaining bytes as they are. */
struct dedup_view {
    uint8_t header[DEDUP_NORMAL_MAX];
    uint32_t header_length;
    const uint8_t *rest;
    uint32_t rest_length;
};

static inline uint64_t load64(const uint8_t *bytes)
{
    uint64_t value;
    memcpy(&value, bytes, sizeof(value));
    return value;
}

static inline uint64_t mix(uint64_t hash, uint64_t word)
{
    hash ^= word;
    hash *= 0x9e3779b97f4a7c15ull;
    return hash ^ (hash >> 29);
}

/* Two independent lanes, so that one multiply's latency hides the other's. */
static inline uint64_t hash_bytes(uint64_t hash, const uint8_t *bytes, uint32_t length)
{
    uint64_t other = hash ^ 0x6a09e667f3bcc909ull;
    uint32_t i = 0;
    for (; i + 16 <= length; i += 16) {
        hash = mix(hash, load64(bytes + i));
        other = mix(other, load64(bytes + i + 8));
    }
    if (i + 8 <= length) {
        hash = mix(hash, load64(bytes + i));
        i += 8;
    }
    if (i < length) {
        uint64_t tail = 0;
        memcpy(&tail, bytes + i, length - i);
        other = mix(other, tail);
    }
    return mix(hash, other);
}

/* The frame's normalised view: the ignored fields of its link and IP headers
 * blanked (tags removed), the rest left as it is. */
static void dedup_view(const struct dedup_state *state, const uint8_t *data, uint32_t caplen,
                       struct dedup_view *view)
{
    struct brk_flow_keys link;
    struct brk_flow_endpoints endpoints;
    struct brk_ip_header ip_header;
    const uint8_t *end = data + caplen;
    uint32_t ignore = state->ignore;
    view->header_length = 0;
    view->rest = data;
    view->rest_length = caplen;
    link.vlan_count = 0;
    uint32_t offset = brk_dissect_ethernet(data, end, &link);
    if (offset == 0 || offset >= caplen)
        return;   /* not even a whole Ethernet header: compared whole */
    uint32_t ip_length;
    if (link.ethertype == BRK_ETHERTYPE_IPV4) {
        if ((data[offset] >> 4) != 4 || !brk_dissect_ipv4(data, end, offset, &endpoints, &ip_header) || ip_header.cut)
            return;
        ip_length = (uint32_t)(data[offset] & 15u) * 4;
    } else if (link.ethertype == BRK_ETHERTYPE_IPV6) {
        if ((data[offset] >> 4) != 6 || offset + 40 > caplen)
            return;
        ip_length = 40;
    } else {
        return;   /* not IP: compared whole */
    }
    uint8_t *out = view->header;
    if (ignore & BRK_DEDUP_IGNORE_MAC)
        memset(out, 0, 12);
    else
        memcpy(out, data, 12);
    if (ignore & BRK_DEDUP_IGNORE_VLAN) {
        out[12] = (uint8_t)(link.ethertype >> 8);
        out[13] = (uint8_t)link.ethertype;
        out += 14;
    } else {
        memcpy(out + 12, data + 12, offset - 12);
        out += offset;
    }
    memcpy(out, data + offset, ip_length);
    if (link.ethertype == BRK_ETHERTYPE_IPV4) {
        if (ignore & BRK_DEDUP_IGNORE_DSCP)
            out[1] &= 0x03;          /* ECN stays */
        if (ignore & BRK_DEDUP_IGNORE_TTL)
            out[8] = 0;
        if (ignore & BRK_DEDUP_IGNORE_CHECKSUM)
            out[10] = out[11] = 0;
    } else {
        if (ignore & BRK_DEDUP_IGNORE_DSCP) {
            /* Version (4 bits), traffic class (DSCP 6 bits, ECN 2 bits), flow label. */
            out[0] &= 0xf0;
            out[1] &= 0x3f;
        }
        if (ignore & BRK_DEDUP_IGNORE_TTL)
            out[7] = 0;
    }
    view->header_length = (uint32_t)(out + ip_length - view->header);
    view->rest = data + offset + ip_length;
    view->rest_length = caplen - offset - ip_length;
}

static inline uint64_t view_hash(const struct dedup_view *view)
{
    uint64_t hash = mix(0x243f6a8885a308d3ull, (uint64_t)view->header_length << 32 | view->rest_length);
    hash = hash_bytes(hash, view->header, view->header_length);
    return hash_bytes(hash, view->rest, view->rest_length < DEDUP_HASHED_PAYLOAD
                                            ? view->rest_length : DEDUP_HASHED_PAYLOAD);
}

static inline uint32_t view_length(const struct dedup_view *view)
{
    return view->header_length + view->rest_length;
}

static inline const uint8_t *stored_bytes(const struct dedup_state *state, const struct dedup_entry *entry)
{
    return state->store + entry->position % state->store_size;
}

static inline int view_equals(const struct dedup_state *state, const struct dedup_entry *entry,
                              const struct dedup_view *view)
{
    const uint8_t *stored = stored_bytes(state, entry);
    return memcmp(stored, view->header, view->header_length) == 0
        && memcmp(stored + view->header_length, view->rest, view->rest_length) == 0;
}

static inline uint32_t remembered(const struct dedup_state *state)
{
    return state->tail - state->head;
}

/* Whether slot points at a remembered frame: its sequence is in the FIFO and
 * the entry there has its tag (a never-used slot, or one whose sequence came
 * round again after 2^32 frames, points at another frame's entry). */
static inline int slot_in_fifo(const struct dedup_state *state, const struct dedup_slot *slot)
{
    return (uint32_t)(state->tail - slot->sequence) - 1 < remembered(state);
}

static inline int slot_alive(const struct dedup_state *state, const struct dedup_slot *slot)
{
    return slot_in_fifo(state, slot)
        && (uint32_t)(state->entries[slot->sequence & (state->capacity - 1)].hash >> 32) == slot->tag;
}

/* Forgets the oldest frame; early when it is still inside the window. */
static inline void forget_oldest(struct dedup_state *state, int early)
{
    state->head++;
    if (early)
        state->counters[BRK_DEDUP_TABLE_FULL]++;
}

static inline uint64_t dedup_now(struct dedup_state *state, const struct brk_packet *packet)
{
    uint64_t now = state->fake_now ? state->fake_now : packet->ts_nsec;
    if (now == 0) {
        /* A source without capture times (memory): the clock, read once per DEDUP_CLOCK_EVERY packets. */
        if (state->clock_age++ % DEDUP_CLOCK_EVERY == 0) {
            struct timespec time_now;
            clock_gettime(CLOCK_MONOTONIC, &time_now);
            state->clock = (uint64_t)time_now.tv_sec * 1000000000ull + (uint64_t)time_now.tv_nsec;
        }
        now = state->clock;
    }
    if (now > state->now)
        state->now = now;
    return state->now;
}

/* Remembers view at the FIFO's tail and in the bucket, making room first. */
static void remember(struct dedup_state *state, const struct dedup_view *view, uint64_t hash,
                     struct dedup_slot *bucket)
{
    uint32_t length = view_length(view);
    if (length > state->store_size) {
        state->counters[BRK_DEDUP_TABLE_FULL]++;   /* never fits: forgotten at once */
        return;
    }
    uint64_t position = state->store_end;
    /* A frame's bytes never wrap: one that would is stored from the ring's start. */
    if (position % state->store_size + length > state->store_size)
        position += state->store_size - position % state->store_size;
    while (remembered(state) == state->capacity
           || (remembered(state) && position + length - state->entries[state->head & (state->capacity - 1)].position
                                    > state->store_size))
        forget_oldest(state, 1);
    struct dedup_entry *entry = &state->entries[state->tail & (state->capacity - 1)];
    entry->hash = hash;
    entry->time = state->now;
    entry->position = position;
    entry->length = length;
    uint8_t *stored = state->store + position % state->store_size;
    memcpy(stored, view->header, view->header_length);
    memcpy(stored + view->header_length, view->rest, view->rest_length);
    state->store_end = position + length;
    /* A slot whose sequence left the FIFO, else the oldest of the bucket (its
     * frame then cannot be found: forgotten early, unless the slot was stale).
     * Only the sequence is read here: an entry's tag is a cache miss. */
    struct dedup_slot *chosen = NULL;
    uint32_t oldest_age = 0;
    for (unsigned i = 0; i < DEDUP_BUCKET_SLOTS; i++) {
        struct dedup_slot *slot = &bucket[i];
        if (!slot_in_fifo(state, slot)) {
            chosen = slot;
            break;
        }
        uint32_t age = state->tail - slot->sequence;
        if (age >= oldest_age) {
            oldest_age = age;
            chosen = slot;
        }
    }
    if (slot_in_fifo(state, chosen) && slot_alive(state, chosen))
        state->counters[BRK_DEDUP_TABLE_FULL]++;
    chosen->tag = (uint32_t)(hash >> 32);
    chosen->sequence = state->tail++;
}

static inline struct dedup_slot *bucket_of(const struct dedup_state *state, uint64_t hash)
{
    return &state->index[(hash & state->bucket_mask) * DEDUP_BUCKET_SLOTS];
}

/* One packet whose view and hash are made: forwarded and remembered, or counted as a copy. */
static inline void dedup_decide(struct brk_brick *brick, struct dedup_state *state, const struct brk_packet *packet,
                                const struct dedup_view *view, uint64_t hash)
{
    uint64_t now = dedup_now(state, packet);
    while (remembered(state) && now - state->entries[state->head & (state->capacity - 1)].time > state->window)
        forget_oldest(state, 0);
    struct dedup_slot *bucket = bucket_of(state, hash);
    uint32_t tag = (uint32_t)(hash >> 32), length = view_length(view);
    for (unsigned i = 0; i < DEDUP_BUCKET_SLOTS; i++) {
        if (bucket[i].tag != tag || !slot_alive(state, &bucket[i]))
            continue;
        const struct dedup_entry *entry = &state->entries[bucket[i].sequence & (state->capacity - 1)];
        if (entry->hash == hash && entry->length == length && view_equals(state, entry, view)) {
            state->counters[BRK_DEDUP_DEDUPLICATED]++;
            return;
        }
    }
    state->counters[BRK_DEDUP_UNIQUE]++;
    remember(state, view, hash, bucket);
    /* Where the next frames' bytes go: the ring is written once per window, cold. */
    __builtin_prefetch(state->store + (state->store_end + 256) % state->store_size, 1);
    brk_output_push(brick, 0, packet);
}

static void dedup_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    struct dedup_state *state = brick->state;
    struct dedup_view view;
    dedup_view(state, packet->data, packet->caplen, &view);
    dedup_decide(brick, state, packet, &view, view_hash(&view));
}

#define DEDUP_PREFETCH_GROUP 8

/* A source's batch: the views and hashes of a group first, their buckets
 * prefetched, then the decisions in order (a copy inside one group still
 * finds its original, remembered just before). */
static void dedup_push_batch(struct brk_brick *brick, const struct brk_packet *packets, unsigned count)
{
    struct dedup_state *state = brick->state;
    struct dedup_view views[DEDUP_PREFETCH_GROUP];
    uint64_t hashes[DEDUP_PREFETCH_GROUP];
    for (unsigned base = 0; base < count; base += DEDUP_PREFETCH_GROUP) {
        unsigned group = count - base < DEDUP_PREFETCH_GROUP ? count - base : DEDUP_PREFETCH_GROUP;
        for (unsigned j = 0; j < group; j++) {
            const struct brk_packet *packet = &packets[base + j];
            if (base + j + DEDUP_PREFETCH_GROUP < count)
                __builtin_prefetch(packet[DEDUP_PREFETCH_GROUP].data);
            dedup_view(state, packet->data, packet->caplen, &views[j]);
            hashes[j] = view_hash(&views[j]);
            __builtin_prefetch(bucket_of(state, hashes[j]));
        }
        for (unsigned j = 0; j < group; j++)
            dedup_decide(brick, state, &packets[base + j], &views[j], hashes[j]);
    }
}

static uint32_t power_of_two_at_least(uint64_t value)
{
    uint32_t power = 1;
    while (power < value && power < (1u << 30))
        power <<= 1;
    return power;
}

static void dedup_fini(struct brk_brick *brick)
{
    struct dedup_state *state = brick->state;
    free(state->entries);
    free(state->index);
    free(state->store);
}

static int dedup_init(struct brk_brick *brick, char *error, size_t error_size)
{
    const struct brk_dedup_config *config = brick->config;
    struct dedup_state *state = brick->state;
    state->counters = brick->stats.counters;
    if (config == NULL || config->table_size == 0 || config->store_bytes < DEDUP_NORMAL_MAX) {
        brk_fail(error, error_size, "Dedup needs a table size and a byte store of at least %d bytes",
                 DEDUP_NORMAL_MAX);
        return -1;
    }
    state->window = config->window_ns;
    state->ignore = config->ignore;
    state->capacity = power_of_two_at_least(config->table_size);
    /* Twice as many index slots as entries: a bucket rarely overflows. */
    uint32_t buckets = power_of_two_at_least(2ull * state->capacity / DEDUP_BUCKET_SLOTS);
    state->bucket_mask = buckets - 1;
    state->store_size = config->store_bytes;
    state->entries = calloc(state->capacity, sizeof(*state->entries));
    state->index = calloc((size_t)buckets * DEDUP_BUCKET_SLOTS, sizeof(*state->index));
    state->store = malloc(state->store_size);
    if (!state->entries || !state->index || !state->store) {
        dedup_fini(brick);   /* a failed init is not finished by the engine */
        brk_fail(error, error_size, "Dedup: out of memory for %u entries and %llu bytes", state->capacity,
                 (unsigned long long)state->store_size);
        return -1;
    }
    return 0;
}

const struct brk_brick_kind brk_brick_dedup = {
    .name = "Dedup",
    .min_outputs = 1,
    .max_outputs = 1,
    .config_size = sizeof(struct brk_dedup_config),
    .config_type = "struct brk_dedup_config",
    .counters = dedup_counters,
    .state_size = sizeof(struct dedup_state),
    .init = dedup_init,
    .push = dedup_push,
    .push_batch = dedup_push_batch,
    .fini = dedup_fini,
};

int brk_dedup_set_clock(struct brk_brick *brick, uint64_t now_nsec)
{
    if (brick->kind != &brk_brick_dedup)
        return -1;
    struct dedup_state *state = brick->state;
    state->fake_now = now_nsec;
    return 0;
}
