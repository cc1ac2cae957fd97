package state

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
)

func linkEv(idx int, name string, up, carrier bool) event.Event {
	return event.Event{Kind: event.KindLink, Link: &event.Link{Index: idx, Name: name, AdminUp: up, Carrier: carrier}}
}

func addrEv(kind event.Kind, idx int, p string) event.Event {
	pfx := netip.MustParsePrefix(p)
	var scope uint8
	if pfx.Addr().IsLinkLocalUnicast() {
		scope = event.ScopeLink
	}
	return event.Event{Kind: kind, Addr: &event.Addr{Index: idx, Prefix: pfx, Scope: scope}}
}

func defRoute(kind event.Kind, idx int, gw string) event.Event {
	return event.Event{Kind: kind, Route: &event.Route{
		Family: 2, Table: event.TableMain, Dst: netip.MustParsePrefix("0.0.0.0/0"),
		Gateway: netip.MustParseAddr(gw), OutIndex: idx,
	}}
}

// summary renders a delta as "type:link:old>new" strings for comparison.
func summary(d event.Delta) []string {
	var out []string
	for _, c := range d.Changes {
		s := fmt.Sprintf("%s:%s:%s>%s", c.Type, c.Link.Name, c.OldState, c.Link.State)
		switch {
		case c.Addr != nil:
			s += " " + c.Addr.Prefix.String()
		case c.Route != nil:
			s += " " + c.Route.Dst.String()
		case c.OldName != "":
			s += " from " + c.OldName
		}
		out = append(out, s)
	}
	return out
}

func TestApplySequences(t *testing.T) {
	tests := []struct {
		name  string
		steps []event.Event
		want  [][]string // the summary of each step's delta
	}{
		{
			name: "link comes up and becomes routable",
			steps: []event.Event{
				linkEv(10, "veth0", false, false),
				linkEv(10, "veth0", true, false),
				linkEv(10, "veth0", true, true),
				addrEv(event.KindAddr, 10, "fe80::1/64"),
				addrEv(event.KindAddr, 10, "192.0.2.10/24"),
				defRoute(event.KindRoute, 10, "192.0.2.1"),
				defRoute(event.KindRoute, 10, "192.0.2.1"),
			},
			want: [][]string{
				{"link-added:veth0:>off", "state:veth0:>off"},
				{"state:veth0:off>no-carrier"},
				{"carrier:veth0:no-carrier>carrier", "state:veth0:no-carrier>carrier"},
				{"address-added:veth0:carrier>degraded fe80::1/64", "state:veth0:carrier>degraded"},
				{"address-added:veth0:degraded>degraded 192.0.2.10/24"},
				{"route-added:veth0:degraded>routable 0.0.0.0/0", "state:veth0:degraded>routable"},
				nil, // a repeated message changes nothing
			},
		},
		{
			name: "carrier loss, address removal, link removal",
			steps: []event.Event{
				linkEv(3, "eth0", true, true),
				addrEv(event.KindAddr, 3, "10.0.0.2/24"),
				linkEv(3, "eth0", true, false),
				addrEv(event.KindAddrGone, 3, "10.0.0.2/24"),
				addrEv(event.KindAddrGone, 3, "10.0.0.2/24"),
				{Kind: event.KindLinkGone, Index: 3},
				{Kind: event.KindLinkGone, Index: 3},
			},
			want: [][]string{
				{"link-added:eth0:>carrier", "carrier:eth0:>carrier", "state:eth0:>carrier"},
				{"address-added:eth0:carrier>degraded 10.0.0.2/24", "state:eth0:carrier>degraded"},
				{"no-carrier:eth0:degraded>no-carrier", "state:eth0:degraded>no-carrier"},
				{"address-removed:eth0:no-carrier>no-carrier 10.0.0.2/24"},
				nil,
				{"link-removed:eth0:no-carrier>no-carrier"},
				nil,
			},
		},
		{
			name: "rename keeps the ifindex",
			steps: []event.Event{
				linkEv(7, "old0", false, false),
				linkEv(7, "new0", false, false),
			},
			want: [][]string{
				{"link-added:old0:>off", "state:old0:>off"},
				{"link-renamed:new0:off>off from old0"},
			},
		},
		{
			name: "address of an unknown link is ignored",
			steps: []event.Event{
				addrEv(event.KindAddr, 99, "10.9.9.9/32"),
			},
			want: [][]string{nil},
		},
		{
			name: "rule deletion belongs to no link",
			steps: []event.Event{
				{Kind: event.KindRuleGone, Rule: &event.Rule{Family: 2, Priority: 100, Table: 100}},
			},
			want: [][]string{{"rule-deleted::>"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New("none")
			for i, ev := range tt.steps {
				got := summary(m.Apply(ev))
				if diff := cmp.Diff(tt.want[i], got); diff != "" {
					t.Errorf("step %d (%s): delta mismatch (-want +got):\n%s", i, ev.Kind, diff)
				}
			}
		})
	}
}

func TestApplySync(t *testing.T) {
	m := New("none")
	m.Apply(linkEv(1, "lo", true, true))
	m.Apply(linkEv(5, "gone0", true, true))
	m.Apply(linkEv(10, "veth0", true, true))
	m.Apply(addrEv(event.KindAddr, 10, "192.0.2.10/24"))
	m.Apply(addrEv(event.KindAddr, 10, "192.0.2.11/24"))

	dump := &event.Dump{
		Links: []event.Link{
			{Index: 1, Name: "lo", AdminUp: true, Carrier: true},
			{Index: 10, Name: "veth0", AdminUp: true, Carrier: true},
			{Index: 11, Name: "veth1", AdminUp: true, Carrier: false},
		},
		Addrs: []event.Addr{
			{Index: 10, Prefix: netip.MustParsePrefix("192.0.2.11/24")},
			{Index: 10, Prefix: netip.MustParsePrefix("192.0.2.12/24")},
		},
		Routes: []event.Route{
			*defRoute(event.KindRoute, 10, "192.0.2.1").Route,
			{Family: 2, Table: event.TableMain, Dst: netip.MustParsePrefix("203.0.113.0/24"), Type: 6},
		},
	}
	got := summary(m.Apply(event.Event{Kind: event.KindSync, Dump: dump}))
	want := []string{
		"link-removed:gone0:carrier>carrier",
		"address-removed:veth0:degraded>routable 192.0.2.10/24",
		"address-added:veth0:degraded>routable 192.0.2.12/24",
		"route-added:veth0:degraded>routable 0.0.0.0/0",
		"state:veth0:degraded>routable",
		"link-added:veth1:>no-carrier",
		"state:veth1:>no-carrier",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sync delta mismatch (-want +got):\n%s", diff)
	}
	if got := len(m.HostRoutes()); got != 1 {
		t.Errorf("host routes: got %d, want 1", got)
	}
	// The same dump again is a no-op.
	if d := m.Apply(event.Event{Kind: event.KindSync, Dump: dump}); !d.Empty() {
		t.Errorf("second sync: got %v, want empty", summary(d))
	}
	var names []string
	for _, ls := range m.Snapshot() {
		names = append(names, fmt.Sprintf("%d:%s:%s:%d", ls.Index, ls.Name, ls.State, len(ls.Addrs)))
	}
	if diff := cmp.Diff([]string{"1:lo:carrier:0", "10:veth0:routable:2", "11:veth1:no-carrier:0"}, names); diff != "" {
		t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
	}
}

func TestChangeCarriesContext(t *testing.T) {
	m := New("none")
	ev := linkEv(2, "eth0", true, true)
	ev.Initial = true
	d := m.Apply(ev)
	for _, c := range d.Changes {
		if !c.Initial || c.Backend != "none" || c.Link.Index != 2 {
			t.Errorf("%s: got initial=%v backend=%q index=%d, want true none 2", c.Type, c.Initial, c.Backend, c.Link.Index)
		}
	}
	m.Apply(addrEv(event.KindAddr, 2, "2001:db8::5/64"))
	d = m.Apply(event.Event{Kind: event.KindRoute, Route: &event.Route{
		Family: 10, Table: 200, Dst: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("2001:db8::1"), OutIndex: 2,
	}})
	ls := d.Changes[0].Link
	if got, want := ls.Gateway(6), netip.MustParseAddr("2001:db8::1"); got != want {
		t.Errorf("Gateway(6) = %v, want %v", got, want)
	}
	if got := ls.Gateway(4); got.IsValid() {
		t.Errorf("Gateway(4) = %v, want none", got)
	}
}

// The kernel flushes IPv4 routes silently when their address goes; the
// source re-reads the routes and the model diffs them.
func TestApplyRouteSync(t *testing.T) {
	m := New("none")
	m.Apply(linkEv(10, "veth0", true, true))
	m.Apply(addrEv(event.KindAddr, 10, "192.0.2.10/24"))
	m.Apply(defRoute(event.KindRoute, 10, "192.0.2.1"))
	m.Apply(addrEv(event.KindAddrGone, 10, "192.0.2.10/24"))
	v6 := event.Route{Family: 10, Table: event.TableMain, Dst: netip.MustParsePrefix("2001:db8::/64"), OutIndex: 10}
	got := summary(m.Apply(event.Event{Kind: event.KindRouteSync, Dump: &event.Dump{Routes: []event.Route{v6}}}))
	want := []string{
		"route-removed:veth0:carrier>carrier 0.0.0.0/0",
		"route-added:veth0:carrier>carrier 2001:db8::/64",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("route sync delta (-want +got):\n%s", diff)
	}
	if d := m.Apply(event.Event{Kind: event.KindRouteSync, Dump: &event.Dump{Routes: []event.Route{v6}}}); !d.Empty() {
		t.Errorf("second route sync: got %v, want empty", summary(d))
	}
}

func mgrEv(idx int, states map[string]string, env map[string]string, refresh bool) event.Event {
	return event.Event{Kind: event.KindManager, Manager: &event.Manager{
		Backend: "systemd-networkd", Index: idx, Name: "veth0", States: states, Env: env, Refresh: refresh,
	}}
}

// mgrSummary renders manager changes as "property:old>new@link".
func mgrSummary(d event.Delta) []string {
	var out []string
	for _, c := range d.Changes {
		if c.Type != event.ManagerStateChanged {
			out = append(out, c.Type.String())
			continue
		}
		if c.Manager == nil || c.Link.Manager != c.Manager {
			out = append(out, "manager report missing")
		}
		out = append(out, fmt.Sprintf("%s:%s>%s@%s/%d", c.Property, c.OldValue, c.Value, c.Link.Name, c.Link.Index))
	}
	return out
}

func TestApplyManager(t *testing.T) {
	m := New("systemd-networkd")
	m.Apply(linkEv(10, "veth0", true, true))
	steps := []struct {
		ev   event.Event
		want []string
	}{
		{mgrEv(10, map[string]string{"OperationalState": "carrier", "AdministrativeState": "configuring"}, nil, false),
			[]string{"AdministrativeState:>configuring@veth0/10", "OperationalState:>carrier@veth0/10"}},
		{mgrEv(10, map[string]string{"OperationalState": "routable", "AdministrativeState": "configuring"}, nil, false),
			[]string{"OperationalState:carrier>routable@veth0/10"}},
		// The same states again change nothing, even with new data...
		{mgrEv(10, map[string]string{"OperationalState": "routable", "AdministrativeState": "configuring"}, map[string]string{"JSON": "{}"}, false),
			nil},
		// ... unless the report asks for a refresh.
		{mgrEv(10, map[string]string{"OperationalState": "routable", "AdministrativeState": "configuring"}, map[string]string{"JSON": "{\"a\":1}"}, true),
			[]string{"AdministrativeState:configuring>configuring@veth0/10", "OperationalState:routable>routable@veth0/10"}},
		// A refresh with the same data is nothing.
		{mgrEv(10, map[string]string{"OperationalState": "routable", "AdministrativeState": "configuring"}, map[string]string{"JSON": "{\"a\":1}"}, true),
			nil},
		// The manager itself (manager.d).
		{event.Event{Kind: event.KindManager, Manager: &event.Manager{Index: 0, States: map[string]string{"OperationalState": "routable"}}},
			[]string{"OperationalState:>routable@/0"}},
		// A link the kernel has not announced yet still gets its change.
		{mgrEv(12, map[string]string{"OperationalState": "off"}, nil, false),
			[]string{"OperationalState:>off@veth0/12"}},
		// Kernel changes carry the manager's report.
		{addrEv(event.KindAddr, 10, "192.0.2.10/24"), []string{"address-added", "state"}},
		{event.Event{Kind: event.KindLinkGone, Index: 10}, []string{"link-removed"}},
		// The report went with the link: a new report starts from scratch.
		{mgrEv(10, map[string]string{"OperationalState": "routable"}, nil, false),
			[]string{"OperationalState:>routable@veth0/10"}},
	}
	for i, st := range steps {
		d := m.Apply(st.ev)
		if diff := cmp.Diff(st.want, mgrSummary(d)); diff != "" {
			t.Errorf("step %d: delta mismatch (-want +got):\n%s", i, diff)
		}
		if st.ev.Kind == event.KindAddr && d.Changes[0].Link.Manager == nil {
			t.Errorf("step %d: kernel change without the manager's report", i)
		}
	}
}
