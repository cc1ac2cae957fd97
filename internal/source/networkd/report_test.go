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

func TestCompactDescription(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    string
		wantErr bool
	}{
		{name: "captured, pretty-printed", text: readTestdata(t, "link-Describe.json"), want: compactJSON(t, readTestdata(t, "link-Describe.json"))},
		{name: "captured with DNS and domains", text: readTestdata(t, "link-Describe-dns.json"), want: compactJSON(t, readTestdata(t, "link-Describe-dns.json"))},
		{name: "newlines in and around", text: "\n{\"Index\": 3,\n \"Name\": \"eth1\"}\n", want: `{"Index":3,"Name":"eth1"}`},
		{name: "not JSON", text: "Index=10", wantErr: true},
		{name: "truncated", text: `{"Index":10,"Name":"veth0"`, wantErr: true},
		{name: "not an object", text: `"veth0"`, wantErr: true},
		{name: "empty", text: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := compactDescription(tt.text)
			if tt.wantErr {
				if err == nil {
					t.Errorf("compactDescription = %q, nil; want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("compactDescription: %v", err)
			}
			if strings.ContainsAny(got, "\n\r") || got != tt.want {
				t.Errorf("compactDescription = %s, want %s", got, tt.want)
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

	got := o.report(10)
	want := &event.Manager{
		Backend: Backend, Index: 10, Name: "veth0",
		States: map[string]string{"OperationalState": "carrier"},
		Env:    map[string]string{"CarrierState": "carrier", "AddressState": "off"},
	}
	if diff := cmp.Diff(got, want, cmpEvents...); diff != "" {
		t.Errorf("report (-got +want):\n%s", diff)
	}
}
