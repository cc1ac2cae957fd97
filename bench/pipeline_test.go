package bench

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/netevd/netevd/internal/action/script"
	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/pipeline"
	"github.com/netevd/netevd/internal/state"
)

// feed is a pipeline.Source that forwards the events the benchmark sends.
type feed struct{ in chan event.Event }

func (f *feed) Name() string { return "bench" }

func (f *feed) Run(ctx context.Context, out chan<- event.Event) error {
	for {
		select {
		case ev := <-f.in:
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

// signal is a pipeline.Action, placed after the script runner, that tells
// the benchmark a change has been handled.
type signal chan struct{}

func (s signal) Name() string { return "signal" }

func (s signal) Handle(context.Context, event.Change) error {
	s <- struct{}{}
	return nil
}

// flapRig is a running pipeline with the real state model and script
// runner, fed carrier flaps of one veth.
type flapRig struct {
	in      chan event.Event
	handled signal
	up      event.Event
	down    event.Event
	nUp     int // changes one up event produces
	nDown   int // changes one down event produces
	runner  *script.Runner
	p       *pipeline.Pipeline
	stop    func()
}

func newFlapRig(b *testing.B, scriptsDir string) *flapRig {
	b.Helper()
	runner, err := script.New(script.Config{Dir: scriptsDir}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := runner.EnsureDirs(); err != nil {
		b.Fatal(err)
	}
	link := func(carrier bool) event.Event {
		l := event.Link{Index: 10, Name: "veth0", Kind: "veth", MAC: "02:00:00:00:00:0a", MTU: 1500,
			AdminUp: true, Carrier: carrier, OperState: "down", Flags: 0x1003}
		if carrier {
			l.OperState, l.Flags = "up", 0x11043
		}
		return event.Event{Source: "bench", Kind: event.KindLink, Link: &l}
	}
	r := &flapRig{in: make(chan event.Event), handled: make(signal, 16), up: link(true), down: link(false), runner: runner}
	sync := event.Event{Source: "bench", Kind: event.KindSync, Initial: true,
		Dump: &event.Dump{Links: []event.Link{*r.down.Link}}}

	// A second model tells how many changes each event produces, so the
	// benchmark knows how many to wait for.
	shadow := state.New("none")
	nSync := len(shadow.Apply(sync).Changes)
	r.nUp = len(shadow.Apply(r.up).Changes)
	r.nDown = len(shadow.Apply(r.down).Changes)
	if r.nUp == 0 || r.nDown == 0 {
		b.Fatalf("a carrier flap produces %d and %d changes; want some", r.nUp, r.nDown)
	}

	ready := make(chan struct{})
	r.p = pipeline.New(pipeline.Config{
		Sources: []pipeline.Source{&feed{in: r.in}},
		Actions: []pipeline.Action{runner, r.handled},
		Model:   state.New("none"),
		OnReady: func() { close(ready) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.p.Run(ctx) }()
	r.stop = func() {
		cancel()
		if err := <-errc; err != nil {
			b.Errorf("pipeline: %v", err)
		}
	}
	r.in <- sync
	<-ready
	r.wait(nSync)
	return r
}

func (r *flapRig) wait(n int) {
	for range n {
		<-r.handled
	}
}

// flap sends one carrier edge and waits until every change it produced
// has been through the actions.
func (r *flapRig) flap(up bool) {
	if up {
		r.in <- r.up
		r.wait(r.nUp)
		return
	}
	r.in <- r.down
	r.wait(r.nDown)
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkPipelineCarrierFlapNoScripts feeds carrier edges of one link
// through the real pipeline, state model and script runner, with every
// script directory present and empty. One op is one edge (up or down) and
// all the changes it causes. No process may start, allocations per op must
// not depend on b.N, and the live heap must not grow; the benchmark
// reports allocs/op, the live-heap growth over the whole run and the
// changes per op.
func BenchmarkPipelineCarrierFlapNoScripts(b *testing.B) {
	r := newFlapRig(b, b.TempDir())
	defer r.stop()
	for range 100 { // reach the steady state: maps, pools, goroutine stacks
		r.flap(true)
		r.flap(false)
	}
	before := liveHeap()
	changesBefore := r.p.Stats().Changes
	b.ReportAllocs()
	up := true
	ops := 0
	for b.Loop() {
		r.flap(up)
		up = !up
		ops++
	}
	after := liveHeap()
	st := r.p.Stats()
	if runs := r.runner.Stats().Runs; runs != 0 {
		b.Fatalf("the runner started %d scripts; want none", runs)
	}
	if st.ActionErrors != 0 || st.Coalesced != 0 {
		b.Fatalf("pipeline stats %+v: want no action errors and nothing coalesced", st)
	}
	b.ReportMetric(float64(int64(after)-int64(before)), "live-heap-growth-B")
	b.ReportMetric(float64(st.Changes-changesBefore)/float64(ops), "changes/op")
}

// BenchmarkPipelineCarrierFlapScript is the same with a script in
// carrier.d and no-carrier.d (a copy of /bin/true): one op is one edge,
// its changes, and one script started, waited for and logged. It needs
// root, because the runner runs only root-owned scripts.
func BenchmarkPipelineCarrierFlapScript(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: the runner refuses scripts not owned by root")
	}
	truePath := "/bin/true"
	prog, err := os.ReadFile(truePath)
	if err != nil {
		b.Skipf("needs %s: %v", truePath, err)
	}
	dir := b.TempDir()
	for _, d := range []string{"carrier.d", "no-carrier.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, d, "50-true")
		if err := os.WriteFile(p, prog, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	r := newFlapRig(b, dir)
	defer r.stop()
	r.flap(true)
	r.flap(false)
	runsBefore := r.runner.Stats().Runs
	up := true
	ops := 0
	b.ReportAllocs()
	for b.Loop() {
		r.flap(up)
		up = !up
		ops++
	}
	s := r.runner.Stats()
	if got := s.Runs - runsBefore; got != uint64(ops) || s.Failures != 0 {
		b.Fatalf("%d scripts ran (%d failed) for %d edges; want one each, no failures", got, s.Failures, ops)
	}
}
