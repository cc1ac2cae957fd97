package dhclient

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cmpOpts compares the netip values of leases.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// at parses "2006-01-02 15:04:05" in UTC.
func at(tb testing.TB, s string) time.Time {
	tb.Helper()
	v, err := time.Parse(time.DateTime, s)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func errStrings(errs []error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// TestParseSamples parses lease files that dhclient wrote (testdata/README.md).
func TestParseSamples(t *testing.T) {
	tests := []struct {
		file string
		want []Lease
	}{
		{"testbed.leases", []Lease{{
			Line: 1, Interface: "veth0", FixedAddress: netip.MustParseAddr("10.80.0.117"),
			Options: map[string]string{
				"subnet-mask": "255.255.255.0", "routers": "10.80.0.1", "dhcp-lease-time": "3600",
				"dhcp-message-type": "5", "domain-name-servers": "10.80.0.1", "dhcp-server-identifier": "10.80.0.1",
				"dhcp-renewal-time": "1800", "broadcast-address": "10.80.0.255", "dhcp-rebinding-time": "3150",
				"host-name": "tb-dhclient", "domain-name": "tb.test",
			},
			Renew:  at(t, "2026-11-26 01:53:58"),
			Rebind: at(t, "2026-11-26 02:22:27"),
			Expire: at(t, "2026-11-26 02:29:57"),
		}}},
		{"dnsmasq-options.leases", []Lease{{
			Line: 1, Interface: "veth0", FixedAddress: netip.MustParseAddr("10.80.0.113"),
			Options: map[string]string{
				"subnet-mask": "255.255.255.0", "routers": "10.80.0.1", "dhcp-lease-time": "3600",
				"dhcp-message-type": "5", "domain-name-servers": "10.80.0.1", "dhcp-server-identifier": "10.80.0.1",
				"domain-search": "tb.test. example.org.", "interface-mtu": "1400", "dhcp-renewal-time": "1800",
				"ntp-servers": "10.80.0.1", "rfc3442-classless-static-routes": "16 10 99 10 80 0 1",
				"broadcast-address": "10.80.0.255", "dhcp-rebinding-time": "3150",
				"host-name": "tb-dhclient", "domain-name": "tb.test",
			},
			Renew:  at(t, "2026-11-26 03:30:01"),
			Rebind: at(t, "2026-11-26 03:58:28"),
			Expire: at(t, "2026-11-26 04:05:58"),
		}}},
		{"db-time-format-local.leases", []Lease{{
			Line: 1, Interface: "veth0", FixedAddress: netip.MustParseAddr("10.80.0.113"),
			Options: map[string]string{
				"subnet-mask": "255.255.255.0", "routers": "10.80.0.1", "dhcp-lease-time": "3600",
				"dhcp-message-type": "5", "domain-name-servers": "10.80.0.1", "dhcp-server-identifier": "10.80.0.1",
				"domain-search": "tb.test. example.org.", "interface-mtu": "1400", "dhcp-renewal-time": "1800",
				"ntp-servers": "10.80.0.1", "rfc3442-classless-static-routes": "16 10 99 10 80 0 1",
				"broadcast-address": "10.80.0.255", "dhcp-rebinding-time": "3150", "domain-name": "tb.test",
			},
			Renew:  time.Unix(1795663890, 0).UTC(),
			Rebind: time.Unix(1795665508, 0).UTC(),
			Expire: time.Unix(1795665958, 0).UTC(),
		}}},
		{"dhclient6.leases", []Lease{{
			Line: 2, Interface: "veth0", IPv6: true,
			IAs: []IA{{
				Type: "ia-na", IAID: "4a:e3:52:49", Starts: time.Unix(1795662358, 0).UTC(),
				Renew: 1800 * time.Second, Rebind: 3150 * time.Second,
				Addrs: []IAAddr{{
					Prefix: netip.MustParsePrefix("fd00:80::1cd/128"), Starts: time.Unix(1795662358, 0).UTC(),
					PreferredLife: 3600 * time.Second, MaxLife: 3600 * time.Second,
				}},
			}},
			Options: map[string]string{
				"dhcp6.client-id":     "0:1:0:1:32:9a:5e:96:92:e4:4a:e3:52:49",
				"dhcp6.server-id":     "0:1:0:1:32:9a:5e:94:26:a2:c:8f:9f:52",
				"dhcp6.name-servers":  "fd00:80::1",
				"dhcp6.domain-search": "tb.test.",
				"dhcp6.status-code":   "success success",
			},
			Renew:  time.Unix(1795662358+1800, 0).UTC(),
			Rebind: time.Unix(1795662358+3150, 0).UTC(),
			Expire: time.Unix(1795662358+3600, 0).UTC(),
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := "testdata/" + tt.file
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, errs := ParseLeases(f, path)
			for i := range tt.want {
				tt.want[i].File = path
			}
			if len(errs) > 0 {
				t.Errorf("errors: %q", errStrings(errs))
			}
			if diff := cmp.Diff(got, tt.want, cmpOpts); diff != "" {
				t.Errorf("leases (-got +want):\n%s", diff)
			}
		})
	}
}

// TestParseEdgeCases parses hand-made files: what dhclient may write that
// the samples do not show, and damage.
func TestParseEdgeCases(t *testing.T) {
	const file = "t.leases"
	addr := netip.MustParseAddr
	v4 := func(line int, iface, a string, expire time.Time, opts ...string) Lease {
		l := Lease{File: file, Line: line, Interface: iface, FixedAddress: addr(a), Options: map[string]string{}, Expire: expire}
		for i := 0; i+1 < len(opts); i += 2 {
			l.Options[opts[i]] = opts[i+1]
		}
		return l
	}
	exp := at(t, "2026-11-26 02:29:57")
	tests := []struct {
		name     string
		in       string
		want     []Lease
		wantErrs []string
	}{
		{
			name: "empty",
			in:   "",
		},
		{
			name: "comments",
			in: `# written by dhclient
lease { # the block
  interface "eth0"; # the interface
  fixed-address 192.0.2.10;#no space
  option domain-name "a#b"; # '#' in a string is no comment
  expire 4 2026/11/26 02:29:57; # ; { } " in a comment
}
# lease { interface "x"; fixed-address 1.2.3.4; }
`,
			want: []Lease{v4(2, "eth0", "192.0.2.10", exp, "domain-name", "a#b")},
		},
		{
			name: "quoted strings",
			in: `lease {
  interface "eth0";
  fixed-address 192.0.2.10;
  option domain-name "semi;colon {brace} \"quoted\" back\\slash";
  option host-name "tab\there\x41\101\q";
  option domain-search "a.example.", "b.example.";
  option vendor-encapsulated-options "two
lines";
  expire 4 2026/11/26 02:29:57;
}`,
			want: []Lease{v4(1, "eth0", "192.0.2.10", exp,
				"domain-name", `semi;colon {brace} "quoted" back\slash`,
				"host-name", "tab\thereAAq",
				"domain-search", "a.example. b.example.",
				"vendor-encapsulated-options", "two\nlines")},
		},
		{
			name: "every v4 statement",
			in: `LEASE {
  Interface "eth1";
  fixed-address 198.51.100.7;
  bootp;
  filename "pxelinux.0";
  server-name "boot.example";
  medium "link0 link1", "-link2";
  name "pseudo";
  key "k1";
  option dhcp-client-identifier 1:52:54:0:12:34:56;
  option rfc3442-classless-static-routes 24,192,168,1,10,0,0,1;
  option slp-directory-agent true 10.0.0.1, 10.0.0.2;
  renew never;
  rebind epoch 1795665508; # Thu Nov 26 03:58:28 2026
  expire 6 126/1/2 03:04:05 3600;
  ;
}`,
			want: []Lease{{
				File: file, Line: 1, Interface: "eth1", FixedAddress: addr("198.51.100.7"), BOOTP: true,
				Filename: "pxelinux.0", ServerName: "boot.example", Medium: "link0 link1 -link2", Name: "pseudo", Key: "k1",
				Options: map[string]string{
					"dhcp-client-identifier":          "1:52:54:0:12:34:56",
					"rfc3442-classless-static-routes": "24 192 168 1 10 0 0 1",
					"slp-directory-agent":             "true 10.0.0.1 10.0.0.2",
				},
				Renew:  Never,
				Rebind: time.Unix(1795665508, 0).UTC(),
				Expire: at(t, "2026-01-02 04:04:05"),
			}},
		},
		{
			name: "several leases per interface stay in file order",
			in: `lease { interface "eth0"; fixed-address 192.0.2.1; expire 4 2026/11/26 02:29:57; }
lease { interface "eth1"; fixed-address 192.0.2.2; expire 4 2026/11/26 02:29:57; }
lease { interface "eth0"; fixed-address 192.0.2.3; expire 4 2026/11/26 02:29:57; }
`,
			want: []Lease{v4(1, "eth0", "192.0.2.1", exp), v4(2, "eth1", "192.0.2.2", exp), v4(3, "eth0", "192.0.2.3", exp)},
		},
		{
			name: "lease6 with every kind of IA",
			in: `default-duid "\000\001\000\001\"\\x";
lease6 {
  interface "eth0";
  ia-na "ABCD" {
    starts 1000;
    renew 100;
    rebind 200;
    iaaddr 2001:db8::10 {
      starts 1000;
      preferred-life 300;
      max-life 400;
      option dhcp6.status-code success "ok";
    }
    iaaddr 2001:db8::11 { starts 1000; preferred-life 300; max-life 4294967295; }
    option dhcp6.status-code success;
  }
  ia-ta 0:0:0:1 {
    starts 1100;
    iaaddr 2001:db8::20 { starts 1100; preferred-life 50; max-life 60; }
  }
  ia-pd 00:00:00:02 {
    starts 1000;
    renew 50;
    rebind 80;
    iaprefix 2001:db8:100::/56 { starts 1000; preferred-life 300; max-life 500; }
  }
  option dhcp6.name-servers 2001:db8::53,2001:db8::54;
}
lease6 {
  interface "eth1";
  ia-na 00:00:00:03 { starts 1000; renew 0; rebind 0; }
  released;
}
`,
			want: []Lease{
				{
					File: file, Line: 2, Interface: "eth0", IPv6: true,
					IAs: []IA{
						{
							Type: "ia-na", IAID: "41:42:43:44", Starts: time.Unix(1000, 0).UTC(), Renew: 100 * time.Second, Rebind: 200 * time.Second,
							Addrs: []IAAddr{
								{Prefix: netip.MustParsePrefix("2001:db8::10/128"), Starts: time.Unix(1000, 0).UTC(), PreferredLife: 300 * time.Second, MaxLife: 400 * time.Second,
									Options: map[string]string{"dhcp6.status-code": "success ok"}},
								{Prefix: netip.MustParsePrefix("2001:db8::11/128"), Starts: time.Unix(1000, 0).UTC(), PreferredLife: 300 * time.Second, MaxLife: Infinite},
							},
							Options: map[string]string{"dhcp6.status-code": "success"},
						},
						{
							Type: "ia-ta", IAID: "00:00:00:01", Starts: time.Unix(1100, 0).UTC(),
							Addrs: []IAAddr{{Prefix: netip.MustParsePrefix("2001:db8::20/128"), Starts: time.Unix(1100, 0).UTC(), PreferredLife: 50 * time.Second, MaxLife: 60 * time.Second}},
						},
						{
							Type: "ia-pd", IAID: "00:00:00:02", Starts: time.Unix(1000, 0).UTC(), Renew: 50 * time.Second, Rebind: 80 * time.Second,
							Addrs: []IAAddr{{Prefix: netip.MustParsePrefix("2001:db8:100::/56"), Starts: time.Unix(1000, 0).UTC(), PreferredLife: 300 * time.Second, MaxLife: 500 * time.Second}},
						},
					},
					Options: map[string]string{"dhcp6.name-servers": "2001:db8::53 2001:db8::54"},
					Renew:   time.Unix(1050, 0).UTC(),
					Rebind:  time.Unix(1080, 0).UTC(),
					Expire:  Never,
				},
				{
					File: file, Line: 29, Interface: "eth1", IPv6: true, Released: true,
					IAs:     []IA{{Type: "ia-na", IAID: "00:00:00:03", Starts: time.Unix(1000, 0).UTC()}},
					Options: map[string]string{},
				},
			},
		},
		{
			name: "interface from the file name",
			in:   `lease { fixed-address 192.0.2.1; expire 4 2026/11/26 02:29:57; }`,
			wantErrs: []string{
				"t.leases:1: no interface statement, and the file name names no interface (lease at line 1 rejected)",
			},
		},
		{
			name: "truncated file",
			in: `lease { interface "eth0"; fixed-address 192.0.2.1; expire 4 2026/11/26 02:29:57; }
lease {
  interface "eth0";
  fixed-address 192.0.2.2;
  option domain-name "cut`,
			want: []Lease{v4(1, "eth0", "192.0.2.1", exp)},
			wantErrs: []string{
				"t.leases:5: unexpected end of file: a string is not closed (lease at line 2 rejected)",
			},
		},
		{
			name: "truncated between statements",
			in: `lease {
  interface "eth0";
  fixed-address 192.0.2.2;
`,
			wantErrs: []string{
				"t.leases:4: unexpected end of file: the block is not closed (lease at line 1 rejected)",
			},
		},
		{
			name: "a bad block is rejected whole, its neighbours count",
			in: `lease { interface "eth0"; fixed-address 192.0.2.1; expire 4 2026/11/26 02:29:57; }
lease {
  interface "eth0";
  fixed-address 192.0.2.2;
  option domain-name "x";
  expire 4 2026/13/26 02:29:57;
}
lease { interface "eth0"; fixed-address 192.0.2.3; expire 4 2026/11/26 02:29:57; }
`,
			want: []Lease{v4(1, "eth0", "192.0.2.1", exp), v4(8, "eth0", "192.0.2.3", exp)},
			wantErrs: []string{
				"t.leases:6: expire: month 13 out of range (lease at line 2 rejected)",
			},
		},
		{
			name: "a block that is not closed",
			in: `lease {
  interface "eth0";
  fixed-address 192.0.2.1;
lease { interface "eth0"; fixed-address 192.0.2.3; expire 4 2026/11/26 02:29:57; }
`,
			want: []Lease{v4(4, "eth0", "192.0.2.3", exp)},
			wantErrs: []string{
				"t.leases:4: the block is not closed before the lease at line 4 (lease at line 1 rejected)",
			},
		},
		{
			name: "a statement without ';' before the next lease",
			in: `default-duid "x"
lease { interface "eth0"; fixed-address 192.0.2.3; option host-name "h"
lease { interface "eth0"; fixed-address 192.0.2.4; expire 4 2026/11/26 02:29:57; }
`,
			want: []Lease{v4(3, "eth0", "192.0.2.4", exp)},
			wantErrs: []string{
				`t.leases:2: default-duid: expected ';', got "lease"`,
				"t.leases:3: option host-name: expected ';' before the lease at line 3 (lease at line 2 rejected)",
			},
		},
		{
			name: "a DHCP server's lease file",
			in: `lease 192.0.2.5 {
  starts 4 2026/11/26 01:00:00;
  binding state active;
  hardware ethernet 52:54:00:12:34:56;
}
`,
			wantErrs: []string{`t.leases:1: lease: expected '{', got "192.0.2.5" (lease at line 1 rejected)`},
		},
		{
			name: "garbage",
			in:   "\x00\x01 }{ ;; \"x\" lease {} foo\nbar;\n}}",
			wantErrs: []string{
				"t.leases:1: control byte 0x00",
				"t.leases:1: unexpected '{' outside a lease block",
				"t.leases:1: no interface statement, and the file name names no interface (lease at line 1 rejected)",
				`t.leases:1: unexpected "foo" outside a lease block`,
				"t.leases:3: unexpected '}' outside a block",
				"t.leases:3: unexpected '}' outside a block",
			},
		},
		{
			name: "bad values",
			in: `lease { interface "eth0"; fixed-address 2001:db8::1; }
lease { interface "eth0/1"; }
lease { interface eth0; }
lease { interface "eth0"; fixed-address 192.0.2.1; option; }
lease { interface "eth0"; fixed-address 192.0.2.1; option foo; }
lease { interface "eth0"; fixed-address 192.0.2.1; option foo 1,; }
lease { interface "eth0"; fixed-address 192.0.2.1; option foo ,1; }
lease { interface "eth0"; fixed-address 192.0.2.1; option fo*o 1; }
lease { interface "eth0"; fixed-address 192.0.2.1; option foo "\08"; }
lease { interface "eth0"; fixed-address 192.0.2.1; expire 7 2026/11/26 02:29:57; }
lease { interface "eth0"; fixed-address 192.0.2.1; expire 4 2026/02/30 02:29:57; }
lease { interface "eth0"; fixed-address 192.0.2.1; expire 4 2026/11/26 24:00:00; }
lease { interface "eth0"; fixed-address 192.0.2.1; expire 4 2026-11-26 02:29:57; }
lease { interface "eth0"; fixed-address 192.0.2.1; expire epoch -1; }
lease { interface "eth0"; fixed-address 192.0.2.1; expire 4 2026/11/26 02:29:57 x; }
lease { interface "eth0"; fixed-address 192.0.2.1; colour blue; }
lease6 { interface "eth0"; ia-na 1:2:3 { } }
lease6 { interface "eth0"; ia-na 1:2:3:4 { iaprefix 2001:db8::/48 { } } }
lease6 { interface "eth0"; ia-na 1:2:3:4 { renew 4294967296; } }
lease6 { interface "eth0"; }
`,
			wantErrs: []string{
				`t.leases:1: fixed-address: "2001:db8::1" is not an IPv4 address (lease at line 1 rejected)`,
				`t.leases:2: interface "eth0/1": byte '/' is not allowed (lease at line 2 rejected)`,
				`t.leases:3: interface: expected a quoted name, got "eth0" (lease at line 3 rejected)`,
				`t.leases:4: option: expected an option name, got ';' (lease at line 4 rejected)`,
				`t.leases:5: option foo: missing value (lease at line 5 rejected)`,
				`t.leases:6: option foo: missing value (lease at line 6 rejected)`,
				`t.leases:7: option foo: unexpected ',' (lease at line 7 rejected)`,
				`t.leases:8: option: "fo*o" is not an option name (lease at line 8 rejected)`,
				`t.leases:9: invalid octal escape in string (lease at line 9 rejected)`,
				`t.leases:10: expire: expected never, epoch or a weekday 0-6, got "7" (lease at line 10 rejected)`,
				`t.leases:11: expire: day 30 out of range (lease at line 11 rejected)`,
				`t.leases:12: expire: time 24:00:00 out of range (lease at line 12 rejected)`,
				`t.leases:13: expire: "2026-11-26" is not a date YYYY/MM/DD (lease at line 13 rejected)`,
				`t.leases:14: expire: "-1" is not a time in seconds since 1970 (lease at line 14 rejected)`,
				`t.leases:15: expire: expected ';' or an offset in seconds, got "x" (lease at line 15 rejected)`,
				`t.leases:16: unknown statement "colour" in a lease block (lease at line 16 rejected)`,
				`t.leases:17: ia-na: IAID "1:2:3" is not 4 bytes (lease at line 17 rejected)`,
				`t.leases:18: iaprefix in ia-na (lease at line 18 rejected)`,
				`t.leases:19: renew: "4294967296" is not a number of seconds (lease at line 19 rejected)`,
				`t.leases:20: no ia-na, ia-ta or ia-pd (lease at line 20 rejected)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ParseLeases(strings.NewReader(tt.in), file)
			if diff := cmp.Diff(got, tt.want, cmpOpts); diff != "" {
				t.Errorf("leases (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(errStrings(errs), tt.wantErrs); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
			for _, err := range errs {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.File != file || pe.Line < 1 {
					t.Errorf("error %v is not a ParseError with a file and line", err)
				}
			}
		})
	}
}

// TestParseInterfaceFromFileName: a block without an interface statement
// belongs to the interface the file is named after.
func TestParseInterfaceFromFileName(t *testing.T) {
	got, errs := ParseLeases(strings.NewReader(`lease { fixed-address 192.0.2.1; expire never; }`),
		"/var/lib/dhclient/dhclient-2f1c6a4e-8b1d-4c5e-9f00-123456789abc-enp3s0.lease")
	if len(errs) > 0 {
		t.Fatalf("errors: %q", errStrings(errs))
	}
	if len(got) != 1 || got[0].Interface != "enp3s0" {
		t.Errorf("got %+v, want one lease for enp3s0", got)
	}
}

func TestTruncatedIsErrTruncated(t *testing.T) {
	for _, in := range []string{`lease {`, `lease { interface "eth0`, `lease6 { interface "eth0"; ia-na 1:2:3:4 { iaaddr 2001:db8::1 {`} {
		_, errs := ParseLeases(strings.NewReader(in), "t")
		if len(errs) != 1 || !errors.Is(errs[0], ErrTruncated) {
			t.Errorf("%q: errors %q, want one that is ErrTruncated", in, errStrings(errs))
		}
	}
}

func TestIsLeaseFileName(t *testing.T) {
	tests := map[string]bool{
		"dhclient.leases":      true,
		"dhclient6.leases":     true,
		"dhclient.eth0.leases": true,
		"dhclient-eth0.leases": true,
		"dhclient-2f1c6a4e-8b1d-4c5e-9f00-123456789abc-eth0.lease":  true,
		"dhclient6-2f1c6a4e-8b1d-4c5e-9f00-123456789abc-eth0.lease": true,
		"dhcpd.leases":          false,
		"dhcpd6.leases":         false,
		"dhclient.leases~":      false,
		".dhclient.leases":      false,
		"dhclient.conf":         false,
		"dhclient.leases.tmp":   false,
		"dhclient-eth0.conf":    false,
		"something.leases":      false,
		"dhclient.leases.dpkg~": false,
	}
	for name, want := range tests {
		if got := IsLeaseFileName(name); got != want {
			t.Errorf("IsLeaseFileName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestInterfaceFromFileName(t *testing.T) {
	tests := map[string]string{
		"dhclient.leases":         "",
		"dhclient6.leases":        "",
		"dhclient.eth0.leases":    "eth0",
		"dhclient6.eth0.leases":   "eth0",
		"dhclient-eth0.leases":    "eth0",
		"dhclient6-enp3s0.leases": "enp3s0",
		"dhclient-2f1c6a4e-8b1d-4c5e-9f00-123456789abc-eth0.lease":   "eth0",
		"dhclient6-2f1c6a4e-8b1d-4c5e-9f00-123456789abc-wlan0.lease": "wlan0",
		"dhclient-br-lan.leases":                                     "br-lan",
		"dhclient.a-very-long-interface-name.leases":                 "",
		"dhclienteth0.leases":                                        "",
	}
	for base, want := range tests {
		if got := InterfaceFromFileName(base); got != want {
			t.Errorf("InterfaceFromFileName(%q) = %q, want %q", base, got, want)
		}
	}
}
