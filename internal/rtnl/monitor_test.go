package rtnl

import (
	"context"
	"errors"
	"fmt"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
)

// waitLimit bounds how long a test waits for an expected event; it is a
// guard against hanging, not a performance assertion.
const waitLimit = 10 * time.Second

type received struct {
	evs []event.Event
	err error
}

// stream runs Receive in a goroutine and forwards every result. The
// monitor is closed, and the goroutine waited for, in t.Cleanup.
func stream(t *testing.T, m *Monitor) <-chan received {
	t.Helper()
	ch := make(chan received, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			evs, err := m.Receive()
			ch <- received{evs, err}
			if err != nil && !errors.Is(err, ErrOverrun) {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = m.Close()
		<-done
	})
	return ch
}

// waitFor reads ch until an event satisfies match, failing the test on a
// Receive error or after waitLimit.
func waitFor(t *testing.T, ch <-chan received, what string, match func(event.Event) bool) event.Event {
	t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("waiting for %s: Receive: %v", what, r.err)
			}
			for _, ev := range r.evs {
				if match(ev) {
					return ev
				}
				seen = append(seen, describe(ev))
			}
		case <-timer.C:
			t.Fatalf("no %s within %v; saw:\n%s", what, waitLimit, strings.Join(seen, "\n"))
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
	}
	return fmt.Sprintf("%v index=%d", ev.Kind, ev.Index)
}

func openMonitor(t *testing.T, ns *nettest.NetNS, readBuffer int) *Monitor {
	t.Helper()
	m, err := OpenMonitor(MonitorConfig{NetNS: NetNS{Path: ns.Path}, ReadBuffer: readBuffer}, nil)
	if err != nil {
		t.Fatalf("OpenMonitor: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestMonitor(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	m := openMonitor(t, ns, 0)

	if n, err := m.ReadBuffer(); err != nil || n < DefaultReadBuffer {
		t.Errorf("ReadBuffer: got %d, %v; want at least %d", n, err, DefaultReadBuffer)
	}
	ch := stream(t, m)

	nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)
	waitFor(t, ch, "veth0 link", func(ev event.Event) bool {
		return ev.Kind == event.KindLink && ev.Link.Index == 10 && ev.Link.Name == "veth0" && ev.Link.Kind == "veth"
	})

	ns.Run("addr", "add", "192.0.2.1/24", "dev", "veth0")
	waitFor(t, ch, "address 192.0.2.1/24", func(ev event.Event) bool {
		return ev.Kind == event.KindAddr && ev.Addr.Index == 10 && ev.Addr.Prefix == netip.MustParsePrefix("192.0.2.1/24")
	})

	ns.Run("rule", "add", "from", "10.9.9.9", "lookup", "100")
	ns.Run("rule", "del", "from", "10.9.9.9", "lookup", "100")
	ev := waitFor(t, ch, "rule deletion", func(ev event.Event) bool { return ev.Kind == event.KindRuleGone })
	if ev.Rule.Src != netip.MustParsePrefix("10.9.9.9/32") || ev.Rule.Table != 100 || ev.Rule.Family != unix.AF_INET || ev.Rule.Priority == 0 {
		t.Errorf("deleted rule: got %+v, want from 10.9.9.9/32 lookup 100 with a priority", *ev.Rule)
	}

	ns.Run("link", "del", "veth0")
	waitFor(t, ch, "veth0 gone", func(ev event.Event) bool { return ev.Kind == event.KindLinkGone && ev.Index == 10 })

	if s := m.Stats(); s.Messages == 0 || s.Malformed != 0 || s.Overruns != 0 {
		t.Errorf("Stats: got %+v, want messages and no malformed or overruns", s)
	}
}

func TestMonitorClose(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns := nettest.NewNetNS(t)
	m := openMonitor(t, ns, 0)
	errc := make(chan error, 1)
	go func() {
		_, err := m.Receive()
		errc <- err
	}()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Receive after Close: got %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.Receive(); !errors.Is(err, ErrClosed) {
		t.Errorf("Receive on a closed monitor: got %v, want ErrClosed", err)
	}
}

// addrBatch returns n "addr add" commands for /32s on dev.
func addrBatch(first, n int, dev string) []string {
	lines := make([]string, 0, n)
	for i := first; i < first+n; i++ {
		lines = append(lines, fmt.Sprintf("addr add 198.18.%d.%d/32 dev %s", i/250, i%250+1, dev))
	}
	return lines
}

func TestMonitorOverrun(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)
	m := openMonitor(t, ns, 4096)

	// Nobody reads while the kernel queues far more than 8 KiB.
	ns.Batch(addrBatch(0, 400, "veth0"))

	_, err := m.Receive()
	if !errors.Is(err, ErrOverrun) {
		t.Fatalf("first Receive after the storm: got %v, want ErrOverrun", err)
	}
	if s := m.Stats(); s.Overruns != 1 {
		t.Errorf("Overruns: got %d, want 1", s.Overruns)
	}

	// The monitor resubscribed on a fresh socket: what was queued before
	// the loss is gone, and the next change is the first thing it reports.
	ch := stream(t, m)
	ns.Run("addr", "add", "198.51.100.1/32", "dev", "veth0")
	ev := waitFor(t, ch, "an address event", func(ev event.Event) bool { return ev.Kind == event.KindAddr })
	if got, want := ev.Addr.Prefix, netip.MustParsePrefix("198.51.100.1/32"); got != want {
		t.Errorf("first address after the overrun: got %v, want %v (a stale queued message)", got, want)
	}
}

func TestDump(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)
	ns.Run("link", "set", "lo", "up")
	ns.Run("link", "set", "veth0", "up")
	peer.Run("link", "set", "vp0", "up")
	ns.Run("addr", "add", "192.0.2.1/24", "dev", "veth0")
	ns.Run("addr", "add", "2001:db8::1/64", "dev", "veth0", "nodad")
	ns.Run("route", "add", "default", "via", "192.0.2.254", "dev", "veth0")
	ns.Run("route", "add", "203.0.113.0/24", "nexthop", "via", "192.0.2.253", "dev", "veth0",
		"nexthop", "via", "192.0.2.254", "dev", "veth0")
	ns.Run("route", "add", "blackhole", "198.51.100.0/24", "table", "1010")
	// The kernel holds routes the filter must drop.
	if out := ns.Run("route", "show", "table", "local"); !strings.Contains(out, "broadcast") {
		t.Fatalf("expected broadcast routes in the local table, got:\n%s", out)
	}
	if out := ns.Run("-6", "route", "show"); !strings.Contains(out, "fe80::/64") {
		t.Fatalf("expected an fe80::/64 route, got:\n%s", out)
	}

	d, err := Dump(context.Background(), NetNS{Path: ns.Path})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}

	links := map[int]event.Link{}
	for _, l := range d.Links {
		links[l.Index] = l
	}
	if l := links[1]; l.Name != "lo" || !l.AdminUp {
		t.Errorf("lo: got %+v", l)
	}
	if l := links[10]; l.Name != "veth0" || l.Kind != "veth" || !l.AdminUp || l.MAC == "" || l.MTU != 1500 {
		t.Errorf("veth0: got %+v", l)
	}
	if len(links) != 2 {
		t.Errorf("links: got %d (%+v), want lo and veth0", len(links), d.Links)
	}

	addrs := map[netip.Prefix]event.Addr{}
	for _, a := range d.Addrs {
		addrs[a.Prefix] = a
	}
	for _, p := range []string{"127.0.0.1/8", "::1/128", "192.0.2.1/24", "2001:db8::1/64"} {
		if _, ok := addrs[netip.MustParsePrefix(p)]; !ok {
			t.Errorf("address %s missing from %+v", p, d.Addrs)
		}
	}

	want := map[string]bool{
		"254 0.0.0.0/0 via 192.0.2.254 dev 10 multipath=false":      false,
		"254 192.0.2.0/24 via invalid IP dev 10 multipath=false":    false,
		"254 203.0.113.0/24 via 192.0.2.253 dev 10 multipath=true":  false,
		"254 203.0.113.0/24 via 192.0.2.254 dev 10 multipath=true":  false,
		"254 2001:db8::/64 via invalid IP dev 10 multipath=false":   false,
		"1010 198.51.100.0/24 via invalid IP dev 0 multipath=false": false,
	}
	for _, r := range d.Routes {
		if why := noise(r); why != "" {
			t.Errorf("Dump kept a route the filter must drop (%s): %+v", why, r)
		}
		k := fmt.Sprintf("%d %v via %v dev %d multipath=%v", r.Table, r.Dst, r.Gateway, r.OutIndex, r.Multipath)
		if _, ok := want[k]; ok {
			want[k] = true
		}
	}
	for k, found := range want {
		if !found {
			t.Errorf("route %q missing from %+v", k, d.Routes)
		}
	}

	// DumpRoutes reads the same routes and nothing else.
	r, err := DumpRoutes(context.Background(), NetNS{Path: ns.Path})
	if err != nil {
		t.Fatalf("DumpRoutes: %v", err)
	}
	if len(r.Links) != 0 || len(r.Addrs) != 0 {
		t.Errorf("DumpRoutes returned %d links and %d addresses, want none", len(r.Links), len(r.Addrs))
	}
	if diff := cmp.Diff(d.Routes, r.Routes, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Errorf("DumpRoutes differs from Dump's routes (-dump +routes):\n%s", diff)
	}
}

func TestDumpErrors(t *testing.T) {
	ns := nettest.NewNetNS(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dump(ctx, NetNS{Path: ns.Path}); !errors.Is(err, context.Canceled) {
		t.Errorf("Dump with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := Dump(context.Background(), NetNS{Path: "/proc/self/status"}); err == nil {
		t.Errorf("Dump in a file that is no namespace: got no error")
	}
	if _, err := OpenMonitor(MonitorConfig{NetNS: NetNS{Path: "/nonexistent/netns"}}, nil); err == nil {
		t.Errorf("OpenMonitor with a missing namespace: got no error")
	}
}
