/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ABI between the BPF datapath (datapath.c) and the agent
 * (crates/datapath/src/ebpf/abi.rs mirrors every struct and constant here;
 * its unit tests check the sizes). Everything is in host byte order unless
 * the field says __be.
 */
#ifndef MDP_DATAPATH_H
#define MDP_DATAPATH_H

#include <linux/types.h>

/* Table sizes. */
#define MDP_MAX_FLOWS      65536
#define MDP_MAX_MASKS      32    /* power of two: indexes are masked with it */
#define MDP_MAX_ACT_LISTS  32768 /* power of two */
#define MDP_MAX_ACTS       16    /* actions per list */
#define MDP_MAX_PORTS      4096  /* power of two; index 0 = the tunnel */
#define MDP_MAX_STATS      65536 /* per-flow counter slots, power of two */
#define MDP_RING_BYTES     (16 << 20)
#define MDP_SPARE_RING_BYTES (1 << 20) /* borrowed upcalls (limit.rs) */
#define MDP_MAX_PEERS      65536 /* tunnel peers (underlay addresses) */
#define MDP_MAX_EXACT      65536 /* exact-match cache entries (LRU) */
#define MDP_MAX_REV_NAT    131072 /* reverse-NAT bindings (LRU) */
#define MDP_RECIRC_MAX     4096  /* recirculation ids; power of two */
#define MDP_MAX_CT         131072 /* tracked connections (LRU) */

/* Upcall copy sizes: the ring buffer needs a constant reservation, so a
 * frame goes into one of two record sizes. */
#define MDP_UPCALL_SMALL   2048
#define MDP_UPCALL_BIG     (65536 + 256)

/* in_port encoding in the key: a local port number, or TUNNEL | VNI, or
 * RECIRC | id for the second lookup of a packet a MDP_OP_REV_NAT flow
 * translated (midonet_datapath::RECIRC_PORT_BASE; below bit 24, so the
 * mask index still fits). Bits 24..30 carry the mask index in the flows
 * map (never in a mask). */
#define MDP_IN_TUNNEL      0x80000000u
#define MDP_IN_RECIRC      0x00100000u
#define MDP_MASK_ID_SHIFT  24

/* key.vlan: the 802.1Q TCI with the DEI bit standing for "tagged". */
#define MDP_VLAN_PRESENT   0x1000

/* key.ip_frag, as midonet_flow::FragType. */
#define MDP_FRAG_NO        0
#define MDP_FRAG_FIRST     1
#define MDP_FRAG_LATER     2

/* The flow key: the fields of midonet_flow::FlowKey the kernel parses.
 * 64 bytes = 8 words, so masking is 8 ANDs. No IPv6 addresses: flows that
 * match on IPv6 L3/L4 fields stay in the agent (see abi.rs). */
struct mdp_key {
	__u32 in_port;
	__u8 eth_dst[6];
	__u8 eth_src[6];
	__be16 eth_type;
	__u16 vlan;
	__be32 ip_src;
	__be32 ip_dst;
	__u8 ip_proto;
	__u8 ip_tos;
	__u8 ip_ttl;
	__u8 ip_frag;
	__be16 l4_src;
	__be16 l4_dst;
	__be16 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__be16 icmp_id;
	__be16 arp_op;
	__u8 arp_sha[6];
	__u8 arp_tha[6];
	__be32 arp_spa;
	__be32 arp_tpa;
};

/* Which masks to probe, in order (busiest first, the agent re-sorts). */
struct mdp_mask_list {
	__u32 n;
	__u8 idx[MDP_MAX_MASKS];
};

/* Value of the flows map. */
struct mdp_flow {
	__u32 acts;   /* index into `actions` */
	__u32 stats;  /* index into `flow_stats` */
};

/* Per-CPU counters of one flow. */
struct mdp_flow_stats {
	__u64 packets;
	__u64 bytes;
	__u64 used_ns; /* bpf_ktime_get_coarse_ns() of the last packet */
	__u64 tcp_flags; /* TCP flags of its packets, OR'ed (host order) */
};

enum mdp_op {
	MDP_OP_NONE = 0,
	MDP_OP_SET_ETH_SRC,  /* mac */
	MDP_OP_SET_ETH_DST,  /* mac */
	MDP_OP_SET_IP4_SRC,  /* w: address (__be32) */
	MDP_OP_SET_IP4_DST,  /* w: address (__be32) */
	MDP_OP_SET_TTL,      /* h */
	MDP_OP_SET_TOS,      /* h */
	MDP_OP_SET_L4_SRC,   /* h: port (host order) */
	MDP_OP_SET_L4_DST,   /* h */
	MDP_OP_SET_ICMP_ID,  /* h */
	MDP_OP_PUSH_VLAN,    /* h: TCI */
	MDP_OP_POP_VLAN,
	MDP_OP_OUTPUT,       /* w: port number */
	MDP_OP_TUNNEL,       /* w: remote IPv4 (host order), x: VNI */
	MDP_OP_REV_NAT,      /* w: recirculation id; a flow's only action */
};

struct mdp_act { /* 20 bytes */
	__u8 op;
	__u8 pad;
	__u16 h;
	__u32 w;
	__u32 x;
	__u8 mac[6];
	__u8 pad2[2];
};

/* An action list. `gen` is bumped whenever the slot is reused, so a
 * re-injected packet naming an old generation is dropped, not mis-sent. */
struct mdp_act_list {
	__u16 n;
	__u16 last_emit; /* index of the last output/tunnel; >= n: none */
	__u16 gen;
	__u16 pad;
	struct mdp_act a[MDP_MAX_ACTS];
};

/* port_info flags */
#define MDP_PORT_PEER 1 /* a veth whose peer is in another netns: deliver with bpf_redirect_peer */

struct mdp_port {
	__u32 ifindex;
	__u32 flags;
	char name[16];
};

struct mdp_if_port {
	__u32 port;
	__u32 pad;
};

struct mdp_port_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
};

/* Upcall budget of one port (slot 0: the tunnel), per CPU: a GCRA time
 * credit (see crates/datapath/src/limit.rs), what it let through (upcalls,
 * borrowed ones included), what it dropped, and what it let through past
 * its budget because the agent had room (borrowed). */
struct mdp_upcall_limit {
	__u64 credit_ns;
	__u64 last_ns;
	__u64 upcalls;
	__u64 limited;
	__u64 borrowed;
};

/* Upcall budgets: cost of one upcall and the credit cap, in ns; cost 0 =
 * unlimited. spare_bytes: a miss past its budget still goes up, into the
 * spare ring, while that ring holds fewer bytes than this (0 = never).
 * Written by the agent. */
struct mdp_limit_config {
	__u64 port_cost_ns;
	__u64 port_cap_ns;
	__u64 tunnel_cost_ns;
	__u64 tunnel_cap_ns;
	__u64 spare_bytes;
};

/* mdp_config.flags */
#define MDP_CFG_NO_EXACT 1 /* do not use or fill the exact-match cache */
#define MDP_CFG_NO_DECAP 2 /* mdp_underlay leaves every datagram to the vxlan device */
#define MDP_CFG_NO_ENCAP 4 /* every tunnel output goes through the vxlan device */

/* How to reach a tunnel peer (mdp_tunnel_nh, keyed by its address in host
 * order): the underlay interface, its MTU and the next hop's IPv4 address
 * (the peer's own when on-link), as the agent read them from the routing
 * table and the link. */
struct mdp_nexthop {
	__u32 ifindex;
	__be32 via;
	__u32 mtu;
};

struct mdp_config {
	__u32 vxlan_ifindex;
	__u32 local_ip;   /* host order; 0 = let the route decide */
	__u32 tunnel_ttl;
	__u32 flags;
	__u32 vxlan_port; /* host order: the UDP port mdp_underlay takes */
};

/* The exact-match cache (mdp_exact), in front of the megaflow search: keyed
 * by a packet's whole parsed key (in_port = the receiving ifindex for a VM
 * port, TUNNEL | VNI for the tunnel; tcp_flags zero), filled by the program
 * when a packet hits a megaflow whose mask ignores TCP flags, and valid
 * while mdp_flow_gen[stats] still holds `gen` (the agent changes it when
 * it removes the flow of that stats slot). A hit does one hash lookup and,
 * when the flow's actions compiled to the fixed form below, runs them
 * without the action list. */
#define MDP_X_SET_DST  1
#define MDP_X_SET_SRC  2
#define MDP_X_SET_TTL  4
#define MDP_X_TUNNEL   8  /* w: remote IPv4 (host order), x: VNI */
#define MDP_X_OUTPUT   16 /* w: port number */
#define MDP_X_COMPILED 128 /* the fields say it all; else run `acts` */

/* mdp_exact.nat: the address and port rewrites of NAT (floating IPs,
 * dynamic SNAT/DNAT and their reverse), applied after the TTL. */
#define MDP_XN_IP_SRC  1
#define MDP_XN_IP_DST  2
#define MDP_XN_L4_SRC  4
#define MDP_XN_L4_DST  8

struct mdp_exact {
	__u32 port;  /* the megaflow key's in_port (rx counters) */
	__u32 stats; /* the flow's counter slot */
	__u32 gen;   /* mdp_flow_gen[stats] when filled */
	__u32 acts;  /* the flow's action list */
	__u8 flags;
	__u8 ttl;
	__u8 eth[12]; /* destination, source: the frame's first 12 bytes */
	__u8 nat;     /* MDP_XN_* */
	__u8 pad;
	__u32 w;
	__u32 x;
	__be32 ip_src;
	__be32 ip_dst;
	__u16 l4_src; /* host order, as the action's h */
	__u16 l4_dst;
};

/* Reverse NAT (a flow split at a rev_snat/rev_dnat: its first half's only
 * action is MDP_OP_REV_NAT(id), its second halves are looked up under
 * in_port MDP_IN_RECIRC | id with the translated packet).
 *
 * mdp_rev_nat (LRU hash) is keyed by a reply as it arrives at the device
 * (or port group) `tracker` that translated its connection, all fields as
 * on the wire; kind is the flow-state message's NAT kind code. The value
 * is what the reply gets back: its destination for SNAT, its source for
 * DNAT. The agent keeps it in step with its own bindings; mdp_state adds
 * the ones in flow-state messages as they arrive. An evicted binding costs
 * a reply a miss, nothing more: the agent still translates it. */
#define MDP_NAT_SNAT 0 /* a reply to a source NAT: restore its destination */
#define MDP_NAT_DNAT 1 /* a reply to a destination NAT: restore its source */

struct mdp_nat_key { /* 32 bytes */
	__u8 tracker[16];
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 kind;
	__u8 pad[2];
};

struct mdp_nat_val { /* 16 bytes */
	__be32 ip;
	__be16 port;
	__u8 local;     /* this host allocated it: mdp_state never replaces it */
	__u8 tcp_flags; /* TCP flags of the replies translated, OR'ed (the low 8 bits) */
	__u64 used_ns;  /* bpf_ktime_get_coarse_ns() of the last reply; 0 = none yet */
};

/* mdp_recirc[id]: where recirculation `id` translates, and how. */
struct mdp_recirc { /* 20 bytes */
	__u8 tracker[16];
	__u8 kind;
	__u8 set;
	__u8 pad[2];
};

/* Connection tracking behind a split flow (issue 8). A reverse rule's
 * second half may read conntrack (`matchReturnFlow` after `rev_snat`, as
 * security groups ask): mdp_recirc_ct[id] is then set, and the first half
 * looks the reply's connection up in mdp_ct, keyed as the agent's
 * conntrack keys a connection: its forward 5-tuple (the reply as it
 * arrived, reversed) at the device `tracker` of the reply's ingress port,
 * all fields as on the wire. Found, the second lookup is under in_port
 * MDP_IN_RECIRC | id, where the second halves that found their connection
 * wait; not found, under MDP_IN_RECIRC | MDP_IN_UNTRACKED | id, where only
 * second halves that read no conntrack are (a reply the agent must judge
 * untracked misses there). The agent keeps mdp_ct equal to its own TCP and
 * UDP connections; mdp_state adds those in flow-state messages as they
 * arrive. A connection missing costs its reply a miss, nothing more. */
#define MDP_IN_UNTRACKED MDP_RECIRC_MAX
struct mdp_ct_key { /* 32 bytes */
	__u8 tracker[16];
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct mdp_ct_val { /* 16 bytes */
	__u64 used_ns;  /* bpf_ktime_get_coarse_ns() of the last reply checked; 0 = none yet */
	__u8 tcp_flags; /* TCP flags of those replies, OR'ed (the low 8 bits) */
	__u8 pad[7];
};

/* mdp_recirc_ct[id]: recirculation `id`'s second halves read conntrack at
 * `tracker`. */
struct mdp_recirc_ct { /* 20 bytes */
	__u8 tracker[16];
	__u8 set;
	__u8 pad[3];
};

/* Counters (per-CPU array). Drops are mapped to DropReason by the agent. */
enum mdp_counter {
	MDP_C_DROP_TRUNCATED = 0,  /* too big to hand to the agent */
	MDP_C_DROP_MALFORMED,
	MDP_C_DROP_TUNNEL_MALFORMED,
	MDP_C_DROP_UNKNOWN_PORT,
	MDP_C_DROP_FLOW,           /* a flow whose actions emit nothing */
	MDP_C_DROP_REWRITE,
	MDP_C_DROP_UPCALL_LOST,    /* ring buffer full */
	MDP_C_DROP_STALE_EXEC,     /* re-injection naming a reused action list */
	MDP_C_DROP_TX,             /* a clone could not be sent */
	MDP_C_DROP_UPCALL_LIMIT,   /* over the port's upcall budget */
	MDP_C_DROP_TUNNEL_SOURCE,  /* outer source not a tunnel peer */
	MDP_C_HIT = 16,
	MDP_C_MISS,
	MDP_C_UPCALL,
	MDP_C_INJECT,
	MDP_C_TUNNEL_DIRECT,       /* tunnel packets delivered by VNI */
	MDP_C_EXACT_HIT,           /* hits served by the exact-match cache (also in HIT) */
	MDP_C_EXACT_FILL,          /* entries the programs put in it */
	MDP_C_TUNNEL_DECAP,        /* tunnel packets mdp_underlay decapsulated itself */
	MDP_C_TUNNEL_ENCAP,        /* tunnel packets the programs encapsulated themselves */
	MDP_C_REV_NAT_HIT,         /* replies translated and forwarded by a split flow (also in HIT) */
	MDP_C_REV_NAT_MISS,        /* replies of a split flow with no binding (also in MISS) */
	MDP_C_STATE_BINDINGS,      /* bindings mdp_state wrote from flow-state messages */
	MDP_C_STATE_REJECTED,      /* flow-state datagrams mdp_state did not read */
	MDP_C_CT_MISS,             /* replies of a split flow whose connection mdp_ct lacks (looked up untracked) */
	MDP_C_STATE_CONNS,         /* connections mdp_state wrote from flow-state messages */
	MDP_C_MAX = 32,
};

/* Upcall kinds */
#define MDP_UPCALL_MISS 1

/* A ring buffer record: this header, then `len` bytes of frame (as seen at
 * TC ingress: an outer VLAN tag is in the vlan_* fields, not in the data). */
struct mdp_upcall {
	__u32 kind;
	__u32 in_port;
	__u32 len;
	__u32 ifindex;
	__u16 vlan_tci;
	__be16 vlan_proto;
	__u8 vlan_present;
	__u8 pad[3];
	__u32 gso_size;
	__u32 gso_segs;
	/* bpf_ktime_get_ns() at submit: the agent measures how long a miss
	 * waited in the ring (CLOCK_MONOTONIC on both sides). */
	__u64 ktime_ns;
};

#endif
