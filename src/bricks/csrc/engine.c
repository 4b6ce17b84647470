/* The engine: bricks wired into a tree, and the RX loop that drives them.
 *
 * One engine runs in one thread (the Python thread that called
 * brk_engine_run, with the GIL released). Per batch it takes up to `batch`
 * packets from each source, pushes them through the source's brick tree, then
 * flushes every sink of the tree once: no per-packet syscall.
 *
 * Counters are written only by the engine thread. Once per batch it
 * publishes a copy under a sequence lock (odd = being written); readers in
 * other threads copy it and retry if the sequence moved, so they never see a
 * half-updated set and never slow the loop down.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BRK_IDLE_POLL_MS 50
#define BRK_STATS_INTERVAL_NS 100000000ull

extern const struct brk_brick_kind *const brk_brick_kinds[];

void *brk_fail(char *error, size_t error_size, const char *format, ...)
{
    va_list args;
    if (error && error_size) {
        va_start(args, format);
        vsnprintf(error, error_size, format, args);
        va_end(args);
    }
    return NULL;
}

const brk_brick_kind *brk_brick_kind_find(const char *name)
{
    for (const struct brk_brick_kind *const *kind = brk_brick_kinds; *kind; kind++)
        if (strcmp((*kind)->name, name) == 0)
            return *kind;
    return NULL;
}

const char *brk_brick_kind_config_type(const brk_brick_kind *kind)
{
    return kind->config_size ? kind->config_type : NULL;
}

const char *brk_brick_kind_counter(const brk_brick_kind *kind, unsigned i)
{
    if (!kind->counters)
        return NULL;
    for (unsigned k = 0; k < i; k++)
        if (!kind->counters[k])
            return NULL;
    return i < BRK_MAX_KIND_COUNTERS ? kind->counters[i] : NULL;
}

const brk_brick_kind *brk_brick_kind_of(const brk_brick *brick)
{
    return brick->kind;
}

static void brick_release(struct brk_brick *brick)
{
    free((void *)brick->config);
    free(brick->state);
    free(brick);
}

brk_brick *brk_brick_new(const brk_brick_kind *kind, const void *config, char *error, size_t error_size)
{
    struct brk_brick *brick = calloc(1, sizeof(*brick));
    void *own_config = NULL;
    if (!brick)
        return brk_fail(error, error_size, "out of memory");
    brick->kind = kind;
    if (kind->config_size) {
        if (!config) {
            free(brick);
            return brk_fail(error, error_size, "%s needs its config", kind->name);
        }
        if (!(own_config = malloc(kind->config_size))) {
            free(brick);
            return brk_fail(error, error_size, "out of memory");
        }
        memcpy(own_config, config, kind->config_size);
        brick->config = own_config;
    }
    if (kind->state_size && !(brick->state = calloc(1, kind->state_size))) {
        brick_release(brick);
        return brk_fail(error, error_size, "out of memory");
    }
    if (kind->init && kind->init(brick, error, error_size) != 0) {
        brick_release(brick);
        return NULL;
    }
    return brick;
}

static void publish_begin(uint32_t *sequence)
{
    __atomic_store_n(sequence, *sequence + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void publish_end(uint32_t *sequence)
{
    __atomic_store_n(sequence, *sequence + 1, __ATOMIC_RELEASE);
}

/* Copies what a publisher protects with sequence into a reader's buffer. */
static void read_published(const uint32_t *sequence, void *to, const void *from, size_t size)
{
    for (;;) {
        uint32_t before = __atomic_load_n(sequence, __ATOMIC_ACQUIRE);
        if (before & 1) {
            sched_yield();
            continue;
        }
        memcpy(to, from, size);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(sequence, __ATOMIC_RELAXED) == before)
            return;
    }
}

static void publish_brick(struct brk_brick *brick)
{
    publish_begin(&brick->snapshot_sequence);
    brick->snapshot = brick->stats;
    for (unsigned i = 0; i < brick->outputs; i++)
        brick->snapshot_output[i] = brick->output[i].counters;
    publish_end(&brick->snapshot_sequence);
}

void brk_io_set_state(struct brk_io_state_cell *cell, int status, const char *format, ...)
{
    va_list args;
    publish_begin(&cell->sequence);
    cell->state.status = status;
    cell->state.changes++;
    va_start(args, format);
    vsnprintf(cell->state.reason, sizeof(cell->state.reason), format, args);
    va_end(args);
    publish_end(&cell->sequence);
}

void brk_io_read_state(const struct brk_io_state_cell *cell, struct brk_io_state *out)
{
    read_published(&cell->sequence, out, &cell->state, sizeof(*out));
}

void brk_source_state(brk_source *source, struct brk_io_state *out)
{
    brk_io_read_state(&source->state, out);
}

void brk_sink_state(brk_sink *sink, struct brk_io_state *out)
{
    brk_io_read_state(&sink->state, out);
}

static int brick_add_output(struct brk_brick *brick, struct brk_brick *child, struct brk_sink *sink)
{
    if (brick->outputs >= BRK_MAX_OUTPUTS || brick->outputs >= brick->kind->max_outputs)
        return -1;
    brick->output[brick->outputs].child = child;
    brick->output[brick->outputs].sink = sink;
    if (sink)
        sink->counters = &brick->output[brick->outputs].counters;
    brick->outputs++;
    brick->outputs_reciprocal = UINT64_MAX / brick->outputs + 1;
    brick->stats.outputs = brick->outputs;
    publish_brick(brick);
    return 0;
}

int brk_brick_add_child(brk_brick *brick, brk_brick *child)
{
    return brick_add_output(brick, child, NULL);
}

int brk_brick_add_sink(brk_brick *brick, brk_sink *sink)
{
    return brick_add_output(brick, NULL, sink);
}

void brk_brick_stats(const brk_brick *brick, struct brk_brick_stats *out)
{
    read_published(&brick->snapshot_sequence, out, &brick->snapshot, sizeof(*out));
}

int brk_brick_output_stats(const brk_brick *brick, unsigned output, struct brk_counters *out)
{
    if (output >= brick->outputs)
        return -1;
    read_published(&brick->snapshot_sequence, out, &brick->snapshot_output[output], sizeof(*out));
    return 0;
}

void brk_brick_free(brk_brick *brick)
{
    if (!brick)
        return;
    if (brick->kind->fini)
        brick->kind->fini(brick);
    brick_release(brick);
}

/* A growable array of pointers: an engine has as many sources, sinks and
 * bricks as were linked to it, with no fixed limit to pass silently. */
struct pointer_list {
    void **item;
    unsigned count, capacity;
};

static int pointer_list_add(struct pointer_list *list, void *item)
{
    if (list->count == list->capacity) {
        unsigned capacity = list->capacity ? list->capacity * 2 : 16;
        void **grown = realloc(list->item, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        list->item = grown;
        list->capacity = capacity;
    }
    list->item[list->count++] = item;
    return 0;
}

static int pointer_list_has(const struct pointer_list *list, const void *item)
{
    for (unsigned i = 0; i < list->count; i++)
        if (list->item[i] == item)
            return 1;
    return 0;
}

struct brk_engine {
    unsigned batch;
    int cpu;
    int stop_fd;                          /* eventfd: wakes the loop's poll() */
    volatile int stop_requested;
    struct pointer_list sources;          /* struct brk_source * */
    struct pointer_list targets;          /* struct brk_brick *, the brick source i feeds */
    struct pointer_list sinks;            /* every sink of every tree: flushed once per batch */
    struct pointer_list bricks;           /* every brick of every tree: published, drops summed */
    struct pollfd *poll_fds;              /* the stop eventfd, then one per source */
    struct brk_engine_stats stats;
    uint32_t snapshot_sequence;           /* see publish_begin */
    struct brk_engine_stats snapshot;
    struct brk_packet *packets;           /* batch array */
};

#define SOURCE(engine, s) ((struct brk_source *)(engine)->sources.item[s])
#define TARGET(engine, s) ((struct brk_brick *)(engine)->targets.item[s])
#define SINK(engine, k) ((struct brk_sink *)(engine)->sinks.item[k])
#define BRICK(engine, b) ((struct brk_brick *)(engine)->bricks.item[b])

brk_engine *brk_engine_new(unsigned batch, int cpu)
{
    struct brk_engine *engine = calloc(1, sizeof(*engine));
    if (!engine)
        return NULL;
    engine->batch = batch ? batch : 1024;
    engine->cpu = cpu;
    engine->packets = calloc(engine->batch, sizeof(struct brk_packet));
    engine->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!engine->packets || engine->stop_fd < 0) {
        brk_engine_free(engine);
        return NULL;
    }
    return engine;
}

/* Collects the sinks (to flush) and the bricks (to sum drops) of a tree once,
 * when its source is added, so the loop itself never walks the tree.
 * Returns 0 or -ENOMEM. */
static int collect(struct brk_engine *engine, struct brk_brick *brick)
{
    int result;
    if (pointer_list_has(&engine->bricks, brick))
        return 0;
    if ((result = pointer_list_add(&engine->bricks, brick)) != 0)
        return result;
    for (unsigned i = 0; i < brick->outputs; i++) {
        struct brk_output *out = &brick->output[i];
        if (out->child)
            result = collect(engine, out->child);
        else if (!pointer_list_has(&engine->sinks, out->sink))
            result = pointer_list_add(&engine->sinks, out->sink);
        if (result != 0)
            return result;
    }
    return 0;
}

int brk_engine_add_source(brk_engine *engine, brk_source *source, brk_brick *target)
{
    int result;
    struct pollfd *fds = realloc(engine->poll_fds, (engine->sources.count + 2) * sizeof(*fds));
    if (!fds)
        return -ENOMEM;
    engine->poll_fds = fds;
    if ((result = pointer_list_add(&engine->sources, source)) != 0)
        return result;
    if ((result = pointer_list_add(&engine->targets, target)) != 0) {
        engine->sources.count--;
        return result;
    }
    /* A tree half collected still runs (its bricks are published, its sinks
     * flushed where known), but the caller frees this engine on the error. */
    return collect(engine, target);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void publish_counters(struct brk_engine *engine)
{
    for (unsigned b = 0; b < engine->bricks.count; b++)
        publish_brick(BRICK(engine, b));
    publish_begin(&engine->snapshot_sequence);
    engine->snapshot = engine->stats;
    publish_end(&engine->snapshot_sequence);
}

static void update_drop_counts(struct brk_engine *engine)
{
    struct brk_counters sum = { 0 };
    uint64_t input_malformed = 0;
    for (unsigned s = 0; s < engine->sources.count; s++) {
        engine->stats.kernel_drops += SOURCE(engine, s)->ops->kernel_drops(SOURCE(engine, s));
        input_malformed += SOURCE(engine, s)->malformed;
    }
    for (unsigned b = 0; b < engine->bricks.count; b++) {
        struct brk_brick *brick = BRICK(engine, b);
        for (unsigned i = 0; i < brick->outputs; i++) {
            const struct brk_counters *counters = &brick->output[i].counters;
            sum.drops += counters->drops;
            sum.full += counters->full;
            sum.too_big += counters->too_big;
            sum.too_short += counters->too_short;
            sum.gone += counters->gone;
            sum.write_errors += counters->write_errors;
            sum.queued += counters->queued;
        }
    }
    engine->stats.output_drops = sum.drops;
    engine->stats.output_full = sum.full;
    engine->stats.output_too_big = sum.too_big;
    engine->stats.output_too_short = sum.too_short;
    engine->stats.output_gone = sum.gone;
    engine->stats.output_write_errors = sum.write_errors;
    engine->stats.output_queued = sum.queued;
    engine->stats.input_malformed = input_malformed;
}

/* Waits until a source has input or a stop is requested. Returns 0, or
 * -errno when poll() itself failed (the run then ends with that error). */
static int wait_for_input(struct brk_engine *engine)
{
    struct pollfd *fds = engine->poll_fds;
    unsigned n = 0;
    int ready;
    fds[n].fd = engine->stop_fd;
    fds[n++].events = POLLIN;
    for (unsigned s = 0; s < engine->sources.count; s++) {
        int fd = SOURCE(engine, s)->ops->poll_fd(SOURCE(engine, s));
        if (fd < 0)
            return 0;   /* a source that is always ready: do not sleep */
        fds[n].fd = fd;
        fds[n++].events = POLLIN | POLLERR;
    }
    ready = poll(fds, n, BRK_IDLE_POLL_MS);
    if (ready < 0)
        return errno == EINTR ? 0 : -errno;
    if (ready == 0)
        return 0;
    /* fds[s + 1] is source s: every source gave a descriptor to get here. */
    for (unsigned s = 0; s < engine->sources.count; s++) {
        struct brk_source *source = SOURCE(engine, s);
        if ((fds[s + 1].revents & (POLLERR | POLLHUP | POLLNVAL)) && source->ops->poll_error)
            source->ops->poll_error(source);
    }
    return 0;
}

static void pin_to_cpu(int cpu)
{
    cpu_set_t set;
    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Hands a source's batch to its brick tree: whole to a kind that takes
 * batches (it prefetches ahead itself), else packet by packet. */
static inline void push_to_target(struct brk_engine *engine, struct brk_brick *target,
                                  const struct brk_packet *packets, unsigned n)
{
    if (target->kind->push_batch) {
        for (unsigned i = 0; i < n; i++) {
            target->stats.received_bytes += packets[i].wirelen;
            engine->stats.received_bytes += packets[i].wirelen;
        }
        target->stats.received_packets += n;
        if (n)
            target->kind->push_batch(target, packets, n);
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        if (BRK_LIKELY(i + 1 < n))
            __builtin_prefetch(packets[i + 1].data);
        target->stats.received_packets++;
        target->stats.received_bytes += packets[i].wirelen;
        engine->stats.received_bytes += packets[i].wirelen;
        target->kind->push(target, &packets[i]);
    }
}

int brk_engine_run(brk_engine *engine)
{
    uint64_t next_stats = now_ns() + BRK_STATS_INTERVAL_NS;
    struct brk_packet *packets = engine->packets;
    int error = 0;

    pin_to_cpu(engine->cpu);
    engine->stats.running = 1;
    engine->stats.finished = 0;
    publish_counters(engine);
    while (!engine->stop_requested) {
        unsigned total = 0, exhausted = 0;
        for (unsigned s = 0; s < engine->sources.count; s++) {
            struct brk_source *source = SOURCE(engine, s);
            struct brk_brick *target = TARGET(engine, s);
            unsigned n = source->ops->next_batch(source, packets, engine->batch);
            push_to_target(engine, target, packets, n);
            engine->stats.received_packets += n;
            if (n)
                source->ops->release(source);
            total += n;
            exhausted += n == 0 && source->ops->exhausted(source);
        }
        for (unsigned k = 0; k < engine->sinks.count; k++)
            SINK(engine, k)->ops->flush(SINK(engine, k));
        engine->stats.batches++;
        if (now_ns() >= next_stats) {
            update_drop_counts(engine);
            next_stats = now_ns() + BRK_STATS_INTERVAL_NS;
            publish_counters(engine);
        } else {
            /* Idle rounds too (at most one per idle poll): a flush may have
             * counted queued frames the kernel took, or a refused retry. */
            publish_counters(engine);
        }
        if (engine->sources.count && exhausted == engine->sources.count) {
            engine->stats.finished = 1;
            break;
        }
        if (total == 0 && (error = wait_for_input(engine)) != 0)
            break;
    }
    for (unsigned k = 0; k < engine->sinks.count; k++)
        SINK(engine, k)->ops->flush(SINK(engine, k));
    update_drop_counts(engine);
    engine->stats.running = 0;
    publish_counters(engine);
    return error;
}

/* Called before each run, not by it: a stop that comes before the run's
 * thread gets going must still end that run. */
void brk_engine_rearm(brk_engine *engine)
{
    uint64_t pending;
    if (read(engine->stop_fd, &pending, sizeof(pending)) < 0) {
        /* EAGAIN: no wake-up pending. */
    }
    engine->stop_requested = 0;
}

void brk_engine_stop(brk_engine *engine)
{
    uint64_t one = 1;
    engine->stop_requested = 1;
    if (write(engine->stop_fd, &one, sizeof(one)) < 0) {
        /* The counter is saturated: a wake-up is already pending. */
    }
}

void brk_engine_stats(brk_engine *engine, struct brk_engine_stats *out)
{
    read_published(&engine->snapshot_sequence, out, &engine->snapshot, sizeof(*out));
}

void brk_engine_free(brk_engine *engine)
{
    if (!engine)
        return;
    if (engine->stop_fd >= 0)
        close(engine->stop_fd);
    free(engine->packets);
    free(engine->poll_fds);
    free(engine->sources.item);
    free(engine->targets.item);
    free(engine->sinks.item);
    free(engine->bricks.item);
    free(engine);
}
