// SPDX-License-Identifier: Apache-2.0
/*
 * The kernel fast path of the `ebpf` datapath provider.
 *
 *   VM host-end veth ─ TC ingress ─ mdp_port ──┐          exact-match cache (one hash lookup):
 *                                              ├─ parse ─ hit: counters, compiled actions; else
 *                                              │          megaflow lookup (masks + per-mask hash)
 *   vxlan (external) ─ TC ingress ─ mdp_tunnel ┤      hit: counters, action list ─ rewrites,
 *     (outer source a tunnel peer?)            │
 *        VNI bound to a local port: redirect ──┘           output (redirect_peer / clone),
 *                                                           tunnel: encapsulate here and
 *                                                           redirect_neigh to the underlay, or
 *                                                           set key + redirect to vxlan
 *                                                     miss: frame into the `mdp_upcalls` ring
 *                                                           buffer for the agent, then dropped
 *   underlay ─ TC ingress ─ mdp_underlay: a VXLAN datagram for a VNI bound
 *        here is decapsulated and redirected to its port, as mdp_tunnel
 *        would; anything else goes on to the stack (and the vxlan device).
 *   inject veth ─ TC ingress ─ mdp_inject: the agent re-injects a packet with
 *        skb->mark = action list (16 bits) | generation (16 bits); it runs
 *        that list here, so packets that missed and packets the agent makes
 *        (ARP replies, ICMP errors, DHCP) leave exactly like flow hits.
 *
 * In front of the megaflow search sits an exact-match cache (mdp_exact,
 * see struct mdp_exact in datapath.h): a megaflow hit leaves an entry
 * under the packet's whole key, so the rest of a connection costs one hash
 * lookup and, for the common action lists (MAC and TTL rewrites, then one
 * output or tunnel), no action interpreter. On this VM a program run right
 * after the CPU leaves idle pays for every distinct map and code path it
 * touches (docs/PERFORMANCE.md, issue 11): fewer of them is what it buys.
 *
 * The key and masks follow midonet_flow::FlowKey/FlowMask: the agent keeps
 * one BPF mask per distinct megaflow mask, the flows map is keyed by the
 * masked key with the mask's index in bits 24..30 of in_port, and the masks
 * are probed in the order the agent writes to `mdp_mask_list`. The parse
 * mirrors FlowKey::extract's checks, so a frame the agent would call
 * malformed is dropped here with the same count.
 *
 * All maps are pinned by name: flows installed in the kernel keep
 * forwarding while the agent restarts. Maps are only ever added, never
 * changed, so pins an older agent left still load beside the new ones.
 *
 * Tunnel sources: once the agent has written mdp_tunnel_filter[0] = 1,
 * mdp_tunnel only accepts datagrams whose outer IPv4 source is a key of
 * mdp_tunnel_peers (the hosts sharing a tunnel zone with this one); the
 * rest are dropped and counted (MDP_C_DROP_TUNNEL_SOURCE). Before that,
 * as after a fresh load, everything is accepted: the agent names the peers
 * once it has its topology (see the crate docs). The maps are pinned, so a
 * restarting agent's predecessor's set stays in force until it pushes its own.
 *
 * Reverse NAT (issue 8): the replies of a NATed connection would each need
 * a flow exact on their 5-tuple, since the agent's reverse lookup read it.
 * Instead the agent splits such a flow: a first half matching only what
 * the simulation read before the lookup, whose only action is
 * MDP_OP_REV_NAT(id), and second halves under in_port MDP_IN_RECIRC | id
 * that match the translated packet. On a first-half hit mdp_rev_nat_path
 * looks the reply up in mdp_rev_nat (under mdp_recirc[id]'s tracker and
 * kind), searches the megaflows again with the translated key, and only on
 * that second hit rewrites the packet and runs the second flow's actions;
 * anything short of that sends the packet up unchanged as an ordinary miss.
 * Where the second halves read conntrack (mdp_recirc_ct[id] set), a reply
 * whose connection mdp_ct lacks is looked up again under the untracked
 * variant of the recirculation's in_port (datapath.h).
 * The bindings come from the agent, and from mdp_state, a socket filter on
 * the agent's flow-state socket that writes the bindings of every message
 * from a peer as the datagram is queued, before any agent thread wakes.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "datapath.h"

char _license[] SEC("license") = "Apache-2.0";

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#define IPPROTO_SCTP_ 132
#define PULL_LEN 128

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MDP_MAX_FLOWS);
	__type(key, struct mdp_key);
	__type(value, struct mdp_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MDP_MAX_MASKS);
	__type(key, __u32);
	__type(value, struct mdp_key);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_masks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mdp_mask_list);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_mask_list SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MDP_MAX_MASKS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_mask_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MDP_MAX_ACT_LISTS);
	__type(key, __u32);
	__type(value, struct mdp_act_list);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_actions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MDP_MAX_STATS);
	__type(key, __u32);
	__type(value, struct mdp_flow_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_flow_stats SEC(".maps");

/* Userspace only: what the agent needs to adopt a flow after a restart
 * (tags, idle timeout), keyed by the flow's stats slot. */
struct mdp_flow_meta {
	__u64 idle_ms;
	__u32 n_tags;
	__u32 flags;
	__u64 tags[62];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MDP_MAX_STATS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct mdp_flow_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_flow_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MDP_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct mdp_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MDP_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct mdp_if_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_if_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MDP_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct mdp_port_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_port_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MDP_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_vni_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mdp_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MDP_C_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MDP_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct mdp_upcall_limit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_upcall_limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mdp_limit_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_limit_config SEC(".maps");

/* Tunnel peers: outer IPv4 source (host order) → 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MDP_MAX_PEERS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_tunnel_peers SEC(".maps");

/* Tunnel peers the programs encapsulate for themselves: address (host
 * order) → struct mdp_nexthop. A peer missing here goes through the vxlan
 * device. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MDP_MAX_PEERS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct mdp_nexthop);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_tunnel_nh SEC(".maps");

/* [0] = 1: mdp_tunnel_peers is in force (the agent pushed a set). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_tunnel_filter SEC(".maps");

/* The exact-match cache and the generation of each flow counter slot: see
 * struct mdp_exact. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MDP_MAX_EXACT);
	__type(key, struct mdp_key);
	__type(value, struct mdp_exact);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_exact SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MDP_MAX_STATS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_flow_gen SEC(".maps");

/* Reverse NAT: the bindings and the recirculation ids (struct mdp_nat_key
 * in datapath.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MDP_MAX_REV_NAT);
	__type(key, struct mdp_nat_key);
	__type(value, struct mdp_nat_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_rev_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MDP_RECIRC_MAX);
	__type(key, __u32);
	__type(value, struct mdp_recirc);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_recirc SEC(".maps");

/* Connection tracking behind split flows (struct mdp_ct_key in
 * datapath.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MDP_MAX_CT);
	__type(key, struct mdp_ct_key);
	__type(value, struct mdp_ct_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MDP_RECIRC_MAX);
	__type(key, __u32);
	__type(value, struct mdp_recirc_ct);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_recirc_ct SEC(".maps");

_Static_assert(sizeof(struct mdp_ct_key) == 32, "mdp_ct_key: abi.rs CT_KEY_LEN");
_Static_assert(sizeof(struct mdp_ct_val) == 16, "mdp_ct_val: abi.rs CT_VAL_LEN");
_Static_assert(sizeof(struct mdp_recirc_ct) == 20, "mdp_recirc_ct: abi.rs RECIRC_CT_LEN");
_Static_assert(sizeof(struct mdp_nat_key) == 32, "mdp_nat_key: abi.rs NAT_KEY_LEN");
_Static_assert(sizeof(struct mdp_nat_val) == 16, "mdp_nat_val: abi.rs NAT_VAL_LEN");
_Static_assert(sizeof(struct mdp_recirc) == 20, "mdp_recirc: abi.rs RECIRC_LEN");
_Static_assert((MDP_IN_RECIRC | MDP_IN_UNTRACKED | (MDP_RECIRC_MAX - 1)) < (1u << MDP_MASK_ID_SHIFT),
	       "a recirculation in_port leaves the mask index's bits free");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MDP_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_upcalls SEC(".maps");

/* Upcalls past their port's budget, let through while the agent has room
 * (limit.rs): the agent serves this ring only when mdp_upcalls is empty, so
 * they never hold up a miss within its budget. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MDP_SPARE_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mdp_upcalls_spare SEC(".maps");

/* Where the headers of the packet being processed are. */
struct xstate {
	__u32 l3;        /* frame offset of the L3 header */
	__u32 l4;        /* frame offset of the L4 header; 0 = none */
	__u32 ihl;       /* IPv4 header bytes */
	__u32 in_port;
	__be16 eth_type; /* after the one tag midonet_flow knows */
	__u8 proto;
	__u8 echo;       /* ICMPv4 echo: has an identifier */
	__u8 ingress;    /* at TC ingress: bpf_redirect_peer allowed */
	__u8 pad[3];
};

/* OR `b` into byte `i` (0-7, in memory order) of the 8-byte aligned word
 * at `word`, atomically (a 64-bit BPF_ATOMIC | BPF_OR, which clang 14
 * emits without -mcpu=v3; the other seven bytes are OR'ed with zero). */
static __always_inline void or_byte(void *word, int i, __u8 b)
{
	union {
		__u64 w;
		__u8 b[8];
	} u = { .w = 0 };

	u.b[i & 7] = b;
	__sync_fetch_and_or((__u64 *)word, u.w);
}

/* The flags within each value's first (mdp_nat_val) or second (mdp_ct_val)
 * 8-byte word. */
#define NAT_VAL_FLAGS_BYTE __builtin_offsetof(struct mdp_nat_val, tcp_flags)
_Static_assert(NAT_VAL_FLAGS_BYTE < 8, "mdp_nat_val: flags in the first word");
_Static_assert(__builtin_offsetof(struct mdp_ct_val, tcp_flags) == 8, "mdp_ct_val: flags word aligned");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&mdp_counters, &idx);

	if (c)
		*c += n; /* per-CPU: no atomics needed */
}

static __always_inline int drop(__u32 reason)
{
	count(reason, 1);
	return TC_ACT_SHOT;
}

static __always_inline void port_rx(__u32 port, __u32 len)
{
	__u32 p = port & (MDP_MAX_PORTS - 1);
	struct mdp_port_stats *s = bpf_map_lookup_elem(&mdp_port_stats, &p);

	if (s) {
		s->rx_packets++;
		s->rx_bytes += len;
	}
}

static __always_inline void port_tx(__u32 port, __u32 len)
{
	__u32 p = port & (MDP_MAX_PORTS - 1);
	struct mdp_port_stats *s = bpf_map_lookup_elem(&mdp_port_stats, &p);

	if (s) {
		s->tx_packets++;
		s->tx_bytes += len;
	}
}

/* Parse like midonet_flow::FlowKey::extract. Returns 0, or -1 for a frame
 * the agent would call malformed. An outer 802.1Q tag is normally in the
 * skb's metadata at TC ingress (the stack untags before the hook); a tag
 * still in the data (BPF_PROG_TEST_RUN, or a second tag) is read there. */
static __always_inline int parse(struct __sk_buff *skb, struct mdp_key *k, struct xstate *st)
{
	__u32 len = skb->len;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 want = len < PULL_LEN ? len : PULL_LEN;
	__u32 l3 = ETH_HLEN;
	__be16 proto;

	if (len < ETH_HLEN)
		return -1;
	if ((__u32)(end - data) < want) {
		if (bpf_skb_pull_data(skb, want) < 0)
			return -1;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memcpy(k->eth_dst, eth->h_dest, 6);
	__builtin_memcpy(k->eth_src, eth->h_source, 6);
	proto = eth->h_proto;
	st->l3 = ETH_HLEN;
	if (skb->vlan_present) {
		if (skb->vlan_proto != bpf_htons(ETH_P_8021Q)) {
			/* midonet_flow knows only 802.1Q: an 802.1ad outer
			 * tag makes the frame an unknown ethertype. */
			k->eth_type = skb->vlan_proto;
			st->eth_type = k->eth_type;
			return 0;
		}
		k->vlan = MDP_VLAN_PRESENT | (skb->vlan_tci & 0xefff);
	} else if (proto == bpf_htons(ETH_P_8021Q)) {
		__u8 *tag = data + ETH_HLEN;

		if ((void *)(tag + 4) > end)
			return -1;
		k->vlan = MDP_VLAN_PRESENT | ((((__u16)tag[0] << 8) | tag[1]) & 0xefff);
		proto = *(__be16 *)(tag + 2);
		l3 = ETH_HLEN + 4;
	}
	k->eth_type = proto;
	st->eth_type = proto;
	st->l3 = l3;

	if (proto == bpf_htons(ETH_P_IP)) {
		__u8 *ip = data + l3;
		__u32 ihl, total, l4, pend;
		__u16 frag;

		if ((void *)(ip + 20) > end)
			return -1;
		if ((ip[0] >> 4) != 4)
			return -1;
		ihl = (ip[0] & 0x0f) * 4;
		total = ((__u32)ip[2] << 8) | ip[3];
		if (ihl < 20 || total < ihl || len < l3 + total)
			return -1;
		k->ip_tos = ip[1];
		k->ip_ttl = ip[8];
		k->ip_proto = ip[9];
		__builtin_memcpy(&k->ip_src, ip + 12, 4);
		__builtin_memcpy(&k->ip_dst, ip + 16, 4);
		st->proto = ip[9];
		st->ihl = ihl;
		frag = ((__u16)ip[6] << 8) | ip[7];
		if (frag & 0x1fff) {
			k->ip_frag = MDP_FRAG_LATER;
			return 0;
		}
		k->ip_frag = (frag & 0x2000) ? MDP_FRAG_FIRST : MDP_FRAG_NO;
		l4 = l3 + ihl;
		pend = l3 + total;
		st->l4 = l4;
		if (l4 > ETH_HLEN + 4 + 60)
			return -1;
		__u8 *t = data + l4;
		switch (ip[9]) {
		case IPPROTO_TCP: {
			__u32 doff;

			if (pend < l4 + 20 || (void *)(t + 20) > end)
				return -1;
			doff = (t[12] >> 4) * 4;
			if (doff < 20 || pend < l4 + doff)
				return -1;
			__builtin_memcpy(&k->l4_src, t, 2);
			__builtin_memcpy(&k->l4_dst, t + 2, 2);
			k->tcp_flags = bpf_htons((((__u16)t[12] << 8) | t[13]) & 0x1ff);
			break;
		}
		case IPPROTO_UDP:
			if (pend < l4 + 8 || (void *)(t + 8) > end)
				return -1;
			__builtin_memcpy(&k->l4_src, t, 2);
			__builtin_memcpy(&k->l4_dst, t + 2, 2);
			break;
		case IPPROTO_SCTP_:
			if (pend < l4 + 12 || (void *)(t + 12) > end)
				return -1;
			__builtin_memcpy(&k->l4_src, t, 2);
			__builtin_memcpy(&k->l4_dst, t + 2, 2);
			break;
		case IPPROTO_ICMP:
			if (pend < l4 + 4 || (void *)(t + 4) > end)
				return -1;
			k->icmp_type = t[0];
			k->icmp_code = t[1];
			if (t[0] == 0 || t[0] == 8) {
				if (pend < l4 + 6 || (void *)(t + 6) > end)
					return -1;
				__builtin_memcpy(&k->icmp_id, t + 4, 2);
				st->echo = 1;
			}
			break;
		}
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		/* Checked, not keyed: flows on IPv6 L3/L4 fields stay in the agent. */
		__u8 *ip6 = data + l3;

		if ((void *)(ip6 + 40) > end)
			return -1;
		if ((ip6[0] >> 4) != 6)
			return -1;
		if (len < l3 + 40 + (((__u32)ip6[4] << 8) | ip6[5]))
			return -1;
	} else if (proto == bpf_htons(ETH_P_ARP)) {
		__u8 *a = data + l3;

		if ((void *)(a + 28) > end)
			return -1;
		/* Ethernet/IPv4 ARP only, as FlowKey::extract. */
		if (a[0] != 0 || a[1] != 1 || a[2] != 8 || a[3] != 0 || a[4] != 6 || a[5] != 4)
			return -1;
		__builtin_memcpy(&k->arp_op, a + 6, 2);
		__builtin_memcpy(k->arp_sha, a + 8, 6);
		__builtin_memcpy(&k->arp_spa, a + 14, 4);
		__builtin_memcpy(k->arp_tha, a + 18, 6);
		__builtin_memcpy(&k->arp_tpa, a + 24, 4);
	}
	return 0;
}

/* Tuple-space search over the agent's masks, in its order. On a hit, `mk`
 * is the flows map's key and `*mi` the mask's slot. */
static __always_inline struct mdp_flow *lookup(struct mdp_key *k, struct mdp_key *mk, __u32 *mi_out)
{
	__u32 zero = 0;
	struct mdp_mask_list *ml = bpf_map_lookup_elem(&mdp_mask_list, &zero);
	__u32 n;

	if (!ml)
		return 0;
	n = ml->n;
	for (__u32 i = 0; i < MDP_MAX_MASKS; i++) {
		if (i >= n)
			break;
		__u32 mi = ml->idx[i] & (MDP_MAX_MASKS - 1);
		__u64 *m = bpf_map_lookup_elem(&mdp_masks, &mi);
		__u64 *kw = (__u64 *)k;
		__u64 *o = (__u64 *)mk;

		if (!m)
			break;
#pragma unroll
		for (int w = 0; w < 8; w++)
			o[w] = kw[w] & m[w];
		mk->in_port |= mi << MDP_MASK_ID_SHIFT;
		struct mdp_flow *f = bpf_map_lookup_elem(&mdp_flows, mk);
		if (f) {
			__u64 *h = bpf_map_lookup_elem(&mdp_mask_hits, &mi);

			if (h)
				(*h)++;
			*mi_out = mi;
			return f;
		}
	}
	return 0;
}

/* Re-read the L2 layout after a VLAN push/pop changed it. */
static __always_inline void relayout(struct __sk_buff *skb, struct xstate *st)
{
	__be16 t = 0, t2 = 0;

	bpf_skb_load_bytes(skb, 12, &t, 2);
	if (skb->vlan_present) {
		st->l3 = ETH_HLEN;
		st->eth_type = skb->vlan_proto == bpf_htons(ETH_P_8021Q) ? t : skb->vlan_proto;
	} else if (t == bpf_htons(ETH_P_8021Q)) {
		bpf_skb_load_bytes(skb, 16, &t2, 2);
		st->l3 = ETH_HLEN + 4;
		st->eth_type = t2;
	} else {
		st->l3 = ETH_HLEN;
		st->eth_type = t;
	}
	if (st->l4)
		st->l4 = st->l3 + st->ihl;
}

static __always_inline int emit(struct __sk_buff *skb, __u32 ifindex, int peer, int last)
{
	if (last)
		return peer ? bpf_redirect_peer(ifindex, 0) : bpf_redirect(ifindex, 0);
	if (bpf_clone_redirect(skb, ifindex, 0) < 0)
		count(MDP_C_DROP_TX, 1);
	return 0;
}

/* Set the TTL (ttl = 1) or the TOS byte of the IPv4 header. Returns 0 or
 * -counter. */
static __always_inline int set_ip_byte(struct __sk_buff *skb, struct xstate *st, int ttl, __u8 v)
{
	__u8 w[2] = {}, n[2];
	__u32 off;

	if (st->eth_type != bpf_htons(ETH_P_IP))
		return -MDP_C_DROP_REWRITE;
	/* TTL is the first byte of the word at 8, TOS the second of the word at 0. */
	off = st->l3 + (ttl ? 8 : 0);
	if (bpf_skb_load_bytes(skb, off, w, 2) < 0)
		return -MDP_C_DROP_REWRITE;
	n[0] = w[0];
	n[1] = w[1];
	if (ttl)
		n[0] = v;
	else
		n[1] = v;
	if (bpf_l3_csum_replace(skb, st->l3 + 10, *(__u16 *)w, *(__u16 *)n, 2) < 0 ||
	    bpf_skb_store_bytes(skb, off, n, 2, 0) < 0)
		return -MDP_C_DROP_REWRITE;
	return 0;
}

/* Set the IPv4 source (`src`) or destination address to `new`, fixing up
 * the header's checksum and a TCP or UDP one (the pseudo-header's).
 * Returns 0 or -counter. */
static __always_inline int set_ip4(struct __sk_buff *skb, struct xstate *st, int src, __be32 new)
{
	__be32 old = 0;
	__u32 off;

	if (st->eth_type != bpf_htons(ETH_P_IP))
		return -MDP_C_DROP_REWRITE;
	off = st->l3 + (src ? 12 : 16);
	if (bpf_skb_load_bytes(skb, off, &old, 4) < 0)
		return -MDP_C_DROP_REWRITE;
	if (st->l4 && st->proto == IPPROTO_TCP)
		bpf_l4_csum_replace(skb, st->l4 + 16, old, new, BPF_F_PSEUDO_HDR | 4);
	else if (st->l4 && st->proto == IPPROTO_UDP)
		bpf_l4_csum_replace(skb, st->l4 + 6, old, new,
				    BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
	if (bpf_l3_csum_replace(skb, st->l3 + 10, old, new, 4) < 0 ||
	    bpf_skb_store_bytes(skb, off, &new, 4, 0) < 0)
		return -MDP_C_DROP_REWRITE;
	return 0;
}

/* Set the TCP or UDP source (`src`) or destination port to `new` (network
 * order), fixing up the checksum. Returns 0 or -counter. */
static __always_inline int set_l4_port(struct __sk_buff *skb, struct xstate *st, int src,
				       __be16 new)
{
	__be16 old = 0;
	__u32 off;

	if (st->eth_type != bpf_htons(ETH_P_IP) || !st->l4 ||
	    (st->proto != IPPROTO_TCP && st->proto != IPPROTO_UDP))
		return -MDP_C_DROP_REWRITE;
	off = st->l4 + (src ? 0 : 2);
	if (bpf_skb_load_bytes(skb, off, &old, 2) < 0)
		return -MDP_C_DROP_REWRITE;
	/* A partial (offloaded) checksum is left alone by the helper. */
	if (st->proto == IPPROTO_TCP)
		bpf_l4_csum_replace(skb, st->l4 + 16, old, new, 2);
	else
		bpf_l4_csum_replace(skb, st->l4 + 6, old, new, BPF_F_MARK_MANGLED_0 | 2);
	if (bpf_skb_store_bytes(skb, off, &new, 2, 0) < 0)
		return -MDP_C_DROP_REWRITE;
	return 0;
}

/* Send to local port `port`. The verdict when last, else 0; or -counter. */
static __always_inline int out_port(struct __sk_buff *skb, struct xstate *st, __u32 port, int last)
{
	__u32 p = port & (MDP_MAX_PORTS - 1);
	struct mdp_port *pi = bpf_map_lookup_elem(&mdp_ports, &p);

	if (p == 0 || !pi || !pi->ifindex)
		return -MDP_C_DROP_UNKNOWN_PORT;
	port_tx(p, skb->len);
	return emit(skb, pi->ifindex, (pi->flags & MDP_PORT_PEER) && st->ingress, last);
}

/* What a VXLAN datagram carries in front of the VM's frame, after the
 * underlay's Ethernet header: IPv4 without options, UDP, VXLAN. */
#define VXLAN_OUTER (20 + 8 + 8)
/* What encapsulation adds after the underlay's Ethernet header, and
 * decapsulation removes: the outer headers and the inner Ethernet header
 * (the frame's own, which the underlay's then stands in front of). */
#define VXLAN_STRIP (VXLAN_OUTER + ETH_HLEN)
#define VXLAN_FLAG_VNI 0x08000000
/* The outer UDP source ports, as a kernel vxlan device picks them: a hash
 * of the inner flow over the default local port range. */
#define VXLAN_SPORT_MIN 32768
#define VXLAN_SPORT_RANGE (60999 - 32768 + 1)
#define NO_ENCAP (-101) /* not a verdict: go through the vxlan device */

struct vxlan_outer {
	struct iphdr ip;
	struct udphdr udp;
	__be32 vx[2];
};
_Static_assert(sizeof(struct vxlan_outer) == VXLAN_OUTER, "outer headers, unpadded");

/* Encapsulate for `remote` (host order) with `vni` and send to the
 * underlay through the neighbour table, as the vxlan device would, without
 * the device (its route lookup per packet, the local output path and its
 * netfilter hooks). Only an IPv4 frame as the last output, to a peer the
 * agent resolved (mdp_tunnel_nh): a single frame that fits the underlay's
 * MTU, or a TCP GSO frame (marked as a UDP tunnel's, so the stack, or the
 * NIC, segments it with the inner headers as the device's own; its
 * segments keep their size, as the device's do) whose datagram length
 * still fits the IPv4 header. Anything else (clones, ARP, a frame the
 * device would fragment, a GSO frame bpf_skb_adjust_room refuses) returns
 * NO_ENCAP and goes through the vxlan device. */
static __always_inline int encap(struct __sk_buff *skb, struct mdp_config *cfg, __u32 remote,
				 __u32 vni)
{
	struct bpf_redir_neigh rn = {};
	struct mdp_nexthop *nh;
	struct vxlan_outer *o;
	__u32 len = skb->len, h;
	void *data, *end;
	__s64 sum;

	if ((cfg->flags & MDP_CFG_NO_ENCAP) || !cfg->local_ip || !cfg->vxlan_port ||
	    skb->vlan_present || skb->protocol != bpf_htons(ETH_P_IP))
		return NO_ENCAP;
	nh = bpf_map_lookup_elem(&mdp_tunnel_nh, &remote);
	if (!nh || !nh->ifindex)
		return NO_ENCAP;
	/* (bpf_check_mtu would say the same, but is for GPL programs only.) */
	if (len - ETH_HLEN + VXLAN_STRIP > (skb->gso_size ? 0xffff : nh->mtu))
		return NO_ENCAP;
	h = bpf_get_hash_recalc(skb);
	/* Room behind the frame's Ethernet header (which becomes the
	 * underlay's, its addresses filled in from the neighbour), marked as a
	 * UDP tunnel with an inner Ethernet header so the stack knows where
	 * the inner headers are (checksum offload). The headers are written
	 * in place: the stack is too small for a copy beside mdp_act's. */
	if (bpf_skb_adjust_room(skb, VXLAN_STRIP, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
					BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
					BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN)) < 0)
		return NO_ENCAP;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN + VXLAN_STRIP > end)
		return -MDP_C_DROP_TX;
	__builtin_memcpy(data + ETH_HLEN + VXLAN_OUTER, data, ETH_HLEN);
	o = data + ETH_HLEN;
	__builtin_memset(o, 0, sizeof(*o));
	*(__u8 *)&o->ip = 0x45;
	o->ip.tot_len = bpf_htons(len + VXLAN_OUTER);
	o->ip.id = bpf_get_prandom_u32() & 0xffff;
	o->ip.ttl = cfg->tunnel_ttl ? cfg->tunnel_ttl : 64;
	o->ip.protocol = IPPROTO_UDP;
	o->ip.saddr = bpf_htonl(cfg->local_ip);
	o->ip.daddr = bpf_htonl(remote);
	o->udp.source = bpf_htons(VXLAN_SPORT_MIN + (((__u64)h * VXLAN_SPORT_RANGE) >> 32));
	o->udp.dest = bpf_htons(cfg->vxlan_port);
	o->udp.len = bpf_htons(len + VXLAN_OUTER - 20);
	o->vx[0] = bpf_htonl(VXLAN_FLAG_VNI);
	o->vx[1] = bpf_htonl(vni << 8);
	sum = bpf_csum_diff(0, 0, (__be32 *)&o->ip, sizeof(o->ip), 0);
	if (sum < 0)
		return -MDP_C_DROP_TX;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	o->ip.check = ~sum & 0xffff;
	rn.nh_family = 2; /* AF_INET */
	rn.ipv4_nh = nh->via;
	count(MDP_C_TUNNEL_ENCAP, 1);
	port_tx(0, len);
	return bpf_redirect_neigh(nh->ifindex, &rn, sizeof(rn), 0);
}

/* Tunnel to `remote` (host order) with `vni`. As out_port. */
static __always_inline int out_tunnel(struct __sk_buff *skb, struct mdp_config *cfg, __u32 remote,
				      __u32 vni, int last)
{
	struct bpf_tunnel_key tk = {};
	__u32 size = sizeof(tk);
	int r;

	if (!cfg || !cfg->vxlan_ifindex)
		return -MDP_C_DROP_UNKNOWN_PORT;
	if (last) {
		r = encap(skb, cfg, remote, vni);
		if (r != NO_ENCAP)
			return r;
	}
	tk.remote_ipv4 = remote;
	tk.tunnel_id = vni;
	tk.tunnel_ttl = cfg->tunnel_ttl ? cfg->tunnel_ttl : 64;
	tk.local_ipv4 = cfg->local_ip;
	if (!cfg->local_ip)
		size = __builtin_offsetof(struct bpf_tunnel_key, local_ipv4);
	/* flags 0: outer UDP checksum on, like a kernel vxlan device's default. */
	if (bpf_skb_set_tunnel_key(skb, &tk, size, 0) < 0)
		return -MDP_C_DROP_TX;
	port_tx(0, skb->len);
	return emit(skb, cfg->vxlan_ifindex, 0, last);
}

/* One action. Returns 0 to go on, the TC verdict for the last emit, or
 * -counter for a drop. A global function: verified once, not per call site. */
__attribute__((noinline)) int mdp_act(struct __sk_buff *skb, struct xstate *st,
				      struct mdp_act *a, int last)
{
	__u32 off;

	if (!skb || !st || !a)
		return -MDP_C_DROP_REWRITE;
	switch (a->op) {
	case MDP_OP_SET_ETH_SRC:
	case MDP_OP_SET_ETH_DST:
		off = a->op == MDP_OP_SET_ETH_SRC ? 6 : 0;
		if (bpf_skb_store_bytes(skb, off, a->mac, 6, 0) < 0)
			return -MDP_C_DROP_REWRITE;
		return 0;
	case MDP_OP_SET_IP4_SRC:
	case MDP_OP_SET_IP4_DST:
		return set_ip4(skb, st, a->op == MDP_OP_SET_IP4_SRC, a->w);
	case MDP_OP_SET_TTL:
	case MDP_OP_SET_TOS:
		return set_ip_byte(skb, st, a->op == MDP_OP_SET_TTL, a->h);
	case MDP_OP_SET_L4_SRC:
	case MDP_OP_SET_L4_DST:
		return set_l4_port(skb, st, a->op == MDP_OP_SET_L4_SRC, bpf_htons(a->h));
	case MDP_OP_SET_ICMP_ID: {
		__be16 old = 0, new = bpf_htons(a->h);

		if (st->eth_type != bpf_htons(ETH_P_IP) || !st->l4 || st->proto != IPPROTO_ICMP ||
		    !st->echo)
			return -MDP_C_DROP_REWRITE;
		if (bpf_skb_load_bytes(skb, st->l4 + 4, &old, 2) < 0)
			return -MDP_C_DROP_REWRITE;
		bpf_l4_csum_replace(skb, st->l4 + 2, old, new, 2);
		if (bpf_skb_store_bytes(skb, st->l4 + 4, &new, 2, 0) < 0)
			return -MDP_C_DROP_REWRITE;
		return 0;
	}
	case MDP_OP_PUSH_VLAN:
		if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), a->h) < 0)
			return -MDP_C_DROP_REWRITE;
		relayout(skb, st);
		return 0;
	case MDP_OP_POP_VLAN: {
		__be16 t = 0;

		if (!skb->vlan_present) {
			bpf_skb_load_bytes(skb, 12, &t, 2);
			if (t != bpf_htons(ETH_P_8021Q))
				return -MDP_C_DROP_REWRITE;
		}
		if (bpf_skb_vlan_pop(skb) < 0)
			return -MDP_C_DROP_REWRITE;
		relayout(skb, st);
		return 0;
	}
	case MDP_OP_OUTPUT:
		return out_port(skb, st, a->w, last);
	case MDP_OP_TUNNEL: {
		__u32 zero = 0;

		return out_tunnel(skb, bpf_map_lookup_elem(&mdp_config, &zero), a->w, a->x, last);
	}
	}
	return -MDP_C_DROP_REWRITE;
}

/* Run action list `al` (NULL: drop, counted). */
static __always_inline int run_list(struct __sk_buff *skb, struct xstate *st,
				    struct mdp_act_list *al)
{
	__u32 last;

	if (!al)
		return drop(MDP_C_DROP_FLOW);
	last = al->last_emit;
	if (last >= al->n || last >= MDP_MAX_ACTS)
		return drop(MDP_C_DROP_FLOW);
	for (__u32 j = 0; j < MDP_MAX_ACTS; j++) {
		int r = mdp_act(skb, st, &al->a[j], j == last);

		if (r < 0)
			return drop(-r);
		if (j == last)
			return r;
	}
	return drop(MDP_C_DROP_FLOW);
}

static __always_inline struct mdp_act_list *act_list(__u32 id)
{
	__u32 i = id & (MDP_MAX_ACT_LISTS - 1);

	return bpf_map_lookup_elem(&mdp_actions, &i);
}

static __always_inline int run_actions(struct __sk_buff *skb, struct xstate *st, __u32 id)
{
	return run_list(skb, st, act_list(id));
}

/* What the upcall budget says of one more upcall from `in_port`. */
enum { UPCALL_NO = 0, UPCALL_OWN = 1, UPCALL_SPARE = 2 };

/* Whether the port's upcall budget covers one more upcall (limit.rs has the
 * same arithmetic and its tests). Per CPU: a port may get its rate on each
 * CPU that receives its packets; a VM's queue is usually served by one.
 * Past its budget, a miss borrows while the spare ring has room: the agent
 * is keeping up, so nobody waits for it (MidoNet's HTB children borrow from
 * the root the same way). */
static __always_inline int upcall_allowed(__u32 in_port)
{
	__u32 zero = 0;
	struct mdp_limit_config *lc = bpf_map_lookup_elem(&mdp_limit_config, &zero);
	__u32 slot = (in_port & MDP_IN_TUNNEL) ? 0 : (in_port & (MDP_MAX_PORTS - 1));
	struct mdp_upcall_limit *l = bpf_map_lookup_elem(&mdp_upcall_limits, &slot);
	__u64 cost, cap, now, credit;

	if (!lc || !l)
		return UPCALL_OWN;
	if (slot == 0) {
		cost = lc->tunnel_cost_ns;
		cap = lc->tunnel_cap_ns;
	} else {
		cost = lc->port_cost_ns;
		cap = lc->port_cap_ns;
	}
	if (!cost) {
		l->upcalls++;
		return UPCALL_OWN;
	}
	now = bpf_ktime_get_ns();
	/* A bucket never used (last_ns 0) starts full. */
	credit = l->last_ns ? l->credit_ns + (now > l->last_ns ? now - l->last_ns : 0) : cap;
	if (credit > cap)
		credit = cap;
	if (now > l->last_ns)
		l->last_ns = now;
	if (credit < cost) {
		l->credit_ns = credit;
		if (lc->spare_bytes &&
		    bpf_ringbuf_query(&mdp_upcalls_spare, BPF_RB_AVAIL_DATA) < lc->spare_bytes) {
			l->upcalls++;
			l->borrowed++;
			return UPCALL_SPARE;
		}
		l->limited++;
		return UPCALL_NO;
	}
	l->credit_ns = credit - cost;
	l->upcalls++;
	return UPCALL_OWN;
}

/* Copy the frame into a record of `ring`; NULL when the ring is full. */
static __always_inline struct mdp_upcall *upcall_record(void *ring, struct __sk_buff *skb,
							 __u32 len, int *err)
{
	struct mdp_upcall *u;

	if (len <= MDP_UPCALL_SMALL) {
		u = bpf_ringbuf_reserve(ring, sizeof(*u) + MDP_UPCALL_SMALL, 0);
		if (!u) {
			*err = MDP_C_DROP_UPCALL_LOST;
			return NULL;
		}
		if (bpf_skb_load_bytes(skb, 0, (void *)(u + 1), len) < 0) {
			bpf_ringbuf_discard(u, 0);
			*err = MDP_C_DROP_MALFORMED;
			return NULL;
		}
	} else if (len <= MDP_UPCALL_BIG) {
		u = bpf_ringbuf_reserve(ring, sizeof(*u) + MDP_UPCALL_BIG, 0);
		if (!u) {
			*err = MDP_C_DROP_UPCALL_LOST;
			return NULL;
		}
		if (bpf_skb_load_bytes(skb, 0, (void *)(u + 1), len) < 0) {
			bpf_ringbuf_discard(u, 0);
			*err = MDP_C_DROP_MALFORMED;
			return NULL;
		}
	} else {
		*err = MDP_C_DROP_TRUNCATED;
		return NULL;
	}
	return u;
}

/* Hand the frame to the agent and drop it here; the agent re-injects it. */
static __always_inline int upcall(struct __sk_buff *skb, __u32 in_port)
{
	__u32 len = skb->len;
	struct mdp_upcall *u;
	int allowed, err = 0;

	if (len < ETH_HLEN)
		return drop(MDP_C_DROP_MALFORMED);
	allowed = upcall_allowed(in_port);
	if (allowed == UPCALL_NO)
		return drop(MDP_C_DROP_UPCALL_LIMIT);
	if (allowed == UPCALL_SPARE)
		u = upcall_record(&mdp_upcalls_spare, skb, len, &err);
	else
		u = upcall_record(&mdp_upcalls, skb, len, &err);
	if (!u)
		return drop(err);
	u->kind = MDP_UPCALL_MISS;
	u->in_port = in_port;
	u->len = len;
	u->ifindex = skb->ifindex;
	u->vlan_present = skb->vlan_present ? 1 : 0;
	u->vlan_tci = skb->vlan_tci;
	u->vlan_proto = skb->vlan_proto;
	u->pad[0] = u->pad[1] = u->pad[2] = 0;
	u->gso_size = skb->gso_size;
	u->gso_segs = skb->gso_segs;
	u->ktime_ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(u, 0);
	count(MDP_C_UPCALL, 1);
	return TC_ACT_SHOT;
}

/* A packet forwarded by the flow of counter slot `stats`: the flow's own
 * counters (idle expiry and conntrack refresh read them). */
static __always_inline void flow_count(__u32 stats, __u32 len, __be16 tcp_flags)
{
	__u32 si = stats & (MDP_MAX_STATS - 1);
	struct mdp_flow_stats *fs = bpf_map_lookup_elem(&mdp_flow_stats, &si);

	if (fs) {
		fs->packets++;
		fs->bytes += len;
		fs->used_ns = bpf_ktime_get_coarse_ns();
		fs->tcp_flags |= bpf_ntohs(tcp_flags);
	}
}

/* The same, and the kernel's hit count. */
static __always_inline void flow_hit(__u32 stats, __u32 len, __be16 tcp_flags)
{
	count(MDP_C_HIT, 1);
	flow_count(stats, len, tcp_flags);
}

/* The exact-match cache (struct mdp_exact in datapath.h). */

#define NO_EXACT (-100) /* not a TC verdict: go on to the megaflow search */

/* Whether the flow's actions fit the fixed form: rewrites of the MACs, the
 * TTL and NAT's addresses and ports, then one output or tunnel, last. The
 * rewrites touch different fields, so their order in the list does not
 * matter. Anything else leaves MDP_X_COMPILED unset and the hit runs the
 * action list. */
static __always_inline void compile(struct mdp_act_list *al, struct mdp_exact *x)
{
	__u32 n = al->n;

	if (n == 0 || n > MDP_MAX_ACTS || al->last_emit != n - 1)
		return;
	for (__u32 j = 0; j < MDP_MAX_ACTS; j++) {
		struct mdp_act *a = &al->a[j];

		if (j >= n)
			break;
		switch (a->op) {
		case MDP_OP_SET_ETH_DST:
			__builtin_memcpy(x->eth, a->mac, 6);
			x->flags |= MDP_X_SET_DST;
			break;
		case MDP_OP_SET_ETH_SRC:
			__builtin_memcpy(x->eth + 6, a->mac, 6);
			x->flags |= MDP_X_SET_SRC;
			break;
		case MDP_OP_SET_TTL:
			x->ttl = a->h;
			x->flags |= MDP_X_SET_TTL;
			break;
		case MDP_OP_SET_IP4_SRC:
			x->ip_src = a->w;
			x->nat |= MDP_XN_IP_SRC;
			break;
		case MDP_OP_SET_IP4_DST:
			x->ip_dst = a->w;
			x->nat |= MDP_XN_IP_DST;
			break;
		case MDP_OP_SET_L4_SRC:
			x->l4_src = a->h;
			x->nat |= MDP_XN_L4_SRC;
			break;
		case MDP_OP_SET_L4_DST:
			x->l4_dst = a->h;
			x->nat |= MDP_XN_L4_DST;
			break;
		case MDP_OP_OUTPUT:
			if (j != n - 1)
				return;
			x->w = a->w;
			x->flags |= MDP_X_OUTPUT | MDP_X_COMPILED;
			break;
		case MDP_OP_TUNNEL:
			if (j != n - 1)
				return;
			x->w = a->w;
			x->x = a->x;
			x->flags |= MDP_X_TUNNEL | MDP_X_COMPILED;
			break;
		default:
			return;
		}
	}
}

/* Remember the megaflow a packet hit under its exact key `xk` (tcp_flags
 * already zero). The entry is checked against the flow afterwards: if the
 * agent removed the flow before this looked at its generation, the flow is
 * gone by now and the entry is taken back; if it removes it later, the
 * generation the entry holds is already old. (The agent does not reuse a
 * counter slot for a second, so the flow found afterwards is not another
 * flow in the same slot.) */
static __always_inline void exact_fill(struct mdp_key *xk, __u32 port, __u32 acts, __u32 stats,
				       struct mdp_key *mk, __u32 mi)
{
	__u32 zero = 0, si = stats & (MDP_MAX_STATS - 1), ai = acts & (MDP_MAX_ACT_LISTS - 1);
	struct mdp_config *cfg = bpf_map_lookup_elem(&mdp_config, &zero);
	struct mdp_key *m = bpf_map_lookup_elem(&mdp_masks, &mi);
	__u32 *g = bpf_map_lookup_elem(&mdp_flow_gen, &si);
	struct mdp_exact x = {};
	struct mdp_act_list *al;
	struct mdp_flow *f;

	/* A flow on TCP flags would need them in the exact key: one entry per
	 * combination. Those flows go without. */
	if (!cfg || (cfg->flags & MDP_CFG_NO_EXACT) || !m || m->tcp_flags || !g)
		return;
	x.port = port;
	x.stats = stats;
	x.gen = *g;
	x.acts = acts;
	al = bpf_map_lookup_elem(&mdp_actions, &ai);
	if (al)
		compile(al, &x);
	if (bpf_map_update_elem(&mdp_exact, xk, &x, BPF_ANY) < 0)
		return;
	f = bpf_map_lookup_elem(&mdp_flows, mk);
	if (!f || f->stats != stats) {
		bpf_map_delete_elem(&mdp_exact, xk);
		return;
	}
	count(MDP_C_EXACT_FILL, 1);
}

/* One NAT rewrite of a compiled entry, through the action list's own code.
 * 0 or -counter. */
static __always_inline int exact_set(struct __sk_buff *skb, struct xstate *st, __u8 op, __u32 w,
				     __u16 h)
{
	struct mdp_act a = {};

	a.op = op;
	a.w = w;
	a.h = h;
	return mdp_act(skb, st, &a, 0);
}

static __always_inline int exact_nat(struct __sk_buff *skb, struct xstate *st, struct mdp_exact *x)
{
	__u8 n = x->nat;
	int r = 0;

	if (n & MDP_XN_IP_SRC)
		r = exact_set(skb, st, MDP_OP_SET_IP4_SRC, x->ip_src, 0);
	if (r == 0 && (n & MDP_XN_IP_DST))
		r = exact_set(skb, st, MDP_OP_SET_IP4_DST, x->ip_dst, 0);
	if (r == 0 && (n & MDP_XN_L4_SRC))
		r = exact_set(skb, st, MDP_OP_SET_L4_SRC, 0, x->l4_src);
	if (r == 0 && (n & MDP_XN_L4_DST))
		r = exact_set(skb, st, MDP_OP_SET_L4_DST, 0, x->l4_dst);
	return r;
}

static __always_inline int exact_exec(struct __sk_buff *skb, struct xstate *st, struct mdp_exact *x,
				      struct mdp_config *cfg)
{
	__u8 f = x->flags;
	int r;

	if (!(f & MDP_X_COMPILED))
		return run_actions(skb, st, x->acts);
	if ((f & (MDP_X_SET_DST | MDP_X_SET_SRC)) == (MDP_X_SET_DST | MDP_X_SET_SRC)) {
		if (bpf_skb_store_bytes(skb, 0, x->eth, 12, 0) < 0)
			return drop(MDP_C_DROP_REWRITE);
	} else if (f & MDP_X_SET_DST) {
		if (bpf_skb_store_bytes(skb, 0, x->eth, 6, 0) < 0)
			return drop(MDP_C_DROP_REWRITE);
	} else if (f & MDP_X_SET_SRC) {
		if (bpf_skb_store_bytes(skb, 6, x->eth + 6, 6, 0) < 0)
			return drop(MDP_C_DROP_REWRITE);
	}
	if (f & MDP_X_SET_TTL) {
		r = set_ip_byte(skb, st, 1, x->ttl);
		if (r < 0)
			return drop(-r);
	}
	if (x->nat) {
		r = exact_nat(skb, st, x);
		if (r < 0)
			return drop(-r);
	}
	if (f & MDP_X_TUNNEL)
		r = out_tunnel(skb, cfg, x->w, x->x, 1);
	else
		r = out_port(skb, st, x->w, 1);
	return r < 0 ? drop(-r) : r;
}

/* A hit in the exact-match cache: count it and run its actions. NO_EXACT
 * when there is no valid entry. `rx`: count the port's rx here (mdp_port,
 * which has not looked its port up yet). */
static __always_inline int exact_path(struct __sk_buff *skb, struct mdp_key *k, struct xstate *st,
				      __u32 xport, int rx)
{
	__u32 zero = 0, si;
	struct mdp_config *cfg = bpf_map_lookup_elem(&mdp_config, &zero);
	__be16 tcp_flags = k->tcp_flags;
	struct mdp_exact *x;
	__u32 *g;

	if (!cfg || (cfg->flags & MDP_CFG_NO_EXACT))
		return NO_EXACT;
	k->tcp_flags = 0;
	k->in_port = xport;
	x = bpf_map_lookup_elem(&mdp_exact, k);
	k->tcp_flags = tcp_flags;
	if (!x)
		return NO_EXACT;
	si = x->stats & (MDP_MAX_STATS - 1);
	g = bpf_map_lookup_elem(&mdp_flow_gen, &si);
	if (!g || *g != x->gen)
		return NO_EXACT; /* its flow is gone: the search decides, and refills */
	if (rx)
		port_rx(x->port, skb->len);
	st->in_port = x->port;
	count(MDP_C_EXACT_HIT, 1);
	flow_hit(x->stats, skb->len, tcp_flags);
	return exact_exec(skb, st, x, cfg);
}

/* Whether a megaflow hit should leave an exact entry. A fill costs a first
 * packet more than the lookups it saves it (an LRU insert and a second
 * look at the flow), so it waits until a connection shows it will carry
 * more: TCP from its first packet without SYN, FIN or RST (a handshake
 * never pays for it), anything else on one hit in four. */
static __always_inline int worth_caching(struct mdp_key *k)
{
	if (k->ip_proto == IPPROTO_TCP && k->eth_type == bpf_htons(ETH_P_IP))
		return !(bpf_ntohs(k->tcp_flags) & 0x07); /* FIN, SYN, RST */
	return (bpf_get_prandom_u32() & 3) == 0;
}

#define REV_NAT_MISS (-102) /* not a verdict: count a miss and upcall the packet */

/* The first half of a flow split at a reverse NAT hit (`stats` its counter
 * slot, `id` its MDP_OP_REV_NAT's recirculation): a TCP or UDP reply over
 * IPv4 (not a later fragment) is looked up in mdp_rev_nat under the
 * tracker and kind of mdp_recirc[id]; with a binding, the translated key
 * under in_port MDP_IN_RECIRC | id is looked up again, and only on that
 * second hit is the packet rewritten (address and port, checksums fixed
 * up as MDP_OP_SET_IP4_* and MDP_OP_SET_L4_* do) and counted on both
 * flows. Returns the second flow's action list, for the caller to run;
 * REV_NAT_MISS for anything else (the packet is unchanged: it goes up
 * with its own in_port and the agent simulates it, translating it from its
 * own bindings); or -counter when the rewrite failed. The exact-match
 * cache is neither used nor filled here: an entry could outlive the
 * binding it was made from. `k` is rewritten to the translated key.
 *
 * A global function: verified once, not inside each program's megaflow
 * path, whose verification the second search would push past the
 * verifier's budget. It calls no other function (mdp_act's frame on top
 * of the programs' and this one's would not fit the 512-byte stack), so
 * the caller runs the actions. */
__attribute__((noinline)) int mdp_rev_nat_path(struct __sk_buff *skb, struct mdp_key *k,
					       struct xstate *st, __u32 id, __u32 stats)
{
	struct mdp_key mk __attribute__((aligned(8))) = {};
	/* The binding's key, then the connection's: one slot on the stack
	 * (a program's frame and this one's must fit 512 bytes). */
	union {
		struct mdp_nat_key nk;
		struct mdp_ct_key ck;
	} u = {};
	struct mdp_nat_key *nkp = &u.nk;
	struct mdp_ct_key *ck = &u.ck;
	struct mdp_recirc_ct *rcc;
	struct mdp_recirc *rc;
	struct mdp_nat_val *v;
	struct mdp_ct_val *cv = 0;
	struct mdp_flow *f;
	__u32 ri = id, rin, mi = 0, acts2, stats2;
	__be32 ip;
	__be16 port;
	__u8 kind, flags;
	int r;

	if (!skb || !k || !st)
		return REV_NAT_MISS;
	if (st->eth_type != bpf_htons(ETH_P_IP) || !st->l4 ||
	    (st->proto != IPPROTO_TCP && st->proto != IPPROTO_UDP) || ri >= MDP_RECIRC_MAX)
		return REV_NAT_MISS;
	rc = bpf_map_lookup_elem(&mdp_recirc, &ri);
	if (!rc || !rc->set || rc->kind > MDP_NAT_DNAT)
		return REV_NAT_MISS;
	kind = rc->kind;
	rin = MDP_IN_RECIRC | ri;
	__builtin_memcpy(nkp->tracker, rc->tracker, sizeof(nkp->tracker));
	nkp->kind = kind;
	nkp->proto = k->ip_proto;
	nkp->src = k->ip_src;
	nkp->dst = k->ip_dst;
	nkp->sport = k->l4_src;
	nkp->dport = k->l4_dst;
	v = bpf_map_lookup_elem(&mdp_rev_nat, nkp);
	if (!v) {
		count(MDP_C_REV_NAT_MISS, 1);
		return REV_NAT_MISS;
	}
	rcc = bpf_map_lookup_elem(&mdp_recirc_ct, &ri);
	if (rcc && rcc->set) {
		/* The reply's connection, as the agent's conntrack keys it: its
		 * forward 5-tuple at the ingress device. */
		__builtin_memset(ck, 0, sizeof(*ck));
		__builtin_memcpy(ck->tracker, rcc->tracker, sizeof(ck->tracker));
		ck->proto = k->ip_proto;
		ck->src = k->ip_dst;
		ck->dst = k->ip_src;
		ck->sport = k->l4_dst;
		ck->dport = k->l4_src;
		cv = bpf_map_lookup_elem(&mdp_ct, ck);
		if (!cv) {
			count(MDP_C_CT_MISS, 1);
			rin |= MDP_IN_UNTRACKED;
		}
	}
	/* The last use is a plain store (any CPU's recent stamp will do); a
	 * flag not seen yet is OR'ed in atomically, so two CPUs translating
	 * replies of one binding at once both keep theirs (a lost FIN or RST
	 * would leave the binding open until its established timeout). */
	v->used_ns = bpf_ktime_get_coarse_ns();
	flags = bpf_ntohs(k->tcp_flags) & 0xff;
	if (flags & ~v->tcp_flags)
		or_byte(v, NAT_VAL_FLAGS_BYTE, flags);
	if (cv) {
		cv->used_ns = v->used_ns;
		if (flags & ~cv->tcp_flags)
			or_byte(&cv->tcp_flags, 0, flags);
	}
	ip = v->ip;
	port = v->port;
	k->in_port = rin;
	if (kind == MDP_NAT_DNAT) {
		k->ip_src = ip;
		k->l4_src = port;
	} else {
		k->ip_dst = ip;
		k->l4_dst = port;
	}
	f = lookup(k, &mk, &mi);
	if (!f)
		return REV_NAT_MISS;
	acts2 = f->acts;
	stats2 = f->stats;
	count(MDP_C_HIT, 1);
	count(MDP_C_REV_NAT_HIT, 1);
	flow_count(stats, skb->len, k->tcp_flags);
	flow_count(stats2, skb->len, k->tcp_flags);
	r = set_ip4(skb, st, kind == MDP_NAT_DNAT, ip);
	if (r == 0)
		r = set_l4_port(skb, st, kind == MDP_NAT_DNAT, port);
	if (r < 0)
		return r;
	return acts2 & (MDP_MAX_ACT_LISTS - 1);
}

/* Whether action list `al` is the first half of a flow split at a reverse
 * NAT: one MDP_OP_REV_NAT, nothing else. */
static __always_inline int is_rev_nat(struct mdp_act_list *al)
{
	return al->n == 1 && al->a[0].op == MDP_OP_REV_NAT;
}

/* The megaflow search for a parsed packet; a hit also fills the exact
 * cache under `xport` (the exact key's in_port). */
static __always_inline int flow_path(struct __sk_buff *skb, struct mdp_key *k, struct xstate *st,
				     __u32 in_port, __u32 xport)
{
	struct mdp_key mk __attribute__((aligned(8)));
	__u32 mi = 0, acts, stats;
	struct mdp_act_list *al;
	struct mdp_flow *f;
	int r;

	st->in_port = in_port;
	k->in_port = in_port;
	f = lookup(k, &mk, &mi);
	if (!f)
		goto miss;
	/* Read once: the entry may be reused under us (see exact_fill). */
	acts = f->acts;
	stats = f->stats;
	al = act_list(acts);
	if (!al)
		return drop(MDP_C_DROP_FLOW);
	if (is_rev_nat(al)) {
		r = mdp_rev_nat_path(skb, k, st, al->a[0].w, stats);
		if (r == REV_NAT_MISS)
			goto miss;
		if (r < 0)
			return drop(-r);
		return run_actions(skb, st, r);
	}
	flow_hit(stats, skb->len, k->tcp_flags);
	if (worth_caching(k)) {
		k->tcp_flags = 0;
		k->in_port = xport;
		exact_fill(k, in_port, acts, stats, &mk, mi);
	}
	return run_list(skb, st, al);
miss:
	count(MDP_C_MISS, 1);
	return upcall(skb, in_port);
}

/* TC ingress of a VM interface's host end: what the VM sends. The exact
 * cache is keyed by the receiving ifindex, so a hit needs no port lookup. */
SEC("classifier")
int mdp_port(struct __sk_buff *skb)
{
	struct mdp_key k __attribute__((aligned(8))) = {};
	struct xstate st = {};
	__u32 ifx = skb->ifindex;
	struct mdp_if_port *ip;
	int parsed, r;

	st.ingress = 1;
	parsed = parse(skb, &k, &st) == 0;
	if (parsed) {
		r = exact_path(skb, &k, &st, ifx, 1);
		if (r != NO_EXACT)
			return r;
	}
	ip = bpf_map_lookup_elem(&mdp_if_ports, &ifx);
	if (!ip)
		return drop(MDP_C_DROP_UNKNOWN_PORT);
	port_rx(ip->port, skb->len);
	if (!parsed)
		return drop(MDP_C_DROP_MALFORMED);
	return flow_path(skb, &k, &st, ip->port, ifx);
}

/* Whether the filter is on and `src` (host order) is not a tunnel peer. */
static __always_inline int unknown_tunnel_source(__u32 src)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&mdp_tunnel_filter, &zero);

	return on && *on && !bpf_map_lookup_elem(&mdp_tunnel_peers, &src);
}

/* Whether `src` (host order) is a tunnel peer the agent named. Unlike
 * mdp_tunnel, mdp_state believes nobody before the agent pushed its peers:
 * a binding it takes is used without the agent, and a restarted agent's
 * pinned first halves would use one a stranger sent in that window. */
static __always_inline int tunnel_peer(__u32 src)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&mdp_tunnel_filter, &zero);

	return on && *on && bpf_map_lookup_elem(&mdp_tunnel_peers, &src);
}

/* A tunnel frame whose VNI is bound to local port `port` goes straight out
 * of it: the sender already simulated. `strip`: the frame is still in its
 * VXLAN datagram, behind the underlay's Ethernet header (mdp_underlay); the
 * outer IP, UDP and VXLAN headers and the inner Ethernet header come off
 * once the port is known to be good, and the inner Ethernet header is
 * written over the underlay's. The outer UDP checksum is not verified, as
 * the kernel does not verify a zero one: the inner packet's own checksums
 * still are. Like the UDP receive, one level of "checksum unnecessary"
 * (the outer datagram's) is used up. */
static __always_inline int to_vni_port(struct __sk_buff *skb, __u32 port, int strip)
{
	__u32 p = port & (MDP_MAX_PORTS - 1);
	struct mdp_port *pi = bpf_map_lookup_elem(&mdp_ports, &p);
	__u8 inner[ETH_HLEN];

	if (skb->len < ETH_HLEN)
		return drop(MDP_C_DROP_TRUNCATED);
	if (p == 0 || !pi || !pi->ifindex)
		return drop(MDP_C_DROP_UNKNOWN_PORT);
	if (strip) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + VXLAN_OUTER, inner, ETH_HLEN) < 0 ||
		    bpf_skb_adjust_room(skb, -(__s32)VXLAN_STRIP, BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_NO_CSUM_RESET) < 0 ||
		    bpf_skb_store_bytes(skb, 0, inner, ETH_HLEN, 0) < 0)
			return drop(MDP_C_DROP_TUNNEL_MALFORMED);
		bpf_csum_level(skb, BPF_CSUM_LEVEL_DEC);
		count(MDP_C_TUNNEL_DECAP, 1);
	}
	count(MDP_C_TUNNEL_DIRECT, 1);
	port_tx(p, skb->len);
	return emit(skb, pi->ifindex, pi->flags & MDP_PORT_PEER, 1);
}

/* TC ingress of the vxlan device (external mode): what other hosts send.
 * Only tunnel peers are believed; a VNI bound to a local port is that
 * port's: the sender already simulated. */
SEC("classifier")
int mdp_tunnel(struct __sk_buff *skb)
{
	struct bpf_tunnel_key tk = {};
	__u32 vni, *port;

	if (bpf_skb_get_tunnel_key(skb, &tk, __builtin_offsetof(struct bpf_tunnel_key, local_ipv4), 0) < 0)
		return drop(MDP_C_DROP_TUNNEL_MALFORMED);
	port_rx(0, skb->len);
	if (unknown_tunnel_source(tk.remote_ipv4))
		return drop(MDP_C_DROP_TUNNEL_SOURCE);
	vni = tk.tunnel_id & 0x00ffffff;
	port = bpf_map_lookup_elem(&mdp_vni_ports, &vni);
	if (port)
		return to_vni_port(skb, *port, 0);
	{
		struct mdp_key k __attribute__((aligned(8))) = {};
		struct xstate st = {};
		__u32 in = MDP_IN_TUNNEL | vni;
		int r;

		st.ingress = 1;
		if (parse(skb, &k, &st) < 0)
			return drop(MDP_C_DROP_MALFORMED);
		r = exact_path(skb, &k, &st, in, 0);
		if (r != NO_EXACT)
			return r;
		return flow_path(skb, &k, &st, in, in);
	}
}

/* TC ingress of the underlay interface (the one holding the tunnel
 * address): a VXLAN datagram for a VNI bound to a local port is
 * decapsulated here and handed to that port, as mdp_tunnel would after the
 * kernel's IP and UDP receive, netfilter, socket lookup, vxlan_rcv and GRO
 * cell. Everything else goes on into the stack untouched (TC_ACT_OK): not
 * ours; a GSO aggregate (this kernel cannot clear a decapsulated packet's
 * tunnel GSO state; the vxlan device does); a fragment, IP options, a
 * length the stack would trim or refuse; VXLAN flags other than the VNI's;
 * an inner frame other than IPv4; a VNI not bound here (the megaflow path
 * of mdp_tunnel). Those reach the vxlan device and mdp_tunnel as before,
 * so both paths see the same packets and apply the same source check. */
SEC("classifier")
int mdp_underlay(struct __sk_buff *skb)
{
	__u32 zero = 0, vni, *port;
	struct mdp_config *cfg = bpf_map_lookup_elem(&mdp_config, &zero);
	__u32 need = ETH_HLEN + VXLAN_STRIP;
	struct ethhdr *ieth;
	struct udphdr *udp;
	struct iphdr *ip;
	void *data, *end;
	__be32 *vx;

	if (!cfg || !cfg->local_ip || !cfg->vxlan_port || (cfg->flags & MDP_CFG_NO_DECAP))
		return TC_ACT_OK;
	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->vlan_present || skb->gso_size ||
	    skb->len < need + 20)
		return TC_ACT_OK;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (data + need > end) {
		if (bpf_skb_pull_data(skb, need) < 0)
			return TC_ACT_OK;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		if (data + need > end)
			return TC_ACT_OK;
	}
	ip = data + ETH_HLEN;
	udp = (void *)(ip + 1);
	vx = (void *)(udp + 1);
	ieth = (void *)(vx + 2);
	if (*(__u8 *)ip != 0x45 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)) || ip->daddr != bpf_htonl(cfg->local_ip) ||
	    udp->dest != bpf_htons(cfg->vxlan_port))
		return TC_ACT_OK;
	if (bpf_ntohs(ip->tot_len) != skb->len - ETH_HLEN ||
	    bpf_ntohs(udp->len) != skb->len - ETH_HLEN - 20)
		return TC_ACT_OK;
	if (vx[0] != bpf_htonl(VXLAN_FLAG_VNI) || (vx[1] & bpf_htonl(0xff)) ||
	    ieth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	vni = bpf_ntohl(vx[1]) >> 8;
	port = bpf_map_lookup_elem(&mdp_vni_ports, &vni);
	if (!port)
		return TC_ACT_OK;
	port_rx(0, skb->len - ETH_HLEN - VXLAN_OUTER);
	if (unknown_tunnel_source(bpf_ntohl(ip->saddr)))
		return drop(MDP_C_DROP_TUNNEL_SOURCE);
	return to_vni_port(skb, *port, 1);
}

/* TC ingress of the inject veth: packets the agent sends, with the action
 * list to run in skb->mark. */
SEC("classifier")
int mdp_inject(struct __sk_buff *skb)
{
	struct mdp_key k __attribute__((aligned(8))) = {};
	struct xstate st = {};
	__u32 mark = skb->mark;
	__u32 id = mark & 0xffff;
	struct mdp_act_list *al = bpf_map_lookup_elem(&mdp_actions, &id);

	skb->mark = 0;
	if (!mark || !al || al->gen != (mark >> 16))
		return drop(MDP_C_DROP_STALE_EXEC);
	st.ingress = 1;
	/* A frame the agent made may not parse; then only emits and L2
	 * rewrites can apply, and anything else fails as a rewrite. */
	if (parse(skb, &k, &st) < 0) {
		st.l4 = 0;
		st.eth_type = 0;
	}
	count(MDP_C_INJECT, 1);
	return run_actions(skb, &st, id);
}

/* Flow-state messages (crates/wire/src/flowstate.rs), version 1: a 40-byte
 * header (version, flags, n_egress, n_groups, n_conntrack (2), n_nat (2),
 * sender and ingress port ids), then the port and group ids, the
 * conntrack entries and the NAT entries, each a binding's forward key and
 * what it translates to. */
#define FS_VERSION      1
#define FS_FLAG_REQUEST 0x02
#define FS_HEADER       40
#define FS_ID           16
#define FS_CONNTRACK    30
#define FS_NAT          36
#define FS_MAX_NAT      16 /* NAT entries read per message; the agent reads them all */
#define FS_MAX_CT       16 /* conntrack entries read per message; the agent reads them all */

/* One conntrack entry of a flow-state message (a connection's forward key
 * at its tracker, as mdp_ct keys it) into mdp_ct, TCP and UDP only. An
 * entry there already is left as it is (its last use and flags). */
static __always_inline void state_conn(const __u8 *e)
{
	struct mdp_ct_key ck = {};
	struct mdp_ct_val cv = {};
	__u8 proto = e[28];

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return;
	__builtin_memcpy(ck.tracker, e, 16);
	__builtin_memcpy(&ck.src, e + 16, 4);
	__builtin_memcpy(&ck.dst, e + 20, 4);
	__builtin_memcpy(&ck.sport, e + 24, 2);
	__builtin_memcpy(&ck.dport, e + 26, 2);
	ck.proto = proto;
	if (bpf_map_update_elem(&mdp_ct, &ck, &cv, BPF_NOEXIST) == 0)
		count(MDP_C_STATE_CONNS, 1);
}

/* One NAT entry of a flow-state message into mdp_rev_nat, under the key
 * of its replies (midonet_state::NatKey::return_key, with the value of
 * return_binding): SNAT replies come from the forward destination to the
 * bound address and port and get the forward source back as destination;
 * DNAT replies come from the bound address and port to the forward source
 * and get the forward destination back as source. TCP and UDP, SNAT and
 * DNAT only. An entry this host allocated (`local`) is the agent's and
 * stays; another is replaced, as a binding not used yet. */
static __always_inline void state_binding(const __u8 *e)
{
	struct mdp_nat_key nk = {};
	struct mdp_nat_val nv = {};
	struct mdp_nat_val *old;
	__u8 proto = e[28], kind = e[29];

	if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || kind > MDP_NAT_DNAT)
		return;
	__builtin_memcpy(nk.tracker, e, 16);
	nk.proto = proto;
	nk.kind = kind;
	if (kind == MDP_NAT_SNAT) {
		__builtin_memcpy(&nk.src, e + 20, 4); /* forward dst */
		__builtin_memcpy(&nk.sport, e + 26, 2);
		__builtin_memcpy(&nk.dst, e + 30, 4); /* bound */
		__builtin_memcpy(&nk.dport, e + 34, 2);
		__builtin_memcpy(&nv.ip, e + 16, 4); /* forward src */
		__builtin_memcpy(&nv.port, e + 24, 2);
	} else {
		__builtin_memcpy(&nk.src, e + 30, 4); /* bound */
		__builtin_memcpy(&nk.sport, e + 34, 2);
		__builtin_memcpy(&nk.dst, e + 16, 4); /* forward src */
		__builtin_memcpy(&nk.dport, e + 24, 2);
		__builtin_memcpy(&nv.ip, e + 20, 4); /* forward dst */
		__builtin_memcpy(&nv.port, e + 26, 2);
	}
	old = bpf_map_lookup_elem(&mdp_rev_nat, &nk);
	if (old && old->local)
		return;
	if (bpf_map_update_elem(&mdp_rev_nat, &nk, &nv, BPF_ANY) == 0)
		count(MDP_C_STATE_BINDINGS, 1);
}

/* Socket filter of the agent's flow-state UDP socket: the NAT bindings of
 * every message go into mdp_rev_nat, and its connections into mdp_ct, as
 * the kernel queues the datagram,
 * before any thread of the agent wakes, so the replies they translate can
 * hit a split flow at once. It never changes delivery (it returns the
 * whole length): the agent still reads and checks every message itself.
 * Taken only from a tunnel peer once the agent has named them (as
 * mdp_tunnel), of version 1, not a request, no shorter than its NAT
 * section; the rest is counted (MDP_C_STATE_REJECTED) and left alone.
 *
 * The IPv4 and UDP headers are read relative to the network header: the
 * stack has pulled them into the linear area, wherever skb->data points
 * now (the UDP header, on a socket's receive). The payload may not be
 * linear (a NIC's page fragments), and bpf_skb_load_bytes_relative reads
 * only the linear area, so it is read with bpf_skb_load_bytes from
 * skb->data, where it starts the UDP length less the header before the
 * end (the stack trimmed the datagram to that length). */
SEC("socket")
int mdp_state(struct __sk_buff *skb)
{
	__u8 ip[20], udp[8], h[8], e[FS_NAT];
	__u32 len = skb->len, ihl, src, ulen, plen, off, ct, n_ct, nat, n_nat;

	if (bpf_skb_load_bytes_relative(skb, 0, ip, sizeof(ip), BPF_HDR_START_NET) < 0 ||
	    (ip[0] >> 4) != 4 || ip[9] != IPPROTO_UDP)
		goto reject;
	ihl = (ip[0] & 0x0f) * 4;
	if (ihl < 20 ||
	    bpf_skb_load_bytes_relative(skb, ihl, udp, sizeof(udp), BPF_HDR_START_NET) < 0)
		goto reject;
	src = ((__u32)ip[12] << 24) | ((__u32)ip[13] << 16) | ((__u32)ip[14] << 8) | ip[15];
	if (!tunnel_peer(src))
		goto reject;
	ulen = ((__u32)udp[4] << 8) | udp[5];
	if (ulen < 8 + FS_HEADER || ulen - 8 > len)
		goto reject;
	plen = ulen - 8;
	off = len - plen;
	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0 || h[0] != FS_VERSION ||
	    (h[1] & FS_FLAG_REQUEST))
		goto reject;
	ct = FS_HEADER + FS_ID * ((__u32)h[2] + h[3]);
	n_ct = ((__u32)h[4] << 8) | h[5];
	nat = ct + FS_CONNTRACK * n_ct;
	n_nat = ((__u32)h[6] << 8) | h[7];
	if (plen < nat + FS_NAT * n_nat)
		goto reject;
	for (__u32 i = 0; i < FS_MAX_CT; i++) {
		if (i >= n_ct)
			break;
		if (bpf_skb_load_bytes(skb, off + ct + FS_CONNTRACK * i, e, FS_CONNTRACK) < 0)
			break;
		state_conn(e);
	}
	for (__u32 i = 0; i < FS_MAX_NAT; i++) {
		if (i >= n_nat)
			break;
		if (bpf_skb_load_bytes(skb, off + nat + FS_NAT * i, e, sizeof(e)) < 0)
			break;
		state_binding(e);
	}
	return len;
reject:
	count(MDP_C_STATE_REJECTED, 1);
	return len;
}
