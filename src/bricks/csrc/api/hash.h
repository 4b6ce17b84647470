/* Flow hash: the original's symmetric Toeplitz hash for a brick linked to the
 * engine, a decorrelated symmetric hash deeper in a chain, and the fragment
 * table that keeps every fragment of a datagram with its first one. */

typedef struct brk_frag_table brk_frag_table;

/* Bits of *flags set by brk_flow_hash: why a packet took a fallback path. */
enum brk_hash_flag {
    BRK_HASH_NON_IP        = 1,   /* hashed on the Ethernet addresses */
    BRK_HASH_TRUNCATED     = 2,   /* a header was cut short: hashed on what was there */
    BRK_HASH_FRAGMENT      = 4,   /* an IP fragment */
    BRK_HASH_FRAG_FALLBACK = 8    /* non-first fragment seen before its first: address pair */
};

/* The original's hash of one IPv4 4-tuple, all in host order, no port
 * adjustment: the 96-bit string sip|dip|sp|dp against key 0x506d repeated. */
uint32_t brk_toeplitz_ipv4(uint32_t sip, uint32_t dip, uint16_t sp, uint16_t dp);

/* Hash of one Ethernet frame for a LoadBalancer with the given split (2 or 4)
 * at the given depth (0 = linked to the engine). Reads at most caplen bytes.
 * frags may be NULL (fragments then hash on their address pair). */
uint32_t brk_flow_hash(const uint8_t *frame, uint32_t caplen, int split,
                       unsigned depth, brk_frag_table *frags, uint32_t *flags);

brk_frag_table *brk_frag_table_new(unsigned slots);
void brk_frag_table_free(brk_frag_table *table);
