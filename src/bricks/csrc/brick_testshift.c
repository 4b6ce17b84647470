/* TestShift: hands on each packet with its first 4 bytes cut off but its
 * swappable slot kept, breaking the zero-copy rule (internal.h) on purpose,
 * as a Strip brick that forgot brk_packet_moved() would. It exists for the
 * tests of the netmap sink's own check and has no Python descriptor: no
 * shell can make one. */
#include "internal.h"

#define TEST_SHIFT_BYTES 4

static void test_shift_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    struct brk_packet shifted = brk_packet_moved(packet, TEST_SHIFT_BYTES, packet->caplen);
    shifted.swappable_slot = packet->swappable_slot;   /* the mistake under test */
    shifted.slot_region = packet->slot_region;
    brk_output_push(brick, 0, &shifted);
}

const struct brk_brick_kind brk_brick_testshift = {
    .name = "TestShift",
    .min_outputs = 1,
    .max_outputs = 1,
    .push = test_shift_push,
};
