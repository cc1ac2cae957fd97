package networkd

import (
	"errors"
	"io/fs"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
)

func TestParseDescription(t *testing.T) {
	tests := []struct {
		name        string
		text        string
		wantIndex   int
		wantName    string
		wantDNS     []netip.Addr
		wantDomains []string
		wantErr     bool
	}{
		{name: "captured, pretty-printed", text: readTestdata(t, "link-Describe.json"), wantIndex: 10, wantName: "veth0"},
		{name: "captured with DNS and domains", text: readTestdata(t, "link-Describe-dns.json"), wantIndex: 10, wantName: "veth0",
			wantDNS:     []netip.Addr{netip.MustParseAddr("10.77.0.53"), netip.MustParseAddr("fd00::53")},
			wantDomains: []string{"example.test"}},
		{name: "bad and duplicate entries skipped",
			text: `{"Index":3,"Name":"eth1","DNS":[{"Family":2,"Address":[1,1,1,1]},{"Family":2,"Address":[1,1,1,1]},` +
				`{"Family":2,"Address":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1]},{"Family":10,"Address":[1,2,3,4]},` +
				`{"Family":2,"Address":[300,1,1,1]},{"Family":7,"Address":[9,9,9,9]},{"Family":10,"Address":[32,1,13,184,0,0,0,0,0,0,0,0,0,0,0,1]}],` +
				`"SearchDomains":[{"Domain":"a.test"},{"Domain":""},{"Domain":"a.test"},{"Domain":"b.test"}]}`,
			wantIndex: 3, wantName: "eth1",
			wantDNS:     []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2001:db8::1")},
			wantDomains: []string{"a.test", "b.test"}},
		{name: "not JSON", text: "Index=10", wantErr: true},
		{name: "truncated", text: `{"Index":10,"Name":"veth0"`, wantErr: true},
		{name: "wrong type", text: `{"Index":"ten"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compact, d, dns, domains, err := parseDescription(tt.text)
			if tt.wantErr {
				if err == nil {
					t.Errorf("parseDescription succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("parseDescription: %v", err)
			}
			if strings.ContainsAny(compact, "\n\r") || compact != compactJSON(t, tt.text) {
				t.Errorf("compact form is not the compacted input:\n%s", compact)
			}
			if d.Index != tt.wantIndex || d.Name != tt.wantName {
				t.Errorf("Index, Name = %d, %q; want %d, %q", d.Index, d.Name, tt.wantIndex, tt.wantName)
			}
			if diff := cmp.Diff(dns, tt.wantDNS, cmpEvents...); diff != "" {
				t.Errorf("DNS (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(domains, tt.wantDomains, cmpEvents...); diff != "" {
				t.Errorf("domains (-got +want):\n%s", diff)
			}
		})
	}
}

func TestReadStateFile(t *testing.T) {
	dns, domains, err := readStateFile("testdata/netif", 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dns, []netip.Addr{netip.MustParseAddr("10.77.0.53"), netip.MustParseAddr("fd00::53")}, cmpEvents...); diff != "" {
		t.Errorf("DNS (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(domains, []string{"example.test"}); diff != "" {
		t.Errorf("domains (-got +want):\n%s", diff)
	}
	dns, domains, err = readStateFile("testdata/netif", 11)
	if err != nil || len(dns) != 0 || len(domains) != 0 {
		t.Errorf("link 11 (DHCP, no DNS): %v, %v, %v; want nothing", dns, domains, err)
	}
	if _, _, err := readStateFile("testdata/netif", 12); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestParseDNSToken(t *testing.T) {
	tests := []struct {
		tok  string
		want string // "" for none
	}{
		{"10.0.0.1", "10.0.0.1"},
		{"fd00::53", "fd00::53"},
		{"1.1.1.1:53", "1.1.1.1"},
		{"[fd00::53]:53", "fd00::53"},
		{"1.1.1.1:853#cloudflare-dns.com", "1.1.1.1"},
		{"1.1.1.1%2#dns.example", "1.1.1.1"},
		{"[fe80::1]:53%3", "fe80::1"},
		{"fe80::1%3", "fe80::1"},
		{"dns.example", ""},
		{"", ""},
		{"%", ""},
	}
	for _, tt := range tests {
		a, ok := parseDNSToken(tt.tok)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tt.want {
			t.Errorf("parseDNSToken(%q) = %q, want %q", tt.tok, got, tt.want)
		}
	}
}

func TestObject(t *testing.T) {
	o := newObject(linkPath(10))
	o.name = "veth0"
	o.replace(map[string]any{"OperationalState": "no-carrier", "AdministrativeState": "configuring",
		"OnlineState": "", "CarrierState": "no-carrier", "BitRates": []any{uint64(1), uint64(2)}}, 5)
	o.json = `{"Index":10}`

	if diff, stale := o.apply(map[string]any{"OperationalState": "routable", "CarrierState": "carrier"}, 4); diff || stale != 2 {
		t.Errorf("an older signal: apply = %v, %d; want false, 2", diff, stale)
	}
	if diff, stale := o.apply(map[string]any{"CarrierState": "no-carrier"}, 6); diff || stale != 0 {
		t.Errorf("an unchanged value: apply = %v, %d; want false, 0", diff, stale)
	}
	if diff, stale := o.apply(map[string]any{"OperationalState": "carrier", "CarrierState": "carrier", "Weird": int32(1)}, 7); !diff || stale != 0 {
		t.Errorf("a newer signal: apply = %v, %d; want true, 0", diff, stale)
	}
	// A read that is older than the last signal keeps the signal's values,
	// and drops properties that are gone only if they are older than it.
	o.replace(map[string]any{"OperationalState": "off", "AddressState": "off"}, 6)

	got := o.report(10, true)
	want := &event.Manager{
		Backend: Backend, Index: 10, Name: "veth0",
		States: map[string]string{"OperationalState": "carrier"},
		Env:    map[string]string{"CarrierState": "carrier", "AddressState": "off", "JSON": `{"Index":10}`},
	}
	if diff := cmp.Diff(got, want, cmpEvents...); diff != "" {
		t.Errorf("report (-got +want):\n%s", diff)
	}
	if _, ok := o.report(10, false).Env["JSON"]; ok {
		t.Errorf("report without JSON has JSON")
	}
	if !o.statesChanged() {
		t.Errorf("statesChanged before the first report = false")
	}
	o.sent = got.States
	if o.statesChanged() {
		t.Errorf("statesChanged with the same States = true")
	}
}
