package netlink

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/rtnl"
)

// waitLimit bounds how long a test waits for an expected event; it guards
// against hanging and is not a performance assertion.
const waitLimit = 10 * time.Second

// watcher reads a running Source's output in a test.
type watcher struct {
	t    *testing.T
	out  chan event.Event
	errc <-chan error
	all  []event.Event // every event read so far
}

// start runs a Source on ns in the background; t.Cleanup stops it and
// checks that Run returned nil.
func start(t *testing.T, opts Options, buffer int) *watcher {
	t.Helper()
	s, err := New(opts, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, out: make(chan event.Event, buffer)}
	w.errc = run(ctx, s, w.out)
	t.Cleanup(func() {
		cancel()
		if err := <-w.errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

// next returns the next event, failing the test after waitLimit.
func (w *watcher) next(what string) event.Event {
	w.t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	select {
	case ev := <-w.out:
		w.all = append(w.all, ev)
		return ev
	case err := <-w.errc:
		w.t.Fatalf("waiting for %s: Run ended: %v", what, err)
	case <-timer.C:
		w.t.Fatalf("no %s within %v", what, waitLimit)
	}
	panic("unreachable")
}

// expect reads events until one satisfies match, failing the test after
// waitLimit with the events it skipped.
func (w *watcher) expect(what string, match func(event.Event) bool) event.Event {
	w.t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	var skipped []string
	for {
		select {
		case ev := <-w.out:
			w.all = append(w.all, ev)
			if match(ev) {
				return ev
			}
			skipped = append(skipped, describe(ev))
		case err := <-w.errc:
			w.t.Fatalf("waiting for %s: Run ended: %v", what, err)
		case <-timer.C:
			w.t.Fatalf("no %s within %v; skipped:\n%s", what, waitLimit, strings.Join(skipped, "\n"))
		}
	}
}

func describe(ev event.Event) string {
	switch {
	case ev.Link != nil:
		return fmt.Sprintf("%v %+v", ev.Kind, *ev.Link)
	case ev.Addr != nil:
		return fmt.Sprintf("%v %+v", ev.Kind, *ev.Addr)
	case ev.Route != nil:
		return fmt.Sprintf("%v %+v", ev.Kind, *ev.Route)
	case ev.Rule != nil:
		return fmt.Sprintf("%v %+v", ev.Kind, *ev.Rule)
	case ev.Dump != nil:
		return fmt.Sprintf("%v initial=%v links=%d addrs=%d routes=%d", ev.Kind, ev.Initial,
			len(ev.Dump.Links), len(ev.Dump.Addrs), len(ev.Dump.Routes))
	}
	return fmt.Sprintf("%v index=%d", ev.Kind, ev.Index)
}

func isLink(index int, f func(l *event.Link) bool) func(event.Event) bool {
	return func(ev event.Event) bool { return ev.Kind == event.KindLink && ev.Link.Index == index && f(ev.Link) }
}

func isAddr(kind event.Kind, index int, p string) func(event.Event) bool {
	want := netip.MustParsePrefix(p)
	return func(ev event.Event) bool { return ev.Kind == kind && ev.Addr.Index == index && ev.Addr.Prefix == want }
}

func isRoute(kind event.Kind, dst, gw string, multipath bool) func(event.Event) bool {
	wantDst := netip.MustParsePrefix(dst)
	var wantGW netip.Addr
	if gw != "" {
		wantGW = netip.MustParseAddr(gw)
	}
	return func(ev event.Event) bool {
		return ev.Kind == kind && ev.Route.Dst == wantDst && ev.Route.Gateway == wantGW &&
			ev.Route.Multipath == multipath && ev.Route.Table == event.TableMain && ev.Route.OutIndex == 10
	}
}

func findLink(d *event.Dump, index int) (event.Link, bool) {
	for _, l := range d.Links {
		if l.Index == index {
			return l, true
		}
	}
	return event.Link{}, false
}

func TestSourceKernel(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)
	w := start(t, Options{NetNS: ns.Path}, 1024)

	first := w.next("the initial sync")
	if first.Kind != event.KindSync || !first.Initial || first.Source != "netlink" || first.Dump == nil {
		t.Fatalf("first event: got %s, want the initial netlink sync", describe(first))
	}
	if l, ok := findLink(first.Dump, 1); !ok || l.Name != "lo" {
		t.Errorf("initial dump: lo missing from %+v", first.Dump.Links)
	}
	if l, ok := findLink(first.Dump, 10); !ok || l.Name != "veth0" || l.Kind != "veth" {
		t.Errorf("initial dump: veth0 missing from %+v", first.Dump.Links)
	}

	nettest.VethPair(t, ns, peer, "veth1", 11, "vp1", 21)
	w.expect("new veth1", isLink(11, func(l *event.Link) bool { return l.Name == "veth1" && l.Kind == "veth" }))

	ns.Run("link", "set", "veth0", "up")
	w.expect("veth0 up without carrier", isLink(10, func(l *event.Link) bool { return l.AdminUp && !l.Carrier }))
	peer.Run("link", "set", "vp0", "up")
	w.expect("veth0 carrier", isLink(10, func(l *event.Link) bool { return l.Carrier && l.OperState == "up" }))

	ns.Run("addr", "add", "192.0.2.1/24", "dev", "veth0")
	w.expect("IPv4 address", isAddr(event.KindAddr, 10, "192.0.2.1/24"))
	w.expect("IPv4 prefix route", isRoute(event.KindRoute, "192.0.2.0/24", "", false))
	ns.Run("addr", "add", "2001:db8::1/64", "dev", "veth0", "nodad")
	w.expect("IPv6 address", isAddr(event.KindAddr, 10, "2001:db8::1/64"))

	ns.Run("route", "add", "default", "via", "192.0.2.254", "dev", "veth0")
	w.expect("default route", isRoute(event.KindRoute, "0.0.0.0/0", "192.0.2.254", false))
	ns.Run("route", "add", "203.0.113.0/24", "nexthop", "via", "192.0.2.253", "dev", "veth0",
		"nexthop", "via", "192.0.2.254", "dev", "veth0")
	w.expect("first multipath hop", isRoute(event.KindRoute, "203.0.113.0/24", "192.0.2.253", true))
	w.expect("second multipath hop", isRoute(event.KindRoute, "203.0.113.0/24", "192.0.2.254", true))
	ns.Run("route", "del", "default")
	w.expect("default route gone", isRoute(event.KindRouteGone, "0.0.0.0/0", "192.0.2.254", false))

	peer.Run("link", "set", "vp0", "down")
	w.expect("veth0 carrier lost", isLink(10, func(l *event.Link) bool {
		return l.AdminUp && !l.Carrier && l.OperState != "up"
	}))

	ns.Run("addr", "del", "192.0.2.1/24", "dev", "veth0")
	w.expect("IPv4 address gone", isAddr(event.KindAddrGone, 10, "192.0.2.1/24"))
	ns.Run("addr", "del", "2001:db8::1/64", "dev", "veth0")
	w.expect("IPv6 address gone", isAddr(event.KindAddrGone, 10, "2001:db8::1/64"))

	ns.Run("link", "set", "veth0", "down")
	w.expect("veth0 down", isLink(10, func(l *event.Link) bool { return !l.AdminUp && l.OperState == "down" }))

	ns.Run("link", "set", "veth1", "name", "veth1new")
	w.expect("veth1 renamed", isLink(11, func(l *event.Link) bool { return l.Name == "veth1new" }))

	ns.Run("rule", "add", "from", "10.9.9.9", "lookup", "100")
	ns.Run("rule", "del", "from", "10.9.9.9", "lookup", "100")
	ev := w.expect("rule deleted", func(ev event.Event) bool { return ev.Kind == event.KindRuleGone })
	if r := ev.Rule; r.Family != unix.AF_INET || r.Src != netip.MustParsePrefix("10.9.9.9/32") || r.Table != 100 || r.Priority == 0 {
		t.Errorf("deleted rule: got %+v, want from 10.9.9.9/32 lookup 100 with a priority", *r)
	}

	ns.Run("link", "del", "veth1new")
	w.expect("veth1new gone", func(ev event.Event) bool { return ev.Kind == event.KindLinkGone && ev.Index == 11 })

	for _, ev := range w.all {
		if ev.Source != "netlink" {
			t.Errorf("event with source %q: %s", ev.Source, describe(ev))
		}
		if ev.Route != nil && (ev.Route.Table == event.TableLocal || ev.Route.Type != unix.RTN_UNICAST) {
			t.Errorf("noise passed the filter: %s", describe(ev))
		}
		if ev.Kind == event.KindSync && ev != first {
			t.Errorf("unexpected resync: %s", describe(ev))
		}
	}
}

// The kernel deletes the IPv4 routes that use an address when the address
// goes, without an RTM_DELROUTE; the source re-reads the routes.
func TestSourceSilentRouteFlush(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)
	ns.Run("link", "set", "veth0", "up")
	peer.Run("link", "set", "vp0", "up")
	ns.Run("addr", "add", "192.0.2.1/24", "dev", "veth0")
	ns.Run("route", "add", "default", "via", "192.0.2.254", "dev", "veth0")
	w := start(t, Options{NetNS: ns.Path}, 1024)
	w.next("the initial sync")

	ns.Run("addr", "del", "192.0.2.1/24", "dev", "veth0")
	w.expect("IPv4 address gone", isAddr(event.KindAddrGone, 10, "192.0.2.1/24"))
	ev := w.expect("route re-read", func(ev event.Event) bool { return ev.Kind == event.KindRouteSync })
	for _, r := range ev.Dump.Routes {
		if r.OutIndex == 10 && r.Dst.Addr().Is4() {
			t.Errorf("route re-read still has an IPv4 route through veth0: %+v", r)
		}
	}
	if out := ns.Run("-4", "route", "show", "dev", "veth0"); strings.TrimSpace(out) != "" {
		t.Errorf("kernel still has IPv4 routes on veth0:\n%s", out)
	}
	for _, e := range w.all {
		if e.Kind == event.KindRouteGone && e.Route.IsDefault() {
			t.Logf("the kernel did announce the default route's removal this time")
		}
	}
}

func TestSourceOverrun(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)
	// A tiny receive buffer and an unbuffered channel: once the source
	// blocks on its first send, the kernel's queue overflows.
	s, err := New(Options{NetNS: ns.Path, ReadBuffer: 4096}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, out: make(chan event.Event)}
	w.errc = run(ctx, s, w.out)
	t.Cleanup(func() {
		cancel()
		if err := <-w.errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	if ev := w.next("the initial sync"); ev.Kind != event.KindSync || !ev.Initial {
		t.Fatalf("first event: got %s, want the initial sync", describe(ev))
	}

	lines := make([]string, 0, 400)
	for i := range 400 {
		lines = append(lines, fmt.Sprintf("addr add 198.18.%d.%d/32 dev veth0", i/250, i%250+1))
	}
	ns.Batch(lines)

	resync := w.expect("a resync", func(ev event.Event) bool { return ev.Kind == event.KindSync })
	if resync.Initial || resync.Source != "netlink" {
		t.Errorf("resync: got %s, want a non-initial netlink sync", describe(resync))
	}
	fresh, err := rtnl.Dump(context.Background(), rtnl.NetNS{Path: ns.Path})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	if len(fresh.Addrs) < 400 {
		t.Fatalf("fresh dump holds %d addresses, want the 400 added", len(fresh.Addrs))
	}
	if diff := cmp.Diff(resync.Dump, fresh, cmpEvents); diff != "" {
		t.Errorf("resync dump differs from the kernel (-resync +kernel):\n%s", diff)
	}
	if st := s.Stats(); st.Overruns == 0 || st.Resyncs == 0 {
		t.Errorf("Stats: got %+v, want overruns and resyncs", st)
	}

	// The stream goes on after the resync.
	ns.Run("addr", "add", "198.51.100.1/32", "dev", "veth0")
	w.expect("an address after the resync", isAddr(event.KindAddr, 10, "198.51.100.1/32"))
}
