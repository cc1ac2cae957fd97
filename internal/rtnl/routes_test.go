package rtnl

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/nettest"
)

// TestRouterSpecs installs each kind of route routing.routes can ask for,
// reads it back from the kernel with ListSpecs and with "ip -d route",
// checks that replacing it again leaves one copy, and deletes it.
func TestRouterSpecs(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns, r := routerNS(t)
	ctx := context.Background()
	ip := netip.MustParseAddr
	pfx := netip.MustParsePrefix
	static := uint8(unix.RTPROT_STATIC)
	tests := []struct {
		name string
		spec RouteSpec
		want RouteSpec // as the kernel reports it
		ip   string    // "ip -d route show table 300" (family from spec)
	}{
		{
			name: "ecmp weights v4",
			spec: RouteSpec{Family: unix.AF_INET, Table: 300, Dst: pfx("198.51.100.0/24"), Protocol: static, Metric: 20,
				NextHops: []NextHop{{Gateway: ip("192.0.2.1"), OutIndex: 10, Weight: 3}, {Gateway: ip("192.0.2.2"), Weight: 1}}},
			want: RouteSpec{Family: unix.AF_INET, Table: 300, Dst: pfx("198.51.100.0/24"), Protocol: static, Metric: 20, Type: unix.RTN_UNICAST,
				NextHops: []NextHop{{Gateway: ip("192.0.2.1"), OutIndex: 10, Weight: 3}, {Gateway: ip("192.0.2.2"), OutIndex: 10, Weight: 1}}},
			ip: "unicast 198.51.100.0/24 proto static scope global metric 20 \n\tnexthop via 192.0.2.1 dev veth0 weight 3 \n\tnexthop via 192.0.2.2 dev veth0 weight 1 \n",
		},
		{
			name: "ecmp weights v6",
			spec: RouteSpec{Family: unix.AF_INET6, Table: 300, Dst: pfx("2001:db8:100::/48"), Protocol: static,
				NextHops: []NextHop{{Gateway: ip("fe80::1"), OutIndex: 10, Weight: 256}, {Gateway: ip("2001:db8::2"), OutIndex: 10, Weight: 2}}},
			want: RouteSpec{Family: unix.AF_INET6, Table: 300, Dst: pfx("2001:db8:100::/48"), Protocol: static, Metric: 1024, Type: unix.RTN_UNICAST,
				NextHops: []NextHop{{Gateway: ip("fe80::1"), OutIndex: 10, Weight: 256}, {Gateway: ip("2001:db8::2"), OutIndex: 10, Weight: 2}}},
			ip: "weight 256",
		},
		{
			name: "blackhole v4",
			spec: RouteSpec{Family: unix.AF_INET, Table: 300, Dst: pfx("203.0.113.0/24"), Type: unix.RTN_BLACKHOLE, Protocol: static},
			want: RouteSpec{Family: unix.AF_INET, Table: 300, Dst: pfx("203.0.113.0/24"), Type: unix.RTN_BLACKHOLE, Protocol: static},
			ip:   "blackhole 203.0.113.0/24 proto static scope global \n",
		},
		{
			name: "unreachable v4",
			spec: RouteSpec{Family: unix.AF_INET, Table: 300, Dst: pfx("203.0.113.0/25"), Type: unix.RTN_UNREACHABLE, Protocol: static, Metric: 7},
			want: RouteSpec{Family: unix.AF_INET, Table: 300, Dst: pfx("203.0.113.0/25"), Type: unix.RTN_UNREACHABLE, Protocol: static, Metric: 7},
			ip:   "unreachable 203.0.113.0/25 proto static scope global metric 7 \n",
		},
		{
			name: "prohibit v6",
			spec: RouteSpec{Family: unix.AF_INET6, Table: 300, Dst: pfx("2001:db8:dead::/48"), Type: unix.RTN_PROHIBIT, Protocol: static},
			want: RouteSpec{Family: unix.AF_INET6, Table: 300, Dst: pfx("2001:db8:dead::/48"), Type: unix.RTN_PROHIBIT, Protocol: static,
				Metric: 1024, OutIndex: 1},
			ip: "prohibit 2001:db8:dead::/48 dev lo proto static",
		},
		{
			name: "prefsrc v4",
			spec: RouteSpec{Family: unix.AF_INET, Table: 300, Dst: pfx("0.0.0.0/0"), Gateway: ip("192.0.2.1"), OutIndex: 10,
				Src: ip("192.0.2.10"), Protocol: static},
			want: RouteSpec{Family: unix.AF_INET, Table: 300, Dst: pfx("0.0.0.0/0"), Gateway: ip("192.0.2.1"), OutIndex: 10,
				Src: ip("192.0.2.10"), Protocol: static, Type: unix.RTN_UNICAST},
			ip: "unicast default via 192.0.2.1 dev veth0 proto static scope global src 192.0.2.10 \n",
		},
		{
			name: "prefsrc and pref high v6",
			spec: RouteSpec{Family: unix.AF_INET6, Table: 300, Dst: pfx("::/0"), Gateway: ip("fe80::1"), OutIndex: 10,
				Src: ip("2001:db8::10"), Pref: PrefHigh, Metric: 50, Protocol: static},
			want: RouteSpec{Family: unix.AF_INET6, Table: 300, Dst: pfx("::/0"), Gateway: ip("fe80::1"), OutIndex: 10,
				Src: ip("2001:db8::10"), Pref: PrefHigh, Metric: 50, Protocol: static, Type: unix.RTN_UNICAST},
			ip: "unicast default via fe80::1 dev veth0 proto static scope global src 2001:db8::10 metric 50 pref high",
		},
		{
			name: "pref low v6 main table",
			spec: RouteSpec{Family: unix.AF_INET6, Table: 254, Dst: pfx("2001:db8:200::/48"), Gateway: ip("2001:db8::1"), Pref: PrefLow, Protocol: static},
			want: RouteSpec{Family: unix.AF_INET6, Table: 254, Dst: pfx("2001:db8:200::/48"), Gateway: ip("2001:db8::1"), OutIndex: 10,
				Pref: PrefLow, Metric: 1024, Protocol: static, Type: unix.RTN_UNICAST},
			ip: "pref low",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 3 { // replace is idempotent
				if err := r.ReplaceSpec(ctx, tt.spec); err != nil {
					t.Fatalf("ReplaceSpec: %v", err)
				}
			}
			list, err := r.ListSpecs(ctx, tt.spec.Table)
			if err != nil {
				t.Fatal(err)
			}
			var got []RouteSpec
			for _, s := range list {
				if s.Dst == tt.spec.Dst && s.Family == tt.spec.Family {
					got = append(got, s)
				}
			}
			if diff := cmp.Diff(got, []RouteSpec{tt.want}, ipOpts); diff != "" {
				t.Errorf("ListSpecs (-got +want):\n%s", diff)
			}
			if len(got) == 1 && !tt.spec.Same(got[0]) {
				t.Errorf("Same(%+v) = false for the kernel's copy", got[0])
			}
			fam := "-4"
			if tt.spec.Family == unix.AF_INET6 {
				fam = "-6"
			}
			table := "300"
			if tt.spec.Table == 254 {
				table = "main"
			}
			shown := ns.Run(fam, "-d", "route", "show", "table", table, tt.spec.Dst.String())
			if !strings.Contains(shown, tt.ip) {
				t.Errorf("ip %s -d route show table %s %s = %q, want it to contain %q", fam, table, tt.spec.Dst, shown, tt.ip)
			}
			if err := r.DeleteSpec(ctx, tt.spec); err != nil {
				t.Fatalf("DeleteSpec: %v", err)
			}
			if err := r.DeleteSpec(ctx, tt.spec); !errors.Is(err, ErrNotFound) {
				t.Errorf("DeleteSpec of a missing route = %v, want ErrNotFound", err)
			}
			if shown := ns.Run(fam, "route", "show", "table", table, tt.spec.Dst.String()); shown != "" {
				t.Errorf("left after DeleteSpec: %q", shown)
			}
		})
	}
}

func TestSpecSame(t *testing.T) {
	ip := netip.MustParseAddr
	base := RouteSpec{Family: unix.AF_INET6, Table: 254, Dst: netip.MustParsePrefix("2001:db8::/48"), Gateway: ip("fe80::1")}
	kernel := base
	kernel.OutIndex, kernel.Metric, kernel.Type = 4, 1024, unix.RTN_UNICAST
	tests := []struct {
		name string
		have RouteSpec
		want bool
	}{
		{"kernel defaults", kernel, true},
		{"other metric", func() RouteSpec { k := kernel; k.Metric = 5; return k }(), false},
		{"other gateway", func() RouteSpec { k := kernel; k.Gateway = ip("fe80::2"); return k }(), false},
		{"other pref", func() RouteSpec { k := kernel; k.Pref = PrefHigh; return k }(), false},
		{"blackhole", func() RouteSpec { k := kernel; k.Type = unix.RTN_BLACKHOLE; return k }(), false},
		{"multipath", func() RouteSpec {
			k := kernel
			k.NextHops = []NextHop{{Gateway: ip("fe80::1")}, {Gateway: ip("fe80::2")}}
			return k
		}(), false},
	}
	for _, tt := range tests {
		if got := base.Same(tt.have); got != tt.want {
			t.Errorf("%s: Same = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestFormatSpec(t *testing.T) {
	name := func(i int) string { return map[int]string{3: "eth1", 4: "eth2"}[i] }
	tests := []struct {
		spec RouteSpec
		want string
	}{
		{RouteSpec{Family: unix.AF_INET, Table: 254, Dst: netip.MustParsePrefix("10.0.0.0/8"), Type: unix.RTN_BLACKHOLE, Protocol: unix.RTPROT_STATIC},
			"blackhole 10.0.0.0/8 table 254 proto static"},
		{RouteSpec{Family: unix.AF_INET6, Table: 100, Dst: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("fe80::1"), OutIndex: 3,
			Src: netip.MustParseAddr("2001:db8::10"), Metric: 10, Pref: PrefHigh},
			"-6 default via fe80::1 dev eth1 src 2001:db8::10 table 100 metric 10 pref high"},
		{RouteSpec{Family: unix.AF_INET, Table: 254, Dst: netip.MustParsePrefix("192.0.2.0/24"), NextHops: []NextHop{
			{Gateway: netip.MustParseAddr("198.51.100.1"), OutIndex: 3, Weight: 2}, {Gateway: netip.MustParseAddr("203.0.113.1"), OutIndex: 9}}},
			"192.0.2.0/24 table 254 nexthop via 198.51.100.1 dev eth1 weight 2 nexthop via 203.0.113.1 oif 9 weight 1"},
	}
	for _, tt := range tests {
		if got := FormatSpec(tt.spec, name); got != tt.want {
			t.Errorf("FormatSpec = %q, want %q", got, tt.want)
		}
	}
}
