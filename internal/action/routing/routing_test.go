package routing

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/rtnl"
)

// lab is a host namespace with veth0 (ifindex 10, table 210) whose peer
// vp0 (ifindex 20) is in a router namespace, and an Action for the host.
type lab struct {
	t      *testing.T
	host   *nettest.NetNS
	router *nettest.NetNS
	a      *Action
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLab(t *testing.T, opts Options) *lab {
	t.Helper()
	host := nettest.NewNetNS(t)
	router := nettest.NewNetNS(t)
	nettest.VethPair(t, host, router, "veth0", 10, "vp0", 20)
	host.Run("link", "set", "veth0", "up")
	router.Run("link", "set", "vp0", "up")
	if opts.Interfaces == nil {
		opts.Interfaces = []string{"veth*"}
	}
	if opts.TableBase == 0 {
		opts.TableBase = 200
	}
	if opts.PriorityMin == 0 {
		opts.PriorityMin, opts.PriorityMax = 10000, 10999
	}
	opts.NetNS = rtnl.NetNS{Path: host.Path}
	logs := &syncBuffer{}
	a, err := New(opts, slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l := &lab{t: t, host: host, router: router, a: a, logs: logs}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// state reads the host's link name from the kernel as the state model
// would hold it.
func (l *lab) state(name string) event.LinkState {
	l.t.Helper()
	d, err := rtnl.Dump(context.Background(), rtnl.NetNS{Path: l.host.Path})
	if err != nil {
		l.t.Fatalf("Dump: %v", err)
	}
	var ls event.LinkState
	for _, link := range d.Links {
		if link.Name == name {
			ls.Link = link
		}
	}
	if ls.Index == 0 {
		l.t.Fatalf("no link %s in %s", name, l.host.Name)
	}
	for _, a := range d.Addrs {
		if a.Index == ls.Index {
			ls.Addrs = append(ls.Addrs, a)
		}
	}
	for _, r := range d.Routes {
		if r.OutIndex == ls.Index {
			ls.Routes = append(ls.Routes, r)
		}
	}
	return ls
}

// handle passes a change of type typ for the link's current state.
func (l *lab) handle(typ event.ChangeType, name string) {
	l.t.Helper()
	if err := l.a.Handle(context.Background(), event.Change{Type: typ, Link: l.state(name)}); err != nil {
		l.t.Fatalf("Handle(%s): %v", typ, err)
	}
}

// rules returns the host's rules in the owned range, as `ip rule show`
// prints them.
func (l *lab) rules() []string {
	l.t.Helper()
	var got []string
	for _, fam := range []string{"-4", "-6"} {
		for line := range strings.SplitSeq(l.host.Run(fam, "rule", "show"), "\n") {
			if strings.HasPrefix(line, "10000:") || strings.HasPrefix(line, "10001:") || strings.HasPrefix(line, "10500:") {
				got = append(got, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return got
}

// routes returns `ip route show table T` for both families.
func (l *lab) routes(table string) []string {
	l.t.Helper()
	var got []string
	for _, fam := range []string{"-4", "-6"} {
		out, err := l.host.TryRun(fam, "route", "show", "table", table)
		if err != nil && strings.Contains(out, "FIB table does not exist") {
			continue
		} else if err != nil {
			l.t.Fatal(err)
		}
		for line := range strings.SplitSeq(out, "\n") {
			if line = strings.Join(strings.Fields(line), " "); line != "" {
				got = append(got, line)
			}
		}
	}
	return got
}

func (l *lab) check(what string, wantRules, wantRoutes []string) {
	l.t.Helper()
	if diff := cmp.Diff(l.rules(), wantRules); diff != "" {
		l.t.Errorf("%s: rules (-got +want):\n%s", what, diff)
	}
	if diff := cmp.Diff(l.routes("210"), wantRoutes); diff != "" {
		l.t.Errorf("%s: routes in table 210 (-got +want):\n%s", what, diff)
	}
}

var (
	rules4 = []string{
		"10000: from 192.0.2.10 lookup 210",
		"10001: from all to 192.0.2.10 lookup 210",
	}
	rules6 = []string{
		"10000: from 2001:db8:1::10 lookup 210",
		"10001: from all to 2001:db8:1::10 lookup 210",
	}
	route4 = "default via 192.0.2.1 dev veth0 proto static"
	route6 = "default via fe80::1 dev veth0 proto static metric 1024 pref medium"
)

func TestLifecycle(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := newLab(t, Options{})
	h := l.host

	// Addresses first, no gateway yet (the usual DHCP order): rules only.
	h.Batch([]string{
		"addr add 192.0.2.10/24 dev veth0",
		"addr add 2001:db8:1::10/64 dev veth0 nodad",
		"addr add 169.254.7.7/16 scope link dev veth0",
	})
	l.handle(event.AddressAdded, "veth0")
	l.check("address before gateway", slices.Concat(rules4, rules6), nil)

	// The gateways appear: the table is completed.
	h.Batch([]string{
		"route add default via 192.0.2.1 dev veth0",
		"route add ::/0 via fe80::1 dev veth0",
	})
	l.handle(event.RouteAdded, "veth0")
	l.check("gateway after address", slices.Concat(rules4, rules6), []string{route4, route6})

	// Gateway change.
	h.Run("route", "replace", "default", "via", "192.0.2.2", "dev", "veth0")
	l.handle(event.RouteAdded, "veth0")
	l.check("gateway change", slices.Concat(rules4, rules6),
		[]string{"default via 192.0.2.2 dev veth0 proto static", route6})

	// The IPv6 address goes: its rules and the IPv6 route go.
	h.Run("addr", "del", "2001:db8:1::10/64", "dev", "veth0")
	l.handle(event.AddressRemoved, "veth0")
	l.check("address removal", rules4, []string{"default via 192.0.2.2 dev veth0 proto static"})

	// The link goes: everything goes.
	before := l.state("veth0")
	h.Run("link", "del", "veth0")
	if err := l.a.Handle(context.Background(), event.Change{Type: event.LinkRemoved, Link: before}); err != nil {
		t.Fatalf("Handle(link-removed): %v", err)
	}
	l.check("link deletion", nil, nil)
}

func TestReplayNoDuplicates(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := newLab(t, Options{})
	l.host.Batch([]string{
		"addr add 192.0.2.10/24 dev veth0",
		"addr add 2001:db8:1::10/64 dev veth0 nodad",
		"route add default via 192.0.2.1 dev veth0",
	})
	c := event.Change{Type: event.AddressAdded, Link: l.state("veth0")}
	for i := range 100 {
		c.Initial = i%2 == 0 // Initial forces a full reconcile against the kernel
		if err := l.a.Handle(context.Background(), c); err != nil {
			t.Fatalf("Handle #%d: %v", i, err)
		}
	}
	l.check("after 100 replays", slices.Concat(rules4, rules6), []string{route4})
}

func TestSyncRemovesLeftovers(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := newLab(t, Options{})
	h := l.host
	h.Batch([]string{
		"addr add 192.0.2.10/24 dev veth0",
		"route add default via 192.0.2.1 dev veth0",
		// A previous run: an address that is gone, a table of a link that
		// is gone, one of today's rules, and a stale route in today's table.
		"rule add from 198.51.100.7 lookup 210 priority 10000",
		"rule add from 192.0.2.99 lookup 333 priority 10500",
		"route add default via 192.0.2.1 dev veth0 table 333",
		"rule add from 192.0.2.10 lookup 210 priority 10000",
		"route add default via 192.0.2.3 dev veth0 table 210 metric 7",
		// Not ours: outside the range.
		"rule add from 203.0.113.1 lookup 333 priority 20000",
	})
	if err := l.a.Sync(context.Background(), []event.LinkState{l.state("lo"), l.state("veth0")}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	l.check("after Sync", rules4, []string{route4})
	if got := l.routes("333"); len(got) != 0 {
		t.Errorf("table 333 of a leftover rule still has %v", got)
	}
	if got := h.Run("rule", "show"); !strings.Contains(got, "20000:\tfrom 203.0.113.1 lookup 333") {
		t.Errorf("a rule outside the owned range was removed:\n%s", got)
	}
}

func TestRestoreDeletedRule(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := newLab(t, Options{RestoreInterval: 50 * time.Millisecond})
	l.host.Batch([]string{
		"addr add 192.0.2.10/24 dev veth0",
		"route add default via 192.0.2.1 dev veth0",
	})
	l.handle(event.AddressAdded, "veth0")
	deleted := func(prio string, sel ...string) event.Change {
		args := append(append([]string{"rule", "del"}, sel...), "lookup", "210", "priority", prio)
		l.host.Run(args...)
		r := event.Rule{Family: 2, Table: 210}
		switch sel[0] {
		case "from":
			r.Priority, r.Src = 10000, netip4(sel[1])
		case "to":
			r.Priority, r.Dst = 10001, netip4(sel[1])
		}
		return event.Change{Type: event.RuleDeleted, Rule: &r}
	}

	// The first deletion is restored at once.
	c := deleted("10000", "from", "192.0.2.10")
	if err := l.a.Handle(context.Background(), c); err != nil {
		t.Fatalf("Handle(rule-deleted): %v", err)
	}
	l.check("restored", rules4, []string{route4})
	if !strings.Contains(l.logs.String(), "ManageForeignRoutingPolicyRules=yes") {
		t.Errorf("the restoration did not name the likely culprit:\n%s", l.logs.String())
	}

	// One right after it is restored by the trailing pass.
	c = deleted("10001", "to", "192.0.2.10")
	if err := l.a.Handle(context.Background(), c); err != nil {
		t.Fatalf("Handle(rule-deleted): %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(l.rules()) != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	l.check("restored by the trailing pass", rules4, []string{route4})
	if n := strings.Count(l.logs.String(), "likely systemd-networkd"); n != 1 {
		t.Errorf("the culprit was logged %d times, want once", n)
	}
}

func netip4(s string) netip.Prefix { return netip.PrefixFrom(netip.MustParseAddr(s), 32) }

func TestClose(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "remove", true: "keep_on_exit"}[keep], func(t *testing.T) {
			nettest.CheckGoroutines(t)
			l := newLab(t, Options{KeepOnExit: keep})
			l.host.Batch([]string{
				"addr add 192.0.2.10/24 dev veth0",
				"addr add 2001:db8:1::10/64 dev veth0 nodad",
				"route add default via 192.0.2.1 dev veth0",
				"route add ::/0 via fe80::1 dev veth0",
			})
			l.handle(event.AddressAdded, "veth0")
			l.check("before Close", slices.Concat(rules4, rules6), []string{route4, route6})
			if err := l.a.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if keep {
				l.check("after Close", slices.Concat(rules4, rules6), []string{route4, route6})
			} else {
				l.check("after Close", nil, nil)
			}
		})
	}
}

func TestDryRun(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := newLab(t, Options{DryRun: true})
	l.host.Batch([]string{
		"addr add 192.0.2.10/24 dev veth0",
		"addr add 2001:db8:1::10/64 dev veth0 nodad",
		"route add default via 192.0.2.1 dev veth0",
		"route add ::/0 via fe80::1 dev veth0",
	})
	l.handle(event.AddressAdded, "veth0")
	l.check("dry run", nil, nil)
	want := []string{
		"ip route replace default via 192.0.2.1 dev veth0 table 210 proto static",
		"ip -6 route replace default via fe80::1 dev veth0 table 210 proto static",
		"ip rule add from 192.0.2.10 lookup 210 priority 10000",
		"ip rule add from all to 192.0.2.10 lookup 210 priority 10001",
		"ip -6 rule add from 2001:db8:1::10 lookup 210 priority 10000",
		"ip -6 rule add from all to 2001:db8:1::10 lookup 210 priority 10001",
	}
	for _, w := range want {
		if !strings.Contains(l.logs.String(), w) {
			t.Errorf("the dry run did not log %q", w)
		}
	}
	if diff := cmp.Diff(l.a.Plan([]event.LinkState{l.state("lo"), l.state("veth0")}), want); diff != "" {
		t.Errorf("Plan (-got +want):\n%s", diff)
	}
}

func TestGatewayNeverBorrowed(t *testing.T) {
	nettest.CheckGoroutines(t)
	l := newLab(t, Options{})
	// veth1 (ifindex 11) carries the main default route; veth0 has none.
	nettest.VethPair(t, l.host, l.router, "veth1", 11, "vp1", 21)
	l.host.Batch([]string{
		"link set veth1 up",
		"addr add 192.0.2.10/24 dev veth0",
		"addr add 198.51.100.10/24 dev veth1",
		"route add default via 198.51.100.1 dev veth1",
	})
	l.a.opts.Interfaces = []string{"veth0"}
	l.handle(event.AddressAdded, "veth0")
	l.check("no gateway of its own", rules4, nil)
}

func TestRefusedTables(t *testing.T) {
	tests := []struct {
		name    string
		base    uint32
		setup   []string
		wantLog string
	}{
		{"reserved", 243, nil, "table is reserved"},
		{"foreign rule", 200, []string{"rule add from 203.0.113.1 lookup 210 priority 20000"},
			`used_by="rule from 203.0.113.1 lookup 210 priority 20000"`},
		{"foreign route", 200, []string{"route add 198.51.100.0/24 via 192.0.2.1 dev veth0 table 210"},
			`used_by="route 198.51.100.0/24 via 192.0.2.1 oif 10 table 210 proto 3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nettest.CheckGoroutines(t)
			l := newLab(t, Options{TableBase: tt.base})
			l.host.Batch(append([]string{
				"addr add 192.0.2.10/24 dev veth0",
				"route add default via 192.0.2.1 dev veth0",
			}, tt.setup...))
			for range 2 {
				l.handle(event.AddressAdded, "veth0")
			}
			if got := l.rules(); len(got) != 0 {
				t.Errorf("rules were added for a refused table: %v", got)
			}
			if n := strings.Count(l.logs.String(), tt.wantLog); n != 1 {
				t.Errorf("the log has %q %d times, want once:\n%s", tt.wantLog, n, l.logs.String())
			}
		})
	}
}
