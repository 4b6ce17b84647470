/* pcap back-end: a source reading Ethernet pcap files in order through
 * libpcap, and a sink appending to a new microsecond pcap file. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <stdlib.h>
#include <unistd.h>

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

/*
 * The sink writes the pcap format itself rather than through pcap_dump,
 * whose stdio buffer hides which records a failed write lost and leaves a
 * record cut in two in the file. Records of a batch are gathered in a buffer
 * (counted "queued") and written at flush() with pwrite at the end of the
 * last whole record. When the write fails part way (disk full), the records
 * it wrote whole are delivered, the file is cut back to the end of the last
 * of them so that it stays readable, and the others are counted as dropped
 * ("write error"); the state says so once, and again when writing works anew.
 */
#define PCAP_FILE_HEADER_BYTES 24u
#define PCAP_RECORD_HEADER_BYTES 16u
#define PCAP_SINK_BUFFER_BYTES (1u << 20)      /* written early past this, mid-batch */

struct pcap_record_header {
    uint32_t seconds;
    uint32_t microseconds;
    uint32_t captured;
    uint32_t length;
};

struct file_sink {
    struct brk_sink base;
    int fd;
    char *path;
    unsigned snaplen;
    uint64_t file_bytes;      /* whole records (and the file header) in the file */
    unsigned header_pending;  /* the file header is still at the start of buffer */
    uint8_t *buffer;          /* [file header] records not written yet */
    size_t used;
    size_t size;
    uint32_t *record_end;     /* per queued record: its end in buffer */
    uint32_t *record_wire;    /* per queued record: its packet's length on the wire */
    unsigned records;
    unsigned records_size;
    int failing;
};

static int sink_reserve(struct file_sink *sink, size_t bytes)
{
    if (sink->used + bytes > sink->size) {
        size_t size = sink->size ? sink->size : PCAP_SINK_BUFFER_BYTES;
        while (size < sink->used + bytes)
            size *= 2;
        uint8_t *buffer = realloc(sink->buffer, size);
        if (!buffer)
            return -1;
        sink->buffer = buffer;
        sink->size = size;
    }
    if (sink->records == sink->records_size) {
        unsigned size = sink->records_size ? sink->records_size * 2 : 1024;
        uint32_t *ends = realloc(sink->record_end, size * sizeof(*ends));
        if (!ends)
            return -1;
        sink->record_end = ends;
        uint32_t *wire = realloc(sink->record_wire, size * sizeof(*wire));
        if (!wire)
            return -1;
        sink->record_wire = wire;
        sink->records_size = size;
    }
    return 0;
}

/* Writes the buffer; counts each queued record as delivered or dropped. */
static void file_sink_write(struct file_sink *sink)
{
    size_t written = 0;
    int error_number = 0;
    while (written < sink->used) {
        ssize_t n = pwrite(sink->fd, sink->buffer + written, sink->used - written,
                           (off_t)(sink->file_bytes + written));
        if (n > 0) {
            written += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            error_number = n < 0 ? errno : ENOSPC;
            break;
        }
    }
    unsigned whole = 0;
    uint64_t bytes = 0;
    if (written >= sink->header_pending)
        while (whole < sink->records && sink->record_end[whole] <= written)
            bytes += sink->record_wire[whole++];
    if (sink->base.counters) {
        brk_count_delivered(sink->base.counters, whole, bytes);
        brk_count_drops(sink->base.counters, BRK_DROP_WRITE_ERROR, sink->records - whole);
        sink->base.counters->queued -= sink->records;
    }
    if (written < sink->used) {
        /* Cut back to the last whole record: a reader then sees a shorter
         * but valid file, never half a record. */
        size_t kept = whole ? sink->record_end[whole - 1] : written >= sink->header_pending ? sink->header_pending : 0;
        if (ftruncate(sink->fd, (off_t)(sink->file_bytes + kept)) != 0) {
            /* Not a regular file (a pipe, /dev/full): nothing to cut. */
        }
        sink->file_bytes += kept;
        if (kept >= sink->header_pending) {
            sink->header_pending = 0;
            sink->used = 0;
        } else {
            sink->used = sink->header_pending;   /* the header is tried again next time */
        }
        if (!sink->failing)
            brk_io_set_state(&sink->base.state, BRK_IO_FAILING, "write error on %s (%s): packets dropped",
                             sink->path, strerror(error_number));
        sink->failing = 1;
    } else {
        sink->file_bytes += written;
        sink->header_pending = 0;
        sink->used = 0;
        if (sink->failing && written)
            brk_io_set_state(&sink->base.state, BRK_IO_UP, "%s: writing again", sink->path);
        sink->failing = sink->failing && !written;
    }
    sink->records = 0;
}

static int file_sink_send(struct brk_sink *base, const struct brk_packet *packet)
{
    struct file_sink *sink = (struct file_sink *)base;
    uint32_t captured = packet->caplen < sink->snaplen ? packet->caplen : sink->snaplen;
    if (BRK_UNLIKELY(sink_reserve(sink, PCAP_RECORD_HEADER_BYTES + captured) != 0))
        return BRK_DROP_WRITE_ERROR;   /* out of memory: not written */
    struct pcap_record_header header = {
        .seconds = (uint32_t)(packet->ts_nsec / 1000000000ull),
        .microseconds = (uint32_t)(packet->ts_nsec % 1000000000ull / 1000u),
        .captured = captured,
        .length = packet->wirelen,
    };
    memcpy(sink->buffer + sink->used, &header, sizeof(header));
    memcpy(sink->buffer + sink->used + sizeof(header), packet->data, captured);
    sink->used += sizeof(header) + captured;
    sink->record_end[sink->records] = (uint32_t)sink->used;
    sink->record_wire[sink->records++] = packet->wirelen;
    sink->base.counters->queued++;
    if (sink->used >= PCAP_SINK_BUFFER_BYTES)
        file_sink_write(sink);
    return BRK_QUEUED;
}

static void file_sink_flush(struct brk_sink *base)
{
    struct file_sink *sink = (struct file_sink *)base;
    if (sink->records)
        file_sink_write(sink);
}

static void file_sink_close(struct brk_sink *base)
{
    struct file_sink *sink = (struct file_sink *)base;
    if (sink->fd >= 0) {
        file_sink_flush(base);
        close(sink->fd);
    }
    free(sink->path);
    free(sink->buffer);
    free(sink->record_end);
    free(sink->record_wire);
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
    sink->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sink->fd < 0) {
        brk_fail(error, error_size, "%s: %s", path, strerror(errno));
        file_sink_close(&sink->base);
        return NULL;
    }
    if (!(sink->path = strdup(path)) || sink_reserve(sink, PCAP_FILE_HEADER_BYTES) != 0) {
        file_sink_close(&sink->base);
        return brk_fail(error, error_size, "%s: out of memory", path);
    }
    /* Microsecond timestamps, Ethernet, in this host's byte order. Written
     * now, so that a file without packets is valid too; on a full disk it is
     * kept at the start of the buffer and goes out with the first records
     * that fit. */
    struct {
        uint32_t magic;
        uint16_t version_major, version_minor;
        int32_t thiszone;
        uint32_t sigfigs, snaplen, linktype;
    } header = { 0xa1b2c3d4u, 2, 4, 0, 0, sink->snaplen, DLT_EN10MB };
    memcpy(sink->buffer, &header, PCAP_FILE_HEADER_BYTES);
    sink->used = sink->header_pending = PCAP_FILE_HEADER_BYTES;
    if (pwrite(sink->fd, sink->buffer, PCAP_FILE_HEADER_BYTES, 0) == PCAP_FILE_HEADER_BYTES) {
        sink->file_bytes = PCAP_FILE_HEADER_BYTES;
        sink->used = sink->header_pending = 0;
    }
    return &sink->base;
}
