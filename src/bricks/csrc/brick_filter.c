/* Filter: a compiled tcpdump expression, then drop / allow rules (allow wins);
 * passed packets to output 0, rejected ones to output 1 when there is one
 * (Click's convention), otherwise counted as filtered and dropped. */
#include "filter_rules.h"

struct filter_state {
    struct brk_filter_table *table;       /* NULL until attached: everything passes */
    uint64_t epoch;                       /* the reader's copy of table->reader_epoch */
    struct brk_filter_stats stats;
};

extern const struct brk_brick_kind brk_brick_filter;

static inline uint32_t read_be32(const uint8_t *bytes)
{
    uint32_t value;
    memcpy(&value, bytes, sizeof(value));
    return __builtin_bswap32(value);
}

static inline int has_ports(unsigned protocol)
{
    return protocol == 6 || protocol == 17 || protocol == 132 || protocol == 136;
}

/* The packet's 5-tuple as a key of FILTER_IPV4 or FILTER_IPV6 layout, or -1
 * for what is not IP (or too short to say). Up to three VLAN tags are skipped;
 * ports are 0 in non-first fragments and for protocols without ports. */
static inline int packet_key(const uint8_t *data, uint32_t caplen, struct filter_key *key)
{
    uint32_t offset = 14;
    if (BRK_UNLIKELY(caplen < offset))
        return -1;
    unsigned type = (unsigned)data[12] << 8 | data[13];
    for (int tags = 0; tags < 3 && (type == 0x8100 || type == 0x88a8 || type == 0x9100); tags++) {
        if (caplen < offset + 4)
            return -1;
        type = (unsigned)data[offset + 2] << 8 | data[offset + 3];
        offset += 4;
    }
    if (BRK_LIKELY(type == 0x0800)) {
        const uint8_t *ip = data + offset;
        if (caplen < offset + 20 || (ip[0] >> 4) != 4 || (ip[0] & 15u) < 5)
            return -1;
        unsigned header_bytes = (ip[0] & 15u) * 4;
        unsigned protocol = ip[9];
        int first_fragment = ((ip[6] & 0x1fu) | ip[7]) == 0;
        key->word[0] = read_be32(ip + 12);
        key->word[1] = read_be32(ip + 16);
        key->word[2] = first_fragment && has_ports(protocol) && caplen >= offset + header_bytes + 4
                       ? read_be32(ip + header_bytes) : 0;
        key->word[3] = protocol;
        return FILTER_IPV4;
    }
    if (type == 0x86dd) {
        const uint8_t *ip = data + offset;
        if (caplen < offset + 40 || (ip[0] >> 4) != 6)
            return -1;
        for (int w = 0; w < 8; w++)
            key->word[w] = read_be32(ip + 8 + 4 * w);
        unsigned next = ip[6];
        uint32_t at = offset + 40;
        int first_fragment = 1;
        for (int headers = 0; headers < 8; headers++) {
            if (next != 0 && next != 43 && next != 44 && next != 51 && next != 60)
                break;
            if (caplen < at + 8)
                return -1;
            const uint8_t *extension = data + at;
            if (next == 44)
                first_fragment = ((unsigned)extension[2] << 8 | (extension[3] & 0xf8u)) == 0;
            at += next == 44 ? 8 : next == 51 ? (extension[1] + 2u) * 4 : (extension[1] + 1u) * 8;
            next = extension[0];
        }
        key->word[8] = first_fragment && has_ports(next) && caplen >= at + 4 ? read_be32(data + at) : 0;
        key->word[9] = next;
        return FILTER_IPV6;
    }
    return -1;
}

/* The most specific live rule of classifier matching key, or NULL. now is
 * read lazily: only a rule with a timeout needs the clock. */
static inline __attribute__((always_inline)) const struct filter_active_rule *
lookup(const struct filter_rule_set *set, const struct filter_classifier *classifier,
       const struct filter_key *key, unsigned words, uint64_t *now)
{
    uint64_t candidates = UINT64_MAX;
    if (classifier->guard[0]) {
        unsigned dst_word = (words - 2) / 2;
        candidates = (classifier->guard[0][key->word[0] >> 16] | classifier->open[0])
                   & (classifier->guard[1][key->word[dst_word] >> 16] | classifier->open[1]);
    }
    for (unsigned s = 0; s < classifier->shape_count; s++) {
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
        for (unsigned w = 0; w < words; w++)
            masked[w] = key->word[w] & shape->mask.word[w];
        uint32_t slot = filter_hash(masked, words) & shape->slot_mask;
        for (;;) {
            const uint32_t *entry = shape->slots + (size_t)slot * (words + 1);
            if (entry[0] == 0)
                break;
            if (memcmp(entry + 1, masked, words * sizeof(uint32_t)) == 0) {
                const struct filter_active_rule *rule = &set->rules[entry[0] - 1];
                if (!rule->expires_ns)
                    return rule;
                if (!*now)
                    *now = filter_coarse_now_ns();
                if (*now < rule->expires_ns)
                    return rule;
                break;   /* expired: the control thread will prune it */
            }
            slot = (slot + 1) & shape->slot_mask;
        }
    }
    return NULL;
}

static inline __attribute__((always_inline)) int
rules_pass_family(struct filter_state *state, const struct filter_rule_set *set, int family,
                  const struct filter_key *key, const struct brk_packet *packet, unsigned words)
{
    uint64_t now = 0;
    const struct filter_active_rule *drop = lookup(set, &set->drop[family], key, words, &now);
    if (BRK_LIKELY(!drop))
        return 1;
    const struct filter_active_rule *allow = set->allow[family].shape_count
        ? lookup(set, &set->allow[family], key, words, &now) : NULL;
    const struct filter_active_rule *decider = allow ? allow : drop;
    decider->counter->hits++;
    decider->counter->bytes += packet->wirelen;
    if (allow) {
        state->stats.rule_allowed++;
        return 1;
    }
    state->stats.rule_dropped++;
    return 0;
}

static inline int rules_pass(struct filter_state *state, const struct filter_rule_set *set,
                             const struct brk_packet *packet)
{
    struct filter_key key;
    int family = packet_key(packet->data, packet->caplen, &key);
    if (family < 0 || !set->drop[family].shape_count)
        return 1;
    if (family == FILTER_IPV4)
        return rules_pass_family(state, set, FILTER_IPV4, &key, packet, FILTER_IPV4_KEY_WORDS);
    return rules_pass_family(state, set, FILTER_IPV6, &key, packet, FILTER_KEY_WORDS);
}

static void filter_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    struct filter_state *state = brick->state;
    struct brk_filter_table *table = state->table;
    int pass = 1;
    if (BRK_LIKELY(table != NULL)) {
        const struct filter_rule_set *set = filter_read_begin(table, &state->epoch);
        if (table->has_program
                && !bpf_filter(table->program.bf_insns, packet->data, packet->wirelen, packet->caplen)) {
            state->stats.expression_rejected++;
            pass = 0;
        } else if (set->rule_count) {
            pass = rules_pass(state, set, packet);
        }
        filter_read_end(table, &state->epoch);
    }
    if (BRK_LIKELY(pass)) {
        state->stats.passed++;
        brk_output_push(brick, 0, packet);
    } else if (brick->outputs > 1) {
        brk_output_push(brick, 1, packet);
    } else {
        brick->stats.filtered++;
    }
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
    .state_size = sizeof(struct filter_state),
    .push = filter_push,
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

void brk_filter_stats(const brk_brick *brick, struct brk_filter_stats *out)
{
    const struct filter_state *state = brick->state;
    memset(out, 0, sizeof(*out));
    if (brick->kind != &brk_brick_filter)
        return;
    out->passed = __atomic_load_n(&state->stats.passed, __ATOMIC_RELAXED);
    out->expression_rejected = __atomic_load_n(&state->stats.expression_rejected, __ATOMIC_RELAXED);
    out->rule_dropped = __atomic_load_n(&state->stats.rule_dropped, __ATOMIC_RELAXED);
    out->rule_allowed = __atomic_load_n(&state->stats.rule_allowed, __ATOMIC_RELAXED);
}
