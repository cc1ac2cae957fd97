// Package pipeline is netevd's run loop: it reads Events from the sources,
// folds them into the state model, and hands every resulting Change to the
// actions, one link at a time and different links in parallel.
//
// Per link, changes wait in a queue that holds at most one change per topic
// (the carrier, one address, one route, the operational state): a newer
// change replaces a queued one, so a link that flaps while its scripts run
// ends with the scripts seeing its newest state, and a pair that cancels out
// (down, then up again) runs nothing. The run loop never waits for an action.
//
// The package defines the interfaces it consumes (Source, Action) and never
// imports a concrete source, action or observer; cmd/netevd wires them.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/state"
)

// Config is what a Pipeline is built from.
type Config struct {
	Sources []Source
	Actions []Action
	Model   *state.Model

	// Admit decides whether a change reaches the actions (monitored
	// interfaces). Nil admits everything.
	Admit func(event.Change) bool
	// MaxParallel bounds how many links run actions at once (default 16).
	MaxParallel int
	// Drain bounds how long queued changes may still run after shutdown
	// begins; then running actions see their context canceled (default 5s).
	Drain time.Duration
	// OnReady is called once, after every source's initial state has been
	// applied and its changes queued.
	OnReady func()
	Log     *slog.Logger
}

// Stats are the pipeline's counters since it started.
type Stats struct {
	Events       uint64 // events read from sources
	Changes      uint64 // changes the state model produced
	Filtered     uint64 // changes not admitted (unmonitored interfaces)
	Coalesced    uint64 // queued changes replaced by a newer one
	Noops        uint64 // coalesced changes that cancelled out and ran nothing
	Dropped      uint64 // queued changes abandoned at shutdown
	ActionRuns   uint64 // action invocations
	ActionErrors uint64 // action invocations that returned an error
}

// Pipeline is the run loop. Build it with New and start it with Run.
type Pipeline struct {
	cfg Config
	log *slog.Logger
	sem chan struct{}

	events, changes, filtered, coalesced  atomic.Uint64
	noops, dropped, actionRuns, actionErr atomic.Uint64

	actCtx    context.Context // canceled when the drain ends
	cancelAct context.CancelFunc
	wg        sync.WaitGroup // workers

	mu     sync.Mutex // guards the fields below
	queues map[int]*linkQueue
}

// New returns a pipeline for cfg. It starts nothing.
func New(cfg Config) *Pipeline {
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = 16
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 5 * time.Second
	}
	if cfg.Model == nil {
		cfg.Model = state.New("none")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	actCtx, cancel := context.WithCancel(context.Background())
	return &Pipeline{
		cfg:       cfg,
		log:       log.With("component", "pipeline"),
		sem:       make(chan struct{}, cfg.MaxParallel),
		actCtx:    actCtx,
		cancelAct: cancel,
		queues:    make(map[int]*linkQueue),
	}
}

// Model returns the state model the pipeline feeds.
func (p *Pipeline) Model() *state.Model { return p.cfg.Model }

// Stats returns the current counters.
func (p *Pipeline) Stats() Stats {
	return Stats{
		Events: p.events.Load(), Changes: p.changes.Load(), Filtered: p.filtered.Load(),
		Coalesced: p.coalesced.Load(), Noops: p.noops.Load(), Dropped: p.dropped.Load(),
		ActionRuns: p.actionRuns.Load(), ActionErrors: p.actionErr.Load(),
	}
}

// Run reads events until ctx ends or a source fails, then stops the
// sources, lets queued changes run for at most Config.Drain, cancels what
// still runs and waits for it. It returns nil after a clean shutdown and the
// source's error if a source failed.
func (p *Pipeline) Run(ctx context.Context) error {
	defer p.cancelAct()
	srcCtx, stopSources := context.WithCancel(ctx)
	defer stopSources()

	events := make(chan event.Event, 1024)
	errc := make(chan error, len(p.cfg.Sources))
	var srcWG sync.WaitGroup
	for _, s := range p.cfg.Sources {
		srcWG.Go(func() {
			err := s.Run(srcCtx, events)
			if err == nil && srcCtx.Err() == nil {
				err = errors.New("stopped unexpectedly")
			}
			if err != nil && srcCtx.Err() == nil {
				err = fmt.Errorf("source %s: %w", s.Name(), err)
			} else {
				err = nil
			}
			errc <- err
		})
	}

	var (
		failed  error
		initial = make(map[string]bool)
		ready   = len(p.cfg.Sources) == 0
	)
	if ready && p.cfg.OnReady != nil {
		p.cfg.OnReady()
	}
loop:
	for {
		select {
		case ev := <-events:
			p.handle(ev)
			if !ready && ev.Kind == event.KindSync && ev.Initial {
				initial[ev.Source] = true
				if len(initial) >= len(p.cfg.Sources) {
					ready = true
					if p.cfg.OnReady != nil {
						p.cfg.OnReady()
					}
				}
			}
		case err := <-errc:
			if err != nil {
				failed = err
				break loop
			}
		case <-ctx.Done():
			break loop
		}
	}

	stopSources()
	srcWG.Wait() // sources select on their ctx when sending, so none is stuck
	p.shutdown()
	return failed
}

// handle applies one event and queues the changes it produced.
func (p *Pipeline) handle(ev event.Event) {
	p.events.Add(1)
	d := p.cfg.Model.Apply(ev)
	for _, c := range d.Changes {
		c.ID = p.changes.Add(1)
		if p.cfg.Admit != nil && !p.cfg.Admit(c) {
			p.filtered.Add(1)
			continue
		}
		if p.log.Enabled(context.Background(), slog.LevelDebug) {
			p.log.Debug("change", "id", c.ID, "event", c.Type.String(), "link", c.Link.Name,
				"index", c.Link.Index, "state", c.Link.State, "old_state", c.OldState, "initial", c.Initial)
		}
		p.enqueue(c)
	}
}

func (p *Pipeline) enqueue(c event.Change) {
	idx := c.Link.Index
	p.mu.Lock()
	defer p.mu.Unlock()
	q, ok := p.queues[idx]
	if !ok {
		q = &linkQueue{}
		p.queues[idx] = q
	}
	if q.push(c) {
		p.coalesced.Add(1)
	}
	if !q.running {
		q.running = true
		p.wg.Add(1)
		go p.work(idx, q)
	}
}

// work runs the queue of one link until it is empty.
func (p *Pipeline) work(idx int, q *linkQueue) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		j := q.pop()
		if j == nil {
			q.running = false
			delete(p.queues, idx)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		p.run(j)
	}
}

func (p *Pipeline) run(j *job) {
	c := j.c
	if p.actCtx.Err() != nil {
		p.dropped.Add(1)
		p.log.Debug("change dropped at shutdown", "id", c.ID, "event", c.Type.String(), "link", c.Link.Name)
		return
	}
	if j.noop() {
		p.noops.Add(1)
		p.log.Debug("coalesced changes cancel out; nothing to run", "id", c.ID,
			"event", c.Type.String(), "link", c.Link.Name, "coalesced", c.Coalesced)
		return
	}
	select {
	case p.sem <- struct{}{}:
	case <-p.actCtx.Done():
		p.dropped.Add(1)
		return
	}
	defer func() { <-p.sem }()
	for _, a := range p.cfg.Actions {
		p.actionRuns.Add(1)
		if err := a.Handle(p.actCtx, c); err != nil {
			p.actionErr.Add(1)
			p.log.Warn("action failed", "action", a.Name(), "id", c.ID, "event", c.Type.String(),
				"link", c.Link.Name, "error", err)
		}
	}
}

// shutdown waits up to Drain for the queues to empty, then cancels running
// actions and waits for them to return.
func (p *Pipeline) shutdown() {
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(p.cfg.Drain)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	p.log.Info("drain timed out; stopping running actions", "drain", p.cfg.Drain)
	p.cancelAct()
	<-done
}
