/* Sanitized driver for the pcap reader (issue 8.5): reads the pcap files
 * named on the command line, one source each, through a Dummy into a null
 * sink. Built with -fsanitize=address,undefined: a malformed record must be
 * skipped without reading or writing out of bounds. Prints one line per
 * file: "<packets> <malformed>". */
#include "internal.h"

extern const struct brk_brick_kind brk_brick_dummy;
const struct brk_brick_kind *const brk_brick_kinds[] = { &brk_brick_dummy, NULL };
const char *brk_version(void) { return "sanitized"; }

int main(int argc, char **argv)
{
    char error[256] = "";
    for (int i = 1; i < argc; i++) {
        const char *paths[1] = { argv[i] };
        brk_source *source = brk_source_pcap_open(paths, 1, error, sizeof(error));
        brk_brick *brick = brk_brick_new(&brk_brick_dummy, NULL, error, sizeof(error));
        brk_sink *sink = brk_sink_null_new();
        brk_engine *engine = brk_engine_new(3, -1);
        if (!source || !brick || !sink || !engine) {
            fprintf(stderr, "%s: %s\n", argv[i], error);
            return 1;
        }
        brk_brick_add_sink(brick, sink);
        brk_engine_add_source(engine, source, brick);
        brk_engine_rearm(engine);
        brk_engine_run(engine);
        struct brk_engine_stats stats;
        brk_engine_stats(engine, &stats);
        printf("%llu %llu\n", (unsigned long long)stats.received_packets,
               (unsigned long long)stats.input_malformed);
        brk_engine_free(engine);
        brk_source_close(source);
        brk_brick_free(brick);
        brk_sink_close(sink);
    }
    return 0;
}
