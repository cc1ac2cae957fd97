package networkd

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
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

// TestSignalsNeverWait: while networkd answers no method call (it is busy
// configuring a link), changes of known links are still reported at once,
// with DNS servers and domains from the state file; a new link is
// reported when its background read returns; no signal makes the source
// call Link.Describe, only a report's Describe function does.
func TestSignalsNeverWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		h, m := startRoutable(t, nd, Options{EmitJSON: true})
		veth := linkPath(10)
		nd.hang()

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

		// A new link while networkd is busy: read in the background.
		veth1 := nd.addLink(11, "veth1", map[string]any{}, `{"Index":11,"Name":"veth1"}`)
		nd.changed(veth1, map[string]any{"OperationalState": "off", "CarrierState": "off"})
		nd.changed(veth, map[string]any{"OperationalState": "degraded", "CarrierState": "carrier"})
		synctest.Wait()
		evs = h.take()
		if got := transitions(m, evs); !cmp.Equal(got, []string{"10 OperationalState routable→degraded"}) {
			t.Errorf("transitions %q, want routable→degraded on veth0 and nothing yet on veth1", got)
		}
		want := &event.Manager{
			Backend: Backend, Index: 10, Name: "veth0",
			States: map[string]string{"OperationalState": "degraded", "AdministrativeState": "configured"},
			Env: map[string]string{"CarrierState": "carrier", "AddressState": "routable", "IPv4AddressState": "routable",
				"IPv6AddressState": "degraded", "OnlineState": "partial"},
			DNS:     []netip.Addr{netip.MustParseAddr("10.77.0.53"), netip.MustParseAddr("fd00::53")},
			Domains: []string{"example.test"},
		}
		if len(evs) != 1 {
			t.Fatalf("events %+v, want one report on veth0", evs)
		}
		if diff := cmp.Diff(evs[0].Manager, want, cmpEvents...); diff != "" {
			t.Errorf("report on veth0 (-got +want):\n%s", diff)
		}

		// Its Describe function waits for networkd; the source does not.
		type result struct {
			js  string
			err error
		}
		described := make(chan result, 1)
		go func() {
			js, err := evs[0].Manager.Describe(t.Context())
			described <- result{js, err}
		}()
		nd.changed(veth, map[string]any{"AdministrativeState": "configuring"})
		synctest.Wait()
		if got := transitions(m, h.take()); !cmp.Equal(got, []string{"10 AdministrativeState configured→configuring"}) {
			t.Errorf("while a Describe waits: transitions %q, want configured→configuring", got)
		}
		select {
		case r := <-described:
			t.Fatalf("Describe returned %v while networkd does not answer", r)
		default:
		}
		if n := nd.count(ifaceLink + ".Describe"); n != 0 {
			t.Errorf("networkd answered %d Describes while busy", n)
		}

		nd.answer()
		synctest.Wait()
		if r := <-described; r.err != nil || r.js != `{"Index":10,"Name":"veth0"}` {
			t.Errorf("Describe = %q, %v; want veth0's description", r.js, r.err)
		}
		evs = h.take()
		if got := transitions(m, evs); !cmp.Equal(got, []string{"11 OperationalState →off"}) {
			t.Errorf("after networkd answered: transitions %q, want veth1's", got)
		}
		if len(evs) != 1 || evs[0].Manager.Name != "veth1" || evs[0].Manager.Describe == nil {
			t.Errorf("events %+v, want one report on veth1, by name, with a Describe function", evs)
		}
		if n := nd.count(ifaceLink + ".Describe"); n != 1 {
			t.Errorf("Describe called %d times, want 1 (the one call of a report's function)", n)
		}
		st := h.src.Stats()
		if st.Describes != 1 || st.DescribeErrors != 0 || st.Reads != 1 {
			t.Errorf("Stats: %d describes, %d errors, %d reads; want 1, 0, 1", st.Describes, st.DescribeErrors, st.Reads)
		}
		h.stop()
	})
}

// TestDescribeFunction: a report's Describe function is safe for
// concurrent use, uses the source's current connection (an error while
// there is none), compacts the description and refuses one too long for
// $JSON or not JSON.
func TestDescribeFunction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := newFakeNetworkd()
		h, _ := startRoutable(t, nd, Options{EmitJSON: true})
		veth := linkPath(10)
		nd.changed(veth, map[string]any{"OperationalState": "degraded"})
		synctest.Wait()
		evs := h.take()
		if len(evs) != 1 {
			t.Fatalf("events %+v, want one report", evs)
		}
		describe := evs[0].Manager.Describe

		pretty := readTestdata(t, "link-Describe.json")
		nd.mu.Lock()
		nd.desc[veth] = pretty
		nd.mu.Unlock()
		var wg sync.WaitGroup
		got := make([]string, 8)
		for i := range got {
			wg.Go(func() {
				js, err := describe(t.Context())
				if err != nil {
					t.Errorf("Describe: %v", err)
				}
				got[i] = js
			})
		}
		wg.Wait()
		for _, js := range got {
			if js != compactJSON(t, pretty) {
				t.Errorf("Describe = %.80s..., want the captured description, compacted", js)
			}
		}

		for _, tt := range []struct{ name, desc string }{
			{"too long for $JSON", `{"Name":"` + strings.Repeat("x", maxJSON) + `"}`},
			{"not JSON", `Index=10`},
			{"not an object", `[1,2]`},
		} {
			nd.mu.Lock()
			nd.desc[veth] = tt.desc
			nd.mu.Unlock()
			if js, err := describe(t.Context()); err == nil {
				t.Errorf("%s: Describe = %.40q, nil; want an error", tt.name, js)
			}
		}

		nd.loseBus()
		synctest.Wait()
		if _, err := describe(t.Context()); !errors.Is(err, errNoConn) {
			t.Errorf("without a connection: Describe error %v, want %v", err, errNoConn)
		}
		nd.mu.Lock()
		nd.desc[veth] = `{"Index":10}`
		nd.mu.Unlock()
		nd.restoreBus()
		time.Sleep(time.Second)
		synctest.Wait()
		if js, err := describe(t.Context()); err != nil || js != `{"Index":10}` {
			t.Errorf("on the new connection: Describe = %q, %v; want {\"Index\":10}", js, err)
		}
		if st := h.src.Stats(); st.Describes != 8+3+1 || st.DescribeErrors != 4 {
			t.Errorf("Stats: %d describes, %d errors; want 12 and 4", st.Describes, st.DescribeErrors)
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
		if len(evs) == 0 || evs[0].Manager.Name != "veth1" || evs[0].Initial {
			t.Fatalf("events %+v, want a non-initial report on veth1", evs)
		}
		if js := describeOf(t, evs[0].Manager); js != `{"Index":11,"Name":"veth1","MTU":1500}` {
			t.Errorf("Describe of veth1 = %s", js)
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

// TestDescribeFallback: when networkd has no Link.Describe (before 248)
// the first call says so once in the log and later reports carry no
// Describe function; when Describe fails, every call returns the error
// (the script runner logs it). DNS and domains come from the state file
// either way.
func TestDescribeFallback(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		wantDescribe bool // later reports carry a Describe function
		wantLog      int  // "cannot describe links" lines
	}{
		{"unknown method", &sdbus.ErrorReply{Name: errUnknownMeth, Msg: "Unknown method Describe"}, false, 1},
		{"failure", &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.NoReply"}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nd := newFakeNetworkd()
				nd.descErr = tt.err
				nd.setManager(managerRoutable)
				nd.addLink(10, "veth0", vethRoutable, "")
				h := start(t, nd, Options{EmitJSON: true})
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
				first := evs[1].Manager.Describe
				for range 2 {
					if js, err := first(t.Context()); err == nil {
						t.Errorf("Describe = %q, nil; want an error", js)
					}
				}
				nd.changed(linkPath(10), map[string]any{"OperationalState": "degraded"})
				synctest.Wait()
				evs = h.take()
				if len(evs) != 1 || (evs[0].Manager.Describe != nil) != tt.wantDescribe || len(evs[0].Manager.DNS) != 2 {
					t.Fatalf("after a change: events %+v, want one report with DNS and a Describe function: %v", evs, tt.wantDescribe)
				}
				wantCalls := 2
				if !tt.wantDescribe {
					wantCalls = 1 // not tried again
				}
				if got := nd.count(ifaceLink + ".Describe"); got != wantCalls {
					t.Errorf("Describe called %d times, want %d", got, wantCalls)
				}
				if n := h.logs.count("cannot describe links"); n != tt.wantLog {
					t.Errorf("%d log lines \"cannot describe links\", want %d\n%s", n, tt.wantLog, h.logs)
				}
				if st := h.src.Stats(); st.DescribeErrors != 2 {
					t.Errorf("Stats.DescribeErrors = %d, want 2", st.DescribeErrors)
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
