/* libFuzzer harness: the pcap reader (io_pcap.c's source) on any file.
 *
 * Input: an option byte (batch size, and whether the file is given twice, to
 * cross from one file to the next), then the file's bytes. The file goes to
 * a memfd, opened by its /proc path. Checks, besides memory safety: a file
 * either fails to open with a one-line message or is read to its end within
 * a bounded number of batches, every packet's bytes are readable and no
 * packet is longer than the pcap snapshot length allows. */
#include "fuzz_common.h"

#include <sys/mman.h>
#include <unistd.h>

/* libpcap refuses records over this (its maximum snapshot length). */
#define FUZZ_PCAP_MAX_CAPLEN 262144u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input input = { data, size };
    uint8_t options = fuzz_byte(&input);
    unsigned batch = 1 + (options & 15);
    unsigned files = options & 0x10 ? 2 : 1;

    int fd = memfd_create("fuzz.pcap", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, input.data, input.size) == (ssize_t)input.size);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    const char *paths[2] = { path, path };

    char error[512] = "";
    brk_source *source = brk_source_pcap_open(paths, files, error, sizeof(error));
    if (!source) {
        FUZZ_CHECK(error[0] != '\0' && strchr(error, '\n') == NULL);
        close(fd);
        return 0;
    }
    struct brk_packet packets[16];
    uint64_t total = 0;
    /* Each record takes at least 16 header bytes: a bound on batches. */
    unsigned max_batches = (unsigned)(files * (input.size / 16 + 2));
    unsigned batches;
    for (batches = 0; batches < max_batches; batches++) {
        unsigned n = source->ops->next_batch(source, packets, batch);
        FUZZ_CHECK(n <= batch);
        for (unsigned i = 0; i < n; i++) {
            FUZZ_CHECK(packets[i].caplen <= FUZZ_PCAP_MAX_CAPLEN);
            volatile uint8_t sum = 0;
            for (uint32_t b = 0; b < packets[i].caplen; b++)
                sum ^= packets[i].data[b];
            (void)sum;
        }
        total += n;
        if (n)
            source->ops->release(source);
        else if (source->ops->exhausted(source))
            break;
    }
    FUZZ_CHECK(batches < max_batches);
    FUZZ_CHECK(total <= files * (input.size / 16));
    brk_source_close(source);
    close(fd);
    return 0;
}
