/* Sanitized regression driver for the Filter brick (issue 8.12): every frame
 * of 0..60 bytes, each in an allocation of exactly its size, through a Filter
 * whose table has IPv4 and IPv6 drop rules but no allow rule (so the allow
 * classifiers have no shapes). Built with -fsanitize=address,undefined and
 * -fno-sanitize-recover: any read past a frame, or qsort(NULL, 0), aborts.
 * Prints "ok N" (N = frames pushed) on success. */
#include "internal.h"

#include <stdlib.h>

extern const struct brk_brick_kind brk_brick_filter;
const struct brk_brick_kind *const brk_brick_kinds[] = { &brk_brick_filter, NULL };
const char *brk_version(void) { return "sanitized"; }

#define LONGEST_FRAME 60

static int fail(const char *what, const char *error)
{
    fprintf(stderr, "%s: %s\n", what, error);
    return 1;
}

int main(void)
{
    char error[256] = "";
    struct brk_filter_rule rules[2] = {
        { .id = 1, .action = BRK_FILTER_DROP, .family = BRK_FILTER_IPV4,
          .src = { 10, 0, 0, 1 }, .src_prefix = 32, .protocol = 6, .protocol6 = 6,
          .flags = BRK_FILTER_MATCH_PROTOCOL },
        { .id = 2, .action = BRK_FILTER_DROP, .family = BRK_FILTER_IPV6,
          .dst = { 0x20, 0x01, 0x0d, 0xb8 }, .dst_prefix = 32 },
    };
    uint64_t pushed = 0;
    for (unsigned length = 0; length <= LONGEST_FRAME; length++) {
        /* The first bytes of a frame that would be IPv4 (or VLAN-tagged IPv6)
         * if it went on: the parser is tempted to read further. */
        uint8_t frame[LONGEST_FRAME] = { [12] = 0x08, [13] = 0x00, [14] = 0x45, [23] = 6 };
        uint8_t tagged[LONGEST_FRAME] = { [12] = 0x81, [13] = 0x00, [16] = 0x86, [17] = 0xdd, [18] = 0x60 };
        const uint8_t *kinds[] = { frame, tagged };
        for (unsigned k = 0; k < 2; k++) {
            brk_filter_table *table = brk_filter_table_new(k ? "ip6 or not ip6" : NULL, error, sizeof(error));
            if (!table)
                return fail("table", error);
            if (brk_filter_add(table, rules, 2, error, sizeof(error)) != 0)
                return fail("rules", error);
            brk_brick *brick = brk_brick_new(&brk_brick_filter, NULL, error, sizeof(error));
            brk_engine *engine = brk_engine_new(4, -1);
            uint32_t lengths[1] = { length };
            /* One frame per source: the source's private copy is exactly
             * `length` bytes, so ASan sees a read past it. */
            brk_source *source = brk_source_memory_new(kinds[k], lengths, 1, 3);
            brk_sink *sink = brk_sink_null_new();
            if (!brick || !engine || !source || !sink)
                return fail("setup", error);
            if (brk_filter_attach(brick, table, error, sizeof(error)) != 0)
                return fail("attach", error);
            brk_brick_add_sink(brick, sink);
            brk_engine_add_source(engine, source, brick);
            brk_engine_rearm(engine);
            if (brk_engine_run(engine) != 0)
                return fail("run", "failed");
            struct brk_engine_stats stats;
            brk_engine_stats(engine, &stats);
            pushed += stats.received_packets;
            brk_engine_free(engine);
            brk_source_close(source);
            brk_brick_free(brick);
            brk_sink_close(sink);
            brk_filter_table_free(table);
        }
    }
    printf("ok %llu\n", (unsigned long long)pushed);
    return 0;
}
