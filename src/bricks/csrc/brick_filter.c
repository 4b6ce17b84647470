/* Filter: a compiled tcpdump expression, then drop / allow rules (allow wins);
 * passed packets to output 0, rejected ones to output 1 when there is one
 * (Click's convention), otherwise counted as filtered and dropped. */
#include "filter_rules.h"
#include "dissect.h"

#include <arpa/inet.h>

struct filter_state {
    struct brk_filter_table *table;       /* NULL until attached: everything passes */
    uint64_t epoch;                       /* the reader's copy of table->reader_epoch */
    uint64_t *counters;                   /* the brick's stats.counters: enum brk_filter_counter */
};

static const char *const filter_counters[] = {
    "filtered", "passed", "expression_rejected", "rule_dropped", "rule_allowed", NULL
};

extern const struct brk_brick_kind brk_brick_filter;

static inline uint32_t read_be32(const uint8_t *bytes)
{
    uint32_t value;
    memcpy(&value, bytes, sizeof(value));
    return __builtin_bswap32(value);
}

/* The common case first: untagged IPv4 without options, a first (or only)
 * fragment of TCP or UDP, long enough to hold the ports. */
static inline __attribute__((always_inline)) int plain_ipv4_key(const uint8_t *data, uint32_t caplen,
                                                                struct filter_key *key)
{
    const uint8_t *ip = data + 14;
    uint16_t ethertype, fragment;
    /* Length first: nothing of a shorter packet may be read (a 1-byte frame
     * is as legal an input as any other). */
    if (BRK_UNLIKELY(caplen < 14 + 24))
        return 0;
    memcpy(&ethertype, data + 12, sizeof(ethertype));
    memcpy(&fragment, ip + 6, sizeof(fragment));
    /* Both as read from the wire, compared with network-order constants. */
    if (ethertype != htons(0x0800) || ip[0] != 0x45
            || (fragment & htons(0x1fff)) != 0 || (ip[9] != 6 && ip[9] != 17))
        return 0;
    key->word[0] = read_be32(ip + 12);
    key->word[1] = read_be32(ip + 16);
    key->word[2] = read_be32(ip + 20);
    key->word[3] = ip[9];
    return 1;
}

/* The packet's 5-tuple as a key of FILTER_IPV4 or FILTER_IPV6 layout, or -1
 * for what is not IP (or too short to say): filter_key.h's, which the XDP
 * program shares, after the common case inline. */
static inline int packet_key(const uint8_t *data, uint32_t caplen, struct filter_key *key)
{
    struct brk_flow_keys link;
    if (BRK_LIKELY(plain_ipv4_key(data, caplen, key)))
        return FILTER_IPV4;
    return filter_frame_key(data, data + caplen, &link, key);
}

/* Where a search in shape starts: the slot of key & mask; masked gets the
 * masked key. */
static inline __attribute__((always_inline)) const uint32_t *
first_slot(const struct filter_shape *shape, const struct filter_key *key, unsigned words, uint32_t *masked)
{
    for (unsigned w = 0; w < words; w++)
        masked[w] = key->word[w] & shape->mask.word[w];
    uint32_t slot = filter_hash(masked, words) & shape->slot_mask;
    return shape->slots + (size_t)slot * filter_slot_words(words);
}

/* Whether a slot's key equals masked: IPv4 keys as two 64-bit words. */
static inline __attribute__((always_inline)) int same_key(const uint32_t *slot_key, const uint32_t *masked,
                                                          unsigned words)
{
    if (words == FILTER_IPV4_KEY_WORDS) {
        uint64_t a[2], b[2];
        memcpy(a, slot_key, sizeof(a));
        memcpy(b, masked, sizeof(b));
        return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
    }
    return memcmp(slot_key, masked, words * sizeof(uint32_t)) == 0;
}

/* The rule of a matching slot if it is live. now is read lazily: only a rule
 * with a timeout needs the clock. */
static inline __attribute__((always_inline)) const struct filter_active_rule *
live_rule(const struct filter_rule_set *set, const uint32_t *entry, uint64_t *now)
{
    const struct filter_active_rule *rule = &set->rules[entry[0] - 1];
    if (!rule->expires_ns)
        return rule;
    if (!*now)
        *now = filter_coarse_now_ns();
    return *now < rule->expires_ns ? rule : NULL;   /* expired: the control thread prunes it */
}

/* The live rule of shape whose key is masked, searched from entry on. The
 * first slot is tried before the loop: at half load it settles most packets,
 * and the end of the table is only needed to wrap past a collision. */
static inline __attribute__((always_inline)) const struct filter_active_rule *
probe(const struct filter_rule_set *set, const struct filter_shape *shape, const uint32_t *entry,
      const uint32_t *masked, unsigned words, uint64_t *now)
{
    if (entry[0] == 0)
        return NULL;
    if (same_key(entry + 1, masked, words))
        return live_rule(set, entry, now);
    unsigned stride = filter_slot_words(words);
    const uint32_t *end = shape->slots + (size_t)(shape->slot_mask + 1) * stride;
    for (;;) {
        entry += stride;
        if (BRK_UNLIKELY(entry == end))
            entry = shape->slots;
        if (entry[0] == 0)
            return NULL;
        if (same_key(entry + 1, masked, words))
            return live_rule(set, entry, now);
    }
}

/* The most specific live rule of classifier matching key, or NULL. from
 * shape 'first' on (1: shape 0 was probed already). */
static inline __attribute__((always_inline)) const struct filter_active_rule *
lookup(const struct filter_rule_set *set, const struct filter_classifier *classifier,
       const struct filter_key *key, unsigned words, uint64_t *now, unsigned first)
{
    uint64_t candidates = UINT64_MAX << first;
    if (classifier->guard[0]) {
        unsigned dst_word = (words - 2) / 2;
        unsigned shift = classifier->guard_shift;
        candidates &= (classifier->guard[0][key->word[0] >> shift] | classifier->open[0])
                    & (classifier->guard[1][key->word[dst_word] >> shift] | classifier->open[1]);
    }
    for (unsigned s = first; s < classifier->shape_count; s++) {
        if (s < FILTER_GUARD_OVERFLOW) {
            if (!candidates)
                return NULL;
            unsigned next = (unsigned)__builtin_ctzll(candidates);
            if (next >= classifier->shape_count)
                return NULL;
            s = next;
            candidates &= candidates - 1;
        }
        const struct filter_shape *shape = &classifier->shapes[s];
        uint32_t masked[FILTER_KEY_WORDS];
        const struct filter_active_rule *rule = probe(set, shape, first_slot(shape, key, words, masked),
                                                      masked, words, now);
        if (rule)
            return rule;
    }
    return NULL;
}

/* Counts the decision on a packet a drop rule matched: allow wins. */
static inline int decide(struct filter_state *state, const struct filter_rule_set *set, int family,
                         const struct filter_active_rule *drop, const struct filter_key *key,
                         const struct brk_packet *packet, unsigned words, uint64_t *now)
{
    const struct filter_active_rule *allow = set->allow[family].shape_count
        ? lookup(set, &set->allow[family], key, words, now, 0) : NULL;
    const struct filter_active_rule *decider = allow ? allow : drop;
    decider->counter->hits++;
    decider->counter->bytes += packet->wirelen;
    if (allow) {
        state->counters[BRK_FILTER_RULE_ALLOWED]++;
        return 1;
    }
    state->counters[BRK_FILTER_RULE_DROPPED]++;
    return 0;
}

/* Whether the rules let a packet of family (or -1: not IP) with key pass:
 * the general path, out of line. */
static __attribute__((noinline)) int
rules_pass(struct filter_state *state, const struct filter_rule_set *set, int family,
           const struct filter_key *key, const struct brk_packet *packet)
{
    uint64_t now = 0;
    if (family < 0 || !set->drop[family].shape_count)
        return 1;
    unsigned words = filter_key_words(family);
    const struct filter_active_rule *drop = family == FILTER_IPV4
        ? lookup(set, &set->drop[FILTER_IPV4], key, FILTER_IPV4_KEY_WORDS, &now, 0)
        : lookup(set, &set->drop[FILTER_IPV6], key, FILTER_KEY_WORDS, &now, 0);
    return !drop || decide(state, set, family, drop, key, packet, words, &now);
}

static inline int expression_passes(struct filter_state *state, const struct brk_filter_table *table,
                                    const struct brk_packet *packet)
{
    if (table->has_program
            && !bpf_filter(table->program.bf_insns, packet->data, packet->wirelen, packet->caplen)) {
        state->counters[BRK_FILTER_EXPRESSION_REJECTED]++;
        return 0;
    }
    return 1;
}

static inline void deliver(struct brk_brick *brick, struct filter_state *state, const struct brk_packet *packet,
                           int pass)
{
    if (BRK_LIKELY(pass)) {
        state->counters[BRK_FILTER_PASSED]++;
        brk_output_push(brick, 0, packet);
    } else if (brick->outputs > 1) {
        brk_output_push(brick, 1, packet);
    } else {
        brick->stats.counters[BRK_FILTER_FILTERED]++;
    }
}

static void filter_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    struct filter_state *state = brick->state;
    struct brk_filter_table *table = state->table;
    int pass = 1;
    if (BRK_LIKELY(table != NULL)) {
        const struct filter_rule_set *set = filter_read_begin(table, &state->epoch);
        if (!expression_passes(state, table, packet)) {
            pass = 0;
        } else if (set->rule_count) {
            struct filter_key key;
            pass = rules_pass(state, set, packet_key(packet->data, packet->caplen, &key), &key, packet);
        }
        filter_read_end(table, &state->epoch);
    }
    deliver(brick, state, packet, pass);
}

/* The batch path, when the Filter reads a source itself: one rule set for the
 * whole batch, and the packets taken in groups. Each IPv4 packet of a group
 * is first parsed, and the slot of its key in the most specific drop shape
 * (the exact 5-tuples, for a broker shunting flows) prefetched; then the
 * group is matched, so that its table lines load in parallel rather than one
 * cache miss after another. Everything else takes the general path. */
#define FILTER_PREFETCH_GROUP 16

struct filter_pending {
    struct filter_key key;
    uint32_t masked[FILTER_IPV4_KEY_WORDS];   /* key & the mask of drop shape 0 */
    const uint32_t *start;                    /* NULL: the general path */
    int family;
};

static inline int pending_pass(struct filter_state *state, const struct filter_rule_set *set,
                               const struct filter_pending *pending, const struct brk_packet *packet)
{
    if (!pending->start)
        return rules_pass(state, set, pending->family, &pending->key, packet);
    const struct filter_classifier *drops = &set->drop[FILTER_IPV4];
    uint64_t now = 0;
    const struct filter_active_rule *drop = probe(set, &drops->shapes[0], pending->start, pending->masked,
                                                  FILTER_IPV4_KEY_WORDS, &now);
    if (BRK_UNLIKELY(!drop && drops->shape_count > 1))
        drop = lookup(set, drops, &pending->key, FILTER_IPV4_KEY_WORDS, &now, 1);
    if (BRK_LIKELY(!drop))
        return 1;
    return decide(state, set, FILTER_IPV4, drop, &pending->key, packet, FILTER_IPV4_KEY_WORDS, &now);
}

static void filter_push_batch(struct brk_brick *brick, const struct brk_packet *packets, unsigned count)
{
    struct filter_state *state = brick->state;
    struct brk_filter_table *table = state->table;
    if (BRK_UNLIKELY(table == NULL)) {
        for (unsigned i = 0; i < count; i++)
            deliver(brick, state, &packets[i], 1);
        return;
    }
    const struct filter_rule_set *set = filter_read_begin(table, &state->epoch);
    if (!set->rule_count) {
        for (unsigned i = 0; i < count; i++)
            deliver(brick, state, &packets[i], expression_passes(state, table, &packets[i]));
        filter_read_end(table, &state->epoch);
        return;
    }
    const struct filter_shape *exact = set->drop[FILTER_IPV4].shape_count ? &set->drop[FILTER_IPV4].shapes[0] : NULL;
    const int has_program = table->has_program;
    struct filter_pending pending[FILTER_PREFETCH_GROUP];
    for (unsigned base = 0; base < count; base += FILTER_PREFETCH_GROUP) {
        unsigned group = count - base < FILTER_PREFETCH_GROUP ? count - base : FILTER_PREFETCH_GROUP;
        for (unsigned j = 0; j < group; j++) {
            const struct brk_packet *packet = &packets[base + j];
            struct filter_pending *next = &pending[j];
            if (BRK_LIKELY(base + j + FILTER_PREFETCH_GROUP < count))
                __builtin_prefetch(packet[FILTER_PREFETCH_GROUP].data);
            next->family = packet_key(packet->data, packet->caplen, &next->key);
            next->start = NULL;
            if (next->family == FILTER_IPV4 && exact) {
                /* Masked even when the mask keeps every bit: hashing the key
                 * straight from memory loads 64 bits over two fresh 32-bit
                 * stores, a store-forwarding stall that cost ~10 ns/packet. */
                next->start = first_slot(exact, &next->key, FILTER_IPV4_KEY_WORDS, next->masked);
                __builtin_prefetch(next->start);
            }
        }
        for (unsigned j = 0; j < group; j++) {
            const struct brk_packet *packet = &packets[base + j];
            int pass = (!has_program || expression_passes(state, table, packet))
                       && pending_pass(state, set, &pending[j], packet);
            deliver(brick, state, packet, pass);
        }
    }
    filter_read_end(table, &state->epoch);
}

static int filter_init(struct brk_brick *brick, char *error, size_t error_size)
{
    ((struct filter_state *)brick->state)->counters = brick->stats.counters;
    return 0;
}

static void filter_fini(struct brk_brick *brick)
{
    struct filter_state *state = brick->state;
    if (state->table)
        __atomic_store_n(&state->table->attached, 0, __ATOMIC_RELEASE);
}

const struct brk_brick_kind brk_brick_filter = {
    .name = "Filter",
    .min_outputs = 1,
    .max_outputs = 2,
    .counters = filter_counters,
    .state_size = sizeof(struct filter_state),
    .init = filter_init,
    .push = filter_push,
    .push_batch = filter_push_batch,
    .fini = filter_fini,
};

int brk_filter_attach(brk_brick *brick, brk_filter_table *table, char *error, size_t error_size)
{
    struct filter_state *state = brick->state;
    if (brick->kind != &brk_brick_filter) {
        brk_fail(error, error_size, "a %s brick has no filter rules", brick->kind->name);
        return -1;
    }
    if (state->table == table)
        return 0;
    if (state->table || __atomic_exchange_n(&table->attached, 1, __ATOMIC_ACQ_REL)) {
        brk_fail(error, error_size, "this rule table already serves another Filter brick");
        return -1;
    }
    state->table = table;
    return 0;
}
