/* Strip: removes the chosen encapsulations (VLAN tags, MPLS label stacks,
 * VXLAN, GENEVE, GRE, ERSPAN, GTP-U) and forwards the inner Ethernet frame to
 * every output. The one dissector's tunnel walk (dissect.h) names every
 * layer; the frame handed on is
 *
 *     prefix (the addresses, and the tags kept, of the Ethernet header that
 *     encloses the body) + the body's Ethernet type + the body,
 *
 * where the body starts after the deepest chosen encapsulation. An inner
 * Ethernet frame is the body's own header (VXLAN, GRE 0x6558, ERSPAN, MPLS
 * pseudowires); inner bare IP (GTP-U, GRE-IP, MPLS-IP, GENEVE-IP, ERSPAN III
 * frame type 2) gets the addresses of the Ethernet header of the outer frame
 * and the type its version names. When prefix, type and body already lie
 * side by side in the frame the packet moves (brk_packet_moved, zero copy for
 * the sinks that may); else it is assembled in the brick's own buffer, which
 * a sink copies from before the next packet (send() copies or writes). */
#include "internal.h"
#include "dissect.h"
#include "api/strip.h"

#define STRIP_MAX_TUNNELS 8
#define STRIP_BUFFER_BYTES (65536 + 64)
#define ETHERNET_ADDRESSES_BYTES 12
#define ETHERNET_HEADER_BYTES 14

static const char *const strip_counters[] = { "stripped", "unchanged", "cut", "synthesised", NULL };

struct strip_state {
    unsigned layers;                  /* the config's bits */
    uint8_t buffer[STRIP_BUFFER_BYTES];
};

/* What the frame handed on is made of (offsets in the received frame). */
struct strip_cut {
    uint32_t prefix_offset;           /* the enclosing Ethernet header */
    uint32_t prefix_length;           /* its addresses and the tags kept */
    uint16_t ethertype;
    uint32_t body_offset;
    int synthesised;
};

static inline int chosen(unsigned layers, unsigned kind)
{
    return (layers >> kind) & 1;
}

static inline uint16_t read_be16(const uint8_t *bytes)
{
    return (uint16_t)(bytes[0] << 8 | bytes[1]);
}

/* Whether layers[i] ends a chosen encapsulation: the index of the layer its
 * payload starts at, -2 when the walk found no layer after it, else -1. GRE that carries ERSPAN is ERSPAN's; an MPLS
 * stack ends at its bottom label (and a pseudowire's control word). */
static int encapsulation_end(const struct brk_tunnel_keys *t, unsigned layers, int i)
{
    unsigned kind = t->layers[i].kind;
    int next = i + 1;
    switch (kind) {
    case BRK_LAYER_GRE:
        if (next < t->layer_count && t->layers[next].kind == BRK_LAYER_ERSPAN)
            return -1;
        break;
    case BRK_LAYER_MPLS:
        if (!t->layers[i].detail)
            return -1;
        if (next < t->layer_count && t->layers[next].kind == BRK_LAYER_PW_CONTROL_WORD)
            next++;
        break;
    case BRK_LAYER_VXLAN:
    case BRK_LAYER_GENEVE:
    case BRK_LAYER_ERSPAN:
    case BRK_LAYER_GTP:
        break;
    default:
        return -1;
    }
    if (!chosen(layers, kind))
        return -1;
    return next < t->layer_count ? next : -2;
}

/* The MPLS stack that ends at layers[i] starts at its first label: the type field before it. */
static int first_label(const struct brk_tunnel_keys *t, int i)
{
    while (i > 0 && t->layers[i - 1].kind == BRK_LAYER_MPLS)
        i--;
    return i;
}

/* The cut after the deepest chosen encapsulation whose payload is a frame or IP; 0 when there is none.
 * *cut_short says the deepest chosen one's payload ends past the captured length. */
static int find_cut(const uint8_t *data, const struct brk_tunnel_keys *t, unsigned layers,
                    struct strip_cut *cut, int *cut_short)
{
    int found = 0, ethernet = 0;      /* the layer index of the last Ethernet header */
    *cut_short = 0;
    for (int i = 0; i < t->layer_count; i++) {
        unsigned kind = t->layers[i].kind;
        if (kind == BRK_LAYER_ETHERNET) {
            ethernet = i;
            continue;
        }
        int body = encapsulation_end(t, layers, i);
        if (body == -2)
            *cut_short = t->stop == BRK_DISSECT_STOP_TRUNCATED;
        if (body < 0)
            continue;
        unsigned body_kind = t->layers[body].kind;
        uint32_t body_offset = t->layers[body].offset;
        if (body_kind == BRK_LAYER_ETHERNET) {
            /* The walk records whole headers only: the inner one is all there. */
            cut->prefix_offset = body_offset;
            cut->prefix_length = ETHERNET_ADDRESSES_BYTES;
            cut->ethertype = read_be16(data + body_offset + ETHERNET_ADDRESSES_BYTES);
            cut->body_offset = body_offset + ETHERNET_HEADER_BYTES;
            cut->synthesised = 0;
        } else if (body_kind == BRK_LAYER_IPV4 || body_kind == BRK_LAYER_IPV6) {
            uint32_t enclosing = t->layers[ethernet].offset;
            cut->prefix_offset = enclosing;
            cut->ethertype = body_kind == BRK_LAYER_IPV4 ? BRK_ETHERTYPE_IPV4 : BRK_ETHERTYPE_IPV6;
            cut->body_offset = body_offset;
            if (kind == BRK_LAYER_MPLS) {
                /* The labels sat in this very frame: its tags stay (unless chosen too, below). */
                cut->prefix_length = t->layers[first_label(t, i)].offset - 2 - enclosing;
                cut->synthesised = 0;
            } else {
                cut->prefix_length = ETHERNET_ADDRESSES_BYTES;
                cut->synthesised = 1;
            }
        } else {
            /* Its payload is no frame (a GTP echo, an unknown type) or is cut short. */
            *cut_short = t->stop == BRK_DISSECT_STOP_TRUNCATED;
            continue;
        }
        found = 1;
        *cut_short = 0;
    }
    return found;
}

/* Chosen VLAN tags right after the Ethernet addresses of the frame handed on
 * come off: the type of the innermost removed tag's payload takes their place. */
static int strip_tags(const uint8_t *data, const struct brk_tunnel_keys *t, struct strip_cut *cut)
{
    int removed = 0;
    for (int i = 0; i + 1 < t->layer_count; i++) {
        const struct brk_dissect_layer *layer = &t->layers[i];
        if (layer->kind != BRK_LAYER_VLAN)
            continue;
        if (layer->offset == cut->body_offset) {
            /* A tag at the start of the body: its payload is the body now. */
            cut->ethertype = read_be16(data + layer->offset + 2);
            cut->body_offset = layer->offset + 4;
            removed = 1;
        } else if (layer->offset == cut->prefix_offset + cut->prefix_length
                   && cut->prefix_length > ETHERNET_ADDRESSES_BYTES) {
            /* Tags kept in an MPLS frame's prefix: it shrinks to the addresses. */
            cut->prefix_length = ETHERNET_ADDRESSES_BYTES;
            removed = 1;
        }
    }
    return removed;
}

static void strip_push(struct brk_brick *brick, const struct brk_packet *packet)
{
    struct strip_state *state = brick->state;
    uint64_t *counters = brick->stats.counters;
    struct brk_tunnel_keys t;
    struct strip_cut cut = { 0, ETHERNET_ADDRESSES_BYTES, 0, ETHERNET_HEADER_BYTES, 0 };
    int cut_short = 0;
    brk_dissect_tunnels(packet->data, packet->data + packet->caplen, BRK_DISSECT_TUNNELS_ONLY,
                        STRIP_MAX_TUNNELS, &t);
    if (BRK_UNLIKELY(t.layer_count == 0 || t.layers[0].kind != BRK_LAYER_ETHERNET)) {
        counters[BRK_STRIP_UNCHANGED]++;
        brk_push_to_every_output(brick, packet);
        return;
    }
    cut.ethertype = read_be16(packet->data + ETHERNET_ADDRESSES_BYTES);
    int found = find_cut(packet->data, &t, state->layers, &cut, &cut_short);
    if (chosen(state->layers, BRK_LAYER_VLAN))
        found |= strip_tags(packet->data, &t, &cut);
    if (!found) {
        counters[cut_short ? BRK_STRIP_CUT : BRK_STRIP_UNCHANGED]++;
        brk_push_to_every_output(brick, packet);
        return;
    }
    counters[BRK_STRIP_STRIPPED]++;
    counters[BRK_STRIP_SYNTHESISED] += (uint64_t)cut.synthesised;
    uint32_t body_length = packet->caplen - cut.body_offset;
    struct brk_packet stripped;
    if (cut.prefix_offset + cut.prefix_length + 2 == cut.body_offset
            && read_be16(packet->data + cut.body_offset - 2) == cut.ethertype) {
        /* Already side by side in the frame: it moves, nothing is copied. */
        stripped = brk_packet_moved(packet, cut.prefix_offset, packet->caplen - cut.prefix_offset);
    } else {
        uint32_t length = cut.prefix_length + 2 + body_length;
        uint8_t *out = state->buffer;
        if (length > sizeof(state->buffer)) {
            body_length = (uint32_t)sizeof(state->buffer) - cut.prefix_length - 2;
            length = sizeof(state->buffer);
        }
        memcpy(out, packet->data + cut.prefix_offset, cut.prefix_length);
        out[cut.prefix_length] = (uint8_t)(cut.ethertype >> 8);
        out[cut.prefix_length + 1] = (uint8_t)cut.ethertype;
        memcpy(out + cut.prefix_length + 2, packet->data + cut.body_offset, body_length);
        stripped = brk_packet_moved(packet, 0, packet->caplen);
        stripped.data = out;
        stripped.caplen = length;
        /* The bytes not captured are the body's: the wire length loses what came off the front. */
        stripped.wirelen = packet->wirelen - (cut.body_offset - cut.prefix_length - 2);
    }
    brk_push_to_every_output(brick, &stripped);
}

static int strip_init(struct brk_brick *brick, char *error, size_t error_size)
{
    struct strip_state *state = brick->state;
    const struct brk_strip_config *config = brick->config;
    const unsigned known = 1u << BRK_LAYER_VLAN | 1u << BRK_LAYER_MPLS | 1u << BRK_LAYER_VXLAN
                           | 1u << BRK_LAYER_GENEVE | 1u << BRK_LAYER_GRE | 1u << BRK_LAYER_ERSPAN
                           | 1u << BRK_LAYER_GTP;
    if (config->layers & ~known) {
        brk_fail(error, error_size, "Strip: layer bits 0x%x are not encapsulations it removes",
                 config->layers & ~known);
        return -1;
    }
    state->layers = config->layers;
    return 0;
}

const struct brk_brick_kind brk_brick_strip = {
    .name = "Strip",
    .min_outputs = 1,
    .max_outputs = BRK_MAX_OUTPUTS,
    .config_size = sizeof(struct brk_strip_config),
    .config_type = "struct brk_strip_config",
    .counters = strip_counters,
    .state_size = sizeof(struct strip_state),
    .init = strip_init,
    .push = strip_push,
};
