/* The Filter brick: a tcpdump expression (compiled once) and runtime drop /
 * allow rules, kept in a table that outlives the C brick (stop, start, relink). */

typedef struct brk_filter_table brk_filter_table;

enum brk_filter_action {
    BRK_FILTER_DROP = 0,
    BRK_FILTER_ALLOW = 1
};

/* A rule without any address applies to both families. */
enum brk_filter_family {
    BRK_FILTER_ANY_FAMILY = 0,
    BRK_FILTER_IPV4 = 4,
    BRK_FILTER_IPV6 = 6
};

enum brk_filter_rule_flags {
    BRK_FILTER_MATCH_SPORT = 1,
    BRK_FILTER_MATCH_DPORT = 2,
    BRK_FILTER_MATCH_PROTOCOL = 4,
    BRK_FILTER_BIDIRECTIONAL = 8
};

/* One rule as Python validated it; C never parses strings. */
struct brk_filter_rule {
    uint64_t id;                 /* chosen by the caller, unique in the table */
    int action;                  /* enum brk_filter_action */
    int family;                  /* enum brk_filter_family */
    uint8_t src[16];             /* network order; IPv4 in the first 4 bytes */
    uint8_t dst[16];
    unsigned src_prefix;         /* bits of src that must match; 0 = any source */
    unsigned dst_prefix;
    uint16_t sport;
    uint16_t dport;
    uint8_t protocol;            /* for IPv4 packets */
    uint8_t protocol6;           /* for IPv6 packets (differs for ICMP: 1 / 58) */
    unsigned flags;              /* enum brk_filter_rule_flags */
    uint64_t timeout_ns;         /* from now; 0 = forever */
};

/* A live rule's counters: hits = packets this rule decided (a drop it made,
 * or a drop an allow overrode). */
struct brk_filter_rule_state {
    uint64_t id;
    uint64_t hits;
    uint64_t bytes;
    int64_t remaining_ns;        /* -1 = forever */
};

/* The Filter's counters, in brk_brick_stats.counters (published with every
 * other counter under the brick's sequence lock). */
enum brk_filter_counter {
    BRK_FILTER_FILTERED = 0,             /* dropped on purpose (no reject output) */
    BRK_FILTER_PASSED = 1,
    BRK_FILTER_EXPRESSION_REJECTED = 2,
    BRK_FILTER_RULE_DROPPED = 3,
    BRK_FILTER_RULE_ALLOWED = 4          /* a drop rule matched, an allow rule overrode it */
};

/* expression: tcpdump syntax, or NULL / "" for none. NULL with a one-line
 * message quoting libpcap when it does not compile. */
brk_filter_table *brk_filter_table_new(const char *expression, char *error, size_t error_size);
void brk_filter_table_free(brk_filter_table *table);
/* brick must be a Filter brick; a table serves one brick at a time, until
 * that brick is freed. */
int brk_filter_attach(brk_brick *brick, brk_filter_table *table, char *error, size_t error_size);
/* All or nothing; published atomically, as one new rule set. */
int brk_filter_add(brk_filter_table *table, const struct brk_filter_rule *rules, unsigned count,
                   char *error, size_t error_size);
/* 0, or -1 when no live rule has this id. */
int brk_filter_remove(brk_filter_table *table, uint64_t id);
void brk_filter_clear(brk_filter_table *table);
/* Drops expired rules, then fills up to max states in insertion order;
 * returns the number of live rules (call again with more room if larger). */
unsigned brk_filter_list(brk_filter_table *table, struct brk_filter_rule_state *out, unsigned max);
/* How many rule sets were published so far (tests: updates are atomic). */
uint64_t brk_filter_publications(brk_filter_table *table);
