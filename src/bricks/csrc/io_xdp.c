/* The XDP back-end's control side: loads xdp/bricks.bpf.o through libbpf,
 * fills its tree and DEVMAPs, attaches it to input interfaces by BPF links
 * (never replacing someone else's program, gone with the process), runs it once on a frame for the tests
 * (BPF_PROG_RUN), reads its per-CPU counters, and detaches and frees it all.
 * Nothing is pinned: closing the last descriptor frees programs and maps. */
#include "internal.h"
#include "api/xdp.h"
#include "xdp_filter_maps.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define TRANSMIT_ERRORS_SUFFIX "xdp_xmit_errors"

/* The ethtool statistics of ifname whose names end in TRANSMIT_ERRORS_SUFFIX,
 * summed (a veth has one per queue): no netlink library, three ioctls. */
int brk_xdp_transmit_errors(const char *ifname, uint64_t *errors)
{
    struct ifreq request;
    int result = -ENOENT;
    struct ethtool_gstrings *names = NULL;
    struct ethtool_stats *stats = NULL;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    *errors = 0;
    if (fd < 0)
        return -errno;
    memset(&request, 0, sizeof(request));
    snprintf(request.ifr_name, sizeof(request.ifr_name), "%s", ifname);

    struct {
        struct ethtool_sset_info info;
        uint32_t count;
    } sets = { .info = { .cmd = ETHTOOL_GSSET_INFO, .sset_mask = 1ull << ETH_SS_STATS } };
    request.ifr_data = (void *)&sets;
    if (ioctl(fd, SIOCETHTOOL, &request) < 0) {
        result = -errno;
        goto done;
    }
    uint32_t count = sets.info.sset_mask ? sets.count : 0;
    names = calloc(1, sizeof(*names) + (size_t)count * ETH_GSTRING_LEN);
    stats = calloc(1, sizeof(*stats) + (size_t)count * sizeof(uint64_t));
    if (!names || !stats) {
        result = -ENOMEM;
        goto done;
    }
    names->cmd = ETHTOOL_GSTRINGS;
    names->string_set = ETH_SS_STATS;
    names->len = count;
    request.ifr_data = (void *)names;
    if (ioctl(fd, SIOCETHTOOL, &request) < 0) {
        result = -errno;
        goto done;
    }
    stats->cmd = ETHTOOL_GSTATS;
    stats->n_stats = count;
    request.ifr_data = (void *)stats;
    if (ioctl(fd, SIOCETHTOOL, &request) < 0) {
        result = -errno;
        goto done;
    }
    for (uint32_t i = 0; i < count && i < stats->n_stats; i++) {
        char name[ETH_GSTRING_LEN + 1];
        memcpy(name, names->data + (size_t)i * ETH_GSTRING_LEN, ETH_GSTRING_LEN);
        name[ETH_GSTRING_LEN] = '\0';
        size_t length = strlen(name), suffix = strlen(TRANSMIT_ERRORS_SUFFIX);
        if (length >= suffix && strncmp(name, "tx_", 3) == 0
            && strcmp(name + length - suffix, TRANSMIT_ERRORS_SUFFIX) == 0) {
            *errors += stats->data[i];
            result = 0;
        }
    }
done:
    free(names);
    free(stats);
    close(fd);
    return result;
}

/* The source an engine sees for a tree running in XDP: frames never reach
 * user space, so it never has any; its descriptor (an eventfd nobody writes)
 * keeps the engine thread asleep in poll() until it is stopped. */
struct xdp_idle_source {
    struct brk_source base;
    int fd;
};

static unsigned idle_next_batch(struct brk_source *base, struct brk_packet *packets, unsigned max)
{
    (void)base, (void)packets, (void)max;
    return 0;
}

static void idle_release(struct brk_source *base) { (void)base; }
static int idle_poll_fd(struct brk_source *base) { return ((struct xdp_idle_source *)base)->fd; }
static uint64_t idle_kernel_drops(struct brk_source *base) { (void)base; return 0; }
static int idle_exhausted(struct brk_source *base) { (void)base; return 0; }

static void idle_close(struct brk_source *base)
{
    close(((struct xdp_idle_source *)base)->fd);
    free(base);
}

static const struct brk_source_ops idle_source_ops = {
    .next_batch = idle_next_batch,
    .release = idle_release,
    .poll_fd = idle_poll_fd,
    .kernel_drops = idle_kernel_drops,
    .exhausted = idle_exhausted,
    .close = idle_close,
};

brk_source *brk_source_xdp_idle_new(void)
{
    struct xdp_idle_source *source = calloc(1, sizeof(*source));
    if (!source)
        return NULL;
    source->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (source->fd < 0) {
        free(source);
        return NULL;
    }
    source->base.ops = &idle_source_ops;
    return &source->base;
}

#ifdef BRK_HAVE_LIBBPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

#define PROGRAM_NAME "brk_xdp_bricks"
#define PASS_PROGRAM_NAME "brk_xdp_pass"
/* Its inputs (a Merge has up to 16) and the consumer end of every pipe it feeds. */
#define MAX_ATTACHMENTS (16 + BRK_XDP_MAX_OUTPUTS)
#define LOG_SIZE 4096

struct attachment {
    int ifindex;
    int link_fd;           /* the bricks program's or its XDP_PASS companion's */
};

struct brk_xdp {
    struct bpf_object *object;
    int program_fd;
    int pass_program_fd;
    int node_counters_fd;
    int output_counters_fd;
    unsigned node_count;
    unsigned output_count;
    int cpus;
    unsigned attachment_count;
    struct attachment attachments[MAX_ATTACHMENTS];
    struct brk_xdp_filter *filters[BRK_XDP_MAX_FILTERS];   /* xdp_filter.c's bindings to rule tables */
};

/* libbpf's messages (the verifier log among them) of the current load, so an
 * error can quote the line that says why; BRICKS_XDP_VERBOSE=1 prints them all,
 * with the verifier's statistics. */
static __thread char libbpf_log[LOG_SIZE];
static __thread size_t libbpf_log_used;

static int keep_libbpf_message(enum libbpf_print_level level, const char *format, va_list arguments)
{
    char line[512];
    if (getenv("BRICKS_XDP_VERBOSE")) {
        va_list copy;
        va_copy(copy, arguments);
        vfprintf(stderr, format, copy);
        va_end(copy);
    }
    vsnprintf(line, sizeof(line), format, arguments);
    if (level == LIBBPF_DEBUG)
        return 0;
    size_t size = strlen(line);
    if (libbpf_log_used + size >= LOG_SIZE)
        libbpf_log_used = 0;   /* keep the latest messages: they say why */
    memcpy(libbpf_log + libbpf_log_used, line, size + 1);
    libbpf_log_used += size;
    return 0;
}

/* The last non-empty line libbpf printed, without its newline. */
static const char *last_libbpf_line(char *line, size_t size)
{
    const char *end = libbpf_log + libbpf_log_used;
    while (end > libbpf_log && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > libbpf_log && start[-1] != '\n')
        start--;
    snprintf(line, size, "%.*s", (int)(end - start), start);
    return line;
}

/* The checks the program relies on, so a loaded tree never aborts a frame. */
static int check_tree(const struct brk_xdp_node *nodes, unsigned node_count, const int *output_ifindexes,
                      unsigned output_count, char *error, size_t error_size)
{
    unsigned parents[BRK_XDP_MAX_NODES] = { 0 };
    int output_owner[BRK_XDP_MAX_OUTPUTS];
    unsigned duplicators_used = 0, filters_used = 0;

    if (node_count == 0 || node_count > BRK_XDP_MAX_NODES)
        return brk_fail(error, error_size, "XDP: %u bricks, the program takes 1 to %d", node_count,
                        BRK_XDP_MAX_NODES), -1;
    if (output_count > BRK_XDP_MAX_OUTPUTS)
        return brk_fail(error, error_size, "XDP: %u outputs, the program takes at most %d", output_count,
                        BRK_XDP_MAX_OUTPUTS), -1;
    for (unsigned i = 0; i < output_count; i++)
        output_owner[i] = -1;
    for (unsigned n = 0; n < node_count; n++) {
        const struct brk_xdp_node *node = &nodes[n];
        if (node->kind != BRK_XDP_DUMMY && node->kind != BRK_XDP_LOADBALANCER && node->kind != BRK_XDP_DUPLICATOR
            && node->kind != BRK_XDP_FILTER)
            return brk_fail(error, error_size, "XDP: brick %u has unknown kind %u", n, node->kind), -1;
        if (node->output_count == 0 || node->output_count > BRK_XDP_MAX_NODE_OUTPUTS
            || (node->kind == BRK_XDP_DUMMY && node->output_count != 1)
            || (node->kind == BRK_XDP_FILTER && node->output_count > 2))
            return brk_fail(error, error_size, "XDP: brick %u has %u outputs", n, node->output_count), -1;
        if (node->kind == BRK_XDP_LOADBALANCER && node->split != 2 && node->split != 4)
            return brk_fail(error, error_size, "XDP: brick %u: split must be 2 or 4, not %u", n, node->split), -1;
        if (node->kind == BRK_XDP_DUPLICATOR) {
            if (node->duplicator >= BRK_XDP_MAX_DUPLICATORS || duplicators_used & (1u << node->duplicator))
                return brk_fail(error, error_size, "XDP: at most %d Duplicators, each with its own map",
                                BRK_XDP_MAX_DUPLICATORS), -1;
            duplicators_used |= 1u << node->duplicator;
        }
        if (node->kind == BRK_XDP_FILTER) {
            if (node->filter >= BRK_XDP_MAX_FILTERS || filters_used & (1u << node->filter))
                return brk_fail(error, error_size, "XDP: at most %d Filters, each with its own number",
                                BRK_XDP_MAX_FILTERS), -1;
            filters_used |= 1u << node->filter;
        }
        if (node->first_output > output_count || node->output_count > output_count - node->first_output)
            return brk_fail(error, error_size, "XDP: brick %u's outputs are past the program's %u", n,
                            output_count), -1;
        for (unsigned i = 0; i < node->output_count; i++) {
            unsigned output = node->first_output + i;
            int32_t child = node->child[i];
            if (output_owner[output] >= 0)
                return brk_fail(error, error_size, "XDP: output %u belongs to bricks %d and %u", output,
                                output_owner[output], n), -1;
            output_owner[output] = (int)n;
            if (child < 0) {
                if (output_ifindexes[output] <= 0)
                    return brk_fail(error, error_size, "XDP: output %u of brick %u has no interface", i, n), -1;
                continue;
            }
            /* A broadcast reaches devices only: XDP cannot clone a frame into a brick. */
            if (node->kind == BRK_XDP_DUPLICATOR)
                return brk_fail(error, error_size, "XDP: a Duplicator's outputs must be interfaces, not bricks"), -1;
            if (child == 0 || (unsigned)child >= node_count || (unsigned)child == n || parents[child]++)
                return brk_fail(error, error_size, "XDP: brick %u's output %u is not a tree link", n, i), -1;
        }
    }
    /* Every brick below the root has one parent; the levels bound the walk (and rule out cycles). */
    unsigned level[BRK_XDP_MAX_NODES] = { 0 };
    unsigned reached = 1, frontier_start = 0;
    unsigned order[BRK_XDP_MAX_NODES] = { 0 };
    level[0] = 1;
    while (frontier_start < reached) {
        unsigned n = order[frontier_start++];
        for (unsigned i = 0; i < nodes[n].output_count; i++) {
            int32_t child = nodes[n].child[i];
            if (child < 0)
                continue;
            level[child] = level[n] + 1;
            if (level[child] > BRK_XDP_MAX_LEVELS)
                return brk_fail(error, error_size, "XDP: a chain of more than %d bricks", BRK_XDP_MAX_LEVELS), -1;
            order[reached++] = (unsigned)child;
        }
    }
    if (reached != node_count)
        return brk_fail(error, error_size, "XDP: %u bricks are not below the first one", node_count - reached), -1;
    return 0;
}

static int map_fd(struct bpf_object *object, const char *name, char *error, size_t error_size)
{
    int fd = bpf_object__find_map_fd_by_name(object, name);
    if (fd < 0)
        brk_fail(error, error_size, "XDP: the program has no map %s: reinstall bricks", name);
    return fd;
}

static int fill_maps(struct bpf_object *object, const struct brk_xdp_node *nodes, unsigned node_count,
                     const int *output_ifindexes, unsigned output_count, char *error, size_t error_size)
{
    static const char *const duplicator_maps[BRK_XDP_MAX_DUPLICATORS] = {
        "brk_duplicator0", "brk_duplicator1", "brk_duplicator2", "brk_duplicator3"
    };
    int nodes_fd = map_fd(object, "brk_nodes", error, error_size);
    int outputs_fd = map_fd(object, "brk_outputs", error, error_size);
    if (nodes_fd < 0 || outputs_fd < 0)
        return -1;
    for (uint32_t n = 0; n < node_count; n++) {
        if (bpf_map_update_elem(nodes_fd, &n, &nodes[n], BPF_ANY))
            return brk_fail(error, error_size, "XDP: cannot store brick %u: %s", n, strerror(errno)), -1;
        if (nodes[n].kind != BRK_XDP_DUPLICATOR)
            continue;
        int broadcast_fd = map_fd(object, duplicator_maps[nodes[n].duplicator], error, error_size);
        if (broadcast_fd < 0)
            return -1;
        for (uint32_t i = 0; i < nodes[n].output_count; i++) {
            uint32_t ifindex = (uint32_t)output_ifindexes[nodes[n].first_output + i];
            if (bpf_map_update_elem(broadcast_fd, &i, &ifindex, BPF_ANY))
                return brk_fail(error, error_size, "XDP: cannot add interface %u to a Duplicator: %s", ifindex,
                                strerror(errno)), -1;
        }
    }
    for (uint32_t output = 0; output < output_count; output++) {
        uint32_t ifindex = (uint32_t)output_ifindexes[output];
        if (ifindex && bpf_map_update_elem(outputs_fd, &output, &ifindex, BPF_ANY))
            return brk_fail(error, error_size, "XDP: cannot add interface %u as output %u: %s", ifindex, output,
                            strerror(errno)), -1;
    }
    return 0;
}

brk_xdp *brk_xdp_open(const char *object_path, const struct brk_xdp_node *nodes, unsigned node_count,
                      const int *output_ifindexes, unsigned output_count, char *error, size_t error_size)
{
    char line[256];
    if (check_tree(nodes, node_count, output_ifindexes, output_count, error, error_size))
        return NULL;
    struct brk_xdp *xdp = calloc(1, sizeof(*xdp));
    if (!xdp)
        return brk_fail(error, error_size, "out of memory");
    xdp->node_count = node_count;
    xdp->output_count = output_count;
    xdp->cpus = libbpf_num_possible_cpus();
    libbpf_set_print(keep_libbpf_message);
    libbpf_log_used = 0;
    libbpf_log[0] = '\0';

    xdp->object = bpf_object__open_file(object_path, NULL);
    if (!xdp->object) {
        brk_fail(error, error_size, "XDP: cannot open %s: %s", object_path, strerror(errno));
        goto fail;
    }
    if (getenv("BRICKS_XDP_VERBOSE")) {
        /* The verifier's statistics (instructions processed per function) even on success. */
        struct bpf_program *each;
        bpf_object__for_each_program(each, xdp->object)
            bpf_program__set_log_level(each, 4);
    }
    if (bpf_object__load(xdp->object)) {
        int code = errno;
        if (code == EPERM)
            brk_fail(error, error_size, "XDP: the kernel refused the program (not root, or a locked-memory limit)");
        else
            brk_fail(error, error_size, "XDP: the kernel refused the program: %s (%s)", strerror(code),
                     last_libbpf_line(line, sizeof(line)));
        goto fail;
    }
    struct bpf_program *program = bpf_object__find_program_by_name(xdp->object, PROGRAM_NAME);
    if (!program) {
        brk_fail(error, error_size, "XDP: %s has no program %s: reinstall bricks", object_path, PROGRAM_NAME);
        goto fail;
    }
    xdp->program_fd = bpf_program__fd(program);
    struct bpf_program *pass_program = bpf_object__find_program_by_name(xdp->object, PASS_PROGRAM_NAME);
    if (!pass_program) {
        brk_fail(error, error_size, "XDP: %s has no program %s: reinstall bricks", object_path, PASS_PROGRAM_NAME);
        goto fail;
    }
    xdp->pass_program_fd = bpf_program__fd(pass_program);
    xdp->node_counters_fd = map_fd(xdp->object, "brk_node_counters", error, error_size);
    xdp->output_counters_fd = map_fd(xdp->object, "brk_output_counters", error, error_size);
    if (xdp->cpus <= 0 || xdp->node_counters_fd < 0 || xdp->output_counters_fd < 0
        || fill_maps(xdp->object, nodes, node_count, output_ifindexes, output_count, error, error_size)) {
        if (xdp->cpus <= 0)
            brk_fail(error, error_size, "XDP: cannot count the CPUs");
        goto fail;
    }
    return xdp;
fail:
    bpf_object__close(xdp->object);
    free(xdp);
    return NULL;
}

int brk_xdp_attached_id(int ifindex, uint32_t *program_id)
{
    *program_id = 0;
    int result = bpf_xdp_query_id(ifindex, 0, program_id);
    return result < 0 ? result : 0;
}

/* A BPF link per attachment: no other program can replace ours through it
 * (nor ours theirs), and it is detached when its descriptor closes, so a
 * process killed with SIGKILL leaves no program behind. */
static int link_program(int program_fd, int ifindex, uint32_t mode_flags)
{
    LIBBPF_OPTS(bpf_link_create_opts, options, .flags = mode_flags);
    int fd = bpf_link_create(program_fd, ifindex, BPF_XDP, &options);
    return fd < 0 ? -errno : fd;
}

static int attach_program(brk_xdp *xdp, int program_fd, int ifindex, int mode, int *generic,
                          char *error, size_t error_size)
{
    uint32_t existing = 0;
    char name[32];
    snprintf(name, sizeof(name), "ifindex %d", ifindex);
    if (xdp->attachment_count == MAX_ATTACHMENTS)
        return brk_fail(error, error_size, "XDP: one program takes at most %d interfaces", MAX_ATTACHMENTS), -1;
    int result = brk_xdp_attached_id(ifindex, &existing);
    if (result < 0)
        return brk_fail(error, error_size, "XDP: cannot query %s: %s", name, strerror(-result)), -1;
    if (existing)
        return brk_fail(error, error_size, "XDP: %s already runs XDP program %u: not replacing it", name,
                        existing), -1;
    uint32_t mode_flags = mode == BRK_XDP_MODE_GENERIC ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    int link_fd = link_program(program_fd, ifindex, mode_flags);
    if (link_fd < 0 && mode == BRK_XDP_MODE_AUTO && link_fd != -EBUSY && link_fd != -EEXIST) {
        mode_flags = XDP_FLAGS_SKB_MODE;
        link_fd = link_program(program_fd, ifindex, mode_flags);
    }
    /* Another program arrived since the query: the kernel refuses to replace it. */
    if (link_fd == -EBUSY || link_fd == -EEXIST)
        return brk_fail(error, error_size, "XDP: %s already runs an XDP program: not replacing it", name), -1;
    if (link_fd < 0)
        return brk_fail(error, error_size, "XDP: cannot attach to %s in %s mode: %s", name,
                        mode_flags == XDP_FLAGS_SKB_MODE ? "generic" : "native", strerror(-link_fd)), -1;
    xdp->attachments[xdp->attachment_count++] = (struct attachment){ ifindex, link_fd };
    if (generic)
        *generic = mode_flags == XDP_FLAGS_SKB_MODE;
    return 0;
}

int brk_xdp_attach(brk_xdp *xdp, int ifindex, int mode, int *generic, char *error, size_t error_size)
{
    return attach_program(xdp, xdp->program_fd, ifindex, mode, generic, error, error_size);
}

int brk_xdp_attach_pass(brk_xdp *xdp, int ifindex, char *error, size_t error_size)
{
    /* Native only: generic mode gives a veth no NAPI, the reason for this program. */
    return attach_program(xdp, xdp->pass_program_fd, ifindex, BRK_XDP_MODE_NATIVE, NULL, error, error_size);
}

int brk_xdp_detach(brk_xdp *xdp, int ifindex)
{
    for (unsigned i = 0; i < xdp->attachment_count; i++) {
        struct attachment *attachment = &xdp->attachments[i];
        if (attachment->ifindex != ifindex)
            continue;
        /* Closing the link detaches exactly our program (nothing if the interface went away). */
        int result = close(attachment->link_fd) ? -errno : 0;
        *attachment = xdp->attachments[--xdp->attachment_count];
        return result;
    }
    return -ENOENT;
}

void brk_xdp_close(brk_xdp *xdp)
{
    if (!xdp)
        return;
    for (unsigned filter = 0; filter < BRK_XDP_MAX_FILTERS; filter++)
        brk_xdp_filter_unbind(xdp->filters[filter]);
    while (xdp->attachment_count)
        brk_xdp_detach(xdp, xdp->attachments[0].ifindex);
    bpf_object__close(xdp->object);
    free(xdp);
}

int brk_xdp_map(brk_xdp *xdp, const char *name)
{
    return bpf_object__find_map_fd_by_name(xdp->object, name);
}

int brk_xdp_cpus(brk_xdp *xdp)
{
    return xdp->cpus;
}

struct brk_xdp_filter **brk_xdp_filter_slot(brk_xdp *xdp, unsigned filter)
{
    return filter < BRK_XDP_MAX_FILTERS ? &xdp->filters[filter] : NULL;
}

/* Sums count uint64_t counters of one per-CPU array element into out. */
static int sum_per_cpu(brk_xdp *xdp, int fd, uint32_t key, uint64_t *out, unsigned count)
{
    size_t stride = (count * sizeof(uint64_t) + 7) & ~(size_t)7;
    uint64_t *values = calloc((size_t)xdp->cpus, stride);
    if (!values)
        return -ENOMEM;
    if (bpf_map_lookup_elem(fd, &key, values)) {
        int code = -errno;
        free(values);
        return code;
    }
    memset(out, 0, count * sizeof(uint64_t));
    for (int cpu = 0; cpu < xdp->cpus; cpu++)
        for (unsigned i = 0; i < count; i++)
            out[i] += values[(size_t)cpu * (stride / sizeof(uint64_t)) + i];
    free(values);
    return 0;
}

int brk_xdp_node_counters(brk_xdp *xdp, unsigned node, struct brk_xdp_node_counters *out)
{
    if (node >= xdp->node_count)
        return -EINVAL;
    return sum_per_cpu(xdp, xdp->node_counters_fd, node, (uint64_t *)out, sizeof(*out) / sizeof(uint64_t));
}

int brk_xdp_output_counters(brk_xdp *xdp, unsigned output, struct brk_xdp_output_counters *out)
{
    if (output >= xdp->output_count)
        return -EINVAL;
    return sum_per_cpu(xdp, xdp->output_counters_fd, output, (uint64_t *)out, sizeof(*out) / sizeof(uint64_t));
}

int brk_xdp_test_run(brk_xdp *xdp, const uint8_t *frame, uint32_t length, unsigned repeat, uint32_t *action,
                     uint32_t *nanoseconds, char *error, size_t error_size)
{
    LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = frame, .data_size_in = length, .repeat = (int)repeat);
    if (bpf_prog_test_run_opts(xdp->program_fd, &options))
        return brk_fail(error, error_size, "XDP: BPF_PROG_RUN failed: %s", strerror(errno)), -1;
    *action = options.retval;
    *nanoseconds = options.duration;
    return 0;
}

#else
/* Built without libbpf (no libbpf-dev): the same API, refusing in one line. */
#define NO_LIBBPF "XDP: bricks was built without libbpf (bin/setup installs libbpf-dev, then reinstall bricks)"

brk_xdp *brk_xdp_open(const char *object_path, const struct brk_xdp_node *nodes, unsigned node_count,
                      const int *output_ifindexes, unsigned output_count, char *error, size_t error_size)
{
    return brk_fail(error, error_size, NO_LIBBPF);
}

int brk_xdp_attach(brk_xdp *xdp, int ifindex, int mode, int *generic, char *error, size_t error_size)
{
    return brk_fail(error, error_size, NO_LIBBPF), -1;
}

int brk_xdp_attach_pass(brk_xdp *xdp, int ifindex, char *error, size_t error_size)
{
    return brk_fail(error, error_size, NO_LIBBPF), -1;
}

int brk_xdp_detach(brk_xdp *xdp, int ifindex)
{
    return -ENOSYS;
}

void brk_xdp_close(brk_xdp *xdp)
{
}

int brk_xdp_node_counters(brk_xdp *xdp, unsigned node, struct brk_xdp_node_counters *out)
{
    return -ENOSYS;
}

int brk_xdp_output_counters(brk_xdp *xdp, unsigned output, struct brk_xdp_output_counters *out)
{
    return -ENOSYS;
}

int brk_xdp_test_run(brk_xdp *xdp, const uint8_t *frame, uint32_t length, unsigned repeat, uint32_t *action,
                     uint32_t *nanoseconds, char *error, size_t error_size)
{
    return brk_fail(error, error_size, NO_LIBBPF), -1;
}

int brk_xdp_attached_id(int ifindex, uint32_t *program_id)
{
    *program_id = 0;
    return -ENOSYS;
}
#endif
