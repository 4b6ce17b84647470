/* PLACEHOLDER flow hash: replaced by the table-driven implementation. */
#include "internal.h"
#include <stdlib.h>

uint32_t brk_toeplitz_ipv4(uint32_t sip, uint32_t dip, uint16_t sp, uint16_t dp) { return sip ^ dip ^ sp ^ dp; }
uint32_t brk_flow_hash(const uint8_t *frame, uint32_t caplen, int split,
                       unsigned depth, brk_frag_table *frags, uint32_t *flags)
{
    uint32_t h = 0;
    for (uint32_t i = 0; i < caplen && i < 64; i++) h ^= frame[i];
    return h;
}
brk_frag_table *brk_frag_table_new(unsigned slots) { return NULL; }
void brk_frag_table_free(brk_frag_table *table) { }
