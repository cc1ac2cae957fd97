package dhclient

import (
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
)

func parseFile(tb testing.TB, path string) []Lease {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	ls, errs := parseLeases(b, path)
	if len(errs) > 0 {
		tb.Fatalf("%s: %q", path, errStrings(errs))
	}
	return ls
}

func parseText(tb testing.TB, text string) []Lease {
	tb.Helper()
	ls, errs := parseLeases([]byte(text), "t.leases")
	if len(errs) > 0 {
		tb.Fatalf("%q", errStrings(errs))
	}
	return ls
}

func TestViewOf(t *testing.T) {
	leases := parseText(t, `
lease { interface "eth0"; fixed-address 192.0.2.1; expire 4 2026/11/26 03:00:00; }
lease { interface "eth0"; fixed-address 192.0.2.2; expire 4 2026/11/26 02:00:00; }
lease { interface "eth0"; fixed-address 192.0.2.3; expire 4 2026/11/26 01:00:00; }
lease { interface "eth0"; fixed-address 192.0.2.4; }
lease6 { interface "eth0"; ia-na 0:0:0:1 { starts 1795651200; iaaddr 2001:db8::1 { starts 1795651200; max-life 3600; } } }
lease6 { interface "eth0"; ia-na 0:0:0:1 { starts 1795651200; iaaddr 2001:db8::2 { starts 1795651200; max-life 7200; } } released; }
`)
	il := &ifaceLeases{}
	for i := range leases {
		if leases[i].IPv6 {
			il.v6 = append(il.v6, &leases[i])
		} else {
			il.v4 = append(il.v4, &leases[i])
		}
	}
	// 1795651200 is 2026-11-26 00:00:00 UTC.
	tests := []struct {
		now       string
		state     string
		v4, v6    string // the address of the lease in the view, "" for none
		v4Current bool
	}{
		// The last block without expire has expired; the newest
		// unexpired one before it is current.
		{"2026-11-26 00:30:00", stateRoutable, "192.0.2.3", "2001:db8::1", true},
		{"2026-11-26 01:00:00", stateRoutable, "192.0.2.2", "", true},
		{"2026-11-26 02:30:00", stateRoutable, "192.0.2.1", "", true},
		// All expired: the newest of each family.
		{"2026-11-26 03:00:00", stateExpired, "192.0.2.4", "2001:db8::2", false},
	}
	for _, tt := range tests {
		t.Run(tt.now, func(t *testing.T) {
			v := viewOf("eth0", il, at(t, tt.now))
			got := []string{v.state, addrOf(v.v4), addrOf(v.v6)}
			want := []string{tt.state, tt.v4, tt.v6}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("state, v4, v6 (-got +want):\n%s", diff)
			}
		})
	}
}

func addrOf(l *Lease) string {
	if l == nil {
		return ""
	}
	return joinStrings(l.Addresses())
}

// TestManagerFromSample checks the whole report for the testbed's lease.
func TestManagerFromSample(t *testing.T) {
	ls := parseFile(t, "testdata/dnsmasq-options.leases")
	v := view{name: "veth0", state: stateRoutable, v4: &ls[0]}
	got, notes := v.manager(10)
	wantLease := `{"interface":"veth0","fixed_address":"10.80.0.113","options":{"broadcast-address":"10.80.0.255",` +
		`"dhcp-lease-time":"3600","dhcp-message-type":"5","dhcp-rebinding-time":"3150","dhcp-renewal-time":"1800",` +
		`"dhcp-server-identifier":"10.80.0.1","domain-name":"tb.test","domain-name-servers":"10.80.0.1",` +
		`"domain-search":"tb.test. example.org.","host-name":"tb-dhclient","interface-mtu":"1400","ntp-servers":"10.80.0.1",` +
		`"rfc3442-classless-static-routes":"16 10 99 10 80 0 1","routers":"10.80.0.1","subnet-mask":"255.255.255.0"},` +
		`"renew":"2026-11-26T03:30:01Z","rebind":"2026-11-26T03:58:28Z","expire":"2026-11-26T04:05:58Z"}`
	want := &event.Manager{
		Backend: "dhclient", Index: 10, Name: "veth0",
		States: map[string]string{"Lease": "routable"},
		Env: map[string]string{
			"DHCP_ADDRESS":     "10.80.0.113",
			"DHCP_SUBNET_MASK": "255.255.255.0",
			"DHCP_GATEWAY":     "10.80.0.1",
			"DHCP_DNS":         "10.80.0.1",
			"DHCP_DOMAIN":      "tb.test",
			"DHCP_HOSTNAME":    "tb-dhclient",
			"DHCP_LEASE":       wantLease,

			"DHCP_BROADCAST_ADDRESS":               "10.80.0.255",
			"DHCP_DHCP_LEASE_TIME":                 "3600",
			"DHCP_DHCP_MESSAGE_TYPE":               "5",
			"DHCP_DHCP_REBINDING_TIME":             "3150",
			"DHCP_DHCP_RENEWAL_TIME":               "1800",
			"DHCP_DHCP_SERVER_IDENTIFIER":          "10.80.0.1",
			"DHCP_DOMAIN_NAME":                     "tb.test",
			"DHCP_DOMAIN_NAME_SERVERS":             "10.80.0.1",
			"DHCP_DOMAIN_SEARCH":                   "tb.test. example.org.",
			"DHCP_HOST_NAME":                       "tb-dhclient",
			"DHCP_INTERFACE_MTU":                   "1400",
			"DHCP_NTP_SERVERS":                     "10.80.0.1",
			"DHCP_RFC3442_CLASSLESS_STATIC_ROUTES": "16 10 99 10 80 0 1",
			"DHCP_ROUTERS":                         "10.80.0.1",
		},
		DNS:      []netip.Addr{netip.MustParseAddr("10.80.0.1")},
		Domains:  []string{"tb.test", "example.org"},
		Hostname: "tb-dhclient",
	}
	if diff := cmp.Diff(got, want, cmpOpts); diff != "" {
		t.Errorf("report (-got +want):\n%s", diff)
	}
	if len(notes) > 0 {
		t.Errorf("notes: %q", notes)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(got.Env["DHCP_LEASE"]), &back); err != nil {
		t.Errorf("DHCP_LEASE is not JSON: %v", err)
	}
}

// TestManagerBothFamilies: an interface with a DHCPv4 and a DHCPv6 lease
// gets both in one report; DNS servers and domains merge.
func TestManagerBothFamilies(t *testing.T) {
	v4 := parseFile(t, "testdata/testbed.leases")[0]
	v6 := parseFile(t, "testdata/dhclient6.leases")[0]
	for _, state := range []string{stateRoutable, stateExpired} {
		t.Run(state, func(t *testing.T) {
			m, notes := view{name: "veth0", state: state, v4: &v4, v6: &v6}.manager(10)
			got := map[string]string{}
			for _, k := range []string{"DHCP_ADDRESS", "DHCP_DNS", "DHCP6_ADDRESS", "DHCP6_PREFIX", "DHCP6_DNS", "DHCP6_DOMAIN",
				"DHCP_DHCP6_NAME_SERVERS", "DHCP_DHCP6_STATUS_CODE", "DHCP_DOMAIN_NAME"} {
				got[k] = m.Env[k]
			}
			want := map[string]string{
				"DHCP_ADDRESS": "10.80.0.117", "DHCP_DNS": "10.80.0.1",
				"DHCP6_ADDRESS": "fd00:80::1cd", "DHCP6_PREFIX": "", "DHCP6_DNS": "fd00:80::1", "DHCP6_DOMAIN": "tb.test.",
				"DHCP_DHCP6_NAME_SERVERS": "fd00:80::1", "DHCP_DHCP6_STATUS_CODE": "success success", "DHCP_DOMAIN_NAME": "tb.test",
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("env (-got +want):\n%s", diff)
			}
			if !strings.Contains(m.Env["DHCP6_LEASE"], `"ia":[{"type":"ia-na","iaid":"4a:e3:52:49"`) {
				t.Errorf("DHCP6_LEASE = %s", m.Env["DHCP6_LEASE"])
			}
			type resolver struct {
				DNS      []netip.Addr
				Domains  []string
				Hostname string
			}
			gotR := resolver{m.DNS, m.Domains, m.Hostname}
			wantR := resolver{
				DNS:      []netip.Addr{netip.MustParseAddr("10.80.0.1"), netip.MustParseAddr("fd00:80::1")},
				Domains:  []string{"tb.test"},
				Hostname: "tb-dhclient",
			}
			if state == stateExpired {
				wantR = resolver{} // an expired lease configures nothing
			}
			if diff := cmp.Diff(gotR, wantR, cmpOpts); diff != "" {
				t.Errorf("resolver data (-got +want):\n%s", diff)
			}
			if len(notes) > 0 {
				t.Errorf("notes: %q", notes)
			}
		})
	}
}

// TestManagerHostileValues: values no script can get as they are are
// escaped in Env and left out of the resolver data, with a note each.
func TestManagerHostileValues(t *testing.T) {
	l := parseText(t, `lease {
  interface "eth0";
  fixed-address 192.0.2.1;
  option host-name "evil\nHOST=x";
  option domain-name "ok.example bad\001.example";
  option domain-name-servers 192.0.2.53, not-an-ip;
  option vendor-string "back\\slash \377 ü";
  expire never;
}`)[0]
	m, notes := view{name: "eth0", state: stateRoutable, v4: &l}.manager(3)
	got := map[string]string{
		"DHCP_HOSTNAME":      m.Env["DHCP_HOSTNAME"],
		"DHCP_DOMAIN":        m.Env["DHCP_DOMAIN"],
		"DHCP_VENDOR_STRING": m.Env["DHCP_VENDOR_STRING"],
	}
	want := map[string]string{
		"DHCP_HOSTNAME":      `evil\012HOST=x`,
		"DHCP_DOMAIN":        `ok.example bad\001.example`,
		"DHCP_VENDOR_STRING": `back\\slash \377 ü`,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("env (-got +want):\n%s", diff)
	}
	if m.Hostname != "" || !cmp.Equal(m.Domains, []string{"ok.example"}) ||
		!cmp.Equal(m.DNS, []netip.Addr{netip.MustParseAddr("192.0.2.53")}, cmpOpts) {
		t.Errorf("resolver data: DNS %v, domains %q, hostname %q", m.DNS, m.Domains, m.Hostname)
	}
	// Five escaped variables (host-name and domain-name each twice:
	// DHCP_HOST_NAME and DHCP_HOSTNAME), and the DNS server, domain and
	// host name left out.
	if len(notes) != 8 {
		t.Errorf("%d notes, want 8:\n%s", len(notes), strings.Join(notes, "\n"))
	}
}

func TestEnvName(t *testing.T) {
	tests := map[string]string{
		"domain-name-servers": "DOMAIN_NAME_SERVERS",
		"dhcp6.name-servers":  "DHCP6_NAME_SERVERS",
		"unknown-224":         "UNKNOWN_224",
		"ms_classless":        "MS_CLASSLESS",
	}
	for in, want := range tests {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvValue(t *testing.T) {
	tests := []struct {
		in, want string
		changed  bool
	}{
		{"10.0.0.1 10.0.0.2", "10.0.0.1 10.0.0.2", false},
		{"ünïcode ok", "ünïcode ok", false},
		{"a\nb", `a\012b`, true},
		{"nul\x00", `nul\000`, true},
		{"cr\r", `cr\015`, true},
		{`back\slash`, `back\\slash`, true},
		{"bad\xffutf8", `bad\377utf8`, true},
		{"del\x7f", `del\177`, true},
	}
	for _, tt := range tests {
		got, changed := envValue(tt.in)
		if got != tt.want || changed != tt.changed {
			t.Errorf("envValue(%q) = %q, %v; want %q, %v", tt.in, got, changed, tt.want, tt.changed)
		}
	}
}

// TestFingerprint: a renewal that moves only the times keeps the
// fingerprint; new data changes it.
func TestFingerprint(t *testing.T) {
	ls := parseText(t, `
lease { interface "eth0"; fixed-address 192.0.2.1; option routers 192.0.2.254; renew 4 2026/11/26 01:00:00; expire 4 2026/11/26 02:00:00; }
lease { interface "eth0"; fixed-address 192.0.2.1; option routers 192.0.2.254; renew 4 2026/11/26 02:00:00; expire 4 2026/11/26 03:00:00; }
lease { interface "eth0"; fixed-address 192.0.2.1; option routers 192.0.2.253; renew 4 2026/11/26 02:00:00; expire 4 2026/11/26 03:00:00; }
lease6 { interface "eth0"; ia-na 0:0:0:1 { starts 1000; iaaddr 2001:db8::1 { starts 1000; max-life 3600; } } }
lease6 { interface "eth0"; ia-na 0:0:0:1 { starts 2000; iaaddr 2001:db8::1 { starts 2000; max-life 3600; } } }
`)
	fp := func(l *Lease) string { return view{v4: l}.fingerprint() }
	if fp(&ls[0]) != fp(&ls[1]) {
		t.Errorf("times alone changed the fingerprint")
	}
	if fp(&ls[1]) == fp(&ls[2]) {
		t.Errorf("a new router did not change the fingerprint")
	}
	if (view{v6: &ls[3]}).fingerprint() != (view{v6: &ls[4]}).fingerprint() {
		t.Errorf("lease6 starts alone changed the fingerprint")
	}
	if ls[3].Expire.Equal(ls[4].Expire) || !ls[4].Expire.Equal(time.Unix(5600, 0)) {
		t.Errorf("lease6 expire %v and %v, want them to differ, the second at 5600", ls[3].Expire, ls[4].Expire)
	}
}
