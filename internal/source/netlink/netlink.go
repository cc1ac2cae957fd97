// Package netlink is netevd's kernel source: it watches links, addresses,
// routes and rule deletions over rtnetlink (through internal/rtnl) and
// sends them as events. It satisfies pipeline.Source; cmd/netevd wires it.
//
// Run follows the pipeline's source contract: it subscribes first, then
// dumps the kernel's state and sends it as one initial KindSync, then
// streams decoded changes. When the socket overruns (the kernel dropped
// messages), it dumps again and sends a non-initial KindSync from which the
// state model's diff recovers whatever was missed.
package netlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/rtnl"
)

// name is the source's name and the Source field of its events.
const name = "netlink"

// overrunLogEvery bounds how often an overrun is logged.
const overrunLogEvery = 10 * time.Second

// Options configure a Source.
type Options struct {
	NetNS      string // network namespace file to watch, e.g. /run/netns/NAME; "" is the current namespace
	ReadBuffer int    // socket receive buffer in bytes; 0 means rtnl.DefaultReadBuffer
}

// Stats counts a Source's work over all its runs.
type Stats struct {
	Messages  uint64 // netlink messages received
	Malformed uint64 // messages dropped because they did not decode
	Events    uint64 // change events sent (syncs not included)
	Overruns  uint64 // socket overruns (ENOBUFS)
	Resyncs   uint64 // non-initial KindSync events sent
	// RouteSyncs counts route re-reads after the kernel may have flushed
	// routes silently (an IPv4 address deleted, a link set down).
	RouteSyncs uint64
}

// monitor is what Run needs from rtnl.Monitor; tests swap it.
type monitor interface {
	Receive() ([]event.Event, error)
	Close() error
	Stats() rtnl.MonitorStats
}

// Source is the rtnetlink event source.
type Source struct {
	opts       Options
	log        *slog.Logger
	open       func() (monitor, error)
	dump       func(ctx context.Context) (*event.Dump, error)
	dumpRoutes func(ctx context.Context) (*event.Dump, error)
	limit      logLimit

	events     atomic.Uint64
	resyncs    atomic.Uint64
	routeSyncs atomic.Uint64

	mu   sync.Mutex        // guards the fields below
	cur  monitor           // the running monitor, nil between runs
	past rtnl.MonitorStats // counters of monitors already closed
}

// New returns a Source for opts. It opens nothing: Run does.
func New(opts Options, log *slog.Logger) (*Source, error) {
	if opts.ReadBuffer < 0 {
		return nil, fmt.Errorf("read buffer %d: must not be negative", opts.ReadBuffer)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", name)
	ns := rtnl.NetNS{Path: opts.NetNS}
	s := &Source{opts: opts, log: log, limit: logLimit{every: overrunLogEvery}}
	s.open = func() (monitor, error) {
		return rtnl.OpenMonitor(rtnl.MonitorConfig{NetNS: ns, ReadBuffer: opts.ReadBuffer}, log)
	}
	s.dump = func(ctx context.Context) (*event.Dump, error) { return rtnl.Dump(ctx, ns) }
	s.dumpRoutes = func(ctx context.Context) (*event.Dump, error) { return rtnl.DumpRoutes(ctx, ns) }
	return s, nil
}

// Name returns "netlink".
func (s *Source) Name() string { return name }

// Run watches the kernel and sends events to out until ctx ends, then
// returns nil. Sending blocks while out is full; that is the pipeline's
// backpressure, and an overrun it causes is repaired by a resync. Run
// returns an error when the socket or a dump fails for another reason.
func (s *Source) Run(ctx context.Context, out chan<- event.Event) error {
	mon, err := s.open()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.cur = mon
	s.mu.Unlock()
	defer s.retire(mon)
	// Closing the socket is what unblocks a pending Receive.
	stop := context.AfterFunc(ctx, func() { _ = mon.Close() })
	defer stop()

	if err := s.sync(ctx, out, true); err != nil {
		return ignoreDone(ctx, fmt.Errorf("initial dump: %w", err))
	}

	// A reader goroutine keeps the socket drained into recv, so the loop
	// below can tell when the kernel has nothing more to say: that is when
	// it re-reads the routes after a silent flush, once per burst.
	recv := make(chan receipt, 64)
	done := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() { s.read(mon, recv, done) })
	defer func() {
		close(done)
		_ = mon.Close()
		reader.Wait()
	}()

	reread := false
	for {
		var r receipt
		if reread {
			select {
			case r = <-recv:
			default:
				if err := s.syncRoutes(ctx, out); err != nil {
					return ignoreDone(ctx, fmt.Errorf("route re-read: %w", err))
				}
				reread = false
				continue
			}
		} else {
			select {
			case r = <-recv:
			case <-ctx.Done():
				return nil
			}
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(r.err, rtnl.ErrOverrun):
			if ok, suppressed := s.limit.allow(time.Now()); ok {
				s.log.Warn("netlink socket overrun, messages were lost; resyncing",
					"suppressed", suppressed, "read_buffer", s.opts.ReadBuffer)
			}
			if err := s.sync(ctx, out, false); err != nil {
				return ignoreDone(ctx, fmt.Errorf("resync after overrun: %w", err))
			}
			reread = false // the full dump read the routes too
			continue
		case r.err != nil:
			return r.err
		}
		for _, ev := range r.evs {
			ev.Source = name
			reread = reread || flushesRoutes(ev)
			select {
			case out <- ev:
				s.events.Add(1)
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// receipt is one Receive result.
type receipt struct {
	evs []event.Event
	err error
}

// read receives from mon into recv until done is closed or Receive fails
// for another reason than an overrun (which the socket survives).
func (s *Source) read(mon monitor, recv chan<- receipt, done <-chan struct{}) {
	for {
		evs, err := mon.Receive()
		select {
		case recv <- receipt{evs, err}:
		case <-done:
			return
		}
		if err != nil && !errors.Is(err, rtnl.ErrOverrun) {
			return
		}
	}
}

// flushesRoutes reports whether the kernel may have deleted routes without
// telling: it flushes the IPv4 routes that use an address when the address
// is deleted, and a link's IPv4 routes when the link goes down, and sends no
// RTM_DELROUTE for either.
func flushesRoutes(ev event.Event) bool {
	switch ev.Kind {
	case event.KindAddrGone:
		return ev.Addr != nil && ev.Addr.Prefix.Addr().Is4()
	case event.KindLink:
		return ev.Link != nil && !ev.Link.AdminUp
	}
	return false
}

// syncRoutes re-reads the routes and sends them as one KindRouteSync.
func (s *Source) syncRoutes(ctx context.Context, out chan<- event.Event) error {
	d, err := s.dumpRoutes(ctx)
	if err != nil {
		if !errors.Is(err, rtnl.ErrDumpInterrupted) || d == nil {
			return err
		}
	}
	ev := event.Event{Source: name, Kind: event.KindRouteSync, Time: time.Now(), Dump: d}
	select {
	case out <- ev:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.routeSyncs.Add(1)
	return nil
}

// sync dumps the kernel's state and sends it as one KindSync event.
func (s *Source) sync(ctx context.Context, out chan<- event.Event, initial bool) error {
	d, err := s.dump(ctx)
	if err != nil {
		if !errors.Is(err, rtnl.ErrDumpInterrupted) || d == nil {
			return err
		}
		// Usable: the subscription reports the changes that interrupted it.
		s.log.Warn("netlink dump stayed inconsistent; using the last read", "err", err)
	}
	ev := event.Event{Source: name, Kind: event.KindSync, Time: time.Now(), Dump: d, Initial: initial}
	select {
	case out <- ev:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !initial {
		s.resyncs.Add(1)
	}
	return nil
}

// ignoreDone maps an error caused by ctx ending to nil.
func ignoreDone(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// retire closes mon and folds its counters into the past ones.
func (s *Source) retire(mon monitor) {
	_ = mon.Close()
	st := mon.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = nil
	s.past.Messages += st.Messages
	s.past.Malformed += st.Malformed
	s.past.Overruns += st.Overruns
}

// Stats returns the counters so far. It is safe to call at any time.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	st := s.past
	if s.cur != nil {
		c := s.cur.Stats()
		st.Messages += c.Messages
		st.Malformed += c.Malformed
		st.Overruns += c.Overruns
	}
	s.mu.Unlock()
	return Stats{
		Messages:  st.Messages,
		Malformed: st.Malformed,
		Overruns:  st.Overruns,
		Events:    s.events.Load(),
		Resyncs:   s.resyncs.Load(),

		RouteSyncs: s.routeSyncs.Load(),
	}
}

// logLimit lets one log line through per interval and counts the ones it
// held back.
type logLimit struct {
	every time.Duration

	mu         sync.Mutex // guards the fields below
	last       time.Time
	suppressed int
}

// allow reports whether to log now and, if so, how many lines were
// suppressed since the last one.
func (l *logLimit) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	l.last = now
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
