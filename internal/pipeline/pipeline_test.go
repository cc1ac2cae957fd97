package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/state"
)

// chanSource sends an initial sync of its links, then whatever the test
// feeds it.
type chanSource struct {
	links []event.Link
	feed  chan event.Event
	fail  error // returned after the initial sync, if set
}

func (s *chanSource) Name() string { return "test" }

func (s *chanSource) Run(ctx context.Context, out chan<- event.Event) error {
	sync := event.Event{Source: "test", Kind: event.KindSync, Initial: true, Dump: &event.Dump{Links: s.links}}
	select {
	case out <- sync:
	case <-ctx.Done():
		return nil
	}
	if s.fail != nil {
		return s.fail
	}
	for {
		select {
		case ev := <-s.feed:
			select {
			case out <- ev:
			case <-ctx.Done():
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// recorder records the changes it handles as "link:event[:value]" strings.
// While gate is non-nil, a change of link gateLink waits for it.
type recorder struct {
	mu       sync.Mutex
	got      []string
	gate     chan struct{}
	gateLink string
	started  chan string
	ctxErrs  int
}

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) Handle(ctx context.Context, c event.Change) error {
	s := c.Link.Name + ":" + c.Type.String()
	switch {
	case c.Addr != nil:
		s += ":" + c.Addr.Prefix.String()
	case c.Type == event.OperStateChanged:
		s += ":" + c.Link.State
	}
	if c.Initial {
		s += ":initial"
	}
	if r.started != nil {
		r.started <- s
	}
	if r.gate != nil && c.Link.Name == r.gateLink {
		select {
		case <-r.gate:
		case <-ctx.Done():
			r.mu.Lock()
			r.ctxErrs++
			r.mu.Unlock()
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
	return nil
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func link(idx int, name string, carrier bool) event.Link {
	return event.Link{Index: idx, Name: name, AdminUp: true, Carrier: carrier}
}

func linkEvent(l event.Link) event.Event {
	return event.Event{Source: "test", Kind: event.KindLink, Link: &l}
}

func addrEvent(kind event.Kind, idx int, p string) event.Event {
	return event.Event{Source: "test", Kind: kind, Addr: &event.Addr{Index: idx, Prefix: netip.MustParsePrefix(p)}}
}

// start runs p in the background and returns a function that stops it and
// returns Run's error.
func start(t *testing.T, p *Pipeline) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	return func() error {
		cancel()
		return <-errc
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestInitialReplayThenReady(t *testing.T) {
	src := &chanSource{links: []event.Link{link(1, "lo", true)}, feed: make(chan event.Event)}
	rec := &recorder{}
	ready := make(chan struct{})
	p := New(Config{
		Sources: []Source{src}, Actions: []Action{rec}, Model: state.New("none"),
		OnReady: func() { close(ready) },
	})
	stop := start(t, p)
	<-ready
	waitFor(t, "3 initial changes", func() bool { return len(rec.snapshot()) == 3 })
	src.feed <- linkEvent(link(1, "lo", false))
	waitFor(t, "5 changes", func() bool { return len(rec.snapshot()) == 5 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{
		"lo:link-added:initial", "lo:carrier:initial", "lo:state:carrier:initial",
		"lo:no-carrier", "lo:state:no-carrier",
	}
	if diff := cmp.Diff(want, rec.snapshot()); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestCoalescingNewestStateWins(t *testing.T) {
	src := &chanSource{links: []event.Link{link(10, "veth0", true)}, feed: make(chan event.Event)}
	rec := &recorder{gate: make(chan struct{}), gateLink: "veth0", started: make(chan string, 100)}
	ready := make(chan struct{})
	p := New(Config{Sources: []Source{src}, Actions: []Action{rec}, Model: state.New("none"), OnReady: func() { close(ready) }})
	stop := start(t, p)
	<-ready
	// The first initial change blocks in the action; everything after it queues.
	if got := <-rec.started; got != "veth0:link-added:initial" {
		t.Fatalf("first change: got %q", got)
	}
	for _, ev := range []event.Event{
		linkEvent(link(10, "veth0", false)),                // carrier down (supersedes the queued initial carrier up)
		linkEvent(link(10, "veth0", true)),                 // carrier up again
		addrEvent(event.KindAddr, 10, "192.0.2.10/24"),     // added ...
		addrEvent(event.KindAddrGone, 10, "192.0.2.10/24"), // ... and removed: cancels out
		addrEvent(event.KindAddr, 10, "2001:db8::10/64"),   // stays
	} {
		src.feed <- ev
	}
	waitFor(t, "events applied", func() bool { return p.Stats().Events == 6 })
	close(rec.gate)
	waitFor(t, "queue drained", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.queues) == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{
		"veth0:link-added:initial",
		"veth0:carrier", // initial up, down, up: newest (up) runs once
		"veth0:address-added:2001:db8::10/64",
		"veth0:state:degraded", // carrier → no-carrier → carrier → degraded: newest wins
	}
	if diff := cmp.Diff(want, rec.snapshot()); diff != "" {
		t.Errorf("changes run (-want +got):\n%s", diff)
	}
	st := p.Stats()
	if st.Coalesced == 0 || st.Noops != 1 {
		t.Errorf("stats: got coalesced=%d noops=%d, want coalesced>0 noops=1", st.Coalesced, st.Noops)
	}
}

func TestSlowLinkDoesNotBlockOthers(t *testing.T) {
	src := &chanSource{links: []event.Link{link(10, "slow0", true), link(11, "fast0", true)}, feed: make(chan event.Event)}
	rec := &recorder{gate: make(chan struct{}), gateLink: "slow0"}
	ready := make(chan struct{})
	p := New(Config{Sources: []Source{src}, Actions: []Action{rec}, Model: state.New("none"), OnReady: func() { close(ready) }})
	stop := start(t, p)
	<-ready
	for i := range 50 {
		src.feed <- addrEvent(event.KindAddr, 11, fmt.Sprintf("10.0.0.%d/24", i+1))
	}
	// fast0's 50 addresses run while slow0 is blocked. (Its initial state
	// change may be coalesced with the later one, so count the addresses.)
	waitFor(t, "fast0's 50 addresses", func() bool {
		n := 0
		for _, s := range rec.snapshot() {
			if strings.HasPrefix(s, "fast0:address-added:") {
				n++
			}
		}
		return n == 50
	})
	for _, s := range rec.snapshot() {
		if s[:5] == "slow0" {
			t.Fatalf("slow0 change ran while gated: %s", s)
		}
	}
	close(rec.gate)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestAdmitFilters(t *testing.T) {
	src := &chanSource{links: []event.Link{link(1, "lo", true), link(2, "eth0", true)}, feed: make(chan event.Event)}
	rec := &recorder{}
	ready := make(chan struct{})
	p := New(Config{
		Sources: []Source{src}, Actions: []Action{rec}, Model: state.New("none"),
		Admit:   func(c event.Change) bool { return c.Link.Name != "lo" },
		OnReady: func() { close(ready) },
	})
	stop := start(t, p)
	<-ready
	waitFor(t, "eth0 changes", func() bool { return len(rec.snapshot()) == 3 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, s := range rec.snapshot() {
		if s[:3] == "lo:" {
			t.Errorf("change for filtered link ran: %s", s)
		}
	}
	if got := p.Stats().Filtered; got != 3 {
		t.Errorf("filtered: got %d, want 3", got)
	}
}

func TestSourceFailureStopsRun(t *testing.T) {
	boom := errors.New("socket gone")
	src := &chanSource{fail: boom}
	p := New(Config{Sources: []Source{src}, Model: state.New("none")})
	err := p.Run(t.Context())
	if !errors.Is(err, boom) {
		t.Fatalf("Run: got %v, want %v", err, boom)
	}
}

func TestShutdownCancelsActionsAfterDrain(t *testing.T) {
	src := &chanSource{links: []event.Link{link(10, "hang0", true)}, feed: make(chan event.Event)}
	rec := &recorder{gate: make(chan struct{}), gateLink: "hang0", started: make(chan string, 10)}
	p := New(Config{Sources: []Source{src}, Actions: []Action{rec}, Model: state.New("none"), Drain: 20 * time.Millisecond})
	stop := start(t, p)
	<-rec.started
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.ctxErrs != 1 {
		t.Errorf("actions that saw cancellation: got %d, want 1", rec.ctxErrs)
	}
	if got := p.Stats().Dropped; got != 2 {
		t.Errorf("dropped: got %d, want 2 (carrier and state)", got)
	}
}
