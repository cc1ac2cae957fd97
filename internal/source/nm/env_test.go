package nm

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
)

var addrComparer = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// ip16 is an IPv6 address as NetworkManager's IP6Config.Nameservers has it.
func ip16(s string) []byte {
	a := netip.MustParseAddr(s).As16()
	return a[:]
}

func TestReport(t *testing.T) {
	device := func(extra map[string]any) map[string]any {
		d := map[string]any{"Interface": "eth0", "IpInterface": "eth0", "State": uint32(100)}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}
	for _, tc := range []struct {
		name        string
		snap        snapshot
		state       uint32
		reason      uint32
		want        *event.Manager
		wantEscaped []string
	}{
		{
			// What the testbed's real NetworkManager had when veth0 was
			// activated with a static address (samples/networkmanager):
			// nm-dispatcher gave its script IP4_ADDRESS_0="10.79.0.1/24 0.0.0.0".
			name: "static address, no gateway",
			snap: snapshot{
				Device: device(map[string]any{"Interface": "veth0", "IpInterface": "veth0"}),
				Active: map[string]any{"Id": "tb-veth0", "Uuid": "6b0a8f0e-2f7c-4a53-9d0e-7d1f0c1b2a01",
					"Connection": "/org/freedesktop/NetworkManager/Settings/1", "StateFlags": uint32(92)},
				Filename: "/etc/NetworkManager/system-connections/tb-veth0.nmconnection",
				IP4: map[string]any{
					"AddressData":    []any{map[string]any{"address": "10.79.0.1", "prefix": uint32(24)}},
					"Gateway":        "",
					"RouteData":      []any{map[string]any{"dest": "10.79.0.0", "prefix": uint32(24), "metric": uint32(100)}},
					"NameserverData": []any{},
					"Domains":        []string{},
					"Searches":       []string{},
					"WinsServerData": []string{},
				},
				IP6: map[string]any{"AddressData": []any{}, "Gateway": "", "RouteData": []any{}, "Nameservers": []any{}},
			},
			state: 100,
			want: &event.Manager{
				Backend: "NetworkManager", Index: 10, Name: "veth0",
				States: map[string]string{"DeviceState": "activated"},
				Env: map[string]string{
					"DEVICE_IFACE": "veth0", "DEVICE_IP_IFACE": "veth0",
					"DEVICE_STATE_REASON": "0", "DEVICE_STATE_REASON_NAME": "none",
					"CONNECTION_ID": "tb-veth0", "CONNECTION_UUID": "6b0a8f0e-2f7c-4a53-9d0e-7d1f0c1b2a01",
					"CONNECTION_DBUS_PATH": "/org/freedesktop/NetworkManager/Settings/1",
					"CONNECTION_FILENAME":  "/etc/NetworkManager/system-connections/tb-veth0.nmconnection",
					"IP4_ADDRESS_0":        "10.79.0.1/24 0.0.0.0", "IP4_NUM_ADDRESSES": "1", "IP4_GATEWAY": "0.0.0.0",
					"IP4_ROUTE_0": "10.79.0.0/24 0.0.0.0 100", "IP4_NUM_ROUTES": "1",
				},
			},
		},
		{
			name: "DHCP on both families",
			snap: snapshot{
				Device: device(nil),
				Active: map[string]any{"Id": "Wired connection 1", "Uuid": "u-1", "Connection": "/org/freedesktop/NetworkManager/Settings/3"},
				IP4: map[string]any{
					"AddressData": []any{
						map[string]any{"address": "192.168.1.119", "prefix": uint32(24)},
						map[string]any{"address": "192.168.7.2", "prefix": uint32(32), "label": "x"},
						map[string]any{"address": "192.168.9.9"}, // no prefix: skipped
					},
					"Gateway": "192.168.1.1",
					"RouteData": []any{
						map[string]any{"dest": "0.0.0.0", "prefix": uint32(0), "next-hop": "192.168.1.1", "metric": uint32(100)},
						map[string]any{"dest": "192.168.1.0", "prefix": uint32(24)},
					},
					"NameserverData": []any{map[string]any{"address": "192.168.1.1"}, map[string]any{"address": "9.9.9.9"}},
					"Domains":        []string{"home.example"},
					"Searches":       []string{"corp.example", "home.example"},
					"WinsServerData": []string{"192.168.1.5"},
				},
				IP6: map[string]any{
					"AddressData": []any{
						map[string]any{"address": "2001:db8::5", "prefix": uint32(128)},
						map[string]any{"address": "fe80::1", "prefix": uint32(64)},
					},
					"Gateway":     "fe80::ff",
					"RouteData":   []any{map[string]any{"dest": "2001:db8::", "prefix": uint32(64), "metric": uint32(100)}},
					"Nameservers": []any{ip16("2001:db8::53")},
					"Domains":     []string{"v6.example"},
				},
				DHCP4: map[string]any{"Options": map[string]any{
					"domain_name_servers": "192.168.1.1 9.9.9.9",
					"domain_name":         "home.example",
					"ip_address":          "192.168.1.119",
					"routers":             "192.168.1.1",
					"dhcp_lease_time":     "86400",
					"private_245":         "a8:3f:81:10",
					"requested_rfc3442":   "1",
					"bad-name":            "left out: '-' is not allowed in a variable name",
					"not_a_string":        uint32(7),
				}},
				DHCP6: map[string]any{"Options": map[string]any{"dhcp6_name_servers": "2001:db8::53"}},
			},
			state:  100,
			reason: 0,
			want: &event.Manager{
				Backend: "NetworkManager", Index: 2, Name: "eth0",
				States: map[string]string{"DeviceState": "activated"},
				Env: map[string]string{
					"DEVICE_IFACE": "eth0", "DEVICE_IP_IFACE": "eth0",
					"DEVICE_STATE_REASON": "0", "DEVICE_STATE_REASON_NAME": "none",
					"CONNECTION_ID": "Wired connection 1", "CONNECTION_UUID": "u-1",
					"CONNECTION_DBUS_PATH":      "/org/freedesktop/NetworkManager/Settings/3",
					"IP4_ADDRESS_0":             "192.168.1.119/24 192.168.1.1",
					"IP4_ADDRESS_1":             "192.168.7.2/32 0.0.0.0",
					"IP4_NUM_ADDRESSES":         "2",
					"IP4_GATEWAY":               "192.168.1.1",
					"IP4_NAMESERVERS":           "192.168.1.1 9.9.9.9",
					"IP4_DOMAINS":               "home.example",
					"IP4_WINS_SERVERS":          "192.168.1.5",
					"IP4_ROUTE_0":               "192.168.1.0/24 0.0.0.0 0",
					"IP4_NUM_ROUTES":            "1",
					"IP6_ADDRESS_0":             "2001:db8::5/128 fe80::ff",
					"IP6_ADDRESS_1":             "fe80::1/64 ::",
					"IP6_NUM_ADDRESSES":         "2",
					"IP6_GATEWAY":               "fe80::ff",
					"IP6_NAMESERVERS":           "2001:db8::53",
					"IP6_DOMAINS":               "v6.example",
					"IP6_ROUTE_0":               "2001:db8::/64 :: 100",
					"IP6_NUM_ROUTES":            "1",
					"DHCP4_DOMAIN_NAME_SERVERS": "192.168.1.1 9.9.9.9",
					"DHCP4_DOMAIN_NAME":         "home.example",
					"DHCP4_IP_ADDRESS":          "192.168.1.119",
					"DHCP4_ROUTERS":             "192.168.1.1",
					"DHCP4_DHCP_LEASE_TIME":     "86400",
					"DHCP4_PRIVATE_245":         "a8:3f:81:10",
					"DHCP4_UNKNOWN_245":         "a8:3f:81:10",
					"DHCP4_REQUESTED_RFC3442":   "1",
					"DHCP6_DHCP6_NAME_SERVERS":  "2001:db8::53",
				},
				DNS:     addrs("192.168.1.1", "9.9.9.9", "2001:db8::53"),
				Domains: []string{"home.example", "v6.example", "corp.example"},
			},
		},
		{
			// NetworkManager before 1.14 has no NameserverData: IPv4
			// servers are uint32 in the host's byte order.
			name: "deprecated IPv4 Nameservers",
			snap: snapshot{
				Device: device(nil),
				IP4: map[string]any{
					"AddressData": []any{map[string]any{"address": "10.79.0.1", "prefix": uint32(24)}},
					"Nameservers": []any{uint32(16797450), uint32(16885952)},
				},
			},
			state: 70,
			want: &event.Manager{
				Backend: "NetworkManager", Index: 2, Name: "eth0",
				States: map[string]string{"DeviceState": "ip-config"},
				Env: map[string]string{
					"DEVICE_IFACE": "eth0", "DEVICE_IP_IFACE": "eth0",
					"DEVICE_STATE_REASON": "0", "DEVICE_STATE_REASON_NAME": "none",
					"IP4_ADDRESS_0": "10.79.0.1/24 0.0.0.0", "IP4_NUM_ADDRESSES": "1", "IP4_GATEWAY": "0.0.0.0",
					"IP4_NAMESERVERS": "10.79.0.1 192.168.1.1", "IP4_NUM_ROUTES": "0",
				},
				DNS: addrs("10.79.0.1", "192.168.1.1"),
			},
		},
		{
			// After carrier loss: no active connection, empty IP configs.
			// Like nm-dispatcher on "down", no IPn_ variables.
			name: "unavailable",
			snap: snapshot{
				Device: map[string]any{"Interface": "veth0", "IpInterface": "", "State": uint32(20)},
				IP4:    map[string]any{"AddressData": []any{}, "Gateway": "", "RouteData": []any{}, "NameserverData": []any{}},
				IP6:    map[string]any{"AddressData": []any{}, "Gateway": "", "RouteData": []any{}, "Nameservers": []any{}},
			},
			state:  20,
			reason: 40,
			want: &event.Manager{
				Backend: "NetworkManager", Index: 2, Name: "veth0",
				States: map[string]string{"DeviceState": "unavailable"},
				Env: map[string]string{
					"DEVICE_IFACE": "veth0", "DEVICE_STATE_REASON": "40", "DEVICE_STATE_REASON_NAME": "carrier",
				},
			},
		},
		{
			name: "external connection",
			snap: snapshot{
				Device: device(nil),
				Active: map[string]any{"Id": "eth0", "Uuid": "u-2", "Connection": "/", "StateFlags": uint32(0x80 | 0x4)},
			},
			state:  100,
			reason: 41,
			want: &event.Manager{
				Backend: "NetworkManager", Index: 2, Name: "eth0",
				States: map[string]string{"DeviceState": "activated"},
				Env: map[string]string{
					"DEVICE_IFACE": "eth0", "DEVICE_IP_IFACE": "eth0",
					"DEVICE_STATE_REASON": "41", "DEVICE_STATE_REASON_NAME": "connection-assumed",
					"CONNECTION_ID": "eth0", "CONNECTION_UUID": "u-2", "CONNECTION_EXTERNAL": "1",
				},
			},
		},
		{
			// A hostile DHCP server or connection name: the values are
			// passed escaped, never dropped and never with a newline.
			name: "control characters",
			snap: snapshot{
				Device: device(nil),
				Active: map[string]any{"Id": "evil\nLINK=x", "Uuid": "u-3"},
				DHCP4:  map[string]any{"Options": map[string]any{"host_name": "a\r\nb\x00c"}},
			},
			state: 100,
			want: &event.Manager{
				Backend: "NetworkManager", Index: 2, Name: "eth0",
				States: map[string]string{"DeviceState": "activated"},
				Env: map[string]string{
					"DEVICE_IFACE": "eth0", "DEVICE_IP_IFACE": "eth0",
					"DEVICE_STATE_REASON": "0", "DEVICE_STATE_REASON_NAME": "none",
					"CONNECTION_ID": `evil\nLINK=x`, "CONNECTION_UUID": "u-3",
					"DHCP4_HOST_NAME": `a\r\nb\0c`,
				},
			},
			wantEscaped: []string{"CONNECTION_ID", "DHCP4_HOST_NAME"},
		},
		{
			name: "values of unexpected types are ignored",
			snap: snapshot{
				Device: map[string]any{"Interface": uint32(3), "IpInterface": []string{"x"}},
				Active: map[string]any{"Id": 5, "StateFlags": "x"},
				IP4:    map[string]any{"AddressData": "x", "NameserverData": []any{"x"}, "Domains": uint32(1)},
				IP6:    map[string]any{"Nameservers": []any{[]byte{1, 2}, "x"}},
				DHCP4:  map[string]any{"Options": []string{"x"}},
			},
			state: 120,
			want: &event.Manager{
				Backend: "NetworkManager", Index: 2,
				States: map[string]string{"DeviceState": "failed"},
				Env:    map[string]string{"DEVICE_STATE_REASON": "0", "DEVICE_STATE_REASON_NAME": "none"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, escaped := tc.snap.report(tc.want.Index, tc.state, tc.reason)
			if diff := cmp.Diff(got, tc.want, addrComparer); diff != "" {
				t.Errorf("report (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(escaped, tc.wantEscaped); diff != "" {
				t.Errorf("escaped variables (-got +want):\n%s", diff)
			}
		})
	}
}
