// Package nm is netevd's NetworkManager source: it follows NetworkManager
// over D-Bus (through internal/sdbus) and reports each device's state, and
// NetworkManager's own, as event.KindManager events. It satisfies
// pipeline.Source; cmd/netevd wires it. Kernel events come from the netlink
// source, not from here.
//
// A device's report (event.Manager) carries its NMDeviceState by name in
// States["DeviceState"] ("activated", "disconnected", "ip-config", ...:
// see DeviceStateName), which selects the script directory of that name,
// and in Env the variables NetworkManager-dispatcher gives its scripts
// (CONNECTION_ID, CONNECTION_UUID, DEVICE_IFACE, IP4_ADDRESS_0, DHCP4_*,
// ...) plus DEVICE_STATE_REASON and DEVICE_STATE_REASON_NAME. The state
// and reason come from the Device.StateChanged signal; the variables are
// read from the device's objects when the signal arrives. NetworkManager's
// global state is reported for Index 0 (manager.d) as States["NMState"].
//
// Run subscribes first, then lists the devices and replays their current
// states as initial reports, ends the replay with the KindSync marker, and
// then follows the signals. It survives NetworkManager restarts (it
// re-reads everything when the name has a new owner) and the loss of the
// bus (it reconnects with backoff and re-reads), logging each outage once.
package nm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

// name is the source's name and the Source field of its events.
const name = "nm"

// Backend is the Backend of every report, as config names the backend.
const Backend = "NetworkManager"

const (
	minBackoff    = 100 * time.Millisecond
	maxBackoff    = 5 * time.Second
	readTimeout   = 10 * time.Second // bounds the reads for one device or signal
	signalBuffer  = 256
	maxSettle     = 8 // rounds of re-reading what changed during a resync
	maxResyncs    = 4 // resyncs in a row when NetworkManager restarts during one
	errorLogLimit = 10 * time.Second
	// retryWarnAfter is how many failed re-reads in a row (about 1.5 s)
	// are logged at debug level before one warning.
	retryWarnAfter = 5
)

// Options configure a Source.
type Options struct {
	// BusAddress is the D-Bus address to connect to; "" is the system bus
	// (DBUS_SYSTEM_BUS_ADDRESS or /run/dbus/system_bus_socket).
	BusAddress string
}

// Source is the NetworkManager event source.
type Source struct {
	opts    Options
	log     *slog.Logger
	dial    func(ctx context.Context, address string) (bus, error)
	ifindex func(name string) (int, error) // kernel ifindex of an interface name
}

// New returns a Source for opts. It connects to nothing: Run does.
func New(opts Options, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{
		opts: opts,
		log:  log.With("component", name),
		dial: func(ctx context.Context, address string) (bus, error) {
			c, err := sdbus.Dial(ctx, address)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		ifindex: ifindexByName,
	}, nil
}

// ifindexByName asks the kernel for the index of the interface name in
// the current network namespace (SIOCGIFINDEX: one lookup, not a dump of
// every link).
func ifindexByName(name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("interface %q: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket for SIOCGIFINDEX: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("interface %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// Name returns "nm".
func (s *Source) Name() string { return name }

// Run follows NetworkManager and sends its reports to out until ctx ends,
// then returns nil. It never gives up: without a bus or without
// NetworkManager it waits and retries, and it sends the startup marker
// after its first attempt either way, so the daemon does not wait for a
// NetworkManager that is not there.
func (s *Source) Run(ctx context.Context, out chan<- event.Event) error {
	r := &runner{s: s, log: s.log, out: out, initial: true, devices: map[string]int{}, conns: map[string]map[string]string{}}
	backoff := minBackoff
	for {
		start := time.Now()
		connected, err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !r.marked {
			if r.mark(ctx) != nil {
				return nil
			}
		}
		if time.Since(start) >= maxBackoff {
			backoff = minBackoff // it worked for a while: retry soon
		}
		switch {
		case !r.busDown && connected:
			r.busDown = true
			s.log.Warn("lost the system bus; reconnecting", "error", err)
		case !r.busDown:
			r.busDown = true
			s.log.Warn("cannot connect to the system bus; retrying", "error", err)
		default:
			s.log.Debug("still no system bus", "error", err, "retry_in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// runner is the state of one Run. Only Run's goroutine uses it.
type runner struct {
	s   *Source
	log *slog.Logger
	out chan<- event.Event

	conn bus
	sigs <-chan sdbus.Signal

	initial bool           // reports belong to the startup replay
	marked  bool           // the startup marker was sent
	busDown bool           // an outage of the bus was logged
	nmState int            // 0 unknown, 1 NetworkManager on the bus, -1 not
	devices map[string]int // device object path → ifindex, for the devices reported
	// conns holds, per device object path, the CONNECTION_* variables of
	// the device's active connection as last reported.
	conns  map[string]map[string]string
	errLog time.Time // when a read error was last logged at warning level
}

var errBusLost = errors.New("connection to the bus lost")

// errResync says that NetworkManager was replaced while the source was
// reading it: read everything again.
var errResync = errors.New("NetworkManager restarted during a re-read")

// signal kinds the source subscribes to.
var matches = []sdbus.Match{
	{Sender: busName, Interface: ifaceDevice, Member: "StateChanged", PathNamespace: devicesNamespace},
	{Sender: busName, Interface: ifaceManager, Member: "StateChanged", Path: objManager},
	{Sender: busName, Interface: ifaceManager, Member: "DeviceAdded", Path: objManager},
	{Sender: busName, Interface: ifaceManager, Member: "DeviceRemoved", Path: objManager},
	{Sender: busDBus, Interface: ifaceDBus, Member: "NameOwnerChanged", Path: objDBus},
}

// session connects, subscribes, reads everything and follows the signals
// until ctx ends or the connection is lost. It reports whether it got as
// far as subscribing.
func (r *runner) session(ctx context.Context) (connected bool, err error) {
	conn, err := r.s.dial(ctx, r.s.opts.BusAddress)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs, err := conn.Subscribe(ctx, signalBuffer, matches...)
	if err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	return true, r.follow(ctx, conn, sigs)
}

// follow reads everything and then acts on the signals on sigs until ctx
// ends or the connection is lost.
func (r *runner) follow(ctx context.Context, conn bus, sigs <-chan sdbus.Signal) error {
	r.conn, r.sigs = conn, sigs
	defer func() { r.conn, r.sigs = nil, nil }()
	if r.busDown {
		r.busDown = false
		r.log.Info("reconnected to the system bus")
	}

	var (
		retry      <-chan time.Time
		retryDelay = minBackoff
		failures   int
	)
	resync := func() error {
		err := r.resync(ctx)
		if err == nil {
			retryDelay, failures = minBackoff, 0
			return nil
		}
		if !recoverable(ctx, err) {
			return err
		}
		// NetworkManager answered with an error. It takes its bus name
		// before it exports its objects, so right after it (re)starts
		// that is expected for a moment: warn only when it lasts.
		failures++
		level := slog.LevelDebug
		if failures == retryWarnAfter {
			level = slog.LevelWarn
		}
		r.log.Log(ctx, level, "cannot read NetworkManager's devices; retrying", "error", err, "retry_in", retryDelay)
		retry = time.After(retryDelay)
		retryDelay = min(retryDelay*2, maxBackoff)
		return nil
	}
	if err := resync(); err != nil {
		return err
	}
	if !r.marked {
		if err := r.mark(ctx); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-conn.Done():
			return errBusLost
		case <-retry:
			retry = nil
			if err := resync(); err != nil {
				return err
			}
		case sig, ok := <-sigs:
			if !ok {
				return errBusLost
			}
			if owner, isNM := nmOwnerChange(sig); isNM {
				if owner == "" {
					r.nmGone()
					retry = nil
					continue
				}
				if err := resync(); err != nil {
					return err
				}
				continue
			}
			if err := r.handle(ctx, sig); err != nil {
				if !recoverable(ctx, err) {
					return err
				}
				r.logReadError("read after a signal", sig.Path, err)
			}
		}
	}
}

// recoverable reports whether err leaves the connection usable: an error
// reply from NetworkManager (an object went away, NetworkManager is
// restarting) or a read that timed out while ctx is still live.
func recoverable(ctx context.Context, err error) bool {
	var reply *sdbus.ErrorReply
	return errors.As(err, &reply) || ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)
}

// logReadError logs a failed read, at warning level at most once per
// errorLogLimit, and at debug level otherwise and when the object read
// went away.
func (r *runner) logReadError(msg, path string, err error) {
	level := slog.LevelDebug
	if now := time.Now(); !vanished(err) && now.Sub(r.errLog) >= errorLogLimit {
		r.errLog, level = now, slog.LevelWarn
	}
	r.log.Log(context.Background(), level, msg, "path", path, "error", err)
}

// vanished reports whether err says that the object read is gone, which
// is normal when a device goes away while a signal about it is read.
func vanished(err error) bool {
	var reply *sdbus.ErrorReply
	return errors.As(err, &reply) &&
		(reply.Name == "org.freedesktop.DBus.Error.UnknownObject" || reply.Name == "org.freedesktop.DBus.Error.UnknownMethod")
}

// handle acts on one signal from NetworkManager.
func (r *runner) handle(ctx context.Context, sig sdbus.Signal) error {
	switch {
	case sig.Interface == ifaceDevice && sig.Member == "StateChanged":
		if len(sig.Body) != 3 {
			return nil
		}
		st := &change{state: u32(sig.Body[0]), old: u32(sig.Body[1]), reason: u32(sig.Body[2])}
		return r.reportDevice(ctx, sig.Path, st)
	case sig.Interface == ifaceManager && sig.Member == "StateChanged":
		if len(sig.Body) != 1 {
			return nil
		}
		st := u32(sig.Body[0])
		return r.reportGlobal(ctx, &st)
	case sig.Interface == ifaceManager && sig.Member == "DeviceAdded":
		if len(sig.Body) == 1 {
			return r.reportDevice(ctx, str(sig.Body[0]), nil)
		}
	case sig.Interface == ifaceManager && sig.Member == "DeviceRemoved":
		if len(sig.Body) == 1 {
			return r.removeDevice(ctx, str(sig.Body[0]))
		}
	}
	return nil
}

// nmOwnerChange reports whether sig is NameOwnerChanged for
// NetworkManager's name, and its new owner ("" when it left).
func nmOwnerChange(sig sdbus.Signal) (owner string, ok bool) {
	if sig.Interface != ifaceDBus || sig.Member != "NameOwnerChanged" || len(sig.Body) != 3 ||
		str(sig.Body[0]) != busName {
		return "", false
	}
	return str(sig.Body[2]), true
}

func (r *runner) nmGone() {
	if r.nmState != -1 {
		r.nmState = -1
		r.log.Warn("NetworkManager is not on the bus; waiting for it")
	}
}

func (r *runner) nmHere() {
	switch r.nmState {
	case -1:
		r.log.Info("NetworkManager is back on the bus; re-reading its devices")
	case 0:
		r.log.Debug("NetworkManager is on the bus")
	}
	r.nmState = 1
}
