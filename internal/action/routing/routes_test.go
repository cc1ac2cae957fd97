package routing

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/rtnl"
)

// testRoutes is a routing.routes list covering every kind of route, in the
// lab of routesLab (veth0: 192.0.2.10/24, 2001:db8:1::10/64; veth1:
// 198.51.100.10/24, 2001:db8:2::10/64).
var testRoutes = []Route{
	{Name: "r0", Destination: "10.20.0.0/16", Metric: 10, NextHops: []NextHop{
		{Gateway: "192.0.2.1", Interface: "veth0", Weight: 3}, {Gateway: "198.51.100.1", Interface: "veth1", Weight: 1}}},
	{Name: "r1", Destination: "2001:db8:20::/48", NextHops: []NextHop{
		{Gateway: "fe80::1", Interface: "veth0", Weight: 2}, {Gateway: "fe80::2", Interface: "veth1", Weight: 5}}},
	{Name: "r2", Destination: "10.66.0.0/16", Type: "blackhole"},
	{Name: "r3", Destination: "10.67.0.0/16", Type: "unreachable", Metric: 30},
	{Name: "r4", Destination: "2001:db8:bad::/48", Type: "prohibit", Table: 300},
	{Name: "r5", Destination: "default", Interface: "veth0", Gateway: "192.0.2.1", Src: "192.0.2.10", Table: 300, Metric: 5},
	{Name: "r6", Destination: "default", Interface: "veth0", Gateway: "fe80::1", Src: "2001:db8:1::10", Pref: "high", Table: 300, Metric: 100},
	{Name: "r7", Destination: "203.0.113.0/24", Interface: "veth0", Gateway: "203.0.113.1"},
}

// wantSpecs are testRoutes as the kernel must hold them (veth0 is ifindex
// 10, veth1 11), written independently of parseRoute.
var wantSpecs = func() []rtnl.RouteSpec {
	ip, pfx := netip.MustParseAddr, netip.MustParsePrefix
	const static = unix.RTPROT_STATIC
	return []rtnl.RouteSpec{
		{Family: unix.AF_INET, Table: 254, Dst: pfx("10.20.0.0/16"), Type: unix.RTN_UNICAST, Protocol: static, Metric: 10,
			NextHops: []rtnl.NextHop{{Gateway: ip("192.0.2.1"), OutIndex: 10, Weight: 3}, {Gateway: ip("198.51.100.1"), OutIndex: 11, Weight: 1}}},
		{Family: unix.AF_INET6, Table: 254, Dst: pfx("2001:db8:20::/48"), Type: unix.RTN_UNICAST, Protocol: static, Metric: 1024,
			NextHops: []rtnl.NextHop{{Gateway: ip("fe80::1"), OutIndex: 10, Weight: 2}, {Gateway: ip("fe80::2"), OutIndex: 11, Weight: 5}}},
		{Family: unix.AF_INET, Table: 254, Dst: pfx("10.66.0.0/16"), Type: unix.RTN_BLACKHOLE, Protocol: static},
		{Family: unix.AF_INET, Table: 254, Dst: pfx("10.67.0.0/16"), Type: unix.RTN_UNREACHABLE, Protocol: static, Metric: 30},
		{Family: unix.AF_INET6, Table: 300, Dst: pfx("2001:db8:bad::/48"), Type: unix.RTN_PROHIBIT, Protocol: static, Metric: 1024, OutIndex: 1},
		{Family: unix.AF_INET, Table: 300, Dst: pfx("0.0.0.0/0"), Type: unix.RTN_UNICAST, Protocol: static, Metric: 5,
			Gateway: ip("192.0.2.1"), OutIndex: 10, Src: ip("192.0.2.10")},
		{Family: unix.AF_INET6, Table: 300, Dst: pfx("::/0"), Type: unix.RTN_UNICAST, Protocol: static, Metric: 100,
			Gateway: ip("fe80::1"), OutIndex: 10, Src: ip("2001:db8:1::10"), Pref: rtnl.PrefHigh},
	}
}()

// routesLab is a lab with a second uplink, veth1 (ifindex 11, peer vp1
// 21), both with addresses, and testRoutes configured (no policy links).
func routesLab(t *testing.T, opts Options) *lab {
	t.Helper()
	opts.Interfaces = []string{}
	if opts.Routes == nil {
		opts.Routes = testRoutes
	}
	l := newLab(t, opts)
	nettest.VethPair(t, l.host, l.router, "veth1", 11, "vp1", 21)
	l.router.Run("link", "set", "vp1", "up")
	l.host.Batch([]string{
		"link set veth1 up",
		"addr add 192.0.2.10/24 dev veth0",
		"addr add 2001:db8:1::10/64 dev veth0 nodad",
		"addr add 198.51.100.10/24 dev veth1",
		"addr add 2001:db8:2::10/64 dev veth1 nodad",
	})
	return l
}

// linkState is the link's current state with the operational state set
// (the routing action cannot import the state model that derives it).
func (l *lab) linkState(name, state string) event.LinkState {
	ls := l.state(name)
	ls.State = state
	return ls
}

// change passes a change of the link with the given operational state and
// returns Handle's error.
func (l *lab) change(typ event.ChangeType, name, state string) error {
	l.t.Helper()
	return l.a.Handle(context.Background(), event.Change{Type: typ, Link: l.linkState(name, state)})
}

// installed returns which of wantSpecs the kernel holds, by index, and
// fails if any is held twice or differs from the config.
func (l *lab) installed() []int {
	l.t.Helper()
	r, err := rtnl.OpenRouter(rtnl.NetNS{Path: l.host.Path})
	if err != nil {
		l.t.Fatal(err)
	}
	defer r.Close()
	var got []int
	for i, want := range wantSpecs {
		have, err := r.ListSpecs(context.Background(), want.Table)
		if err != nil {
			l.t.Fatal(err)
		}
		var same []rtnl.RouteSpec
		for _, h := range have {
			if h.Family == want.Family && h.Dst == want.Dst {
				same = append(same, h)
			}
		}
		switch len(same) {
		case 0:
			continue
		case 1:
			if diff := cmp.Diff(same[0], want, ipOpts); diff != "" {
				l.t.Errorf("route %d differs from the config (-kernel +want):\n%s", i, diff)
			}
			got = append(got, i)
		default:
			l.t.Errorf("route %d is in the kernel %d times: %+v", i, len(same), same)
		}
	}
	return got
}

var ipOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestRoutesLifecycle(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := routesLab(t, Options{})
	ctx := context.Background()
	global := []int{2, 3, 4}

	// Startup: both links only degraded; the global routes go in.
	links := []event.LinkState{l.linkState("veth0", event.StateDegraded), l.linkState("veth1", event.StateDegraded)}
	if err := l.a.Sync(ctx, links); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if diff := cmp.Diff(l.installed(), global); diff != "" {
		t.Errorf("after Sync (-got +want):\n%s", diff)
	}

	// veth0 routable: its own routes; r7's gateway is off its subnets.
	err := l.change(event.OperStateChanged, "veth0", event.StateRoutable)
	if err == nil || !strings.Contains(err.Error(), "r7 (203.0.113.0/24 via 203.0.113.1 table 254 proto static): gateway 203.0.113.1 is not on a subnet of veth0 (192.0.2.0/24, 2001:db8:1::/64") {
		t.Errorf("Handle(veth0 routable) = %v, want the error about r7's gateway", err)
	}
	if diff := cmp.Diff(l.installed(), []int{2, 3, 4, 5, 6}); diff != "" {
		t.Errorf("veth0 routable (-got +want):\n%s", diff)
	}

	// veth1 routable too: the multipath routes, both families; repeated
	// changes leave one copy of each (installed fails on a duplicate).
	for range 5 {
		if err := l.change(event.OperStateChanged, "veth1", event.StateRoutable); err != nil {
			t.Fatalf("Handle(veth1 routable): %v", err)
		}
		_ = l.change(event.AddressAdded, "veth0", event.StateRoutable)
	}
	all := []int{0, 1, 2, 3, 4, 5, 6}
	if diff := cmp.Diff(l.installed(), all); diff != "" {
		t.Errorf("both routable (-got +want):\n%s", diff)
	}
	// As "ip -d route" shows them.
	for _, tc := range []struct{ args, want string }{
		{"-4 -d route show 10.20.0.0/16", "unicast 10.20.0.0/16 proto static scope global metric 10 \n\tnexthop via 192.0.2.1 dev veth0 weight 3 \n\tnexthop via 198.51.100.1 dev veth1 weight 1 \n"},
		{"-6 route show table 300 default", "default via fe80::1 dev veth0 proto static src 2001:db8:1::10 metric 100 pref high"},
		{"-4 route show table 300", "default via 192.0.2.1 dev veth0 proto static src 192.0.2.10 metric 5 \n"},
		{"-4 route show type blackhole", "blackhole 10.66.0.0/16 proto static \n"},
		{"-6 route show table 300 type prohibit", "prohibit 2001:db8:bad::/48 dev lo proto static metric 1024"},
	} {
		if got := l.host.Run(strings.Fields(tc.args)...); !strings.HasPrefix(got, tc.want) {
			t.Errorf("ip %s = %q, want it to start with %q", tc.args, got, tc.want)
		}
	}

	// Someone deletes a route: the next change of its link restores it.
	l.host.Run("route", "del", "default", "table", "300")
	if err := l.change(event.RouteRemoved, "veth1", event.StateRoutable); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if diff := cmp.Diff(l.installed(), []int{0, 1, 2, 3, 4, 6}); diff != "" {
		t.Errorf("after a change of another link (-got +want):\n%s", diff)
	}
	_ = l.change(event.RouteRemoved, "veth0", event.StateRoutable)
	if diff := cmp.Diff(l.installed(), all); diff != "" {
		t.Errorf("after a change of veth0 (-got +want):\n%s", diff)
	}

	// veth1 loses carrier: the multipath routes go.
	l.router.Run("link", "set", "vp1", "down")
	if err := l.change(event.OperStateChanged, "veth1", event.StateNoCarrier); err != nil {
		t.Fatalf("Handle(veth1 no-carrier): %v", err)
	}
	if diff := cmp.Diff(l.installed(), []int{2, 3, 4, 5, 6}); diff != "" {
		t.Errorf("veth1 no-carrier (-got +want):\n%s", diff)
	}
	if got := l.host.Run("-6", "route", "show", "2001:db8:20::/48"); got != "" {
		t.Errorf("multipath route left: %q", got)
	}

	// veth0 is deleted: its routes go (the kernel removes them; netevd
	// forgets them without error).
	gone := l.linkState("veth0", event.StateRoutable)
	l.host.Run("link", "del", "veth0")
	if err := l.a.Handle(ctx, event.Change{Type: event.LinkRemoved, Link: gone}); err != nil {
		t.Fatalf("Handle(LinkRemoved): %v", err)
	}
	if diff := cmp.Diff(l.installed(), global); diff != "" {
		t.Errorf("veth0 deleted (-got +want):\n%s", diff)
	}

	// Close removes the global routes.
	if err := l.a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := l.installed(); len(got) != 0 {
		t.Errorf("after Close: routes %v left", got)
	}
}

func TestRoutesKeepOnExitAndLeftovers(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := routesLab(t, Options{KeepOnExit: true})
	ctx := context.Background()
	links := []event.LinkState{l.linkState("veth0", event.StateRoutable), l.linkState("veth1", event.StateRoutable)}
	if err := l.a.Sync(ctx, links); err == nil || !strings.Contains(err.Error(), "r7") {
		t.Errorf("Sync = %v, want r7's error", err)
	}
	all := []int{0, 1, 2, 3, 4, 5, 6}
	if diff := cmp.Diff(l.installed(), all); diff != "" {
		t.Errorf("after Sync (-got +want):\n%s", diff)
	}
	if err := l.a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if diff := cmp.Diff(l.installed(), all); diff != "" {
		t.Errorf("keep_on_exit: after Close (-got +want):\n%s", diff)
	}

	// A new run finds veth1 down: its leftover multipath routes are
	// removed at Sync, the rest stays, once.
	a, err := New(Options{Interfaces: []string{}, TableBase: 200, PriorityMin: 10000, PriorityMax: 10999,
		Routes: testRoutes, NetNS: rtnl.NetNS{Path: l.host.Path}}, l.a.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(ctx) })
	links[1].State = event.StateNoCarrier
	_ = a.Sync(ctx, links)
	if diff := cmp.Diff(l.installed(), []int{2, 3, 4, 5, 6}); diff != "" {
		t.Errorf("second run (-got +want):\n%s", diff)
	}
}

func TestRoutesDryRunAndPlan(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := routesLab(t, Options{DryRun: true})
	ctx := context.Background()
	links := []event.LinkState{l.linkState("veth0", event.StateRoutable), l.linkState("veth1", event.StateDegraded)}
	_ = l.a.Sync(ctx, links)
	if got := l.installed(); len(got) != 0 {
		t.Errorf("dry run installed routes %v", got)
	}
	logs := l.logs.String()
	for _, want := range []string{
		`cmd="ip route replace blackhole 10.66.0.0/16 table 254 proto static" route=r2`,
		`cmd="ip -6 route replace default via fe80::1 dev veth0 src 2001:db8:1::10 table 300 proto static metric 100 pref high" route=r6`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("dry-run log lacks %s", want)
		}
	}
	got := l.a.Plan(links)
	want := []string{
		"# r0 waits for veth0, veth1 to be routable: ip route replace 10.20.0.0/16 table 254 proto static metric 10 nexthop via 192.0.2.1 weight 3 nexthop via 198.51.100.1 weight 1",
		"# r1 waits for veth0, veth1 to be routable: ip -6 route replace 2001:db8:20::/48 table 254 proto static nexthop via fe80::1 weight 2 nexthop via fe80::2 weight 5",
		"ip route replace blackhole 10.66.0.0/16 table 254 proto static",
		"ip route replace unreachable 10.67.0.0/16 table 254 proto static metric 30",
		"ip -6 route replace prohibit 2001:db8:bad::/48 table 300 proto static",
		"ip route replace default via 192.0.2.1 dev veth0 src 192.0.2.10 table 300 proto static metric 5",
		"ip -6 route replace default via fe80::1 dev veth0 src 2001:db8:1::10 table 300 proto static metric 100 pref high",
		"# r7 (203.0.113.0/24 via 203.0.113.1 table 254 proto static): gateway 203.0.113.1 is not on a subnet of veth0 (192.0.2.0/24, 2001:db8:1::/64, fe80::/64); not installing it",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Plan (-got +want):\n%s", diff)
	}
	links[1].State = event.StateRoutable
	got = l.a.Plan(links)
	if !slices.Contains(got, "ip route replace 10.20.0.0/16 table 254 proto static metric 10 nexthop via 192.0.2.1 dev veth0 weight 3 nexthop via 198.51.100.1 dev veth1 weight 1") {
		t.Errorf("Plan with both routable lacks the multipath route:\n%s", strings.Join(got, "\n"))
	}
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		r       Route
		wantErr string
	}{
		{Route{Name: "a", Destination: "default", Type: "blackhole"}, `a: "default" of which family?`},
		{Route{Name: "b", Destination: "10.0.0.0/8", Gateway: "2001:db8::1"}, "b: 2001:db8::1 is not of the destination's family"},
		{Route{Name: "c", Destination: "10.0.0.0/8", Pref: "high", Interface: "x"}, "c: pref is for IPv6 routes only"},
		{Route{Name: "d", Destination: "10.0.0.0/8", NextHops: []NextHop{{Gateway: "10.0.0.1", Weight: 257}}}, "d: next hop 10.0.0.1: weight 257 is not 1-256"},
		{Route{Name: "e", Destination: "10.0.0.0/8", Type: "blackhole", Gateway: "10.1.1.1"}, "e: a blackhole route has no gateway"},
		{Route{Name: "f", Destination: "10.0.0.0/8", Type: "anycast"}, `f: unknown route type "anycast"`},
		{Route{Name: "g", Destination: "10.0.0.0/8", NextHops: []NextHop{{Gateway: "10.0.0.1", Interface: "b"}, {Gateway: "10.0.0.2"}}, Interface: "a"}, ""},
	}
	for _, tt := range tests {
		sr, err := parseRoute(tt.r)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.wantErr {
			t.Errorf("parseRoute(%+v) error = %q, want %q", tt.r, got, tt.wantErr)
		}
		if err == nil && !slices.Equal(sr.needs, []string{"a", "b"}) {
			t.Errorf("parseRoute(%s).needs = %v, want [a b]", tt.r.Name, sr.needs)
		}
	}
}
