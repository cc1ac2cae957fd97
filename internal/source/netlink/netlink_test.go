package netlink

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/rtnl"
)

// The shape of pipeline.Source, without importing the pipeline.
var _ interface {
	Name() string
	Run(context.Context, chan<- event.Event) error
} = (*Source)(nil)

var cmpEvents = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.IgnoreFields(event.Event{}, "Time"),
}

type result struct {
	evs []event.Event
	err error
}

// fakeMonitor hands out scripted Receive results, then blocks until Close.
type fakeMonitor struct {
	results chan result
	closed  chan struct{}
	once    sync.Once
	stats   rtnl.MonitorStats
}

func newFakeMonitor(rs ...result) *fakeMonitor {
	m := &fakeMonitor{results: make(chan result, len(rs)), closed: make(chan struct{})}
	for _, r := range rs {
		m.results <- r
	}
	return m
}

func (m *fakeMonitor) Receive() ([]event.Event, error) {
	select {
	case <-m.closed:
		return nil, rtnl.ErrClosed
	default:
	}
	select {
	case r := <-m.results:
		if r.evs != nil {
			m.stats.Messages += uint64(len(r.evs))
		}
		if errors.Is(r.err, rtnl.ErrOverrun) {
			m.stats.Overruns++
		}
		return r.evs, r.err
	case <-m.closed:
		return nil, rtnl.ErrClosed
	}
}

func (m *fakeMonitor) Close() error {
	m.once.Do(func() { close(m.closed) })
	return nil
}

// Stats is only read after Run returned in these tests.
func (m *fakeMonitor) Stats() rtnl.MonitorStats { return m.stats }

// newFake returns a Source running on mon, answering dumps from dumps in
// order (the last one repeats).
func newFake(t *testing.T, mon *fakeMonitor, dumps ...result) *Source {
	t.Helper()
	s, err := New(Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.open = func() (monitor, error) { return mon, nil }
	n := 0
	s.dump = func(ctx context.Context) (*event.Dump, error) {
		r := dumps[min(n, len(dumps)-1)]
		n++
		if r.err != nil {
			var d *event.Dump
			if len(r.evs) > 0 {
				d = r.evs[0].Dump
			}
			return d, r.err
		}
		return r.evs[0].Dump, nil
	}
	s.dumpRoutes = func(ctx context.Context) (*event.Dump, error) { return routesDump, nil }
	return s
}

func dumpResult(d *event.Dump) result { return result{evs: []event.Event{{Dump: d}}} }

var (
	lo         = event.Link{Index: 1, Name: "lo", MTU: 65536, OperState: "unknown"}
	veth       = event.Link{Index: 10, Name: "veth0", Kind: "veth", MTU: 1500, OperState: "down"}
	firstDump  = &event.Dump{Links: []event.Link{lo}}
	laterDump  = &event.Dump{Links: []event.Link{lo, veth}}
	routesDump = &event.Dump{Routes: []event.Route{{Family: 2, Table: 254, Dst: netip.MustParsePrefix("192.0.2.0/24"), OutIndex: 10}}}
	received   = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	linkEv     = event.Event{Kind: event.KindLink, Time: received, Link: &veth}
	vethUp     = event.Link{Index: 10, Name: "veth0", Kind: "veth", MTU: 1500, AdminUp: true, OperState: "down"}
	linkUpEv   = event.Event{Kind: event.KindLink, Time: received, Link: &vethUp}
	addrEv     = event.Event{Kind: event.KindAddr, Time: received, Addr: &event.Addr{Index: 10, Prefix: netip.MustParsePrefix("192.0.2.1/24")}}
)

// run starts s.Run and returns its error channel.
func run(ctx context.Context, s *Source, out chan<- event.Event) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx, out) }()
	return errc
}

func TestRunContract(t *testing.T) {
	nettest.CheckGoroutines(t)
	mon := newFakeMonitor(
		result{evs: []event.Event{linkUpEv}},
		result{evs: nil}, // a datagram that decoded to nothing
		result{err: fmt.Errorf("%w: no buffer space", rtnl.ErrOverrun)},
		result{evs: []event.Event{addrEv}},
	)
	s := newFake(t, mon, dumpResult(firstDump), dumpResult(laterDump))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan event.Event)
	errc := run(ctx, s, out)

	want := []event.Event{
		{Source: "netlink", Kind: event.KindSync, Dump: firstDump, Initial: true},
		{Source: "netlink", Kind: event.KindLink, Link: &vethUp},
		{Source: "netlink", Kind: event.KindSync, Dump: laterDump},
		{Source: "netlink", Kind: event.KindAddr, Addr: addrEv.Addr},
	}
	var got []event.Event
	for range want {
		ev := <-out
		if ev.Time.IsZero() {
			t.Errorf("%v event without a time", ev.Kind)
		}
		got = append(got, ev)
	}
	if diff := cmp.Diff(got, want, cmpEvents); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}

	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run after cancel: got %v, want nil", err)
	}
	gotStats := s.Stats()
	wantStats := Stats{Messages: 2, Events: 2, Overruns: 1, Resyncs: 1}
	if diff := cmp.Diff(gotStats, wantStats); diff != "" {
		t.Errorf("Stats (-got +want):\n%s", diff)
	}
}

// After a message that may come with a silent route flush (a link set
// down, an IPv4 address deleted), the routes are re-read once the socket
// has nothing more queued: once per burst.
func TestRunRereadsRoutesWhenQuiet(t *testing.T) {
	nettest.CheckGoroutines(t)
	addrGone := event.Event{Kind: event.KindAddrGone, Time: received, Addr: addrEv.Addr}
	mon := newFakeMonitor(result{evs: []event.Event{linkEv, addrGone}})
	s := newFake(t, mon, dumpResult(firstDump))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan event.Event)
	errc := run(ctx, s, out)

	want := []event.Event{
		{Source: "netlink", Kind: event.KindSync, Dump: firstDump, Initial: true},
		{Source: "netlink", Kind: event.KindLink, Link: &veth},
		{Source: "netlink", Kind: event.KindAddrGone, Addr: addrEv.Addr},
		{Source: "netlink", Kind: event.KindRouteSync, Dump: routesDump},
	}
	var got []event.Event
	for range want {
		got = append(got, <-out)
	}
	if diff := cmp.Diff(got, want, cmpEvents); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run after cancel: got %v, want nil", err)
	}
	if got := s.Stats().RouteSyncs; got != 1 {
		t.Errorf("RouteSyncs: got %d, want 1", got)
	}
}

func TestRunEnds(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		mon     *fakeMonitor
		dumps   []result
		read    int  // events to read before cancelling
		cancel  bool // cancel ctx, else wait for Run to end by itself
		wantErr error
	}{
		{
			name:  "cancelled while blocked in Receive",
			mon:   newFakeMonitor(),
			dumps: []result{dumpResult(firstDump)},
			read:  1, cancel: true,
		},
		{
			name:  "cancelled while blocked sending the initial sync",
			mon:   newFakeMonitor(),
			dumps: []result{dumpResult(firstDump)},
			read:  0, cancel: true,
		},
		{
			name:  "cancelled while blocked sending an event",
			mon:   newFakeMonitor(result{evs: []event.Event{linkEv, addrEv}}),
			dumps: []result{dumpResult(firstDump)},
			read:  2, cancel: true,
		},
		{
			name:  "cancelled while blocked sending a resync",
			mon:   newFakeMonitor(result{err: rtnl.ErrOverrun}),
			dumps: []result{dumpResult(firstDump)},
			read:  1, cancel: true,
		},
		{
			name:    "socket fails",
			mon:     newFakeMonitor(result{err: boom}),
			dumps:   []result{dumpResult(firstDump)},
			read:    1,
			wantErr: boom,
		},
		{
			name:    "initial dump fails",
			mon:     newFakeMonitor(),
			dumps:   []result{{err: boom}},
			wantErr: boom,
		},
		{
			name:    "resync fails",
			mon:     newFakeMonitor(result{err: rtnl.ErrOverrun}),
			dumps:   []result{dumpResult(firstDump), {err: boom}},
			read:    1,
			wantErr: boom,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nettest.CheckGoroutines(t)
			s := newFake(t, tt.mon, tt.dumps...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := make(chan event.Event)
			errc := run(ctx, s, out)
			for range tt.read {
				select {
				case <-out:
				case err := <-errc:
					t.Fatalf("Run ended early: %v", err)
				}
			}
			if tt.cancel {
				cancel()
			}
			err := <-errc
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Run: got %v, want %v", err, tt.wantErr)
			}
			select {
			case <-tt.mon.closed:
			default:
				t.Errorf("monitor not closed after Run")
			}
		})
	}
}

func TestRunInterruptedDumpIsUsed(t *testing.T) {
	nettest.CheckGoroutines(t)
	mon := newFakeMonitor()
	s := newFake(t, mon, result{evs: []event.Event{{Dump: firstDump}}, err: rtnl.ErrDumpInterrupted})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan event.Event)
	errc := run(ctx, s, out)
	ev := <-out
	if ev.Kind != event.KindSync || !ev.Initial || ev.Dump != firstDump {
		t.Errorf("first event: got %+v, want the initial sync of the interrupted dump", ev)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestRunOpenFails(t *testing.T) {
	boom := errors.New("boom")
	s, err := New(Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.open = func() (monitor, error) { return nil, boom }
	if err := s.Run(context.Background(), make(chan event.Event)); !errors.Is(err, boom) {
		t.Errorf("Run: got %v, want %v", err, boom)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Options{ReadBuffer: -1}, nil); err == nil {
		t.Errorf("New with a negative read buffer: got no error")
	}
	s, err := New(Options{NetNS: "/run/netns/x"}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got := s.Name(); got != "netlink" {
		t.Errorf("Name: got %q, want netlink", got)
	}
}

func TestLogLimit(t *testing.T) {
	l := logLimit{every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{10 * time.Second, true, 1},
		{12 * time.Second, false, 0},
		{13 * time.Second, false, 0},
		{30 * time.Second, true, 2},
	}
	for _, s := range steps {
		ok, n := l.allow(t0.Add(s.at))
		if ok != s.wantOK || n != s.wantSuppressed {
			t.Errorf("allow at +%v: got (%v, %d), want (%v, %d)", s.at, ok, n, s.wantOK, s.wantSuppressed)
		}
	}
}
