/* pcap back-end: a source reading Ethernet pcap files in order through
 * libpcap, and a sink appending to a new microsecond pcap file. */
#include "internal.h"

#include <pcap/pcap.h>
#include <stdlib.h>

#define PCAP_DEFAULT_SNAPLEN 262144u
#define PCAP_ARENA_INITIAL_BYTES (1u << 20)

/* Writes "path: message" as one line; libpcap's message already starts with
 * the path for some errors (fopen failures) and not for others. */
static void *report_pcap_error(char *error, size_t error_size, const char *path, const char *message)
{
    char line[PCAP_ERRBUF_SIZE];
    size_t length;
    snprintf(line, sizeof(line), "%s", message);
    for (length = 0; line[length]; length++)
        if (line[length] == '\n' || line[length] == '\r')
            line[length] = ' ';
    while (length && line[length - 1] == ' ')
        line[--length] = '\0';
    if (strncmp(line, path, strlen(path)) == 0)
        return brk_fail(error, error_size, "%s", line);
    return brk_fail(error, error_size, "%s: %s", path, line);
}

/* Opens path with nanosecond timestamps and checks it holds Ethernet frames. */
static pcap_t *open_ethernet_file(const char *path, char *error, size_t error_size)
{
    char pcap_error[PCAP_ERRBUF_SIZE] = "";
    pcap_t *handle = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO,
                                                             pcap_error);
    if (!handle)
        return report_pcap_error(error, error_size, path, pcap_error);
    int link_type = pcap_datalink(handle);
    if (link_type != DLT_EN10MB) {
        const char *name = pcap_datalink_val_to_name(link_type);
        pcap_close(handle);
        if (name)
            return brk_fail(error, error_size, "%s: link type %s is not Ethernet", path, name);
        return brk_fail(error, error_size, "%s: link type %d is not Ethernet", path, link_type);
    }
    return handle;
}

/*
 * libpcap reuses one buffer for every pcap_next_ex, so each packet of a batch
 * is copied into the arena; the packets' data pointers are set only once the
 * batch is complete, because growing the arena mid-batch moves it.
 */
struct file_source {
    struct brk_source base;
    char **paths;
    unsigned count;
    unsigned next_path;      /* index of the next file to open */
    pcap_t *current;         /* the file being read, or NULL between files */
    uint8_t *arena;
    size_t arena_size;
    size_t *offsets;         /* arena offset of each packet of the batch */
    unsigned offsets_size;
};

static int arena_reserve(struct file_source *source, size_t needed)
{
    if (needed <= source->arena_size)
        return 0;
    size_t size = source->arena_size ? source->arena_size : PCAP_ARENA_INITIAL_BYTES;
    while (size < needed)
        size *= 2;
    uint8_t *arena = realloc(source->arena, size);
    if (!arena)
        return -1;
    source->arena = arena;
    source->arena_size = size;
    return 0;
}

/* The file to read from, opening the next one when the current one is done;
 * NULL once every file is consumed. A file that vanished or changed since
 * brk_source_pcap_open checked it is skipped. */
static pcap_t *current_file(struct file_source *source)
{
    while (!source->current && source->next_path < source->count)
        source->current = open_ethernet_file(source->paths[source->next_path++], NULL, 0);
    return source->current;
}

static unsigned file_source_next_batch(struct brk_source *base, struct brk_packet *packets, unsigned max)
{
    struct file_source *source = (struct file_source *)base;
    size_t used = 0;
    unsigned n = 0;
    pcap_t *handle;

    if (max > source->offsets_size) {
        size_t *offsets = realloc(source->offsets, max * sizeof(*offsets));
        if (!offsets)
            return 0;
        source->offsets = offsets;
        source->offsets_size = max;
    }
    while (n < max && (handle = current_file(source))) {
        struct pcap_pkthdr *header;
        const u_char *data;
        /* 1: a packet; anything else (end of file, truncated or corrupt
         * record) ends this file and reading moves on to the next one. */
        if (pcap_next_ex(handle, &header, &data) != 1) {
            pcap_close(handle);
            source->current = NULL;
            continue;
        }
        if (arena_reserve(source, used + header->caplen) != 0)
            break;   /* out of memory: deliver what fits, retry next batch */
        memcpy(source->arena + used, data, header->caplen);
        source->offsets[n] = used;
        used += header->caplen;
        packets[n].caplen = header->caplen;
        packets[n].wirelen = header->len;
        /* Opened with nanosecond precision: tv_usec holds nanoseconds. */
        packets[n].ts_nsec = (uint64_t)header->ts.tv_sec * 1000000000ull
                             + (uint64_t)header->ts.tv_usec;
        n++;
    }
    for (unsigned i = 0; i < n; i++)
        packets[i].data = source->arena + source->offsets[i];
    return n;
}

/* The arena is simply overwritten by the next batch. */
static void file_source_release(struct brk_source *base) { }
static int file_source_poll_fd(struct brk_source *base) { return -1; }
static uint64_t file_source_kernel_drops(struct brk_source *base) { return 0; }

static int file_source_exhausted(struct brk_source *base)
{
    struct file_source *source = (struct file_source *)base;
    return !source->current && source->next_path == source->count;
}

static void file_source_close(struct brk_source *base)
{
    struct file_source *source = (struct file_source *)base;
    if (source->current)
        pcap_close(source->current);
    if (source->paths)
        for (unsigned i = 0; i < source->count; i++)
            free(source->paths[i]);
    free(source->paths);
    free(source->arena);
    free(source->offsets);
    free(source);
}

static const struct brk_source_ops file_source_ops = {
    .next_batch = file_source_next_batch,
    .release = file_source_release,
    .poll_fd = file_source_poll_fd,
    .kernel_drops = file_source_kernel_drops,
    .exhausted = file_source_exhausted,
    .close = file_source_close,
};

brk_source *brk_source_pcap_open(const char *const *paths, unsigned count,
                                 char *error, size_t error_size)
{
    struct file_source *source = calloc(1, sizeof(*source));
    if (!source)
        return brk_fail(error, error_size, "out of memory");
    source->base.ops = &file_source_ops;
    if (!(source->paths = calloc(count ? count : 1, sizeof(char *)))) {
        file_source_close(&source->base);
        return brk_fail(error, error_size, "out of memory");
    }
    source->count = count;
    for (unsigned i = 0; i < count; i++) {
        if (!(source->paths[i] = strdup(paths[i]))) {
            file_source_close(&source->base);
            return brk_fail(error, error_size, "out of memory");
        }
    }
    /* Every file is checked now so that a bad one fails the start, not the
     * run; only one is kept open at a time so a large directory needs one fd. */
    for (unsigned i = 0; i < count; i++) {
        pcap_t *handle = open_ethernet_file(source->paths[i], error, error_size);
        if (!handle) {
            file_source_close(&source->base);
            return NULL;
        }
        pcap_close(handle);
    }
    if (arena_reserve(source, PCAP_ARENA_INITIAL_BYTES) != 0) {
        file_source_close(&source->base);
        return brk_fail(error, error_size, "out of memory");
    }
    return &source->base;
}

struct file_sink {
    struct brk_sink base;
    pcap_t *dead;            /* describes the file: link type, snaplen */
    pcap_dumper_t *dumper;
    FILE *file;              /* the dumper's stream, to see write errors */
    unsigned snaplen;
};

static int file_sink_send(struct brk_sink *base, const struct brk_packet *packet)
{
    struct file_sink *sink = (struct file_sink *)base;
    struct pcap_pkthdr header;
    header.ts.tv_sec = (time_t)(packet->ts_nsec / 1000000000ull);
    header.ts.tv_usec = (suseconds_t)(packet->ts_nsec % 1000000000ull / 1000u);
    header.caplen = packet->caplen < sink->snaplen ? packet->caplen : sink->snaplen;
    header.len = packet->wirelen;
    pcap_dump((u_char *)sink->dumper, &header, packet->data);
    /* pcap_dump cannot report failure; stdio's error flag can (disk full). */
    if (BRK_UNLIKELY(ferror(sink->file))) {
        clearerr(sink->file);
        return -1;
    }
    return 0;
}

static void file_sink_flush(struct brk_sink *base)
{
    struct file_sink *sink = (struct file_sink *)base;
    if (pcap_dump_flush(sink->dumper) != 0)
        clearerr(sink->file);   /* keep going; the next batch may fit */
}

static void file_sink_close(struct brk_sink *base)
{
    struct file_sink *sink = (struct file_sink *)base;
    if (sink->dumper) {
        pcap_dump_flush(sink->dumper);
        pcap_dump_close(sink->dumper);
    }
    if (sink->dead)
        pcap_close(sink->dead);
    free(sink);
}

static const struct brk_sink_ops file_sink_ops = {
    .send = file_sink_send,
    .flush = file_sink_flush,
    .close = file_sink_close,
};

brk_sink *brk_sink_pcap_open(const char *path, unsigned snaplen,
                             char *error, size_t error_size)
{
    struct file_sink *sink = calloc(1, sizeof(*sink));
    if (!sink)
        return brk_fail(error, error_size, "out of memory");
    sink->base.ops = &file_sink_ops;
    sink->snaplen = snaplen ? snaplen : PCAP_DEFAULT_SNAPLEN;
    sink->dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, (int)sink->snaplen,
                                                      PCAP_TSTAMP_PRECISION_MICRO);
    if (!sink->dead) {
        file_sink_close(&sink->base);
        return brk_fail(error, error_size, "%s: out of memory", path);
    }
    if (!(sink->dumper = pcap_dump_open(sink->dead, path))) {
        report_pcap_error(error, error_size, path, pcap_geterr(sink->dead));
        file_sink_close(&sink->base);
        return NULL;
    }
    sink->file = pcap_dump_file(sink->dumper);
    return &sink->base;
}
