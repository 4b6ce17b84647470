/* pcap back-end: a source reading Ethernet pcap files in order through
 * libpcap, and a sink appending to a new microsecond pcap file. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
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
 * Classic pcap files are read by our own record reader, pcapng through
 * libpcap. libpcap stops at the first bad record of a file and cannot go on
 * (its error looks like the end of the file); the classic format has no
 * block lengths to skip by, but its record headers are easy to recognise, so
 * our reader reports the record (number, reason), counts it as malformed and
 * goes on at the next plausible record header: the one the bad record's own
 * length points to when that is plausible, else the first found scanning on
 * (a header is taken when the one after it is plausible too, or the file ends
 * right there). A pcapng file's bad block ends that file (reported, counted):
 * libpcap offers no way past it.
 *
 * Speed: the classic reader reads the file in large blocks (pread, one call
 * per PCAP_READ_BLOCK bytes) and its packets point into the block itself, no
 * copy and no call per record (fread and ftello per record cost more than the
 * hashing; ftello is a system call). The block is refilled only at the start
 * of a batch, when no packet of the batch points into it: a batch ends early
 * when its next record is not whole in the block. pcapng packets are copied
 * into the arena (libpcap reuses one buffer); their data pointers are set
 * only once the batch is complete, because growing the arena mid-batch moves it.
 */
#define PCAP_MAX_CAPLEN 262144u            /* libpcap's maximum for Ethernet */
#define PCAP_MAX_WIRELEN (16u << 20)        /* a plausible length on the wire (GSO included) */
#define PCAP_RESYNC_WINDOW (1u << 20)
#define PCAP_READ_BLOCK (4u << 20)          /* bytes per read; more than a batch of large frames */
#define PCAP_FILE_HEADER_BYTES 24u
#define PCAP_IN_BLOCK ((size_t)-1)          /* offsets[] of a packet already pointing into the block */

struct classic_header {
    uint32_t seconds;
    uint32_t fraction;       /* micro- or nanoseconds */
    uint32_t caplen;
    uint32_t len;
};

struct file_source {
    struct brk_source base;
    char **paths;
    unsigned count;
    unsigned next_path;      /* index of the next file to open */
    const char *path;        /* the file being read */
    pcap_t *current;         /* a pcapng file being read through libpcap */
    int classic;             /* descriptor of a classic pcap file being read by us, else -1 */
    int swapped;             /* its byte order is not ours */
    int nanoseconds;
    off_t file_size;
    uint64_t record;         /* number of the last record read in this file, from 1 */
    uint8_t *block;          /* classic: the file's bytes from block_start on */
    off_t block_start;
    size_t block_used;       /* bytes of the file in block */
    size_t cursor;           /* where the next record starts in block */
    int at_end;              /* reading on found the end of the file */
    uint8_t *arena;          /* pcapng: the batch's packets */
    size_t arena_size;
    size_t *offsets;         /* arena offset of each packet of the batch, or PCAP_IN_BLOCK */
    unsigned offsets_size;
};

/* What classic_next answers when the record is not whole in the block and
 * the block may not be refilled now (packets of the batch point into it). */
#define CLASSIC_REFILL 2

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

/* One malformed record: counted, and said in one line (the state, logged). */
static void report_malformed(struct file_source *source, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void report_malformed(struct file_source *source, const char *format, ...)
{
    char reason[240];
    va_list args;
    va_start(args, format);
    vsnprintf(reason, sizeof(reason), format, args);
    va_end(args);
    source->base.malformed++;
    brk_io_set_state(&source->base.state, BRK_IO_FAILING, "%s: record %llu: %s", source->path,
                     (unsigned long long)source->record, reason);
}

static uint32_t file_order(const struct file_source *source, uint32_t value)
{
    return source->swapped ? __builtin_bswap32(value) : value;
}

static int plausible(const struct file_source *source, const uint8_t *bytes)
{
    struct classic_header header;
    memcpy(&header, bytes, sizeof(header));
    uint32_t fraction = file_order(source, header.fraction), caplen = file_order(source, header.caplen);
    uint32_t len = file_order(source, header.len);
    /* A record without a byte is taken as malformed too: a run of zeros
     * must not pass for a run of records while resynchronising. */
    return fraction < (source->nanoseconds ? 1000000000u : 1000000u) && caplen <= len
           && caplen >= 1 && caplen <= PCAP_MAX_CAPLEN && len <= PCAP_MAX_WIRELEN;
}

/* Whether a record header at offset is plausible, or the file ends there. */
static int record_starts_at(struct file_source *source, off_t offset)
{
    uint8_t bytes[sizeof(struct classic_header)];
    if (offset == source->file_size)
        return 1;
    return pread(source->classic, bytes, sizeof(bytes), offset) == (ssize_t)sizeof(bytes)
           && plausible(source, bytes);
}

/* The reader goes on at offset: the block is emptied (its bytes stay where
 * they are until the next refill, for the packets of the batch). */
static void seek_to(struct file_source *source, off_t offset)
{
    source->block_start = offset;
    source->block_used = source->cursor = 0;
    source->at_end = 0;
}

/* Moves the unread bytes to the front of the block and reads on after them
 * until the block is full or the file ends. */
static void fill_block(struct file_source *source)
{
    size_t left = source->block_used - source->cursor;
    memmove(source->block, source->block + source->cursor, left);
    source->block_start += (off_t)source->cursor;
    source->cursor = 0;
    source->block_used = left;
    while (source->block_used < PCAP_READ_BLOCK && !source->at_end) {
        ssize_t n = pread(source->classic, source->block + source->block_used, PCAP_READ_BLOCK - source->block_used,
                          source->block_start + (off_t)source->block_used);
        if (n > 0)
            source->block_used += (size_t)n;
        else if (!(n < 0 && errno == EINTR))
            source->at_end = 1;    /* a read error ends the file as its end would: the record is cut short */
    }
}

/* After a bad record header at bad: the offset of the next record that looks
 * whole (see above), or -1 when none is left. */
static off_t resync(struct file_source *source, off_t bad, uint32_t caplen)
{
    off_t after = bad + (off_t)sizeof(struct classic_header) + caplen;
    if (after <= source->file_size && record_starts_at(source, after))
        return after;
    const size_t window_size = PCAP_RESYNC_WINDOW + sizeof(struct classic_header);
    uint8_t *window = malloc(window_size);
    off_t found = -1;
    if (!window)
        return -1;
    for (off_t start = bad + 1; start + (off_t)sizeof(struct classic_header) <= source->file_size && found < 0;
         start += PCAP_RESYNC_WINDOW) {
        ssize_t got = pread(source->classic, window, window_size, start);
        for (ssize_t i = 0; i + (ssize_t)sizeof(struct classic_header) <= got && found < 0; i++) {
            if (!plausible(source, window + i))
                continue;
            struct classic_header header;
            memcpy(&header, window + i, sizeof(header));
            off_t next = start + i + (off_t)sizeof(header) + file_order(source, header.caplen);
            if (next <= source->file_size && record_starts_at(source, next))
                found = start + i;
        }
    }
    free(window);
    return found;
}

/* Opens a classic pcap file for our reader: 1, 0 when it is not one (pcapng),
 * -1 when it cannot be read. */
static int open_classic(struct file_source *source, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct {
        uint32_t magic;
        uint16_t version_major, version_minor;
        int32_t thiszone;
        uint32_t sigfigs, snaplen, linktype;
    } header;
    struct stat facts;
    if (pread(fd, &header, sizeof(header), 0) != (ssize_t)sizeof(header) || fstat(fd, &facts) != 0) {
        close(fd);
        return -1;
    }
    uint32_t magic = header.magic;
    int swapped = magic == 0xd4c3b2a1u || magic == 0x4d3cb2a1u;
    if (swapped)
        magic = __builtin_bswap32(magic);
    if (magic != 0xa1b2c3d4u && magic != 0xa1b23c4du) {
        close(fd);
        return 0;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);   /* a hint: larger read-ahead */
    source->classic = fd;
    source->swapped = swapped;
    source->nanoseconds = magic == 0xa1b23c4du;
    source->file_size = facts.st_size;
    seek_to(source, PCAP_FILE_HEADER_BYTES);
    return 1;
}

/* The file to read from, opening the next one when the current one is done;
 * 0 once every file is consumed. A file that vanished or changed since
 * brk_source_pcap_open checked it is skipped. */
static int current_file(struct file_source *source)
{
    while (!source->current && source->classic < 0 && source->next_path < source->count) {
        const char *path = source->paths[source->next_path++];
        source->path = path;
        source->record = 0;
        /* Checked at open: Ethernet, readable. */
        if (open_classic(source, path) == 0)
            source->current = open_ethernet_file(path, NULL, 0);
    }
    return source->current || source->classic >= 0;
}

static void end_file(struct file_source *source)
{
    if (source->current)
        pcap_close(source->current);
    if (source->classic >= 0)
        close(source->classic);
    source->current = NULL;
    source->classic = -1;
}

/* The next record of a classic file, pointing into the block: 1 (packet),
 * 0 (no packet now: a malformed record was skipped, or the file ended),
 * CLASSIC_REFILL (not whole in the block, and may_refill is 0). */
static int classic_next(struct file_source *source, int may_refill, struct brk_packet *packet)
{
    struct classic_header header;
    size_t left = source->block_used - source->cursor;
    if (left < sizeof(header) && !source->at_end) {
        if (!may_refill)
            return CLASSIC_REFILL;
        fill_block(source);
        left = source->block_used - source->cursor;
    }
    if (left == 0) {
        end_file(source);
        return 0;
    }
    source->record++;
    if (left < sizeof(header)) {
        report_malformed(source, "cut short at the end of the file (%zu of 16 header bytes)", left);
        end_file(source);
        return 0;
    }
    const uint8_t *record = source->block + source->cursor;
    off_t at = source->block_start + (off_t)source->cursor;
    memcpy(&header, record, sizeof(header));
    uint32_t caplen = file_order(source, header.caplen), len = file_order(source, header.len);
    if (!plausible(source, record)) {
        const char *why = caplen > PCAP_MAX_CAPLEN ? "captured length over the maximum of 262144"
                          : caplen > len ? "captured length over the length on the wire"
                          : "impossible length or timestamp";
        off_t next = resync(source, at, caplen);
        if (next < 0) {
            report_malformed(source, "%s (caplen %u, len %u); no whole record after it: rest of the file skipped",
                             why, caplen, len);
            end_file(source);
        } else {
            seek_to(source, next);
            report_malformed(source, "%s (caplen %u, len %u): skipped to the next record, at byte %lld",
                             why, caplen, len, (long long)next);
        }
        return 0;
    }
    size_t whole = sizeof(header) + caplen;
    if (left < whole && !source->at_end) {
        if (!may_refill) {
            source->record--;
            return CLASSIC_REFILL;
        }
        fill_block(source);
        left = source->block_used - source->cursor;
        record = source->block;
    }
    if (left < whole) {
        report_malformed(source, "cut short at the end of the file (%zu of %u bytes)", left - sizeof(header), caplen);
        end_file(source);
        return 0;
    }
    source->cursor += whole;
    packet->data = (uint8_t *)record + sizeof(header);
    packet->caplen = caplen;
    packet->wirelen = len;
    uint32_t fraction = file_order(source, header.fraction);
    packet->ts_nsec = (uint64_t)file_order(source, header.seconds) * 1000000000ull
                      + (uint64_t)fraction * (source->nanoseconds ? 1u : 1000u);
    return 1;
}

/* The same from a pcapng file, through libpcap, copied into the arena at used. */
static int pcapng_next(struct file_source *source, size_t used, struct brk_packet *packet)
{
    struct pcap_pkthdr *header;
    const u_char *data;
    int result = pcap_next_ex(source->current, &header, &data);
    if (result == PCAP_ERROR_BREAK) {
        end_file(source);
        return 0;
    }
    source->record++;
    if (result != 1) {
        report_malformed(source, "%s: rest of the file skipped", pcap_geterr(source->current));
        end_file(source);
        return 0;
    }
    if (header->caplen > header->len) {
        report_malformed(source, "captured length over the length on the wire (caplen %u, len %u): skipped",
                         header->caplen, header->len);
        return 0;
    }
    if (arena_reserve(source, used + header->caplen) != 0) {
        /* Lost: libpcap cannot step back. */
        report_malformed(source, "out of memory for %u bytes: skipped", header->caplen);
        return -1;
    }
    memcpy(source->arena + used, data, header->caplen);
    packet->caplen = header->caplen;
    packet->wirelen = header->len;
    /* Opened with nanosecond precision: tv_usec holds nanoseconds. */
    packet->ts_nsec = (uint64_t)header->ts.tv_sec * 1000000000ull + (uint64_t)header->ts.tv_usec;
    return 1;
}

static unsigned file_source_next_batch(struct brk_source *base, struct brk_packet *packets, unsigned max)
{
    struct file_source *source = (struct file_source *)base;
    size_t used = 0;
    unsigned n = 0;

    if (max > source->offsets_size) {
        size_t *offsets = realloc(source->offsets, max * sizeof(*offsets));
        if (!offsets)
            return 0;
        source->offsets = offsets;
        source->offsets_size = max;
    }
    while (n < max && current_file(source)) {
        int result;
        if (source->classic >= 0) {
            /* Refilled before the batch takes from it, while less than half a block is left. */
            if (n == 0 && !source->at_end && source->block_used - source->cursor < PCAP_READ_BLOCK / 2)
                fill_block(source);
            result = classic_next(source, n == 0, &packets[n]);
            if (result == CLASSIC_REFILL)
                break;
            source->offsets[n] = PCAP_IN_BLOCK;
        } else {
            result = pcapng_next(source, used, &packets[n]);
            source->offsets[n] = used;
        }
        if (result < 0)
            break;   /* out of memory: deliver what fits, retry next batch */
        if (result == 0)
            continue;
        if (source->offsets[n] != PCAP_IN_BLOCK)
            used += packets[n].caplen;
        packets[n].swappable_slot = NULL;
        packets[n].slot_region = NULL;
        n++;
    }
    for (unsigned i = 0; i < n; i++)
        if (source->offsets[i] != PCAP_IN_BLOCK)
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
    return !source->current && source->classic < 0 && source->next_path == source->count;
}

static void file_source_close(struct brk_source *base)
{
    struct file_source *source = (struct file_source *)base;
    end_file(source);
    if (source->paths)
        for (unsigned i = 0; i < source->count; i++)
            free(source->paths[i]);
    free(source->paths);
    free(source->arena);
    free(source->block);
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
    source->classic = -1;
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
    if (arena_reserve(source, PCAP_ARENA_INITIAL_BYTES) != 0 || !(source->block = malloc(PCAP_READ_BLOCK))) {
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
    sink->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
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
