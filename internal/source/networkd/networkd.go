// Package networkd is netevd's systemd-networkd source: it listens to
// networkd's PropertiesChanged signals on the system bus, for every Link
// object (/org/freedesktop/network1/link/*) and for the Manager object
// (/org/freedesktop/network1), and sends what they say as event.KindManager
// reports. It satisfies pipeline.Source; cmd/netevd wires it for
// system.backend systemd-networkd. It sends no kernel events: the netlink
// source does that.
//
// A report on a link carries OperationalState and AdministrativeState as
// the States that select script directories (routable.d, configured.d,
// no-carrier.d, ...), and networkd's other state properties (CarrierState,
// AddressState, IPv4AddressState, IPv6AddressState, OnlineState) in Env
// under their own names. A report on the Manager object has Index 0
// (manager.d). The state model deduplicates per link and property.
//
// Handling a change of state never waits for networkd. networkd answers
// method calls from the same loop that configures links, so a call made
// while it configures one waits until it is done (Link.Describe at the
// carrier signal: about 8 ms, until the link is routable), and the
// changes queued behind that call would wait with it:
//
//   - Values come from the signals themselves. Properties are read
//     (GetAll) in the source's own loop only for complete reads: at
//     startup, after an outage, when networkd returns to the bus. A link
//     the source has not seen before, or whose properties a signal
//     invalidates, is read in the background (a new link's name with
//     Manager.GetLinkByIndex); the link is reported when the read returns,
//     and signals meanwhile are handled as usual. Every
//     value remembers the sequence number of the message it came from
//     (sdbus.CallSeq), so a signal that was sent before a read never
//     overwrites what the read returned, and a read never overwrites a
//     newer signal.
//   - DNS servers and search domains (Manager.DNS, Domains) come from the
//     link's state file, /run/systemd/netif/links/<ifindex> (DNS=,
//     DOMAINS=), read when the report is made: a local read. networkd
//     rewrites that file at the end of each iteration of its event loop,
//     after the signals of that iteration. Static servers are in it from
//     the start, and a lease's when the lease arrives, iterations before
//     its address makes the link routable: the routable report has them.
//     What changes in the same iteration as the state does is in the
//     link's next report: the reports of a carrier loss (no-carrier, its
//     addresses off) still carry the servers of the lease networkd drops
//     with the carrier; the next report has none.
//   - When EmitJSON is set, a report on a link carries a Describe function
//     (event.Manager.Describe) that calls Link.Describe on the source's
//     current connection. The script runner calls it only when scripts are
//     about to run for a change of that link and passes the result as
//     $JSON: networkd's own description, one compact line.
//
// Run subscribes first, then reads every link and the Manager and sends
// them as initial reports, then one KindSync marker. When the bus
// connection is lost (dbus-daemon restarted) or networkd leaves the bus, it
// logs that once, reconnects with backoff (100 ms doubling to 5 s) or waits
// for networkd's bus name to return, then reads everything again and
// reports it (not initial: unchanged links change nothing). It returns only
// when its context ends. No call it makes starts networkd by bus
// activation: it watches, it does not start what it watches.
package networkd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

// name is the source's name and the Source field of its events.
const name = "networkd"

// Bus names, interfaces and methods used.
const (
	busName      = "org.freedesktop.network1"
	ifaceManager = "org.freedesktop.network1.Manager"
	ifaceLink    = "org.freedesktop.network1.Link"
	ifaceProps   = "org.freedesktop.DBus.Properties"

	busDaemon      = "org.freedesktop.DBus"
	busDaemonPath  = "/org/freedesktop/DBus"
	errUnknownObj  = "org.freedesktop.DBus.Error.UnknownObject"
	errUnknownIfc  = "org.freedesktop.DBus.Error.UnknownInterface"
	errUnknownMeth = "org.freedesktop.DBus.Error.UnknownMethod"
)

// Tunables.
const (
	// signalBuffer is how many signals may wait while the source reads
	// everything (at startup, after an outage).
	signalBuffer = 1024
	// callTimeout bounds every method call, so a hung networkd cannot
	// stall the source for long.
	callTimeout = 5 * time.Second
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 5 * time.Second
	// defaultNetifDir is where networkd writes its state files.
	defaultNetifDir = "/run/systemd/netif"
)

// Why networkd is unavailable.
var (
	errBusLost    = errors.New("lost the connection to the bus")
	errNotOnBus   = errors.New("systemd-networkd (" + busName + ") is not on the bus")
	errLeftTheBus = errors.New("systemd-networkd left the bus")
	errNoConn     = errors.New("not connected to systemd-networkd")
	errNoDescribe = errors.New("systemd-networkd cannot describe links (Link.Describe needs systemd 248)")
)

// Options configure a Source.
type Options struct {
	// BusAddress is the bus to connect to; "" is the system bus (honouring
	// DBUS_SYSTEM_BUS_ADDRESS).
	BusAddress string
	// EmitJSON passes networkd's description of the link (Link.Describe)
	// to scripts as JSON: reports carry a Describe function.
	EmitJSON bool
}

// Stats counts a Source's work over all its runs.
type Stats struct {
	Signals   uint64 // PropertiesChanged signals handled
	Stale     uint64 // property values skipped because a newer message had set them
	Malformed uint64 // signals and replies without the expected shape
	Reports   uint64 // KindManager events sent (Gone reports included)
	Snapshots uint64 // complete reads: at startup, after outages, when networkd restarts
	Outages   uint64 // times networkd or the bus became unavailable
	Reads     uint64 // background reads of one object (a new link, invalidated properties)

	Describes      uint64        // Link.Describe calls (made by reports' Describe functions)
	DescribeErrors uint64        // Describe functions that returned an error
	DescribeTime   time.Duration // the calls' total duration
}

// bus is what the source needs from a bus connection; *sdbus.Conn has it
// and tests swap it.
type bus interface {
	CallSeq(ctx context.Context, dest, path, method string, args ...any) ([]any, uint64, error)
	SubscribeSeq(ctx context.Context, size int, matches ...sdbus.Match) (<-chan sdbus.SeqSignal, error)
	Done() <-chan struct{}
	Close() error
}

// Source is the systemd-networkd event source.
type Source struct {
	opts     Options
	log      *slog.Logger
	dial     func(ctx context.Context, address string) (bus, error)
	netifDir string

	// Shared with the Describe functions of reports, which other
	// goroutines call at any time: the current session's connection (nil
	// between sessions), and whether networkd turned out to have no
	// Link.Describe.
	conn       atomic.Pointer[busRef]
	noDescribe atomic.Bool

	signals, stale, malformed, reports, snapshots, outages, reads atomic.Uint64
	describes, describeErrors, describeNanos                      atomic.Uint64
}

// busRef holds a bus for atomic.Pointer.
type busRef struct{ bus }

// New returns a Source for opts. It connects to nothing: Run does.
func New(opts Options, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{
		opts:     opts,
		log:      log.With("component", "networkd"),
		dial:     dialBus,
		netifDir: defaultNetifDir,
	}, nil
}

func dialBus(ctx context.Context, address string) (bus, error) {
	c, err := sdbus.Dial(ctx, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// sleep waits d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Name returns "networkd".
func (s *Source) Name() string { return name }

// Stats returns the counters.
func (s *Source) Stats() Stats {
	return Stats{
		Signals: s.signals.Load(), Stale: s.stale.Load(), Malformed: s.malformed.Load(),
		Reports: s.reports.Load(), Snapshots: s.snapshots.Load(), Outages: s.outages.Load(),
		Reads:     s.reads.Load(),
		Describes: s.describes.Load(), DescribeErrors: s.describeErrors.Load(),
		DescribeTime: time.Duration(s.describeNanos.Load()),
	}
}

// Run follows the pipeline's source contract (see the package comment) and
// returns nil when ctx ends. It never gives up on networkd. Run must not be
// called again before an earlier call returned.
func (s *Source) Run(ctx context.Context, out chan<- event.Event) error {
	r := &runner{s: s, out: out, objs: map[int]*object{}, backoff: minBackoff}
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.lost(err)
		r.ensureSynced(ctx)
		if !sleep(ctx, r.backoff) {
			return nil
		}
		r.backoff = min(2*r.backoff, maxBackoff)
	}
}

// runner is the state of one Run; only Run's goroutine touches it, apart
// from the background reads, which get what they need as arguments and
// hand their result back on reads.
type runner struct {
	s   *Source
	out chan<- event.Event
	bus bus // the current session's connection

	// The current session's background reads: they send their results on
	// reads, and the session waits for them (wg) before it ends.
	reads chan readResult
	wg    sync.WaitGroup

	objs     map[int]*object // by ifindex; 0 is the Manager
	synced   bool            // the initial KindSync marker was sent
	watching bool            // a snapshot succeeded once

	backoff   time.Duration
	down      bool // networkd is unavailable; logged once
	downSince time.Time
	retries   int
}

// session connects, subscribes, reads everything and handles signals until
// the connection is lost or ctx ends. It returns why it ended.
func (r *runner) session(ctx context.Context) error {
	b, err := r.s.dial(ctx, r.s.opts.BusAddress)
	if err != nil {
		return err
	}
	defer b.Close()
	r.bus = b
	r.s.conn.Store(&busRef{b})
	defer r.s.conn.Store(nil) // before Close: Describe functions fail fast
	for idx, o := range r.objs {
		if o.pending {
			delete(r.objs, idx) // never reported; the snapshot finds it if it still exists
			continue
		}
		o.forget() // sequence numbers belong to one connection
		o.reading = false
	}
	sctx, cancel := context.WithCancel(ctx)
	r.reads = make(chan readResult)
	defer func() {
		cancel() // ends the background reads' calls
		r.wg.Wait()
	}()
	sigs, err := b.SubscribeSeq(sctx, signalBuffer,
		sdbus.Match{Sender: busName, Interface: ifaceProps, Member: "PropertiesChanged", PathNamespace: managerPath},
		sdbus.Match{Sender: busDaemon, Interface: busDaemon, Member: "NameOwnerChanged", Path: busDaemonPath},
	)
	if err != nil {
		return err
	}
	if err := r.resync(sctx); err != nil {
		return err
	}
	r.ensureSynced(sctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-sigs:
			if !ok {
				return errBusLost
			}
			if err := r.signal(sctx, sig); err != nil {
				return err
			}
		case res := <-r.reads:
			r.readDone(sctx, res)
		}
	}
}

// resync reads and reports everything if networkd is on the bus, and notes
// the outage if it is not. An error means the connection should be
// dropped and made again.
func (r *runner) resync(ctx context.Context) error {
	owned, err := r.hasOwner(ctx)
	if err != nil {
		return err
	}
	if !owned {
		r.lost(errNotOnBus)
		return nil
	}
	err = r.snapshot(ctx)
	if err == nil {
		return nil
	}
	if owned, herr := r.hasOwner(ctx); herr != nil || owned {
		return errors.Join(err, herr) // still there: retry on a fresh connection
	}
	r.lost(errLeftTheBus) // it left while we read; its return brings a NameOwnerChanged
	return nil
}

// signal handles one signal. An error drops the connection.
func (r *runner) signal(ctx context.Context, sig sdbus.SeqSignal) error {
	switch {
	case sig.Interface == busDaemon && sig.Member == "NameOwnerChanged":
		if len(sig.Body) != 3 {
			r.s.malformed.Add(1)
			return nil
		}
		if n, _ := sig.Body[0].(string); n != busName {
			return nil
		}
		if owner, _ := sig.Body[2].(string); owner == "" {
			r.lost(errLeftTheBus)
			return nil
		}
		return r.resync(ctx) // networkd started (again)
	case sig.Interface == ifaceProps && sig.Member == "PropertiesChanged":
		r.propertiesChanged(ctx, sig)
	}
	return nil
}

// propertiesChanged applies a PropertiesChanged signal: (interface,
// changed properties, invalidated property names).
func (r *runner) propertiesChanged(ctx context.Context, sig sdbus.SeqSignal) {
	now := time.Now()
	var (
		iface       string
		changed     map[string]any
		invalidated []string
		ok          = len(sig.Body) == 3
	)
	if ok {
		iface, ok = sig.Body[0].(string)
	}
	if ok {
		changed, ok = sig.Body[1].(map[string]any)
	}
	if ok {
		invalidated, ok = sig.Body[2].([]string)
		if !ok && sig.Body[2] == nil {
			ok = true
		}
	}
	if !ok {
		r.s.malformed.Add(1)
		r.s.log.Debug("malformed PropertiesChanged signal", "path", sig.Path, "body", fmt.Sprint(sig.Body))
		return
	}
	var idx int
	switch {
	case iface == ifaceManager && sig.Path == managerPath:
	case iface == ifaceLink:
		var err error
		if idx, err = linkIndex(sig.Path); err != nil {
			r.s.malformed.Add(1)
			r.s.log.Debug("PropertiesChanged on an unknown object", "error", err)
			return
		}
	default:
		return
	}
	r.s.signals.Add(1)

	o := r.objs[idx]
	if o == nil {
		// A link created after the last snapshot (or the Manager, if the
		// snapshot could not read it): read all of it in the background
		// and report it when the read returns. Until then its signals
		// are applied but not reported.
		o = newObject(sig.Path)
		o.pending = true
		r.objs[idx] = o
		r.readLater(ctx, idx, o, now)
	}
	diff, stale := o.apply(changed, sig.Seq)
	r.s.stale.Add(uint64(stale))
	if len(invalidated) > 0 {
		// networkd sends values, but a property may be announced as
		// changed without one: read them all. A read in flight covers
		// it: its reply comes after this signal.
		r.readLater(ctx, idx, o, now)
	}
	if diff && !o.pending {
		r.emit(ctx, idx, o, now, false)
	}
}

// emit sends the report on object idx, with the DNS servers and search
// domains of the link's state file and, with EmitJSON, the function that
// describes the link. A link that networkd lingers (the kernel removed
// it) is reported Gone after.
func (r *runner) emit(ctx context.Context, idx int, o *object, t time.Time, initial bool) {
	m := o.report(idx)
	if idx != 0 {
		m.DNS, m.Domains = r.s.linkDNS(idx)
		if r.s.opts.EmitJSON && !r.s.noDescribe.Load() {
			m.Describe = r.s.describer(idx, o.path)
		}
	}
	r.send(ctx, event.Event{Source: name, Kind: event.KindManager, Time: t, Manager: m, Initial: initial})
	if idx != 0 && o.props[propAdministrative] == stateLinger {
		r.gone(ctx, idx, t)
	}
}

// gone reports that networkd no longer knows link idx and forgets it. A
// link that was never reported is forgotten silently.
func (r *runner) gone(ctx context.Context, idx int, t time.Time) {
	o := r.objs[idx]
	delete(r.objs, idx)
	if o != nil && o.pending {
		return
	}
	m := &event.Manager{Backend: Backend, Index: idx, Gone: true}
	if o != nil {
		m.Name = o.name
	}
	r.send(ctx, event.Event{Source: name, Kind: event.KindManager, Time: t, Manager: m})
}

func (r *runner) send(ctx context.Context, ev event.Event) {
	select {
	case r.out <- ev:
		if ev.Kind == event.KindManager {
			r.s.reports.Add(1)
		}
	case <-ctx.Done():
	}
}

// ensureSynced sends the initial KindSync marker once: after the first
// snapshot, or as soon as networkd turns out to be unavailable, so that an
// absent networkd does not hold up the daemon's readiness.
func (r *runner) ensureSynced(ctx context.Context) {
	if r.synced {
		return
	}
	r.synced = true
	r.send(ctx, event.Event{Source: name, Kind: event.KindSync, Time: time.Now(), Initial: true})
}

// lost notes that networkd is unavailable; it logs once per outage.
func (r *runner) lost(why error) {
	r.retries++
	if r.down {
		r.s.log.Debug("systemd-networkd still unavailable", "reason", why, "attempts", r.retries)
		return
	}
	r.down, r.downSince, r.retries = true, time.Now(), 0
	r.s.outages.Add(1)
	r.s.log.Warn("systemd-networkd unavailable; waiting for it", "reason", why)
}

// up notes a successful snapshot and ends an outage.
func (r *runner) up(links int) {
	r.backoff = minBackoff
	switch {
	case r.down:
		r.s.log.Info("systemd-networkd available again", "links", links,
			"after", time.Since(r.downSince).Round(time.Millisecond), "attempts", r.retries)
	case !r.watching:
		r.s.log.Info("watching systemd-networkd", "links", links, "json", r.s.opts.EmitJSON)
	}
	r.down, r.watching, r.retries = false, true, 0
}
