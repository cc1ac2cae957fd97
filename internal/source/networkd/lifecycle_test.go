package networkd

import (
	"fmt"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
	"github.com/netevd/netevd/internal/state"
)

// startRoutable runs a Source on a networkd with lo and veth0 (routable,
// configured) and returns the harness, the model fed with the startup
// events, after checking they end with the initial KindSync.
func startRoutable(t *testing.T, nd *fakeNetworkd, opts Options) (*harness, *state.Model) {
	t.Helper()
	nd.setManager(managerRoutable)
	nd.addLink(1, "lo", loProps, "")
	nd.addLink(10, "veth0", vethRoutable, "")
	h := start(t, nd, opts)
	synctest.Wait()
	evs := h.take()
	if len(evs) == 0 || evs[len(evs)-1].Kind != event.KindSync || !evs[len(evs)-1].Initial {
		t.Fatalf("startup events %v do not end with the initial KindSync", evs)
	}
	m := state.New(Backend)
	transitions(m, evs)
	return h, m
}

func propsChanged(path, iface string, changed map[string]any) sdbus.Signal {
	return sdbus.Signal{Sender: ":1.1", Path: path, Interface: ifaceProps, Member: "PropertiesChanged",
		Body: []any{iface, changed, []string{}}}
}

func TestDescribeOnlyWhenStatesChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		h, m := startRoutable(t, nd, Options{EmitJSON: true})
		before := nd.count(ifaceLink + ".Describe")
		veth := linkPath(10)

		nd.changed(veth, map[string]any{"OnlineState": "partial"})
		synctest.Wait()
		evs := h.take()
		if len(evs) != 1 || evs[0].Manager.Env["OnlineState"] != "partial" {
			t.Errorf("OnlineState change: events %+v, want one report with OnlineState=partial", evs)
		}
		if got := transitions(m, evs); len(got) != 0 {
			t.Errorf("OnlineState change made transitions %q, want none", got)
		}
		nd.changed(veth, map[string]any{"OnlineState": "partial"})
		synctest.Wait()
		if evs := h.take(); len(evs) != 0 {
			t.Errorf("a signal that changes nothing: events %+v, want none", evs)
		}
		if got := nd.count(ifaceLink+".Describe") - before; got != 0 {
			t.Errorf("Describe called %d times for changes outside States, want 0", got)
		}

		nd.changed(veth, map[string]any{"OperationalState": "degraded", "CarrierState": "carrier"})
		synctest.Wait()
		if got := transitions(m, h.take()); !cmp.Equal(got, []string{"10 OperationalState routable→degraded"}) {
			t.Errorf("transitions %q, want routable→degraded", got)
		}
		if got := nd.count(ifaceLink+".Describe") - before; got != 1 {
			t.Errorf("Describe called %d times for one change of States, want 1", got)
		}
		st := h.src.Stats()
		if st.Describes != uint64(nd.count(ifaceLink+".Describe")) || st.DescribeErrors != 0 {
			t.Errorf("Stats: %d describes, %d errors; want %d and 0", st.Describes, st.DescribeErrors, nd.count(ifaceLink+".Describe"))
		}
		h.stop()
	})
}

// TestSequenceOrder delivers signals older than the startup read and out
// of order: no older value overwrites a newer one.
func TestSequenceOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		early := nd.nextSeq() // a signal sent before the startup read
		h, m := startRoutable(t, nd, Options{})
		veth := linkPath(10)

		nd.sendSeq(propsChanged(veth, ifaceLink, map[string]any{"OperationalState": "degraded"}), early)
		synctest.Wait()
		if evs := h.take(); len(evs) != 0 {
			t.Errorf("a signal older than the startup read: events %+v, want none", evs)
		}

		// Two signals handed over in the wrong order.
		older, newer := nd.nextSeq(), nd.nextSeq()
		nd.sendSeq(propsChanged(veth, ifaceLink, map[string]any{"AdministrativeState": "configuring"}), newer)
		nd.sendSeq(propsChanged(veth, ifaceLink, map[string]any{"AdministrativeState": "failed", "CarrierState": "no-carrier"}), older)
		synctest.Wait()
		evs := h.take()
		if got := transitions(m, evs); !cmp.Equal(got, []string{"10 AdministrativeState configured→configuring"}) {
			t.Errorf("transitions %q, want only configured→configuring", got)
		}
		if len(evs) != 2 || evs[1].Manager.Env["CarrierState"] != "no-carrier" || evs[1].Manager.States["AdministrativeState"] != "configuring" {
			t.Errorf("events %+v, want two reports, the second with the older signal's CarrierState and the newer AdministrativeState", evs)
		}
		if st := h.src.Stats(); st.Stale != 2 {
			t.Errorf("Stats.Stale = %d, want 2", st.Stale)
		}
		h.stop()
	})
}

// TestNewLinkAndLinger: a link created after startup is read in full with
// its first signal; when the kernel removes it networkd sets linger, and
// the source reports it gone.
func TestNewLinkAndLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		h, m := startRoutable(t, nd, Options{EmitJSON: true})
		p := nd.addLink(11, "veth1", map[string]any{}, `{"Index":11,"Name":"veth1","MTU":1500}`)
		nd.changed(p, map[string]any{"CarrierState": "off", "OperationalState": "off"})
		nd.changed(p, map[string]any{"AdministrativeState": "initialized"})
		synctest.Wait()
		evs := h.take()
		if len(evs) == 0 || evs[0].Manager.Name != "veth1" || evs[0].Manager.Env["JSON"] != `{"Index":11,"Name":"veth1","MTU":1500}` || evs[0].Initial {
			t.Fatalf("events %+v, want a non-initial report on veth1 with its description", evs)
		}
		// Both signals were sent before the read, which saw them both.
		if got := transitions(m, evs); !cmp.Equal(got, []string{"11 AdministrativeState →initialized", "11 OperationalState →off"}) {
			t.Errorf("transitions %q", got)
		}

		nd.changed(p, map[string]any{"AdministrativeState": "linger"})
		nd.removeLink(11)
		synctest.Wait()
		evs = h.take()
		if got := transitions(m, evs); !cmp.Equal(got, []string{"11 AdministrativeState initialized→linger", "11 gone"}) {
			t.Errorf("transitions %q, want linger then gone", got)
		}
		// A late signal for the removed link is read, found gone, ignored.
		nd.send(propsChanged(p, ifaceLink, map[string]any{"OnlineState": "offline"}))
		synctest.Wait()
		if evs := h.take(); len(evs) != 0 {
			t.Errorf("a signal for a removed link: events %+v, want none", evs)
		}
		if n := h.logs.count("level=WARN"); n != 0 {
			t.Errorf("%d warnings:\n%s", n, h.logs)
		}
		h.stop()
	})
}

// TestNetworkdRestart: networkd leaves the bus and comes back. The outage
// is logged once; on return everything is read again and reported (not
// initial), links gone meanwhile reported gone.
func TestNetworkdRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		nd.addLink(11, "veth1", vethRoutable, "")
		h, m := startRoutable(t, nd, Options{})

		nd.stop()
		synctest.Wait()
		if evs := h.take(); len(evs) != 0 {
			t.Errorf("networkd left: events %+v, want none", evs)
		}
		nd.removeLink(11)
		nd.setProps(linkPath(10), map[string]any{"AdministrativeState": "configuring"})
		nd.start()
		synctest.Wait()
		evs := h.take()
		for _, ev := range evs {
			if ev.Initial || ev.Kind != event.KindManager {
				t.Errorf("after the restart: event %+v, want only non-initial reports", ev)
			}
		}
		if got := transitions(m, evs); !cmp.Equal(got, []string{"10 AdministrativeState configured→configuring", "11 gone"}) {
			t.Errorf("transitions %q", got)
		}
		// Changes after the restart flow again.
		nd.changed(linkPath(10), map[string]any{"AdministrativeState": "configured"})
		synctest.Wait()
		if got := transitions(m, h.take()); !cmp.Equal(got, []string{"10 AdministrativeState configuring→configured"}) {
			t.Errorf("transitions %q", got)
		}
		if n := h.logs.count("systemd-networkd unavailable"); n != 1 {
			t.Errorf("%d \"unavailable\" log lines, want 1:\n%s", n, h.logs)
		}
		if n := h.logs.count("systemd-networkd available again"); n != 1 {
			t.Errorf("%d \"available again\" log lines, want 1:\n%s", n, h.logs)
		}
		if st := h.src.Stats(); st.Outages != 1 || st.Snapshots != 2 {
			t.Errorf("Stats: %d outages, %d snapshots; want 1 and 2", st.Outages, st.Snapshots)
		}
		if len(nd.dialTimes()) != 1 {
			t.Errorf("%d dials, want 1: networkd's restart needs no new connection", len(nd.dialTimes()))
		}
		h.stop()
	})
}

// TestBusLost: the bus goes away (dbus-daemon restarted). The source logs
// once, redials with backoff doubling from 100 ms to at most 5 s, and when
// the bus is back reads everything again; unchanged links change nothing.
func TestBusLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		h, m := startRoutable(t, nd, Options{})
		nd.loseBus()
		lost := time.Now()
		time.Sleep(20 * time.Second)
		synctest.Wait()
		dials := nd.dialTimes()[1:]
		var gaps []time.Duration
		prev := lost
		for _, d := range dials {
			gaps = append(gaps, d.Sub(prev))
			prev = d
		}
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
			1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}
		if !cmp.Equal(gaps, want) {
			t.Errorf("redial gaps %v, want %v", gaps, want)
		}
		nd.restoreBus()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		evs := h.take()
		if len(evs) != 3 { // the manager, lo, veth0
			t.Errorf("after reconnecting: %d events, want 3 reports", len(evs))
		}
		if got := transitions(m, evs); len(got) != 0 {
			t.Errorf("after reconnecting: transitions %q, want none (nothing changed)", got)
		}
		nd.changed(linkPath(10), map[string]any{"OperationalState": "no-carrier"})
		synctest.Wait()
		if got := transitions(m, h.take()); !cmp.Equal(got, []string{"10 OperationalState routable→no-carrier"}) {
			t.Errorf("transitions %q", got)
		}
		if n := h.logs.count("level=WARN"); n != 1 {
			t.Errorf("%d warnings, want 1 for the outage:\n%s", n, h.logs)
		}
		if n := h.logs.count("systemd-networkd available again"); n != 1 {
			t.Errorf("%d \"available again\" log lines, want 1:\n%s", n, h.logs)
		}
		h.stop()
	})
}

// TestAbsentAtStartup: without networkd the source is ready at once (an
// empty KindSync) and reports networkd's links when it starts.
func TestAbsentAtStartup(t *testing.T) {
	for _, busDown := range []bool{false, true} {
		t.Run(fmt.Sprintf("bus_down=%v", busDown), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nd := newFakeNetworkd()
				nd.setManager(managerRoutable)
				nd.addLink(10, "veth0", vethRoutable, "")
				nd.owned = false
				nd.busDown = busDown
				h := start(t, nd, Options{})
				synctest.Wait()
				if diff := cmp.Diff(h.take(), []event.Event{{Source: "networkd", Kind: event.KindSync, Initial: true}}, cmpEvents...); diff != "" {
					t.Errorf("events without networkd (-got +want):\n%s", diff)
				}
				if busDown {
					nd.restoreBus()
					time.Sleep(time.Second)
				} else {
					nd.start()
				}
				synctest.Wait()
				evs := h.take()
				if got := transitions(state.New(Backend), evs); !cmp.Equal(got, []string{"0 OperationalState →routable",
					"10 AdministrativeState →configured", "10 OperationalState →routable"}) {
					t.Errorf("transitions %q", got)
				}
				for _, ev := range evs {
					if ev.Initial {
						t.Errorf("event %+v is initial, want not: the source was ready before", ev)
					}
				}
				if n := h.logs.count("level=WARN"); n != 1 {
					t.Errorf("%d warnings, want 1:\n%s", n, h.logs)
				}
				h.stop()
			})
		})
	}
}

// TestDescribeFallback: without Link.Describe (networkd before 248) DNS
// and domains come from the state file and Describe is not tried again; a
// failing Describe leaves JSON out and logs.
func TestDescribeFallback(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantCalls int
		wantLog   string
	}{
		{"unknown method", &sdbus.ErrorReply{Name: errUnknownMeth, Msg: "Unknown method Describe"}, 1, "cannot describe links"},
		{"failure", &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.NoReply"}, 2, "level=WARN msg=\"describe link\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nd := newFakeNetworkd()
				nd.descErr = tt.err
				nd.setManager(managerRoutable)
				nd.addLink(10, "veth0", vethRoutable, "")
				h := start(t, nd, Options{EmitJSON: true}, func(s *Source) { s.netifDir = "testdata/netif" })
				synctest.Wait()
				evs := h.take()
				if len(evs) != 3 {
					t.Fatalf("startup events %+v, want the manager, veth0 and the KindSync", evs)
				}
				want := &event.Manager{
					Backend: Backend, Index: 10, Name: "veth0",
					States: map[string]string{"OperationalState": "routable", "AdministrativeState": "configured"},
					Env: map[string]string{"CarrierState": "carrier", "AddressState": "routable", "IPv4AddressState": "routable",
						"IPv6AddressState": "degraded", "OnlineState": "online"},
					DNS:     []netip.Addr{netip.MustParseAddr("10.77.0.53"), netip.MustParseAddr("fd00::53")},
					Domains: []string{"example.test"},
				}
				if diff := cmp.Diff(evs[1].Manager, want, cmpEvents...); diff != "" {
					t.Errorf("report on veth0 (-got +want):\n%s", diff)
				}
				nd.changed(linkPath(10), map[string]any{"OperationalState": "degraded"})
				synctest.Wait()
				if evs := h.take(); len(evs) != 1 || evs[0].Manager.Env["JSON"] != "" || len(evs[0].Manager.DNS) != 2 {
					t.Errorf("after a change: events %+v, want one report without JSON, with DNS", evs)
				}
				if got := nd.count(ifaceLink + ".Describe"); got != tt.wantCalls {
					t.Errorf("Describe called %d times, want %d", got, tt.wantCalls)
				}
				if n := h.logs.count(tt.wantLog); n != 1 && n != tt.wantCalls {
					t.Errorf("log lines with %q: %d\n%s", tt.wantLog, n, h.logs)
				}
				h.stop()
			})
		})
	}
}

// TestMalformedSignals: signals without the expected shape, on unknown
// objects or other interfaces are counted and ignored.
func TestMalformedSignals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		h, _ := startRoutable(t, nd, Options{})
		veth := linkPath(10)
		for _, s := range []sdbus.Signal{
			{Path: veth, Interface: ifaceProps, Member: "PropertiesChanged", Body: []any{ifaceLink}},
			{Path: veth, Interface: ifaceProps, Member: "PropertiesChanged", Body: []any{int32(1), map[string]any{}, []string{}}},
			{Path: veth, Interface: ifaceProps, Member: "PropertiesChanged", Body: []any{ifaceLink, "routable", []string{}}},
			{Path: veth, Interface: ifaceProps, Member: "PropertiesChanged", Body: []any{ifaceLink, map[string]any{}, "x"}},
			propsChanged(linkPrefix+"_3g", ifaceLink, map[string]any{"OperationalState": "off"}),
			propsChanged(linkPrefix+"_30", ifaceLink, map[string]any{"OperationalState": "off"}),
			{Path: busDaemonPath, Interface: busDaemon, Member: "NameOwnerChanged", Body: []any{busName}},
		} {
			nd.send(s)
		}
		// Ignored without counting: other interfaces and objects, other names.
		nd.send(propsChanged(managerPath+"/network/_3110_2dveth0", "org.freedesktop.network1.Network", map[string]any{"X": "y"}))
		nd.send(propsChanged(veth, "org.freedesktop.DBus.Peer", map[string]any{"OperationalState": "off"}))
		nd.send(sdbus.Signal{Path: busDaemonPath, Interface: busDaemon, Member: "NameOwnerChanged", Body: []any{"org.example.Other", "", ":1.9"}})
		// A property of another type is ignored, the string beside it used.
		nd.send(propsChanged(veth, ifaceLink, map[string]any{"BitRates": []any{uint64(1), uint64(2)}, "OnlineState": "partial"}))
		synctest.Wait()
		evs := h.take()
		if len(evs) != 1 || evs[0].Manager.Env["OnlineState"] != "partial" {
			t.Errorf("events %+v, want one report with OnlineState=partial", evs)
		}
		if st := h.src.Stats(); st.Malformed != 7 {
			t.Errorf("Stats.Malformed = %d, want 7", st.Malformed)
		}
		h.stop()
	})
}
