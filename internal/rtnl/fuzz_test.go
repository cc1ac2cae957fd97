package rtnl

import (
	"fmt"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// seedMessages are well-formed messages of every type Decode handles.
func seedMessages(tb testing.TB) []netlink.Message {
	return []netlink.Message{
		wrap(tb, unix.RTM_NEWLINK, vethMsg("veth0", flagsRunning, rtnetlink.OperStateUp)),
		wrap(tb, unix.RTM_DELLINK, vethMsg("x;$(id)", 0, rtnetlink.OperStateDown)),
		wrap(tb, unix.RTM_NEWADDR, &rtnetlink.AddressMessage{
			Family: unix.AF_INET6, PrefixLength: 64, Index: 10,
			Attributes: &rtnetlink.AddressAttributes{Address: ipOf("2001:db8::1"), Flags: unix.IFA_F_NOPREFIXROUTE},
		}),
		wrap(tb, unix.RTM_DELADDR, &rtnetlink.AddressMessage{
			Family: unix.AF_INET, PrefixLength: 24, Index: 10,
			Attributes: &rtnetlink.AddressAttributes{Address: ipOf("192.0.2.2"), Local: ipOf("192.0.2.1")},
		}),
		wrap(tb, unix.RTM_NEWROUTE, &rtnetlink.RouteMessage{
			Family: unix.AF_INET, DstLength: 24, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{
				Dst: ipOf("203.0.113.0"), Table: 1000,
				Multipath: []rtnetlink.NextHop{
					{Hop: rtnetlink.RTNextHop{IfIndex: 10}, Gateway: ipOf("192.0.2.254")},
					{Hop: rtnetlink.RTNextHop{IfIndex: 11}, Via: &rtnetlink.RouteVia{Family: unix.AF_INET6, Addr: ipOf("fe80::1")}},
				},
			},
		}),
		wrap(tb, unix.RTM_DELROUTE, &rtnetlink.RouteMessage{
			Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{Gateway: ipOf("fe80::1"), OutIface: 10, Priority: 1024, Src: ipOf("2001:db8::1")},
		}),
		wrap(tb, unix.RTM_DELRULE, &rtnetlink.RuleMessage{
			Family: unix.AF_INET, SrcLength: 32, DstLength: 8, Table: 100,
			Attributes: &rtnetlink.RuleAttributes{
				Src: ptr(ipOf("10.9.9.9").To4()), Dst: ptr(ipOf("10.0.0.0").To4()), Priority: ptr(uint32(32765)),
			},
		}),
	}
}

// FuzzDecode feeds arbitrary datagrams to Decode: it must not panic, and
// whatever it accepts must be well-formed and pass the noise filter.
func FuzzDecode(f *testing.F) {
	msgs := seedMessages(f)
	for _, m := range msgs {
		f.Add(datagram(f, m))
	}
	f.Add(datagram(f, msgs...))

	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := Decode(b, now)
		if err != nil {
			return
		}
		for _, ev := range evs {
			checkEvent(t, ev)
		}
	})
}

func checkEvent(t *testing.T, ev event.Event) {
	t.Helper()
	switch ev.Kind {
	case event.KindLink:
		if ev.Link == nil || ev.Link.Index <= 0 || ev.Link.OperState == "" {
			t.Fatalf("bad link event %+v", ev.Link)
		}
	case event.KindLinkGone:
		if ev.Index <= 0 {
			t.Fatalf("link-gone event with index %d", ev.Index)
		}
	case event.KindAddr, event.KindAddrGone:
		if ev.Addr == nil || ev.Addr.Index <= 0 || !ev.Addr.Prefix.IsValid() {
			t.Fatalf("bad address event %+v", ev.Addr)
		}
	case event.KindRoute, event.KindRouteGone:
		r := ev.Route
		if r == nil || !r.Dst.IsValid() || !isIP(r.Family) {
			t.Fatalf("bad route event %+v", r)
		}
		if why := noise(*r); why != "" {
			t.Fatalf("route event %+v passed the noise filter (%s)", r, why)
		}
	case event.KindRuleGone:
		if ev.Rule == nil || !isIP(ev.Rule.Family) {
			t.Fatalf("bad rule event %+v", ev.Rule)
		}
	default:
		t.Fatalf("unexpected event kind %v", ev.Kind)
	}
	if !ev.Time.Equal(now) {
		t.Fatalf("event time %v, want %v", ev.Time, now)
	}
}

// noise says why r should have been filtered, independently of keepRoute;
// "" if r is fine.
func noise(r event.Route) string {
	switch {
	case r.Table == 255:
		return "local table"
	case r.Type != unix.RTN_UNICAST && r.Type != unix.RTN_BLACKHOLE &&
		r.Type != unix.RTN_UNREACHABLE && r.Type != unix.RTN_PROHIBIT:
		return fmt.Sprintf("type %d", r.Type)
	case r.Family == unix.AF_INET6 && r.Dst.Bits() >= 8 && r.Dst.Addr().As16()[0] == 0xff:
		return "ipv6 multicast"
	case r.Family == unix.AF_INET6 && r.Dst.Bits() >= 10 && r.Dst.Addr().As16()[0] == 0xfe && r.Dst.Addr().As16()[1]&0xc0 == 0x80:
		return "ipv6 link-local"
	}
	return ""
}
