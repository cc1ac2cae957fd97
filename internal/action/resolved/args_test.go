package resolved

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		if s != "" {
			out[i] = netip.MustParseAddr(s)
		}
	}
	return out
}

func TestDNSServers(t *testing.T) {
	v6 := []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53}
	tests := []struct {
		name        string
		in          []netip.Addr
		want        []dnsServer
		wantDropped []netip.Addr
	}{
		{"none", nil, nil, nil},
		{"both families in order", addrs("10.1.2.3", "fd00::53"),
			[]dnsServer{{afInet, []byte{10, 1, 2, 3}}, {afInet6, v6}}, nil},
		{"IPv4-mapped becomes IPv4", addrs("::ffff:192.0.2.1"), []dnsServer{{afInet, []byte{192, 0, 2, 1}}}, nil},
		{"zone dropped", addrs("fe80::1%veth0"),
			[]dnsServer{{afInet6, []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}}, nil},
		{"duplicates kept once", addrs("10.1.2.3", "::ffff:10.1.2.3", "10.1.2.3"), []dnsServer{{afInet, []byte{10, 1, 2, 3}}}, nil},
		{"invalid and unspecified dropped", addrs("", "0.0.0.0", "::", "10.1.2.3"),
			[]dnsServer{{afInet, []byte{10, 1, 2, 3}}}, addrs("", "0.0.0.0", "::")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, dropped := dnsServers(tt.in)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("servers (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(dropped, tt.wantDropped, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("dropped (-got +want):\n%s", diff)
			}
		})
	}
}

func TestLinkDomains(t *testing.T) {
	tests := []struct {
		name        string
		in          []string
		want        []linkDomain
		wantRefused []string
	}{
		{"none", nil, nil, nil},
		{"one", []string{"example.com"}, []linkDomain{{"example.com", false}}, nil},
		{"several in one entry, as dhclient writes them", []string{"a.example  b.example\tc.example"},
			[]linkDomain{{"a.example", false}, {"b.example", false}, {"c.example", false}}, nil},
		{"trailing dot dropped, duplicates once", []string{"example.com.", "example.com"}, []linkDomain{{"example.com", false}}, nil},
		{"routing-only", []string{"~corp.example", "~."}, []linkDomain{{"corp.example", true}, {".", true}}, nil},
		{"search and routing of one name are two", []string{"corp.example", "~corp.example"},
			[]linkDomain{{"corp.example", false}, {"corp.example", true}}, nil},
		{"underscore labels", []string{"_tcp.example"}, []linkDomain{{"_tcp.example", false}}, nil},
		{"invalid refused, the rest kept",
			[]string{"ok.example", "bad..example", "-x.example", "x-.example", "$(reboot)", ".", "~", "a;b", strings.Repeat("a", 64) + ".example"},
			[]linkDomain{{"ok.example", false}},
			[]string{"bad..example", "-x.example", "x-.example", "$(reboot)", ".", "~", "a;b", strings.Repeat("a", 64) + ".example"}},
		{"too long in all", []string{strings.Repeat("abcdefghi.", 26)}, nil, []string{strings.Repeat("abcdefghi.", 26)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, refused := linkDomains(tt.in)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("domains (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(refused, tt.wantRefused); diff != "" {
				t.Errorf("refused (-got +want):\n%s", diff)
			}
		})
	}
}

func TestValidHostname(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"host", true},
		{"web-01", true},
		{"Web01", true},
		{"123", true},
		{"host.example.com", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 30) + "." + strings.Repeat("b", 33), true}, // 64 in all
		{strings.Repeat("a", 30) + "." + strings.Repeat("b", 34), false},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-host", false},
		{"host-", false},
		{"a..b", false},
		{".host", false},
		{"host.", false},
		{"my_host", false},
		{"my host", false},
		{"host;reboot", false},
		{"$(id)", false},
		{"höst", false},
		{"host\n", false},
	}
	for _, tt := range tests {
		if got := ValidHostname(tt.in); got != tt.want {
			t.Errorf("ValidHostname(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
