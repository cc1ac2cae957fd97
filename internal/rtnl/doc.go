// Package rtnl is netevd's only door to rtnetlink: it is the one package
// that imports github.com/mdlayher/netlink (sockets, namespaces, attribute
// parsing) and github.com/jsimonetti/rtnetlink (in its tests, to build
// kernel-shaped messages with an encoder that is not ours). It opens a
// monitor socket (Monitor), reads the kernel's complete state (Dump),
// decodes rtnetlink messages into event.Event values (Decode), and adds,
// deletes and lists policy rules and routes for the routing action
// (Router; errors match ErrExists and ErrNotFound). It imports
// only internal/event from netevd; sources import it.
//
// The decoder is our own rather than the library's message types: those
// reject a whole message for one attribute they do not expect (a rule with
// FRA_DSCP, a route whose metrics carry a congestion-control name), and a
// monitor must not lose a deletion to that.
//
// # Decoding
//
//   - RTM_NEWLINK → event.KindLink, RTM_DELLINK → event.KindLinkGone. Only
//     AF_UNSPEC link messages describe a link: the bridge's AF_BRIDGE port
//     messages (an RTM_DELLINK of that family means "left the bridge", not
//     "deleted") and AF_INET6 per-link messages are ignored.
//   - RTM_NEWADDR/RTM_DELADDR → event.KindAddr/KindAddrGone for IPv4 and
//     IPv6. The address is IFA_LOCAL when present (the local end of a
//     point-to-point address), else IFA_ADDRESS. Flags are IFA_FLAGS, which
//     carries all 32 bits, ORed with the header's 8-bit flags for kernels
//     that send no IFA_FLAGS.
//   - RTM_NEWROUTE/RTM_DELROUTE → event.KindRoute/KindRouteGone. A
//     multipath route (RTA_MULTIPATH) becomes one event per next hop, each
//     with Route.Multipath set. The table is RTA_TABLE when present.
//   - RTM_DELRULE → event.KindRuleGone. RTM_NEWRULE is ignored: netevd only
//     needs to know that someone removed a rule.
//   - Other message types and address families are ignored, not errors.
//
// Unknown attributes are skipped, so newer kernels decode. A message whose
// known attributes are malformed (bad lengths, prefix longer than the
// family allows) is an error; a Monitor skips it, counts it and logs it.
//
// # Noise filtering
//
// Routes that say nothing about reachability through a link are dropped,
// in every path (Monitor, Dump and Decode alike):
//
//   - routes in the local table (255): the kernel's own host, broadcast and
//     anycast entries for each address;
//   - route types other than unicast, blackhole, unreachable and prohibit
//     (local, broadcast, multicast, anycast, throw, nat, ...);
//   - cached clones (RTM_F_CLONED: PMTU and redirect exceptions);
//   - IPv6 destinations in ff00::/8 (multicast) and fe80::/10 (the
//     link-local prefix route every IPv6 link carries).
//
// Addresses are never filtered, link-local ones included: the state model
// decides what is global.
//
// # Known limits
//
// Route carries no source prefix (IPv6 "from" routes), TOS or nexthop-object
// id: two kernel routes differing only in those map to the same Route. A
// route that uses a nexthop object (RTA_NH_ID) has no gateway or output
// interface in its message and is reported with OutIndex 0.
package rtnl
