package script

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"eth0", true},
		{"veth-a_b.1", true},
		{"123456789012345", true},
		{"1234567890123456", false}, // 16 bytes: longer than the kernel allows
		{"", false},
		{"eth0:1", false},
		{"eth0@if2", false},
		{"a b", false},
		{"a;reboot", false},
		{"$(reboot)", false},
		{"`id`", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"ä", false},
		{"../x", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// setDaemonEnv controls the variables New copies from the daemon's
// environment: LANG=C.UTF-8 and no TZ.
func setDaemonEnv(t *testing.T) {
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("TZ", "")
	os.Unsetenv("TZ")
}

func TestEnviron(t *testing.T) {
	setDaemonEnv(t)
	r, err := New(Config{Dir: "/nonexistent"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	common := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"LINK=veth0",
		"LINKINDEX=10",
		"STATE=routable",
		"OLD_STATE=degraded",
		"BACKEND=none",
		"ADDRESSES=10.0.0.1 127.0.0.2 192.0.2.7 2001:db8::1 fe80::1",
		"IPV4_ADDRESSES=10.0.0.1/24 127.0.0.2/8 192.0.2.7/32",
		"IPV6_ADDRESSES=2001:db8::1/64 fe80::1/64",
		"GATEWAY=10.0.0.254", // the main table wins over table 100
		"GATEWAY6=fe80::fe",
		"NETEVD_EVENT_ID=42",
		"IFACE=veth0",
		"ADDR=10.0.0.1",
		"IP_ADDRS=10.0.0.1 192.0.2.7", // no loopback, as networkd-dispatcher
		"IP6_ADDRS=2001:db8::1",       // no link-local
		"OperationalState=routable",
	}
	route := event.Route{Family: unix.AF_INET6, Table: 254, Dst: netip.MustParsePrefix("2001:db8:1::/48"),
		Gateway: netip.MustParseAddr("fe80::fe"), OutIndex: 10}

	tests := []struct {
		name   string
		change func(*event.Change)
		extra  []string
	}{
		{"address added", func(*event.Change) {}, []string{"EVENT=address-added", "ADDRESS=10.0.0.1/24"}},
		{"address removed", func(c *event.Change) { c.Type = event.AddressRemoved },
			[]string{"EVENT=address-removed", "ADDRESS=10.0.0.1/24"}},
		{"initial replay", func(c *event.Change) { c.Type = event.CarrierUp; c.Addr = nil; c.Initial = true },
			[]string{"EVENT=carrier", "NETEVD_INITIAL=1"}},
		{"route added", func(c *event.Change) { c.Type = event.RouteAdded; c.Addr = nil; c.Route = &route },
			[]string{"EVENT=route-added", "ROUTE_DST=2001:db8:1::/48", "ROUTE_GATEWAY=fe80::fe", "ROUTE_TABLE=254"}},
		{"route without gateway", func(c *event.Change) {
			c.Type = event.RouteRemoved
			c.Addr = nil
			rt := route
			rt.Gateway = netip.Addr{}
			rt.Table = 100
			c.Route = &rt
		}, []string{"EVENT=route-removed", "ROUTE_DST=2001:db8:1::/48", "ROUTE_GATEWAY=", "ROUTE_TABLE=100"}},
		{"renamed", func(c *event.Change) { c.Type = event.LinkRenamed; c.Addr = nil; c.OldName = "eth9" },
			[]string{"EVENT=link-renamed", "OLD_LINK=eth9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testChange()
			tt.change(&c)
			got, err := r.Environ(c)
			if err != nil {
				t.Fatalf("Environ() = %v", err)
			}
			want := sortedCopy(append(append([]string(nil), common...), tt.extra...))
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("Environ() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestEnvironEmptyLink(t *testing.T) {
	setDaemonEnv(t)
	r, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := event.Change{ID: 1, Type: event.LinkAdded, Backend: "none",
		Link: event.LinkState{Link: event.Link{Index: 3, Name: "vp0"}, State: "off"}}
	got, err := r.Environ(c)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedCopy([]string{
		"PATH=" + scriptPath, "LANG=C.UTF-8",
		"LINK=vp0", "LINKINDEX=3", "STATE=off", "OLD_STATE=", "BACKEND=none", "EVENT=link-added",
		"ADDRESSES=", "IPV4_ADDRESSES=", "IPV6_ADDRESSES=", "GATEWAY=", "GATEWAY6=", "NETEVD_EVENT_ID=1",
		"IFACE=vp0", "ADDR=", "IP_ADDRS=", "IP6_ADDRS=", "OperationalState=off",
	})
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Environ() (-got +want):\n%s", diff)
	}
}

func TestEnvironADDRFallsBackToIPv6(t *testing.T) {
	r, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := testChange()
	c.Link.Addrs = []event.Addr{
		{Prefix: netip.MustParsePrefix("fe80::1/64")},
		{Prefix: netip.MustParsePrefix("2001:db8::9/64")},
	}
	env, err := r.Environ(c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "ADDR=2001:db8::9") {
		t.Errorf("Environ() = %q, want ADDR=2001:db8::9", env)
	}
}

func TestEnvironRefusesControlCharacters(t *testing.T) {
	r, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		change  func(*event.Change)
		wantVar string
	}{
		{"newline in backend", func(c *event.Change) { c.Backend = "none\nEVIL=1" }, "BACKEND"},
		{"NUL in state", func(c *event.Change) { c.Link.State = "routable\x00" }, "STATE"},
		{"carriage return in old state", func(c *event.Change) { c.OldState = "a\rb" }, "OLD_STATE"},
		{"newline in an unchecked name", func(c *event.Change) { c.Link.Name = "a\nb" }, "IFACE"},
		{"newline in old name", func(c *event.Change) { c.Type = event.LinkRenamed; c.OldName = "x\n" }, "OLD_LINK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testChange()
			tt.change(&c)
			env, err := r.Environ(c)
			uv, ok := errors.AsType[*UnsafeValueError](err)
			if !ok {
				t.Fatalf("Environ() = %q, %v; want an *UnsafeValueError", env, err)
			}
			// Which of the variables carrying the value is reported first
			// is not part of the contract; LINK and IFACE carry the name.
			if uv.Var != tt.wantVar && !(tt.wantVar == "IFACE" && uv.Var == "LINK") {
				t.Errorf("UnsafeValueError.Var = %q, want %q", uv.Var, tt.wantVar)
			}
		})
	}
}

func TestPayloadJSON(t *testing.T) {
	c := testChange()
	got, err := json.Marshal(NewPayload(c))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{
	"version": 1, "id": 42, "event": "address-added", "time": "2025-01-02T03:04:05.0000006Z",
	"initial": false, "backend": "none", "coalesced": 0,
	"link": {"index": 10, "name": "veth0", "kind": "veth", "mac": "02:00:00:00:00:01", "mtu": 1500,
		"admin_up": true, "carrier": true, "oper_state": "up", "state": "routable"},
	"old_state": "degraded", "old_name": "", "property": "", "value": "", "old_value": "", "manager": null,
	"addresses": [
		{"address": "10.0.0.1/24", "ip": "10.0.0.1", "prefix_len": 24, "family": 4, "scope": "global", "flags": 0},
		{"address": "127.0.0.2/8", "ip": "127.0.0.2", "prefix_len": 8, "family": 4, "scope": "host", "flags": 0},
		{"address": "192.0.2.7/32", "ip": "192.0.2.7", "prefix_len": 32, "family": 4, "scope": "global", "flags": 0},
		{"address": "2001:db8::1/64", "ip": "2001:db8::1", "prefix_len": 64, "family": 6, "scope": "global", "flags": 0},
		{"address": "fe80::1/64", "ip": "fe80::1", "prefix_len": 64, "family": 6, "scope": "link", "flags": 128}
	],
	"routes": [
		{"family": 4, "table": 100, "dst": "0.0.0.0/0", "gateway": "10.0.0.253", "src": "", "ifindex": 10,
			"metric": 0, "protocol": "static", "scope": "global", "type": "unicast", "multipath": false},
		{"family": 4, "table": 254, "dst": "0.0.0.0/0", "gateway": "10.0.0.254", "src": "", "ifindex": 10,
			"metric": 100, "protocol": "dhcp", "scope": "global", "type": "unicast", "multipath": false},
		{"family": 6, "table": 254, "dst": "::/0", "gateway": "fe80::fe", "src": "", "ifindex": 10,
			"metric": 1024, "protocol": "ra", "scope": "global", "type": "unicast", "multipath": false}
	],
	"address": {"address": "10.0.0.1/24", "ip": "10.0.0.1", "prefix_len": 24, "family": 4, "scope": "global", "flags": 0},
	"route": null
}`
	if diff := cmp.Diff(decode(t, got), decode(t, []byte(want))); diff != "" {
		t.Errorf("payload (-got +want):\n%s", diff)
	}
}

func TestPayloadEmptyListsAreArrays(t *testing.T) {
	got, err := json.Marshal(NewPayload(event.Change{Type: event.LinkRemoved}))
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, got).(map[string]any)
	for _, k := range []string{"addresses", "routes"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s = %#v, want []", k, m[k])
		}
	}
	for _, k := range []string{"address", "route"} {
		if v, ok := m[k]; !ok || v != nil {
			t.Errorf("%s = %#v (present %v), want null", k, v, ok)
		}
	}
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestEnvironManager(t *testing.T) {
	setDaemonEnv(t)
	r, err := New(Config{Dir: "/nonexistent"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr := &event.Manager{
		Backend: "systemd-networkd", Index: 10, Name: "veth0",
		States:  map[string]string{"OperationalState": "routable", "AdministrativeState": "configured"},
		Env:     map[string]string{"JSON": `{"Index":10}`, "LINK": "spoofed", "CONNECTION_ID": "uplink"},
		DNS:     []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")},
		Domains: []string{"example.test", "lab.test"},
	}
	c := testChange()
	c.Type, c.Addr = event.ManagerStateChanged, nil
	c.Backend, c.Property, c.Value, c.OldValue, c.Manager = "systemd-networkd", "AdministrativeState", "configured", "configuring", mgr
	c.Link.Manager = mgr
	c.Link.State = "degraded" // the kernel's view; the manager's states win
	got, err := r.Environ(c)
	if err != nil {
		t.Fatalf("Environ() = %v", err)
	}
	want := map[string]string{
		"STATE": "configured", "OLD_STATE": "configuring", "EVENT": "manager-state", "BACKEND": "systemd-networkd",
		"OperationalState": "routable", "AdministrativeState": "configured",
		"JSON": `{"Index":10}`, "CONNECTION_ID": "uplink", "LINK": "veth0",
		"DNS": "192.0.2.53 2001:db8::53", "DOMAINS": "example.test lab.test",
	}
	have := map[string]string{}
	for _, kv := range got {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := have[k]; dup {
			t.Errorf("variable %s set twice", k)
		}
		have[k] = v
	}
	for k, v := range want {
		if have[k] != v {
			t.Errorf("%s = %q, want %q", k, have[k], v)
		}
	}

	mgr.Env = map[string]string{"BAD NAME": "x"}
	if _, err := r.Environ(c); err == nil {
		t.Errorf("Environ() with an invalid variable name from the backend: got no error")
	}
	mgr.Env = map[string]string{"JSON": "{\n}"}
	var uv *UnsafeValueError
	if _, err := r.Environ(c); !errors.As(err, &uv) || uv.Var != "JSON" {
		t.Errorf("Environ() with a newline in a backend value: got %v, want an UnsafeValueError for JSON", err)
	}
}
