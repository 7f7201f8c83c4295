// SPDX-License-Identifier: GPL-2.0
// 802.1Q tagging for a layer-2 direct connect hand-off (tc clsact, direct action).
//
// The kernel here has no 802.1Q devices and no bridge VLAN filtering, so the hand-off's tag
// is pushed and popped by two tiny programs on the hand-off side of the edge's veth pair:
//
//   tc/push  on frames going towards the premises: add the tag VLAN_ID;
//   tc/pop   on frames coming from the premises: accept only VLAN_ID (which is removed),
//            drop untagged frames and frames with any other tag.
//
// VLAN_ID is fixed at compile time (clang -DVLAN_ID=<2..4093>); vlantag.py compiles one
// object per tag and caches it. The kernel may hold a received tag in skb metadata
// (vlan_present) or, if nothing extracted it yet, in the frame itself: both are handled.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef VLAN_ID
#error "compile with -DVLAN_ID=<2..4093>"
#endif

SEC("tc/push")
int vlan_push(struct __sk_buff *skb)
{
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), VLAN_ID) != 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("tc/pop")
int vlan_pop(struct __sk_buff *skb)
{
	__u16 vid;

	if (skb->vlan_present) {
		if (skb->vlan_proto != bpf_htons(ETH_P_8021Q))
			return TC_ACT_SHOT;
		vid = skb->vlan_tci & 0x0fff;
	} else if (skb->protocol == bpf_htons(ETH_P_8021Q)) {
		__u16 tci;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &tci, sizeof(tci)) != 0)
			return TC_ACT_SHOT;
		vid = bpf_ntohs(tci) & 0x0fff;
	} else {
		return TC_ACT_SHOT;
	}
	if (vid != VLAN_ID)
		return TC_ACT_SHOT;
	if (bpf_skb_vlan_pop(skb) != 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
