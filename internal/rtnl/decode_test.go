package rtnl

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// cmpIP lets cmp compare the netip types, whose fields are unexported.
var cmpIP = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

var now = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// wrap marshals m with the library and puts it behind a netlink header.
func wrap(t testing.TB, typ uint16, m rtnetlink.Message) netlink.Message {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	return raw(typ, b)
}

func raw(typ uint16, b []byte) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Length: uint32(nlmsgHeaderLen + len(b)), Type: netlink.HeaderType(typ)},
		Data:   b,
	}
}

// withFamily overwrites the first byte of a marshaled message, for the
// families the library's LinkMessage cannot express.
func withFamily(m netlink.Message, family byte) netlink.Message {
	d := append([]byte(nil), m.Data...)
	d[0] = family
	m.Data = d
	return m
}

func mac(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

func ipOf(s string) net.IP { return net.ParseIP(s) }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

const (
	flagsUp      = unix.IFF_UP | unix.IFF_BROADCAST | unix.IFF_MULTICAST
	flagsRunning = flagsUp | unix.IFF_RUNNING | unix.IFF_LOWER_UP
)

func vethMsg(name string, flags uint32, oper rtnetlink.OperationalState) *rtnetlink.LinkMessage {
	return &rtnetlink.LinkMessage{
		Index: 10,
		Flags: flags,
		Attributes: &rtnetlink.LinkAttributes{
			Name:             name,
			MTU:              1500,
			Address:          mac("02:00:00:00:00:0a"),
			Broadcast:        mac("ff:ff:ff:ff:ff:ff"),
			OperationalState: oper,
			Info:             &rtnetlink.LinkInfo{Kind: "veth"},
		},
	}
}

func vethLink(name string, flags uint32, oper string) *event.Link {
	return &event.Link{
		Index:     10,
		Name:      name,
		Kind:      "veth",
		MAC:       "02:00:00:00:00:0a",
		MTU:       1500,
		AdminUp:   flags&unix.IFF_UP != 0,
		Carrier:   flags&unix.IFF_LOWER_UP != 0,
		OperState: oper,
		Flags:     flags,
	}
}

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		name string
		msg  netlink.Message
		want []event.Event
	}{
		{
			name: "link up with carrier",
			msg:  wrap(t, unix.RTM_NEWLINK, vethMsg("veth0", flagsRunning, rtnetlink.OperStateUp)),
			want: []event.Event{{Kind: event.KindLink, Time: now, Link: vethLink("veth0", flagsRunning, "up")}},
		},
		{
			name: "link up without carrier",
			msg:  wrap(t, unix.RTM_NEWLINK, vethMsg("veth0", flagsUp, rtnetlink.OperStateLowerLayerDown)),
			want: []event.Event{{Kind: event.KindLink, Time: now, Link: vethLink("veth0", flagsUp, "lowerlayerdown")}},
		},
		{
			name: "link down",
			msg:  wrap(t, unix.RTM_NEWLINK, vethMsg("veth0", unix.IFF_BROADCAST|unix.IFF_MULTICAST, rtnetlink.OperStateDown)),
			want: []event.Event{{Kind: event.KindLink, Time: now, Link: vethLink("veth0", unix.IFF_BROADCAST|unix.IFF_MULTICAST, "down")}},
		},
		{
			name: "link dormant",
			msg:  wrap(t, unix.RTM_NEWLINK, vethMsg("veth0", flagsRunning, rtnetlink.OperStateDormant)),
			want: []event.Event{{Kind: event.KindLink, Time: now, Link: vethLink("veth0", flagsRunning, "dormant")}},
		},
		{
			name: "hostile name kept verbatim",
			msg:  wrap(t, unix.RTM_NEWLINK, vethMsg("x;$(id)", flagsUp, rtnetlink.OperStateDown)),
			want: []event.Event{{Kind: event.KindLink, Time: now, Link: vethLink("x;$(id)", flagsUp, "down")}},
		},
		{
			name: "bridge port with master, no kind, no operstate",
			msg: wrap(t, unix.RTM_NEWLINK, &rtnetlink.LinkMessage{
				Index: 11,
				Flags: flagsRunning,
				Attributes: &rtnetlink.LinkAttributes{
					Name:   "eth0",
					MTU:    9000,
					Master: ptr(uint32(3)),
				},
			}),
			want: []event.Event{{Kind: event.KindLink, Time: now, Link: &event.Link{
				Index: 11, Name: "eth0", MTU: 9000, AdminUp: true, Carrier: true,
				OperState: "unknown", Flags: flagsRunning, Master: 3,
			}}},
		},
		{
			name: "link deleted",
			msg:  wrap(t, unix.RTM_DELLINK, vethMsg("veth0", 0, rtnetlink.OperStateDown)),
			want: []event.Event{{Kind: event.KindLinkGone, Time: now, Index: 10}},
		},
		{
			name: "bridge port left its bridge (AF_BRIDGE DELLINK) ignored",
			msg:  withFamily(wrap(t, unix.RTM_DELLINK, vethMsg("veth0", flagsRunning, rtnetlink.OperStateUp)), unix.AF_BRIDGE),
		},
		{
			name: "IPv6 per-link info (AF_INET6 NEWLINK) ignored",
			msg:  withFamily(wrap(t, unix.RTM_NEWLINK, vethMsg("veth0", flagsRunning, rtnetlink.OperStateUp)), unix.AF_INET6),
		},
		{
			name: "ipv4 address added",
			msg: wrap(t, unix.RTM_NEWADDR, &rtnetlink.AddressMessage{
				Family: unix.AF_INET, PrefixLength: 24, Flags: unix.IFA_F_PERMANENT, Index: 10,
				Attributes: &rtnetlink.AddressAttributes{
					Address: ipOf("192.0.2.1"), Local: ipOf("192.0.2.1"), Broadcast: ipOf("192.0.2.255"),
					Label: "veth0", Flags: unix.IFA_F_PERMANENT,
				},
			}),
			want: []event.Event{{Kind: event.KindAddr, Time: now, Addr: &event.Addr{
				Index: 10, Prefix: pfx("192.0.2.1/24"), Scope: 0, Flags: unix.IFA_F_PERMANENT,
			}}},
		},
		{
			name: "ipv4 point-to-point address uses IFA_LOCAL",
			msg: wrap(t, unix.RTM_NEWADDR, &rtnetlink.AddressMessage{
				Family: unix.AF_INET, PrefixLength: 32, Index: 12,
				Attributes: &rtnetlink.AddressAttributes{Address: ipOf("198.51.100.2"), Local: ipOf("198.51.100.1")},
			}),
			want: []event.Event{{Kind: event.KindAddr, Time: now, Addr: &event.Addr{Index: 12, Prefix: pfx("198.51.100.1/32")}}},
		},
		{
			name: "ipv4 address deleted",
			msg: wrap(t, unix.RTM_DELADDR, &rtnetlink.AddressMessage{
				Family: unix.AF_INET, PrefixLength: 24, Index: 10,
				Attributes: &rtnetlink.AddressAttributes{Address: ipOf("192.0.2.1"), Local: ipOf("192.0.2.1")},
			}),
			want: []event.Event{{Kind: event.KindAddrGone, Time: now, Addr: &event.Addr{Index: 10, Prefix: pfx("192.0.2.1/24")}}},
		},
		{
			name: "ipv6 address with flags beyond 8 bits",
			msg: wrap(t, unix.RTM_NEWADDR, &rtnetlink.AddressMessage{
				Family: unix.AF_INET6, PrefixLength: 64, Flags: unix.IFA_F_NODAD | unix.IFA_F_PERMANENT, Index: 10,
				Attributes: &rtnetlink.AddressAttributes{
					Address: ipOf("2001:db8::1"),
					Flags:   unix.IFA_F_NODAD | unix.IFA_F_PERMANENT | unix.IFA_F_NOPREFIXROUTE,
				},
			}),
			want: []event.Event{{Kind: event.KindAddr, Time: now, Addr: &event.Addr{
				Index: 10, Prefix: pfx("2001:db8::1/64"),
				Flags: unix.IFA_F_NODAD | unix.IFA_F_PERMANENT | unix.IFA_F_NOPREFIXROUTE,
			}}},
		},
		{
			name: "ipv6 link-local address kept",
			msg: wrap(t, unix.RTM_NEWADDR, &rtnetlink.AddressMessage{
				Family: unix.AF_INET6, PrefixLength: 64, Scope: unix.RT_SCOPE_LINK, Index: 10,
				Attributes: &rtnetlink.AddressAttributes{Address: ipOf("fe80::1")},
			}),
			want: []event.Event{{Kind: event.KindAddr, Time: now, Addr: &event.Addr{
				Index: 10, Prefix: pfx("fe80::1/64"), Scope: event.ScopeLink,
			}}},
		},
		{
			name: "ipv6 address deleted",
			msg: wrap(t, unix.RTM_DELADDR, &rtnetlink.AddressMessage{
				Family: unix.AF_INET6, PrefixLength: 64, Index: 10,
				Attributes: &rtnetlink.AddressAttributes{Address: ipOf("2001:db8::1")},
			}),
			want: []event.Event{{Kind: event.KindAddrGone, Time: now, Addr: &event.Addr{Index: 10, Prefix: pfx("2001:db8::1/64")}}},
		},
		{
			name: "ipv4 default route",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_DHCP,
				Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{
					Gateway: ipOf("192.0.2.254"), OutIface: 10, Priority: 100, Table: unix.RT_TABLE_MAIN,
					Src: ipOf("192.0.2.1"),
				},
			}),
			want: []event.Event{{Kind: event.KindRoute, Time: now, Route: &event.Route{
				Family: unix.AF_INET, Table: event.TableMain, Dst: pfx("0.0.0.0/0"), Src: addr("192.0.2.1"),
				Gateway: addr("192.0.2.254"), OutIndex: 10, Priority: 100, Protocol: unix.RTPROT_DHCP,
				Type: unix.RTN_UNICAST,
			}}},
		},
		{
			name: "ipv6 default route removed",
			msg: wrap(t, unix.RTM_DELROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_RA, Type: unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{Gateway: ipOf("fe80::1"), OutIface: 10, Priority: 1024},
			}),
			want: []event.Event{{Kind: event.KindRouteGone, Time: now, Route: &event.Route{
				Family: unix.AF_INET6, Table: event.TableMain, Dst: pfx("::/0"), Gateway: addr("fe80::1"),
				OutIndex: 10, Priority: 1024, Protocol: unix.RTPROT_RA, Type: unix.RTN_UNICAST,
			}}},
		},
		{
			name: "prefix route in a table above 255",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET, DstLength: 24, Table: unix.RT_TABLE_COMPAT, Protocol: unix.RTPROT_KERNEL,
				Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("192.0.2.0"), OutIface: 10, Table: 1010},
			}),
			want: []event.Event{{Kind: event.KindRoute, Time: now, Route: &event.Route{
				Family: unix.AF_INET, Table: 1010, Dst: pfx("192.0.2.0/24"), OutIndex: 10,
				Protocol: unix.RTPROT_KERNEL, Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST,
			}}},
		},
		{
			name: "multipath route, one event per hop",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET, DstLength: 24, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC,
				Type: unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{
					Dst: ipOf("203.0.113.0"), Table: unix.RT_TABLE_MAIN,
					Multipath: []rtnetlink.NextHop{
						{Hop: rtnetlink.RTNextHop{IfIndex: 10}, Gateway: ipOf("192.0.2.254")},
						{Hop: rtnetlink.RTNextHop{IfIndex: 11, Hops: 1}, Gateway: ipOf("198.51.100.254")},
						{Hop: rtnetlink.RTNextHop{IfIndex: 12}},
					},
				},
			}),
			want: []event.Event{
				{Kind: event.KindRoute, Time: now, Route: &event.Route{
					Family: unix.AF_INET, Table: event.TableMain, Dst: pfx("203.0.113.0/24"), Gateway: addr("192.0.2.254"),
					OutIndex: 10, Protocol: unix.RTPROT_STATIC, Type: unix.RTN_UNICAST, Multipath: true,
				}},
				{Kind: event.KindRoute, Time: now, Route: &event.Route{
					Family: unix.AF_INET, Table: event.TableMain, Dst: pfx("203.0.113.0/24"), Gateway: addr("198.51.100.254"),
					OutIndex: 11, Protocol: unix.RTPROT_STATIC, Type: unix.RTN_UNICAST, Multipath: true,
				}},
				{Kind: event.KindRoute, Time: now, Route: &event.Route{
					Family: unix.AF_INET, Table: event.TableMain, Dst: pfx("203.0.113.0/24"),
					OutIndex: 12, Protocol: unix.RTPROT_STATIC, Type: unix.RTN_UNICAST, Multipath: true,
				}},
			},
		},
		{
			name: "ipv4 route via an ipv6 gateway (RTA_VIA)",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC, Type: unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{
					Via: &rtnetlink.RouteVia{Family: unix.AF_INET6, Addr: ipOf("fe80::1")}, OutIface: 10,
				},
			}),
			want: []event.Event{{Kind: event.KindRoute, Time: now, Route: &event.Route{
				Family: unix.AF_INET, Table: event.TableMain, Dst: pfx("0.0.0.0/0"), Gateway: addr("fe80::1"),
				OutIndex: 10, Protocol: unix.RTPROT_STATIC, Type: unix.RTN_UNICAST,
			}}},
		},
		{
			name: "blackhole route kept",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET6, DstLength: 48, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC,
				Type:       unix.RTN_BLACKHOLE,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("2001:db8:1::"), Priority: 1024},
			}),
			want: []event.Event{{Kind: event.KindRoute, Time: now, Route: &event.Route{
				Family: unix.AF_INET6, Table: event.TableMain, Dst: pfx("2001:db8:1::/48"), Priority: 1024,
				Protocol: unix.RTPROT_STATIC, Type: unix.RTN_BLACKHOLE,
			}}},
		},
		{
			name: "local-table route dropped",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_LOCAL, Protocol: unix.RTPROT_KERNEL,
				Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("192.0.2.1"), OutIface: 10, Table: unix.RT_TABLE_LOCAL},
			}),
		},
		{
			name: "unicast route in the local table dropped",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET, DstLength: 24, Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("192.0.2.0"), OutIface: 10, Table: unix.RT_TABLE_LOCAL},
			}),
		},
		{
			name: "broadcast route dropped",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_KERNEL,
				Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_BROADCAST,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("192.0.2.255"), OutIface: 10},
			}),
		},
		{
			name: "multicast route type dropped",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET6, DstLength: 8, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_MULTICAST,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("ff00::"), OutIface: 10},
			}),
		},
		{
			name: "ipv6 link-local prefix route dropped",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET6, DstLength: 64, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_KERNEL,
				Type:       unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("fe80::"), OutIface: 10, Priority: 256},
			}),
		},
		{
			name: "ipv6 multicast destination with unicast type dropped",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET6, DstLength: 16, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("ff02::"), OutIface: 10},
			}),
		},
		{
			name: "ipv6 route covering more than fe80::/10 kept",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET6, DstLength: 7, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNREACHABLE,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("fe00::")},
			}),
			want: []event.Event{{Kind: event.KindRoute, Time: now, Route: &event.Route{
				Family: unix.AF_INET6, Table: event.TableMain, Dst: pfx("fe00::/7"), Type: unix.RTN_UNREACHABLE,
			}}},
		},
		{
			name: "cloned route dropped",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: unix.AF_INET6, DstLength: 128, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
				Flags:      unix.RTM_F_CLONED,
				Attributes: rtnetlink.RouteAttributes{Dst: ipOf("2001:db8::9"), OutIface: 10},
			}),
		},
		{
			name: "ipmr route family ignored",
			msg: wrap(t, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
				Family: 128, // RTNL_FAMILY_IPMR Table: unix.RT_TABLE_DEFAULT, Type: unix.RTN_MULTICAST,
			}),
		},
		{
			name: "rule deleted",
			msg: wrap(t, unix.RTM_DELRULE, &rtnetlink.RuleMessage{
				Family: unix.AF_INET, SrcLength: 32, Table: 100, Action: unix.FR_ACT_TO_TBL,
				Attributes: &rtnetlink.RuleAttributes{
					Src: ptr(ipOf("10.9.9.9").To4()), Priority: ptr(uint32(32765)), Table: ptr(uint32(100)),
					Protocol: ptr(uint8(unix.RTPROT_BOOT)),
				},
			}),
			want: []event.Event{{Kind: event.KindRuleGone, Time: now, Rule: &event.Rule{
				Family: unix.AF_INET, Priority: 32765, Table: 100, Src: pfx("10.9.9.9/32"),
			}}},
		},
		{
			name: "ipv6 rule to a table above 255 deleted",
			msg: wrap(t, unix.RTM_DELRULE, &rtnetlink.RuleMessage{
				Family: unix.AF_INET6, DstLength: 48, Table: unix.RT_TABLE_UNSPEC, Action: unix.FR_ACT_TO_TBL,
				Attributes: &rtnetlink.RuleAttributes{
					Dst: ptr(ipOf("2001:db8:2::")), Priority: ptr(uint32(1000)), Table: ptr(uint32(1010)),
				},
			}),
			want: []event.Event{{Kind: event.KindRuleGone, Time: now, Rule: &event.Rule{
				Family: unix.AF_INET6, Priority: 1000, Table: 1010, Dst: pfx("2001:db8:2::/48"),
			}}},
		},
		{
			name: "new rule ignored",
			msg: wrap(t, unix.RTM_NEWRULE, &rtnetlink.RuleMessage{
				Family: unix.AF_INET, Table: 100,
				Attributes: &rtnetlink.RuleAttributes{Table: ptr(uint32(100))},
			}),
		},
		{
			name: "neighbour message ignored",
			msg: wrap(t, unix.RTM_NEWNEIGH, &rtnetlink.NeighMessage{
				Family: unix.AF_INET, Index: 10,
				Attributes: &rtnetlink.NeighAttributes{Address: ipOf("192.0.2.9"), LLAddress: mac("02:00:00:00:00:09")},
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMessage(tt.msg, now)
			if err != nil {
				t.Fatalf("decodeMessage: %v", err)
			}
			if diff := cmp.Diff(got, tt.want, cmpIP); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDecodeMessageMalformed(t *testing.T) {
	v4 := ipOf("192.0.2.1").To4()
	attrsOf := func(t *testing.T, attrs ...netlink.Attribute) []byte {
		t.Helper()
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ifaddr := func(family, plen byte, index uint32) []byte {
		b := make([]byte, sizeofIfAddrmsg)
		b[0], b[1] = family, plen
		ne.PutUint32(b[4:], index)
		return b
	}
	rtmsg := func(family, dstLen byte) []byte {
		b := make([]byte, sizeofRtmsg)
		b[0], b[1], b[4], b[7] = family, dstLen, unix.RT_TABLE_MAIN, unix.RTN_UNICAST
		return b
	}
	tests := []struct {
		name string
		msg  netlink.Message
	}{
		{"short ifinfomsg", raw(unix.RTM_NEWLINK, make([]byte, 10))},
		{"link without a name", wrap(t, unix.RTM_NEWLINK, &rtnetlink.LinkMessage{Index: 3, Attributes: &rtnetlink.LinkAttributes{MTU: 1500}})},
		{"link with index 0", wrap(t, unix.RTM_NEWLINK, &rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{Name: "x"}})},
		{"link with a short MTU", raw(unix.RTM_NEWLINK, append(
			wrap(t, unix.RTM_NEWLINK, &rtnetlink.LinkMessage{Index: 3, Attributes: &rtnetlink.LinkAttributes{Name: "x"}}).Data,
			attrsOf(t, netlink.Attribute{Type: unix.IFLA_MTU, Data: []byte{1, 2}})...))},
		{"truncated attribute", raw(unix.RTM_NEWLINK, append([]byte{0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8, 0, 3, 0))},
		{"short ifaddrmsg", raw(unix.RTM_NEWADDR, []byte{unix.AF_INET, 24})},
		{"address of 5 bytes", raw(unix.RTM_NEWADDR, append(ifaddr(unix.AF_INET, 24, 10),
			attrsOf(t, netlink.Attribute{Type: unix.IFA_ADDRESS, Data: []byte{192, 0, 2, 1, 0}})...))},
		{"ipv4 prefix /33", raw(unix.RTM_NEWADDR, append(ifaddr(unix.AF_INET, 33, 10),
			attrsOf(t, netlink.Attribute{Type: unix.IFA_ADDRESS, Data: v4})...))},
		{"address without address", raw(unix.RTM_DELADDR, ifaddr(unix.AF_INET6, 64, 10))},
		{"address on index 0", raw(unix.RTM_NEWADDR, append(ifaddr(unix.AF_INET, 24, 0),
			attrsOf(t, netlink.Attribute{Type: unix.IFA_ADDRESS, Data: v4})...))},
		{"short rtmsg", raw(unix.RTM_NEWROUTE, []byte{unix.AF_INET})},
		{"route /24 without RTA_DST", raw(unix.RTM_NEWROUTE, rtmsg(unix.AF_INET, 24))},
		{"ipv6 route with ipv4 gateway", raw(unix.RTM_NEWROUTE, append(rtmsg(unix.AF_INET6, 0),
			attrsOf(t, netlink.Attribute{Type: unix.RTA_GATEWAY, Data: v4})...))},
		{"truncated rtnexthop", raw(unix.RTM_NEWROUTE, append(rtmsg(unix.AF_INET, 0),
			attrsOf(t, netlink.Attribute{Type: unix.RTA_MULTIPATH, Data: []byte{16, 0, 0, 0, 10, 0, 0, 0}})...))},
		{"empty multipath", raw(unix.RTM_NEWROUTE, append(rtmsg(unix.AF_INET, 0),
			attrsOf(t, netlink.Attribute{Type: unix.RTA_MULTIPATH, Data: []byte{}})...))},
		{"short RTA_VIA", raw(unix.RTM_NEWROUTE, append(rtmsg(unix.AF_INET, 0),
			attrsOf(t, netlink.Attribute{Type: unix.RTA_VIA, Data: []byte{10}})...))},
		{"short rule header", raw(unix.RTM_DELRULE, []byte{unix.AF_INET, 0, 32})},
		{"rule /32 without FRA_SRC", raw(unix.RTM_DELRULE, []byte{unix.AF_INET, 0, 32, 0, 100, 0, 0, 1, 0, 0, 0, 0})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMessage(tt.msg, now)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("decodeMessage: got events %v and error %v, want an error matching ErrMalformed", got, err)
			}
		})
	}
}

// datagram packs messages the way the kernel does, each padded to 4 bytes.
func datagram(t testing.TB, msgs ...netlink.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		m.Header.Length = uint32(nlmsgHeaderLen + len(m.Data))
		mb, err := (&netlink.Message{Header: m.Header, Data: m.Data}).MarshalBinary()
		if err != nil {
			t.Fatalf("marshal netlink message: %v", err)
		}
		b = append(b, mb...)
	}
	return b
}

func TestDecode(t *testing.T) {
	link := wrap(t, unix.RTM_NEWLINK, vethMsg("veth0", flagsRunning, rtnetlink.OperStateUp))
	gone := wrap(t, unix.RTM_DELADDR, &rtnetlink.AddressMessage{
		Family: unix.AF_INET, PrefixLength: 24, Index: 10,
		Attributes: &rtnetlink.AddressAttributes{Address: ipOf("192.0.2.1")},
	})
	done := netlink.Message{Header: netlink.Header{Type: netlink.Done}, Data: make([]byte, 4)}

	got, err := Decode(datagram(t, link, done, gone), now)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := []event.Event{
		{Kind: event.KindLink, Time: now, Link: vethLink("veth0", flagsRunning, "up")},
		{Kind: event.KindAddrGone, Time: now, Addr: &event.Addr{Index: 10, Prefix: pfx("192.0.2.1/24")}},
	}
	if diff := cmp.Diff(got, want, cmpIP); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}

	full := datagram(t, link, gone)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"cut inside the second message", full[:len(full)-4]},
		{"trailing bytes", append(append([]byte(nil), full...), 1, 2, 3, 4)},
		{"length below the header", func() []byte {
			b := append([]byte(nil), full...)
			ne.PutUint32(b[0:], 8)
			return b
		}()},
	} {
		if got, err := Decode(tc.b, now); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, %v; want an error matching ErrMalformed", tc.name, got, err)
		}
	}
}
