package networkd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/sdbus"
	"github.com/netevd/netevd/internal/source/networkd/networkdtest"
	"github.com/netevd/netevd/internal/state"
)

// staticNetwork configures veth0 with a static address and gateway.
// IPv6AcceptRA=no: otherwise the link stays "configuring", waiting for a
// router advertisement.
const staticNetwork = `[Match]
Name=veth0
[Network]
Address=10.77.0.1/24
Gateway=10.77.0.2
IPv6AcceptRA=no
DNS=10.77.0.53
Domains=example.test
`

// realRun runs a Source against a real networkd and feeds its events to a
// state model, recording the transitions.
type realRun struct {
	t    *testing.T
	src  *Source
	logs *logBuffer
	done chan error

	mu     sync.Mutex // guards the fields below
	trans  []string
	last   map[int]*event.Manager
	synced bool
}

func runReal(t *testing.T, nd *networkdtest.Networkd) *realRun {
	t.Helper()
	logs := &logBuffer{}
	src, err := New(Options{BusAddress: nd.BusAddress(), EmitJSON: true},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	r := &realRun{t: t, src: src, logs: logs, done: make(chan error, 1), last: map[int]*event.Manager{}}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan event.Event, 1024)
	model := state.New(Backend)
	go func() { r.done <- src.Run(ctx, events) }()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for ev := range events {
			tr := transitions(model, []event.Event{ev})
			r.mu.Lock()
			r.trans = append(r.trans, tr...)
			if ev.Kind == event.KindSync {
				r.synced = true
			} else {
				r.last[ev.Manager.Index] = ev.Manager
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		close(events)
		<-consumed
		if t.Failed() {
			t.Logf("source log:\n%s", logs)
		}
	})
	return r
}

// waitFor waits until the transition want has been seen n times in all. A
// "*" in want matches any old value.
func (r *realRun) waitFor(want string, n int) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		count := 0
		for _, tr := range r.trans {
			if pre, post, ok := strings.Cut(want, "*"); tr == want || ok && strings.HasPrefix(tr, pre) && strings.HasSuffix(tr, post) {
				count++
			}
		}
		all := slices.Clone(r.trans)
		r.mu.Unlock()
		if count >= n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("gave up waiting for %d× %q; transitions so far:\n%s", n, want, strings.Join(all, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *realRun) report(idx int) *event.Manager {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[idx]
}

// TestRealNetworkd runs the source against the real systemd-networkd: the
// startup replay, a carrier flap driven from the peer namespace, a restart
// of networkd and a restart of the bus daemon.
func TestRealNetworkd(t *testing.T) {
	networkdtest.Require(t)
	nettest.CheckGoroutines(t)
	nd := networkdtest.Start(t, map[string]string{"10-veth0.network": staticNetwork})
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, nd.NS, peer, "veth0", 10, "vp0", 20)
	peer.Run("address", "add", "10.77.0.2/24", "dev", "vp0")
	nd.WaitLinkState(10, "no-carrier", "configuring")

	r := runReal(t, nd)
	r.waitFor("10 OperationalState →no-carrier", 1)
	r.waitFor("10 AdministrativeState →configuring", 1)

	peer.Run("link", "set", "vp0", "up")
	r.waitFor("10 OperationalState *→routable", 1)
	r.waitFor("10 AdministrativeState configuring→configured", 1)
	r.waitFor("0 OperationalState *→routable", 1)
	m := r.report(10)
	var d struct {
		Index int
		Name  string
		MTU   int
	}
	if err := json.Unmarshal([]byte(m.Env["JSON"]), &d); err != nil || d.Index != 10 || d.Name != "veth0" || d.MTU != 1500 {
		t.Errorf("JSON %q: %+v, %v; want Index 10, Name veth0, MTU 1500", m.Env["JSON"], d, err)
	}
	if m.Name != "veth0" || fmt.Sprint(m.DNS) != "[10.77.0.53]" || fmt.Sprint(m.Domains) != "[example.test]" {
		t.Errorf("report: name %q, DNS %v, domains %v; want veth0, [10.77.0.53], [example.test]", m.Name, m.DNS, m.Domains)
	}

	peer.Run("link", "set", "vp0", "down")
	r.waitFor("10 OperationalState *→no-carrier", 2)

	// networkd restarts: the source notices, logs once and reads again.
	nd.StopNetworkd()
	nd.StartNetworkd()
	peer.Run("link", "set", "vp0", "up")
	r.waitFor("10 OperationalState *→routable", 2)

	// The bus daemon restarts. The source redials and waits for networkd,
	// which (in systemd 252) does not reconnect by itself: restart it too.
	nd.StopBus()
	nd.StartBus()
	nd.StopNetworkd()
	nd.StartNetworkd()
	nd.WaitLinkState(10, "routable", "")
	deadline := time.Now().Add(20 * time.Second)
	for r.src.Stats().Snapshots < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot after the bus restart: %+v", r.src.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	peer.Run("link", "set", "vp0", "down")
	r.waitFor("10 OperationalState *→no-carrier", 3)
	peer.Run("link", "set", "vp0", "up")
	r.waitFor("10 OperationalState *→routable", 3)

	if n := r.logs.count("level=WARN"); n != 2 {
		t.Errorf("%d warnings, want 2 (one per outage):\n%s", n, r.logs)
	}
	st := r.src.Stats()
	t.Logf("stats: %+v; Describe %v per call", st, st.DescribeTime/time.Duration(max(st.Describes, 1)))
	if st.Outages != 2 || st.Malformed != 0 {
		t.Errorf("Stats: %d outages, %d malformed; want 2 and 0", st.Outages, st.Malformed)
	}
}

// BenchmarkDescribe measures one Link.Describe round trip to the real
// networkd (the cost the source pays per change of a link's States),
// next to a GetAll of the same link.
func BenchmarkDescribe(b *testing.B) {
	nd := networkdtest.Start(b, map[string]string{"10-veth0.network": staticNetwork})
	peer := nettest.NewNetNS(b)
	nettest.VethPair(b, nd.NS, peer, "veth0", 10, "vp0", 20)
	peer.Run("link", "set", "vp0", "up")
	nd.WaitLinkState(10, "routable", "configured")
	ctx := context.Background()
	c, err := sdbus.Dial(ctx, nd.BusAddress())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, m := range []struct{ name, method string }{
		{"Describe", ifaceLink + ".Describe"},
		{"GetAll", ifaceProps + ".GetAll"},
	} {
		b.Run(m.name, func(b *testing.B) {
			var args []any
			if m.name == "GetAll" {
				args = []any{ifaceLink}
			}
			for b.Loop() {
				if _, _, err := c.CallSeq(ctx, busName, linkPath(10), m.method, args...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
