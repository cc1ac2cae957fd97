package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/pipeline"
	"github.com/netevd/netevd/internal/rtnl"
	nlsource "github.com/netevd/netevd/internal/source/netlink"
	"github.com/netevd/netevd/internal/state"
)

// orderAction is a pipeline.Action that checks the pipeline's promises to
// actions: one change at a time per link, in increasing id order.
type orderAction struct {
	mu       sync.Mutex // guards the fields below
	last     map[int]uint64
	running  map[int]bool
	runs     uint64
	problems []string
}

func newOrderAction() *orderAction {
	return &orderAction{last: map[int]uint64{}, running: map[int]bool{}}
}

func (a *orderAction) Name() string { return "e2e-order" }

func (a *orderAction) Handle(_ context.Context, c event.Change) error {
	idx := c.Link.Index
	a.mu.Lock()
	if a.running[idx] {
		a.problems = append(a.problems, fmt.Sprintf("change %d (%s) of link %d ran while another of the link ran", c.ID, c.Type, idx))
	}
	if c.ID <= a.last[idx] {
		a.problems = append(a.problems, fmt.Sprintf("change %d (%s) of link %d ran after change %d", c.ID, c.Type, idx, a.last[idx]))
	}
	a.running[idx] = true
	a.last[idx] = c.ID
	a.runs++
	a.mu.Unlock()

	runtime.Gosched() // give an overlapping run a chance to show

	a.mu.Lock()
	a.running[idx] = false
	a.mu.Unlock()
	return nil
}

func (a *orderAction) result() (runs uint64, problems []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runs, slices.Clone(a.problems)
}

// inproc is a pipeline running in the test process, watching a namespace
// through the netlink source.
type inproc struct {
	tb   testing.TB
	ns   *nettest.NetNS
	p    *pipeline.Pipeline
	src  *nlsource.Source
	act  *orderAction
	errc chan error

	stopOnce sync.Once
	cancel   context.CancelFunc
	runErr   error
}

// startPipeline runs pipeline.New with the netlink source bound to ns and
// an orderAction, and waits until it is ready. readBuffer 0 is the
// source's default socket buffer. It is stopped in tb.Cleanup
// unless the test stopped it.
func startPipeline(tb testing.TB, ns *nettest.NetNS, readBuffer int) *inproc {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	src, err := nlsource.New(nlsource.Options{NetNS: ns.Path, ReadBuffer: readBuffer}, log)
	if err != nil {
		tb.Fatal(err)
	}
	ip := &inproc{tb: tb, ns: ns, src: src, act: newOrderAction(), errc: make(chan error, 1)}
	ready := make(chan struct{})
	ip.p = pipeline.New(pipeline.Config{
		Sources: []pipeline.Source{src},
		Actions: []pipeline.Action{ip.act},
		Model:   state.New("none"),
		Log:     log,
		OnReady: func() { close(ready) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	ip.cancel = cancel
	go func() { ip.errc <- ip.p.Run(ctx) }()
	tb.Cleanup(func() { ip.stop() })
	select {
	case <-ready:
	case err := <-ip.errc:
		tb.Fatalf("pipeline stopped before it was ready: %v", err)
	case <-time.After(waitTimeout):
		tb.Fatalf("pipeline not ready after %s", waitTimeout)
	}
	return ip
}

// stop ends the pipeline and returns what Run returned.
func (ip *inproc) stop() error {
	ip.stopOnce.Do(func() {
		ip.cancel()
		ip.runErr = <-ip.errc
	})
	return ip.runErr
}

// linkView is what the comparison with the kernel looks at for one link.
type linkView struct {
	Name   string
	Addrs  []string // prefixes, sorted
	Routes []string // routes leaving through the link, sorted
}

func routeString(r event.Route) string {
	s := fmt.Sprintf("fam=%d table=%d dst=%s metric=%d type=%d proto=%d scope=%d",
		r.Family, r.Table, r.Dst, r.Priority, r.Type, r.Protocol, r.Scope)
	if r.Gateway.IsValid() {
		s += " via=" + r.Gateway.String()
	}
	if r.Src.IsValid() {
		s += " src=" + r.Src.String()
	}
	if r.Multipath {
		s += " multipath"
	}
	return s
}

// viewOf builds the per-ifindex view from links, addresses and routes.
func viewOf(links []event.Link, addrs []event.Addr, routes []event.Route) map[int]linkView {
	v := make(map[int]linkView, len(links))
	for _, l := range links {
		v[l.Index] = linkView{Name: l.Name}
	}
	for _, a := range addrs {
		lv := v[a.Index]
		lv.Addrs = append(lv.Addrs, a.Prefix.String())
		v[a.Index] = lv
	}
	for _, r := range routes {
		if r.OutIndex == 0 {
			continue
		}
		lv := v[r.OutIndex]
		lv.Routes = append(lv.Routes, routeString(r))
		v[r.OutIndex] = lv
	}
	for i, lv := range v {
		slices.Sort(lv.Addrs)
		slices.Sort(lv.Routes)
		v[i] = lv
	}
	return v
}

func modelView(snap []event.LinkState) map[int]linkView {
	var (
		links  []event.Link
		addrs  []event.Addr
		routes []event.Route
	)
	for _, ls := range snap {
		links = append(links, ls.Link)
		addrs = append(addrs, ls.Addrs...)
		routes = append(routes, ls.Routes...)
	}
	return viewOf(links, addrs, routes)
}

// views returns the pipeline's model and a fresh dump of the kernel, each
// as a per-ifindex view.
func (ip *inproc) views() (model, kernel map[int]linkView, err error) {
	d, err := rtnl.Dump(context.Background(), rtnl.NetNS{Path: ip.ns.Path})
	if err != nil {
		return nil, nil, err
	}
	return modelView(ip.p.Model().Snapshot()), viewOf(d.Links, d.Addrs, d.Routes), nil
}

// waitModelMatchesKernel polls until the model equals the kernel's state.
func (ip *inproc) waitModelMatchesKernel(what string) {
	ip.tb.Helper()
	var model, kernel map[int]linkView
	var err error
	poll(ip.tb, 50*time.Millisecond, what, func() (struct{}, bool) {
		model, kernel, err = ip.views()
		return struct{}{}, err == nil && cmp.Equal(model, kernel)
	}, func() string {
		if err != nil {
			return "dump: " + err.Error()
		}
		return fmt.Sprintf("pipeline %+v\nnetlink source %+v\nmodel vs kernel (-model +kernel):\n%s",
			ip.p.Stats(), ip.src.Stats(), cmp.Diff(model, kernel))
	})
}

// checkAccounting stops the pipeline and checks its counters and the
// action's findings.
func (ip *inproc) checkAccounting() pipeline.Stats {
	ip.tb.Helper()
	if err := ip.stop(); err != nil {
		ip.tb.Errorf("pipeline Run: %v, want nil after cancel", err)
	}
	st := ip.p.Stats()
	runs, problems := ip.act.result()
	for _, p := range problems {
		ip.tb.Error(p)
	}
	if st.Events == 0 || st.Changes == 0 {
		ip.tb.Errorf("stats %+v: want events and changes", st)
	}
	if runs != st.ActionRuns {
		ip.tb.Errorf("the action ran %d times, the pipeline counted %d", runs, st.ActionRuns)
	}
	// With one action, every admitted change is superseded, cancelled out,
	// dropped or run, exactly once.
	if got := st.Coalesced + st.Noops + st.Dropped + st.ActionRuns; got != st.Changes-st.Filtered {
		ip.tb.Errorf("stats %+v: coalesced+noops+dropped+runs = %d, want changes-filtered = %d",
			st, got, st.Changes-st.Filtered)
	}
	if st.Noops > st.Coalesced {
		ip.tb.Errorf("stats %+v: more no-ops than coalesced changes", st)
	}
	return st
}

// TestModelFollowsKernelFlush checks that the model drops routes the
// kernel removes without telling anyone. IPv4 sends no RTM_DELROUTE for
// routes it flushes when a link's last address goes or the link goes
// down (fib_disable_ip → fib_flush), so a model built from messages alone
// keeps them.
func TestModelFollowsKernelFlush(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		do   func(ns *nettest.NetNS)
	}{
		{"last IPv4 address removed", func(ns *nettest.NetNS) { ns.Run("address", "del", "192.0.2.10/24", "dev", "veth0") }},
		{"link set down", func(ns *nettest.NetNS) { ns.Run("link", "set", "dev", "veth0", "down") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns, peer := nettest.NewNetNS(t), nettest.NewNetNS(t)
			ip := startPipeline(t, ns, 0)
			nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)
			ns.Run("link", "set", "dev", "veth0", "addrgenmode", "none")
			ns.Run("link", "set", "dev", "veth0", "up")
			peer.Run("link", "set", "dev", "vp0", "up")
			ns.Run("address", "add", "192.0.2.10/24", "dev", "veth0")
			ns.Run("route", "add", "default", "via", "192.0.2.1", "dev", "veth0")
			ns.Run("route", "add", "203.0.113.0/24", "via", "192.0.2.1", "dev", "veth0", "table", "100")
			ip.waitModelMatchesKernel("the model to hold the routes")

			tc.do(ns)
			ip.waitModelMatchesKernel("the model to drop the routes the kernel flushed")
			if ls, ok := ip.p.Model().Link(10); ok && ls.Gateway(4) != (netip.Addr{}) {
				t.Errorf("model still has gateway %v for veth0 (state %s)", ls.Gateway(4), ls.State)
			}
			ip.checkAccounting()
		})
	}
}
