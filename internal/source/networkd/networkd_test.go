package networkd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
	"github.com/netevd/netevd/internal/state"
)

// cmpEvents compares events; functions (Manager.Describe) are checked
// separately, by calling them.
var cmpEvents = []cmp.Option{
	cmpopts.IgnoreFields(event.Event{}, "Time"),
	cmpopts.IgnoreFields(event.Manager{}, "Describe"),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func compactJSON(t *testing.T, text string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(text)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// capturedSignals returns the PropertiesChanged signals of a
// `busctl --json=short monitor` capture, as sdbus delivers them.
func capturedSignals(t *testing.T, name string) []sdbus.Signal {
	t.Helper()
	var out []sdbus.Signal
	s := bufio.NewScanner(strings.NewReader(readTestdata(t, name)))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		var m struct {
			Type      string `json:"type"`
			Sender    string `json:"sender"`
			Path      string `json:"path"`
			Interface string `json:"interface"`
			Member    string `json:"member"`
			Payload   struct {
				Data []json.RawMessage `json:"data"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(s.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Type != "signal" || m.Member != "PropertiesChanged" {
			continue
		}
		var iface string
		var changed map[string]struct {
			Type string `json:"type"`
			Data any    `json:"data"`
		}
		var invalidated []string
		if len(m.Payload.Data) != 3 || json.Unmarshal(m.Payload.Data[0], &iface) != nil ||
			json.Unmarshal(m.Payload.Data[1], &changed) != nil || json.Unmarshal(m.Payload.Data[2], &invalidated) != nil {
			t.Fatalf("%s: unexpected payload %s", name, s.Bytes())
		}
		props := map[string]any{}
		for k, v := range changed {
			if v.Type != "s" {
				t.Fatalf("%s: property %s has type %s", name, k, v.Type)
			}
			props[k] = v.Data
		}
		if invalidated == nil {
			invalidated = []string{}
		}
		out = append(out, sdbus.Signal{Sender: m.Sender, Path: m.Path, Interface: m.Interface, Member: m.Member,
			Body: []any{iface, props, invalidated}})
	}
	if len(out) == 0 {
		t.Fatalf("%s: no PropertiesChanged signals", name)
	}
	return out
}

// describeOf calls m's Describe function and returns the JSON, failing
// the test if m has none or it fails.
func describeOf(t *testing.T, m *event.Manager) string {
	t.Helper()
	if m.Describe == nil {
		t.Fatalf("report on link %d has no Describe function", m.Index)
	}
	js, err := m.Describe(t.Context())
	if err != nil {
		t.Fatalf("Describe of link %d: %v", m.Index, err)
	}
	return js
}

// transitions applies evs to the state model and lists the state changes it
// computes, as "<ifindex> <property> <old>→<new>", plus "<ifindex> gone"
// for Gone reports.
func transitions(m *state.Model, evs []event.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind == event.KindManager && ev.Manager.Gone {
			out = append(out, fmt.Sprintf("%d gone", ev.Manager.Index))
		}
		for _, c := range m.Apply(ev).Changes {
			if c.Type == event.ManagerStateChanged {
				out = append(out, fmt.Sprintf("%d %s %s→%s", c.Link.Index, c.Property, c.OldValue, c.Value))
			}
		}
	}
	return out
}

var (
	managerRoutable = map[string]any{
		"OperationalState": "routable", "CarrierState": "carrier", "AddressState": "routable",
		"IPv4AddressState": "routable", "IPv6AddressState": "degraded", "OnlineState": "online",
		"NamespaceId": uint64(4026532177),
	}
	loProps = map[string]any{
		"OperationalState": "carrier", "CarrierState": "carrier", "AddressState": "off", "IPv4AddressState": "off",
		"IPv6AddressState": "off", "OnlineState": "", "AdministrativeState": "unmanaged",
		"BitRates": []any{uint64(1<<64 - 1), uint64(1<<64 - 1)},
	}
	vethRoutable = map[string]any{
		"OperationalState": "routable", "CarrierState": "carrier", "AddressState": "routable",
		"IPv4AddressState": "routable", "IPv6AddressState": "degraded", "OnlineState": "online",
		"AdministrativeState": "configured",
	}
)

func TestStartupReplay(t *testing.T) {
	for _, emit := range []bool{true, false} {
		t.Run(fmt.Sprintf("emit_json=%v", emit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nd := newFakeNetworkd()
				nd.setManager(managerRoutable)
				nd.addLink(1, "lo", loProps, "")
				describe := readTestdata(t, "link-Describe-dns.json")
				nd.addLink(10, "veth0", vethRoutable, describe)
				h := start(t, nd, Options{EmitJSON: emit})
				synctest.Wait()

				vethEnv := map[string]string{
					"CarrierState": "carrier", "AddressState": "routable", "IPv4AddressState": "routable",
					"IPv6AddressState": "degraded", "OnlineState": "online",
				}
				loEnv := map[string]string{"CarrierState": "carrier", "AddressState": "off", "IPv4AddressState": "off", "IPv6AddressState": "off"}
				want := []event.Event{
					{Source: "networkd", Kind: event.KindManager, Initial: true, Manager: &event.Manager{
						Backend: "systemd-networkd", Index: 0,
						States: map[string]string{"OperationalState": "routable"},
						Env: map[string]string{"CarrierState": "carrier", "AddressState": "routable", "IPv4AddressState": "routable",
							"IPv6AddressState": "degraded", "OnlineState": "online"},
					}},
					{Source: "networkd", Kind: event.KindManager, Initial: true, Manager: &event.Manager{
						Backend: "systemd-networkd", Index: 1, Name: "lo",
						States: map[string]string{"OperationalState": "carrier", "AdministrativeState": "unmanaged"},
						Env:    loEnv,
					}},
					{Source: "networkd", Kind: event.KindManager, Initial: true, Manager: &event.Manager{
						Backend: "systemd-networkd", Index: 10, Name: "veth0",
						States:  map[string]string{"OperationalState": "routable", "AdministrativeState": "configured"},
						Env:     vethEnv,
						DNS:     []netip.Addr{netip.MustParseAddr("10.77.0.53"), netip.MustParseAddr("fd00::53")},
						Domains: []string{"example.test"},
					}},
					{Source: "networkd", Kind: event.KindSync, Initial: true},
				}
				got := h.take()
				if diff := cmp.Diff(got, want, cmpEvents...); diff != "" {
					t.Fatalf("startup events (-got +want):\n%s", diff)
				}
				if n := nd.count(ifaceLink + ".Describe"); n != 0 {
					t.Errorf("Describe called %d times while reading, want 0: the reports' functions call it", n)
				}
				// The description comes from the reports' Describe
				// functions, on links only, with emit_json only.
				wantJSON := map[int]string{1: `{"Index":1,"Name":"lo"}`, 10: compactJSON(t, describe)}
				for _, ev := range got[:3] {
					m := ev.Manager
					if !emit || m.Index == 0 {
						if m.Describe != nil {
							t.Errorf("report on %d has a Describe function (emit_json %v)", m.Index, emit)
						}
						continue
					}
					if js := describeOf(t, m); js != wantJSON[m.Index] {
						t.Errorf("Describe of %d = %s, want %s", m.Index, js, wantJSON[m.Index])
					}
				}
				if n, want := nd.count(ifaceLink+".Describe"), map[bool]int{true: 2}[emit]; n != want {
					t.Errorf("Describe called %d times, want %d (once per call of a report's function)", n, want)
				}
				if got := h.logs.count("watching systemd-networkd"); got != 1 {
					t.Errorf("%d \"watching\" log lines, want 1:\n%s", got, h.logs)
				}
				h.stop()
			})
		})
	}
}

// TestCapturedSignals replays the signals networkd sent in the testbed
// (veth0 from carrier to routable and configured, a flap, then veth1 via
// DHCP) one by one and checks the state transitions they make the state
// model compute, that handling them calls no networkd method (the
// Describe functions do, when called), and that they carry DNS servers and
// domains from the state file.
func TestCapturedSignals(t *testing.T) {
	sigs := capturedSignals(t, "busctl-monitor.json")
	describe := readTestdata(t, "link-Describe.json")
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		nd.setManager(map[string]any{"OperationalState": "carrier", "CarrierState": "carrier", "AddressState": "off",
			"IPv4AddressState": "off", "IPv6AddressState": "off", "OnlineState": ""})
		nd.addLink(1, "lo", loProps, "")
		h := start(t, nd, Options{EmitJSON: true})
		synctest.Wait()
		model := state.New(Backend)
		startup := transitions(model, h.take())
		wantStartup := []string{"0 OperationalState →carrier", "1 AdministrativeState →unmanaged", "1 OperationalState →carrier"}
		if diff := cmp.Diff(startup, wantStartup); diff != "" {
			t.Errorf("startup transitions (-got +want):\n%s", diff)
		}
		describes := nd.count(ifaceLink + ".Describe")

		known := map[string]bool{managerPath: true, linkPath(1): true}
		var got []string
		linkChanges := 0
		last := map[int]*event.Manager{}
		for _, s := range sigs {
			if !known[s.Path] {
				// The link appears in networkd with its first signal.
				idx, err := linkIndex(s.Path)
				if err != nil {
					t.Fatal(err)
				}
				d := ""
				if idx == 10 {
					d = describe
				}
				nd.addLink(idx, fmt.Sprintf("veth%d", idx-10), map[string]any{}, d)
				known[s.Path] = true
			}
			nd.changed(s.Path, s.Body[1].(map[string]any))
			synctest.Wait()
			for _, ev := range h.take() {
				tr := transitions(model, []event.Event{ev})
				if ev.Manager.Index != 0 && len(tr) > 0 {
					linkChanges++
				}
				got = append(got, tr...)
				last[ev.Manager.Index] = ev.Manager
			}
		}
		want := []string{
			"10 OperationalState →off",
			"10 AdministrativeState →initialized",
			"10 AdministrativeState initialized→configuring",
			"10 OperationalState off→no-carrier",
			"0 OperationalState carrier→no-carrier",
			"10 OperationalState no-carrier→carrier",
			"0 OperationalState no-carrier→carrier",
			"10 OperationalState carrier→routable",
			"0 OperationalState carrier→routable",
			"10 AdministrativeState configuring→configured",
			// peer down, then up again
			"10 OperationalState routable→no-carrier",
			"0 OperationalState routable→no-carrier",
			"10 OperationalState no-carrier→degraded",
			"10 AdministrativeState configured→configuring",
			"0 OperationalState no-carrier→degraded",
			"10 OperationalState degraded→routable",
			"0 OperationalState degraded→routable",
			"10 AdministrativeState configuring→configured",
			// veth1 via DHCP
			"11 OperationalState →off",
			"11 AdministrativeState →initialized",
			"11 AdministrativeState initialized→configuring",
			"11 OperationalState off→no-carrier",
			"11 OperationalState no-carrier→carrier",
			"11 OperationalState carrier→routable",
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("transitions (-got +want):\n%s", diff)
		}
		if linkChanges == 0 {
			t.Errorf("no link report changed States")
		}
		if got := nd.count(ifaceLink+".Describe") - describes; got != 0 {
			t.Errorf("Link.Describe called %d times while handling signals, want 0", got)
		}
		wantLast := &event.Manager{
			Backend: Backend, Index: 10, Name: "veth0",
			States: map[string]string{"OperationalState": "routable", "AdministrativeState": "configured"},
			Env: map[string]string{"CarrierState": "carrier", "AddressState": "routable", "IPv4AddressState": "routable",
				"IPv6AddressState": "degraded", "OnlineState": "online"},
			// from testdata/netif/links/10
			DNS:     []netip.Addr{netip.MustParseAddr("10.77.0.53"), netip.MustParseAddr("fd00::53")},
			Domains: []string{"example.test"},
		}
		if diff := cmp.Diff(last[10], wantLast, cmpEvents...); diff != "" {
			t.Errorf("last report on veth0 (-got +want):\n%s", diff)
		}
		if js := describeOf(t, last[10]); js != compactJSON(t, describe) {
			t.Errorf("Describe of veth0 = %s, want the captured description, compacted", js)
		}
		if got := nd.count(ifaceLink+".Describe") - describes; got != 1 {
			t.Errorf("Link.Describe called %d times for one call of a report's function, want 1", got)
		}
		if st := h.src.Stats(); st.Signals != uint64(len(sigs)) || st.Malformed != 0 {
			t.Errorf("Stats: %d signals, %d malformed; want %d and 0", st.Signals, st.Malformed, len(sigs))
		}
		h.stop()
	})
}
