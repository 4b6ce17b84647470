/* libFuzzer harness: the Filter brick (brick_filter.c, filter_rules.c) with
 * a tcpdump expression compiled by libpcap and drop / allow rules.
 *
 * Built twice: fuzz_filter_rules (FUZZ_FILTER_RULES_FROM_INPUT) builds the
 * rule table from each input, which costs a rule-set publication per change
 * (up to ~30 per table: the batch, one by one after a refusal, each removal)
 * and so runs ~4,500 inputs per CPU second; fuzz_filter keeps fixed tables (exact 5-tuples, prefixes of many
 * lengths so that the guard is used, IPv6, bidirectional rules, allow rules
 * overriding drops) and fuzzes the packets only.
 *
 * Input: an option byte (expression, one or two outputs), then for
 * fuzz_filter_rules a rule count and four bytes per rule, then frames
 * (fuzz_common.h). Rules take their addresses, ports and protocol from one
 * of the frames, so that they match often, and
 * the fuzzer picks prefixes (invalid ones too: they must be refused), flags
 * and which rules are removed again. The same frames go through two Filters
 * with identical tables: one packet by packet (push), one as a batch
 * (push_batch, the prefetching path). Checks, besides memory safety:
 *  - both paths send the same packets to the same outputs in the same order
 *    and count the same;
 *  - the decisions are those of a plain reference written from the rules'
 *    documented meaning (filter.h, SPEC): every packet passing the expression
 *    (bpf_filter on the same program text) passes unless a live drop rule
 *    matches it and no live allow rule does; a rule matches its family (or
 *    both), by address prefixes, ports and protocol when asked, both ways
 *    when bidirectional;
 *  - every packet is accounted for: passed + expression rejected + rule
 *    dropped = received, output 0 got the passed ones, output 1 (or the
 *    filtered counter) the others;
 *  - the rule list holds exactly the rules added and not removed. */
#include "fuzz_common.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>

#define FUZZ_MAX_RULES 16

static const char *const expressions[] = {
    "",
    "tcp",
    "udp port 53 or tcp port 80",
    "ip6",
    "vlan and tcp",
    "net 10.0.0.0/8 or ip6 net 2001:db8::/32",
    "tcp[tcpflags] & tcp-syn != 0",
    "ip[6:2] & 0x1fff != 0 or ip6[6] = 44",
};

static const struct brk_brick_kind *filter_kind;

/* Fills the rule's addresses, ports and protocol from frame (untagged IPv4
 * or IPv6 at their usual offsets; other frames give whatever bytes are there). */
static __attribute__((unused)) void rule_from_frame(struct brk_filter_rule *rule, const uint8_t *frame, uint32_t length)
{
    uint8_t bytes[58] = { 0 };
    memcpy(bytes, frame, length < sizeof(bytes) ? length : sizeof(bytes));
    if (bytes[12] == 0x86 && bytes[13] == 0xdd) {
        rule->family = BRK_FILTER_IPV6;
        memcpy(rule->src, bytes + 22, 16);
        memcpy(rule->dst, bytes + 38, 16);
        rule->protocol6 = bytes[20];
        rule->protocol = rule->protocol6 == 58 ? 1 : rule->protocol6;
        rule->sport = (uint16_t)(bytes[54] << 8 | bytes[55]);
        rule->dport = (uint16_t)(bytes[56] << 8 | bytes[57]);
    } else {
        rule->family = BRK_FILTER_IPV4;
        memcpy(rule->src, bytes + 26, 4);
        memcpy(rule->dst, bytes + 30, 4);
        rule->protocol = bytes[23];
        rule->protocol6 = rule->protocol == 1 ? 58 : rule->protocol;
        rule->sport = (uint16_t)(bytes[34] << 8 | bytes[35]);
        rule->dport = (uint16_t)(bytes[36] << 8 | bytes[37]);
    }
}

/* ------------------------------------------------------------ the reference */

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

struct reference_key {
    int family;                 /* BRK_FILTER_IPV4 or BRK_FILTER_IPV6 */
    uint8_t src[16], dst[16];
    unsigned sport, dport, protocol;
};

static int reference_has_ports(unsigned protocol)
{
    return protocol == 6 || protocol == 17 || protocol == 132 || protocol == 136;
}

/* The packet's 5-tuple as the Filter documents it (the one dissector's
 * reading, dissect.h), or 0 for what is not IP (or too short to say): up to
 * four VLAN/QinQ tags skipped; the outer IP header; IPv6 extension headers
 * (hop-by-hop, routing, fragment, AH, destination options, mobility, HIP,
 * shim6) walked, at most 8, each whole up to its length byte (a fragment
 * header: 8 bytes), the upper layer starting within the frame and below 32
 * KiB; a later fragment ends the walk; ports 0 in non-first fragments and for
 * protocols without ports. */
static int reference_key(const uint8_t *data, uint32_t caplen, struct reference_key *key)
{
    if (caplen < 14)
        return 0;
    uint32_t offset = 14;
    unsigned type = be16(data + 12);
    for (int tags = 0; type == 0x8100 || type == 0x88a8 || type == 0x9100; tags++) {
        if (tags == 4 || caplen < offset + 4)
            return 0;
        type = be16(data + offset + 2);
        offset += 4;
    }
    const uint8_t *ip = data + offset;
    memset(key, 0, sizeof(*key));
    if (type == 0x0800) {
        if (caplen < offset + 20 || ip[0] >> 4 != 4 || (ip[0] & 15) < 5)
            return 0;
        uint32_t upper = offset + (ip[0] & 15u) * 4;
        key->family = BRK_FILTER_IPV4;
        memcpy(key->src, ip + 12, 4);
        memcpy(key->dst, ip + 16, 4);
        key->protocol = ip[9];
        if ((be16(ip + 6) & 0x1fff) == 0 && reference_has_ports(key->protocol) && caplen >= upper + 4) {
            key->sport = be16(data + upper);
            key->dport = be16(data + upper + 2);
        }
        return 1;
    }
    if (type != 0x86dd || caplen < offset + 40 || ip[0] >> 4 != 6)
        return 0;
    key->family = BRK_FILTER_IPV6;
    memcpy(key->src, ip + 8, 16);
    memcpy(key->dst, ip + 24, 16);
    unsigned next = ip[6];
    uint32_t at = offset + 40;
    for (int headers = 0;; headers++) {
        if (headers == 8 || at > 0x7fff)
            return 0;
        const uint8_t *extension = data + at;
        uint32_t size;
        if (next == 0 || next == 43 || next == 60 || next == 135 || next == 139 || next == 140 || next == 51) {
            if (caplen < at + 2)
                return 0;
            size = next == 51 ? (extension[1] + 2u) * 4 : (extension[1] + 1u) * 8;
        } else if (next == 44) {
            if (caplen < at + 8)
                return 0;
            if (be16(extension + 2) & 0xfff8) {
                key->protocol = extension[0];   /* a later fragment: payload follows, no ports */
                return 1;
            }
            size = 8;
        } else {
            if (at > caplen)
                return 0;
            key->protocol = next;
            if (reference_has_ports(next) && caplen >= at + 4) {
                key->sport = be16(data + at);
                key->dport = be16(data + at + 2);
            }
            return 1;
        }
        next = extension[0];
        at += size;
    }
}

static int prefix_matches(const uint8_t *rule_address, const uint8_t *address, unsigned prefix)
{
    for (unsigned bit = 0; bit < prefix; bit++) {
        unsigned mask = 0x80u >> (bit % 8);
        if ((rule_address[bit / 8] & mask) != (address[bit / 8] & mask))
            return 0;
    }
    return 1;
}

static int rule_matches_one_way(const struct brk_filter_rule *rule, const struct reference_key *key, int reverse)
{
    const uint8_t *src = reverse ? key->dst : key->src, *dst = reverse ? key->src : key->dst;
    unsigned sport = reverse ? key->dport : key->sport, dport = reverse ? key->sport : key->dport;
    unsigned protocol = key->family == BRK_FILTER_IPV4 ? rule->protocol : rule->protocol6;
    return prefix_matches(rule->src, src, rule->src_prefix) && prefix_matches(rule->dst, dst, rule->dst_prefix)
        && (!(rule->flags & BRK_FILTER_MATCH_SPORT) || rule->sport == sport)
        && (!(rule->flags & BRK_FILTER_MATCH_DPORT) || rule->dport == dport)
        && (!(rule->flags & BRK_FILTER_MATCH_PROTOCOL) || protocol == key->protocol);
}

static int rule_matches(const struct brk_filter_rule *rule, const struct reference_key *key)
{
    if (rule->family != BRK_FILTER_ANY_FAMILY && rule->family != key->family)
        return 0;
    return rule_matches_one_way(rule, key, 0)
        || ((rule->flags & BRK_FILTER_BIDIRECTIONAL) && rule_matches_one_way(rule, key, 1));
}

/* The rules a table holds, as the reference reads them. */
struct reference_rules {
    unsigned count;
    struct brk_filter_rule rule[16];
    int live[16];
};

static int reference_passes(const struct reference_rules *rules, const struct bpf_program *program,
                            const struct brk_packet *packet)
{
    if (program && !bpf_filter(program->bf_insns, packet->data, packet->wirelen, packet->caplen))
        return 0;
    struct reference_key key;
    if (!reference_key(packet->data, packet->caplen, &key))
        return 1;
    int dropped = 0, allowed = 0;
    for (unsigned i = 0; i < rules->count; i++) {
        if (!rules->live[i] || !rule_matches(&rules->rule[i], &key))
            continue;
        if (rules->rule[i].action == BRK_FILTER_DROP)
            dropped = 1;
        else
            allowed = 1;
    }
    return !dropped || allowed;
}

/* The expressions compiled as the Filter compiles them, for the reference. */
static struct bpf_program *expression_program(unsigned index)
{
    static struct bpf_program programs[8];
    static int compiled[8];
    if (!*expressions[index])
        return NULL;
    if (!compiled[index]) {
        pcap_t *compiler = pcap_open_dead(DLT_EN10MB, 262144);
        FUZZ_CHECK(compiler != NULL);
        FUZZ_CHECK(pcap_compile(compiler, &programs[index], expressions[index], 1, PCAP_NETMASK_UNKNOWN) == 0);
        pcap_close(compiler);
        compiled[index] = 1;
    }
    return &programs[index];
}

/* ------------------------------------------------------------ the Filters under test */

struct filter_under_test {
    brk_filter_table *table;
    struct brk_brick *brick;
    struct fuzz_sink *outputs[2];
    unsigned output_count;
};

static void filter_setup(struct filter_under_test *filter, const char *expression, unsigned outputs,
                         const struct brk_filter_rule *rules, unsigned rule_count, const int *remove,
                         struct reference_rules *reference)
{
    char error[512];
    filter->table = brk_filter_table_new(expression, error, sizeof(error));
    FUZZ_CHECK(filter->table != NULL);
    filter->brick = brk_brick_new(filter_kind, NULL, error, sizeof(error));   /* a Filter takes no config */
    FUZZ_CHECK(filter->brick != NULL);
    filter->output_count = outputs;
    for (unsigned i = 0; i < outputs; i++) {
        filter->outputs[i] = fuzz_sink_new(0);
        FUZZ_CHECK(brk_brick_add_sink(filter->brick, &filter->outputs[i]->base) == 0);
    }
    FUZZ_CHECK(brk_filter_attach(filter->brick, filter->table, error, sizeof(error)) == 0);
    /* All at once; if one is refused nothing is added, so then one by one. */
    reference->count = rule_count;
    memcpy(reference->rule, rules, rule_count * sizeof(*rules));
    unsigned live = 0;
    if (brk_filter_add(filter->table, rules, rule_count, error, sizeof(error)) == 0) {
        for (unsigned i = 0; i < rule_count; i++)
            reference->live[i] = 1;
        live = rule_count;
    } else {
        FUZZ_CHECK(brk_filter_list(filter->table, NULL, 0) == 0);
        for (unsigned i = 0; i < rule_count; i++) {
            reference->live[i] = brk_filter_add(filter->table, &rules[i], 1, error, sizeof(error)) == 0;
            live += reference->live[i];
        }
    }
    for (unsigned i = 0; i < rule_count; i++) {
        if (remove && remove[i]) {
            int removed = brk_filter_remove(filter->table, rules[i].id) == 0;
            FUZZ_CHECK(removed == reference->live[i]);
            reference->live[i] = 0;
            live -= removed;
        }
    }
    FUZZ_CHECK(brk_filter_list(filter->table, NULL, 0) == live);
}

static __attribute__((unused)) void filter_teardown(struct filter_under_test *filter)
{
    brk_brick_free(filter->brick);
    brk_filter_table_free(filter->table);
    for (unsigned i = 0; i < filter->output_count; i++)
        brk_sink_close(&filter->outputs[i]->base);
}

static void check_same_records(const struct fuzz_sink *a, const struct fuzz_sink *b)
{
    FUZZ_CHECK(a->accepted == b->accepted);
    FUZZ_CHECK(a->recorded == b->recorded);
    FUZZ_CHECK(memcmp(a->record, b->record, a->recorded * sizeof(a->record[0])) == 0);
}

/* What one Filter counted, as a difference from before the input. */
struct filter_counts {
    struct {
        uint64_t passed, expression_rejected, rule_dropped, rule_allowed;
    } stats;
    uint64_t filtered;
};

static struct filter_counts filter_counts(const struct filter_under_test *filter)
{
    struct filter_counts counts;
    const uint64_t *counters = filter->brick->stats.counters;   /* the kind's own: enum brk_filter_counter */
    counts.stats.passed = counters[BRK_FILTER_PASSED];
    counts.stats.expression_rejected = counters[BRK_FILTER_EXPRESSION_REJECTED];
    counts.stats.rule_dropped = counters[BRK_FILTER_RULE_DROPPED];
    counts.stats.rule_allowed = counters[BRK_FILTER_RULE_ALLOWED];
    counts.filtered = counters[BRK_FILTER_FILTERED];
    return counts;
}

static struct filter_counts counts_since(struct filter_counts after, const struct filter_counts *before)
{
    after.stats.passed -= before->stats.passed;
    after.stats.expression_rejected -= before->stats.expression_rejected;
    after.stats.rule_dropped -= before->stats.rule_dropped;
    after.stats.rule_allowed -= before->stats.rule_allowed;
    after.filtered -= before->filtered;
    return after;
}

/* Feeds frames to both Filters (one per packet, one as a batch) and checks
 * that they agree and that every packet is accounted for. */
static void run_and_check(struct filter_under_test *single, struct filter_under_test *batched,
                          const struct fuzz_frames *frames, const struct reference_rules *reference,
                          const struct bpf_program *program)
{
    struct filter_counts single_before = filter_counts(single), batched_before = filter_counts(batched);
    for (unsigned i = 0; i < single->output_count; i++) {
        single->outputs[i]->accepted = single->outputs[i]->recorded = 0;
        batched->outputs[i]->accepted = batched->outputs[i]->recorded = 0;
    }
    struct brk_packet packets[FUZZ_MAX_FRAMES];
    for (unsigned i = 0; i < frames->count; i++) {
        packets[i] = fuzz_packet(frames, i);
        single->brick->stats.received_packets++;
        filter_kind->push(single->brick, &packets[i]);
    }
    batched->brick->stats.received_packets += frames->count;
    if (frames->count)
        filter_kind->push_batch(batched->brick, packets, frames->count);

    struct filter_counts counts = counts_since(filter_counts(single), &single_before);
    struct filter_counts batched_counts = counts_since(filter_counts(batched), &batched_before);
    FUZZ_CHECK(memcmp(&counts, &batched_counts, sizeof(counts)) == 0);
    for (unsigned i = 0; i < single->output_count; i++)
        check_same_records(single->outputs[i], batched->outputs[i]);
    uint64_t rejected = counts.stats.expression_rejected + counts.stats.rule_dropped;
    FUZZ_CHECK(counts.stats.passed + rejected == frames->count);
    FUZZ_CHECK(counts.stats.rule_allowed <= counts.stats.passed);
    FUZZ_CHECK(single->outputs[0]->accepted == counts.stats.passed);
    if (single->output_count == 2)
        FUZZ_CHECK(single->outputs[1]->accepted == rejected && counts.filtered == 0);
    else
        FUZZ_CHECK(counts.filtered == rejected);
    if (!program)
        FUZZ_CHECK(counts.stats.expression_rejected == 0);
    /* Packet by packet, the reference's decision: passed ones in order on output 0. */
    unsigned passed = 0, rejected_seen = 0;
    for (unsigned i = 0; i < frames->count; i++) {
        if (reference_passes(reference, program, &packets[i])) {
            FUZZ_CHECK(passed < single->outputs[0]->recorded);
            FUZZ_CHECK(single->outputs[0]->record[passed++] == packets[i].data);
        } else if (single->output_count == 2) {
            FUZZ_CHECK(single->outputs[1]->record[rejected_seen++] == packets[i].data);
        }
    }
    FUZZ_CHECK(passed == single->outputs[0]->recorded);
}

#define EXPRESSIONS (sizeof(expressions) / sizeof(expressions[0]))

#ifndef FUZZ_FILTER_RULES_FROM_INPUT

static struct brk_filter_rule ipv4_rule(uint64_t id, int action, const char *src, unsigned src_prefix,
                                        const char *dst, unsigned dst_prefix)
{
    struct brk_filter_rule rule = { .id = id, .action = action, .family = BRK_FILTER_IPV4,
                                    .src_prefix = src_prefix, .dst_prefix = dst_prefix };
    FUZZ_CHECK(inet_pton(AF_INET, src, rule.src) == 1 && inet_pton(AF_INET, dst, rule.dst) == 1);
    return rule;
}

static struct brk_filter_rule ipv6_rule(uint64_t id, int action, const char *src, unsigned src_prefix,
                                        const char *dst, unsigned dst_prefix)
{
    struct brk_filter_rule rule = { .id = id, .action = action, .family = BRK_FILTER_IPV6,
                                    .src_prefix = src_prefix, .dst_prefix = dst_prefix };
    FUZZ_CHECK(inet_pton(AF_INET6, src, rule.src) == 1 && inet_pton(AF_INET6, dst, rule.dst) == 1);
    return rule;
}

static unsigned fixed_rules(struct brk_filter_rule *rules)
{
    unsigned n = 0;
    /* Exact 5-tuples of the seed flows (tests/fuzz/make_seeds.py). */
    rules[n] = ipv4_rule(n + 1, BRK_FILTER_DROP, "10.0.0.1", 32, "10.0.0.2", 32);
    rules[n].sport = 1234, rules[n].dport = 80, rules[n].protocol = rules[n].protocol6 = 6;
    rules[n].flags = BRK_FILTER_MATCH_SPORT | BRK_FILTER_MATCH_DPORT | BRK_FILTER_MATCH_PROTOCOL;
    n++;
    rules[n] = ipv4_rule(n + 1, BRK_FILTER_DROP, "10.0.0.3", 32, "10.0.0.4", 32);
    rules[n].sport = 5353, rules[n].dport = 53, rules[n].protocol = rules[n].protocol6 = 17;
    rules[n].flags = BRK_FILTER_MATCH_SPORT | BRK_FILTER_MATCH_DPORT | BRK_FILTER_MATCH_PROTOCOL
                     | BRK_FILTER_BIDIRECTIONAL;
    n++;
    /* Prefixes of several lengths: more than FILTER_GUARD_MIN_SHAPES shapes. */
    rules[n] = ipv4_rule(n + 1, BRK_FILTER_DROP, "10.0.0.0", 8, "0.0.0.0", 0);
    rules[n].protocol = rules[n].protocol6 = 17, rules[n].flags = BRK_FILTER_MATCH_PROTOCOL;
    n++;
    rules[n] = ipv4_rule(n + 1, BRK_FILTER_DROP, "0.0.0.0", 0, "192.168.0.0", 24);
    n++;
    rules[n] = ipv4_rule(n + 1, BRK_FILTER_DROP, "172.16.0.0", 12, "0.0.0.0", 0);
    rules[n].flags = BRK_FILTER_BIDIRECTIONAL;
    n++;
    rules[n] = ipv4_rule(n + 1, BRK_FILTER_ALLOW, "10.1.0.0", 16, "0.0.0.0", 0);
    n++;
    rules[n] = ipv6_rule(n + 1, BRK_FILTER_DROP, "2001:db8::", 32, "::", 0);
    n++;
    rules[n] = ipv6_rule(n + 1, BRK_FILTER_DROP, "2001:db8::1", 128, "2001:db8::2", 128);
    rules[n].sport = 1234, rules[n].dport = 80, rules[n].protocol = 6, rules[n].protocol6 = 6;
    rules[n].flags = BRK_FILTER_MATCH_SPORT | BRK_FILTER_MATCH_DPORT | BRK_FILTER_BIDIRECTIONAL;
    n++;
    rules[n] = ipv6_rule(n + 1, BRK_FILTER_ALLOW, "2001:db8::1", 128, "::", 0);
    rules[n].dport = 443, rules[n].flags = BRK_FILTER_MATCH_DPORT;
    n++;
    /* Both families: ICMP and ICMPv6. */
    rules[n] = (struct brk_filter_rule){ .id = n + 1, .action = BRK_FILTER_DROP, .protocol = 1,
                                         .protocol6 = 58, .flags = BRK_FILTER_MATCH_PROTOCOL };
    n++;
    return n;
}

/* [expression][outputs - 1]: a per-packet and a batch Filter, kept for the whole run. */
static struct filter_under_test fixed[EXPRESSIONS][2][2];
static struct reference_rules fixed_reference;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!filter_kind) {
        struct brk_filter_rule rules[16];
        unsigned count = fixed_rules(rules);
        FUZZ_CHECK((filter_kind = brk_brick_kind_find("Filter")) != NULL);
        for (unsigned e = 0; e < EXPRESSIONS; e++)
            for (unsigned outputs = 1; outputs <= 2; outputs++)
                for (unsigned path = 0; path < 2; path++)
                    filter_setup(&fixed[e][outputs - 1][path], expressions[e], outputs, rules, count, NULL,
                                 &fixed_reference);
    }
    struct fuzz_input input = { data, size };
    uint8_t options = fuzz_byte(&input);
    unsigned expression = options % EXPRESSIONS;
    unsigned outputs = options & 0x80 ? 2 : 1;
    struct fuzz_frames frames;
    fuzz_frames_take(&input, &frames);
    struct filter_under_test *pair = fixed[expression][outputs - 1];
    run_and_check(&pair[0], &pair[1], &frames, &fixed_reference, expression_program(expression));
    fuzz_frames_free(&frames);
    return 0;
}

#else

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!filter_kind)
        FUZZ_CHECK((filter_kind = brk_brick_kind_find("Filter")) != NULL);
    struct fuzz_input input = { data, size };
    uint8_t options = fuzz_byte(&input);
    unsigned expression = options % EXPRESSIONS;
    unsigned outputs = options & 0x80 ? 2 : 1;
    unsigned rule_count = fuzz_byte(&input) % (FUZZ_MAX_RULES + 1);
    uint8_t rule_bytes[FUZZ_MAX_RULES][4];
    for (unsigned i = 0; i < rule_count; i++)
        for (unsigned j = 0; j < 4; j++)
            rule_bytes[i][j] = fuzz_byte(&input);
    struct fuzz_frames frames;
    fuzz_frames_take(&input, &frames);

    struct brk_filter_rule rules[FUZZ_MAX_RULES];
    int remove[FUZZ_MAX_RULES];
    memset(rules, 0, sizeof(rules));
    for (unsigned i = 0; i < rule_count; i++) {
        uint8_t control = rule_bytes[i][0];
        struct brk_filter_rule *rule = &rules[i];
        rule->id = i + 1;
        rule->action = control & 1 ? BRK_FILTER_ALLOW : BRK_FILTER_DROP;
        if (frames.count) {
            unsigned source = rule_bytes[i][1] % frames.count;
            rule_from_frame(rule, frames.data[source], frames.length[source]);
        }
        unsigned bits = rule->family == BRK_FILTER_IPV6 ? 128 : 32;
        if (control & 2) {
            rule->family = BRK_FILTER_ANY_FAMILY;   /* then only prefixes of 0 are valid */
            bits = 0;
        }
        /* Up to one past the longest valid prefix: that one must be refused. */
        rule->src_prefix = rule_bytes[i][2] % (bits + 2);
        rule->dst_prefix = rule_bytes[i][3] % (bits + 2);
        rule->flags = (control >> 2) & 15;
        rule->timeout_ns = control & 0x40 ? 3600ull * 1000000000ull : 0;   /* never expires during a run */
        remove[i] = (control & 0x80) != 0;
    }

    struct filter_under_test single = { 0 }, batched = { 0 };
    struct reference_rules reference, batched_reference;
    filter_setup(&single, expressions[expression], outputs, rules, rule_count, remove, &reference);
    filter_setup(&batched, expressions[expression], outputs, rules, rule_count, remove, &batched_reference);
    run_and_check(&single, &batched, &frames, &reference, expression_program(expression));
    filter_teardown(&single);
    filter_teardown(&batched);
    fuzz_frames_free(&frames);
    return 0;
}

#endif
