package rtnl

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
)

var ipOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// routerNS returns a namespace with veth0 (ifindex 10, up, 192.0.2.10/24,
// 2001:db8::10/64) whose peer is in another namespace, and a Router for it.
func routerNS(t *testing.T) (*nettest.NetNS, *Router) {
	t.Helper()
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)
	ns.Batch([]string{
		"link set veth0 up",
		"addr add 192.0.2.10/24 dev veth0",
		"addr add 2001:db8::10/64 dev veth0 nodad",
	})
	peer.Run("link", "set", "vp0", "up")
	r, err := OpenRouter(NetNS{Path: ns.Path})
	if err != nil {
		t.Fatalf("OpenRouter: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return ns, r
}

func TestRouterRules(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns, r := routerNS(t)
	ctx := context.Background()
	rules := []event.Rule{
		{Family: unix.AF_INET, Priority: 10000, Table: 210, Src: netip.MustParsePrefix("192.0.2.10/32")},
		{Family: unix.AF_INET, Priority: 10001, Table: 210, Dst: netip.MustParsePrefix("192.0.2.10/32")},
		{Family: unix.AF_INET6, Priority: 10000, Table: 100000, Src: netip.MustParsePrefix("2001:db8::10/128")},
	}
	for _, rule := range rules {
		if err := r.RuleAdd(ctx, rule); err != nil {
			t.Fatalf("RuleAdd: %v", err)
		}
	}
	if err := r.RuleAdd(ctx, rules[0]); !errors.Is(err, ErrExists) || !errors.Is(err, unix.EEXIST) {
		t.Errorf("RuleAdd twice = %v, want ErrExists and EEXIST", err)
	}
	got4 := ns.Run("-4", "rule", "show")
	for _, want := range []string{"10000:\tfrom 192.0.2.10 lookup 210", "10001:\tfrom all to 192.0.2.10 lookup 210"} {
		if strings.Count(got4, want) != 1 {
			t.Errorf("ip -4 rule show has %q %d times, want once:\n%s", want, strings.Count(got4, want), got4)
		}
	}
	if got6 := ns.Run("-6", "rule", "show"); !strings.Contains(got6, "10000:\tfrom 2001:db8::10 lookup 100000") {
		t.Errorf("ip -6 rule show lacks the rule:\n%s", got6)
	}

	list, err := r.RuleList(ctx)
	if err != nil {
		t.Fatalf("RuleList: %v", err)
	}
	var ours []event.Rule
	for _, rule := range list {
		if rule.Priority >= 10000 && rule.Priority <= 10001 {
			ours = append(ours, rule)
		}
	}
	if diff := cmp.Diff(ours, rules, ipOpts); diff != "" {
		t.Errorf("RuleList (-got +want):\n%s", diff)
	}
	// The kernel's own rules are listed too (local, main, default).
	if len(list) != len(rules)+5 {
		t.Errorf("RuleList returned %d rules, want %d: %v", len(list), len(rules)+5, list)
	}

	for _, rule := range rules {
		if err := r.RuleDel(ctx, rule); err != nil {
			t.Fatalf("RuleDel: %v", err)
		}
	}
	if err := r.RuleDel(ctx, rules[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("RuleDel of a missing rule = %v, want ErrNotFound", err)
	}
	if got := ns.Run("rule", "show"); strings.Contains(got, "lookup 210") {
		t.Errorf("rules left after RuleDel:\n%s", got)
	}
}

func TestRouterRoutes(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns, r := routerNS(t)
	ctx := context.Background()
	v4 := event.Route{Family: unix.AF_INET, Table: 210, Dst: netip.MustParsePrefix("0.0.0.0/0"),
		Gateway: netip.MustParseAddr("192.0.2.1"), OutIndex: 10, Protocol: unix.RTPROT_STATIC}
	v6 := event.Route{Family: unix.AF_INET6, Table: 210, Dst: netip.MustParsePrefix("::/0"),
		Gateway: netip.MustParseAddr("fe80::1"), OutIndex: 10, Protocol: unix.RTPROT_STATIC}
	for range 3 { // replace is idempotent
		for _, rt := range []event.Route{v4, v6} {
			if err := r.RouteReplace(ctx, rt); err != nil {
				t.Fatalf("RouteReplace: %v", err)
			}
		}
	}
	if got := ns.Run("-4", "route", "show", "table", "210"); got != "default via 192.0.2.1 dev veth0 proto static \n" {
		t.Errorf("ip -4 route show table 210 = %q", got)
	}
	if got := ns.Run("-6", "route", "show", "table", "210"); !strings.HasPrefix(got, "default via fe80::1 dev veth0 proto static metric 1024") || strings.Count(got, "\n") != 1 {
		t.Errorf("ip -6 route show table 210 = %q", got)
	}
	list, err := r.RouteList(ctx, 210)
	if err != nil {
		t.Fatalf("RouteList: %v", err)
	}
	if len(list) != 2 {
		t.Fatalf("RouteList(210) = %v, want 2 routes", list)
	}
	for _, got := range list {
		want := v4
		if got.Family == unix.AF_INET6 {
			want = v6
			want.Priority = 1024 // the kernel's default IPv6 metric
		}
		want.Type = unix.RTN_UNICAST
		if diff := cmp.Diff(got, want, ipOpts); diff != "" {
			t.Errorf("RouteList (-got +want):\n%s", diff)
		}
	}

	// A new gateway replaces the old one.
	v4b := v4
	v4b.Gateway = netip.MustParseAddr("192.0.2.2")
	if err := r.RouteReplace(ctx, v4b); err != nil {
		t.Fatalf("RouteReplace: %v", err)
	}
	if got := ns.Run("-4", "route", "show", "table", "210"); got != "default via 192.0.2.2 dev veth0 proto static \n" {
		t.Errorf("after replace: ip -4 route show table 210 = %q", got)
	}

	for _, rt := range []event.Route{v4b, v6} {
		if err := r.RouteDel(ctx, rt); err != nil {
			t.Fatalf("RouteDel: %v", err)
		}
	}
	if err := r.RouteDel(ctx, v4b); !errors.Is(err, ErrNotFound) {
		t.Errorf("RouteDel of a missing route = %v, want ErrNotFound", err)
	}
	if list, err := r.RouteList(ctx, 210); err != nil || len(list) != 0 {
		t.Errorf("RouteList after delete = %v, %v; want none", list, err)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{FormatRule(event.Rule{Family: unix.AF_INET, Priority: 10000, Table: 210, Src: netip.MustParsePrefix("192.0.2.1/32")}),
			"from 192.0.2.1 lookup 210 priority 10000"},
		{FormatRule(event.Rule{Family: unix.AF_INET6, Priority: 10001, Table: 210, Dst: netip.MustParsePrefix("2001:db8::/64")}),
			"-6 from all to 2001:db8::/64 lookup 210 priority 10001"},
		{FormatRoute(event.Route{Family: unix.AF_INET6, Table: 210, Dst: netip.MustParsePrefix("::/0"),
			Gateway: netip.MustParseAddr("fe80::1"), OutIndex: 3, Protocol: unix.RTPROT_STATIC}, "eth1"),
			"-6 default via fe80::1 dev eth1 table 210 proto static"},
		{FormatRoute(event.Route{Family: unix.AF_INET, Table: 210, Dst: netip.MustParsePrefix("0.0.0.0/0"), OutIndex: 3, Priority: 5}, ""),
			"default oif 3 table 210 metric 5"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
