package nm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

// resync reads every device and NetworkManager's state and reports them;
// devices reported before that are gone now are reported Gone.
func (r *runner) resync(ctx context.Context) error {
	for range maxResyncs {
		err := r.resyncOnce(ctx)
		if !errors.Is(err, errResync) {
			return err
		}
	}
	return nil
}

func (r *runner) resyncOnce(ctx context.Context) error {
	here, err := r.conn.NameHasOwner(ctx, busName)
	if err != nil {
		return fmt.Errorf("ask for %s: %w", busName, err)
	}
	if !here {
		r.nmGone()
		return nil
	}
	r.nmHere()
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	paths, err := listDevices(rctx, r.conn)
	cancel()
	if err != nil {
		return err
	}
	before := r.devices
	r.devices = make(map[string]int, len(paths))
	clear(r.conns) // a new NetworkManager may reuse object paths
	for _, p := range paths {
		if err := r.reportDevice(ctx, p, nil); err != nil {
			if !recoverable(ctx, err) {
				return err
			}
			r.logReadError("read a device", p, err)
		}
	}
	// What was reported before and is not there now is gone.
	now := make(map[int]bool, len(r.devices))
	for _, idx := range r.devices {
		now[idx] = true
	}
	var gone []int
	for _, idx := range before {
		if !now[idx] && !slices.Contains(gone, idx) {
			gone = append(gone, idx)
		}
	}
	slices.Sort(gone)
	for _, idx := range gone {
		if err := r.sendGone(ctx, idx); err != nil {
			return err
		}
	}
	if err := r.reportGlobal(ctx, nil); err != nil {
		if !recoverable(ctx, err) {
			return err
		}
		r.logReadError("read NetworkManager's state", objManager, err)
	}
	return r.settle(ctx)
}

// settle deals with the signals that queued up while resync read: they may
// be older than what it read, so instead of their values the current
// properties of what they name are read and reported (as coalescing would
// do).
func (r *runner) settle(ctx context.Context) error {
	for range maxSettle {
		var batch []sdbus.Signal
	drain:
		for {
			select {
			case sig, ok := <-r.sigs:
				if !ok {
					return errBusLost
				}
				batch = append(batch, sig)
			default:
				break drain
			}
		}
		if len(batch) == 0 {
			return nil
		}
		var dirty []string
		global := false
		for _, sig := range batch {
			if owner, isNM := nmOwnerChange(sig); isNM {
				if owner == "" {
					r.nmGone()
					return nil
				}
				return errResync
			}
			switch {
			case sig.Interface == ifaceDevice && sig.Member == "StateChanged":
				dirty = appendNew(dirty, sig.Path)
			case sig.Interface == ifaceManager && sig.Member == "DeviceAdded" && len(sig.Body) == 1:
				dirty = appendNew(dirty, str(sig.Body[0]))
			case sig.Interface == ifaceManager && sig.Member == "DeviceRemoved":
				if err := r.handle(ctx, sig); err != nil {
					return err
				}
			case sig.Interface == ifaceManager && sig.Member == "StateChanged":
				global = true
			}
		}
		for _, p := range dirty {
			if err := r.reportDevice(ctx, p, nil); err != nil {
				if !recoverable(ctx, err) {
					return err
				}
				r.logReadError("read a device", p, err)
			}
		}
		if global {
			if err := r.reportGlobal(ctx, nil); err != nil && !recoverable(ctx, err) {
				return err
			}
		}
	}
	return nil
}

func appendNew(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// change is what a Device.StateChanged signal says.
type change struct{ state, old, reason uint32 }

// reportDevice reads the device at path and reports it, in the state ch
// names or, when ch is nil, in the state its properties name.
func (r *runner) reportDevice(ctx context.Context, path string, ch *change) error {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	snap, err := readDevice(rctx, r.conn, path)
	cancel()
	if err != nil {
		return fmt.Errorf("read device %s: %w", path, err)
	}
	var state, reason uint32
	if ch != nil {
		state, reason = ch.state, ch.reason
	} else {
		state = u32(snap.Device["State"])
		if st, why := stateReason(snap.Device["StateReason"]); st == state {
			reason = why
		}
	}
	idx := r.index(snap)
	if idx <= 0 {
		r.log.Debug("device has no kernel link; not reported", "path", path,
			"interface", str(snap.Device["Interface"]), "state", DeviceStateName(state))
		return nil
	}
	if old, ok := r.devices[path]; ok && old != idx {
		if err := r.sendGone(ctx, old); err != nil {
			return err
		}
	}
	r.devices[path] = idx
	m, escaped := snap.report(idx, state, reason)
	r.keepConnection(path, m)
	if len(escaped) > 0 {
		r.log.Warn("NetworkManager reported values with control characters; passing them escaped",
			"link", m.Name, "variables", escaped)
	}
	if ch != nil {
		r.log.Debug("device state changed", "link", m.Name, "index", idx, "state", DeviceStateName(ch.state),
			"old_state", DeviceStateName(ch.old), "reason", ReasonName(ch.reason))
	}
	return r.send(ctx, event.Event{Kind: event.KindManager, Manager: m})
}

// keepConnection makes the first report after a device lost its active
// connection (deactivating, disconnected, unavailable, failed) carry the
// CONNECTION_* variables of that connection, as nm-dispatcher's "down"
// event does: scripts learn which connection went down.
func (r *runner) keepConnection(path string, m *event.Manager) {
	conn := map[string]string{}
	for k, v := range m.Env {
		if strings.HasPrefix(k, "CONNECTION_") {
			conn[k] = v
		}
	}
	if len(conn) > 0 {
		r.conns[path] = conn
		return
	}
	if prev, ok := r.conns[path]; ok {
		maps.Copy(m.Env, prev)
		delete(r.conns, path)
	}
}

// index finds the kernel ifindex of a device: its Ifindex property where
// NetworkManager has one, else the index of its interface name (or, for
// devices such as modems whose interface is not a network interface, of
// its IP interface). 0 when there is none.
func (r *runner) index(snap *snapshot) int {
	if n := u32(snap.Device["Ifindex"]); n > 0 {
		return int(n)
	}
	for _, prop := range []string{"Interface", "IpInterface"} {
		if n := str(snap.Device[prop]); n != "" {
			if idx, err := r.s.ifindex(n); err == nil && idx > 0 {
				return idx
			}
		}
	}
	return 0
}

// removeDevice reports a device NetworkManager no longer has as Gone.
func (r *runner) removeDevice(ctx context.Context, path string) error {
	delete(r.conns, path)
	idx, ok := r.devices[path]
	if !ok {
		return nil
	}
	delete(r.devices, path)
	for _, other := range r.devices {
		if other == idx {
			return nil // another device object stands for the same link
		}
	}
	return r.sendGone(ctx, idx)
}

func (r *runner) sendGone(ctx context.Context, idx int) error {
	return r.send(ctx, event.Event{Kind: event.KindManager,
		Manager: &event.Manager{Backend: Backend, Index: idx, Gone: true}})
}

// reportGlobal reports NetworkManager's own state for Index 0 (manager.d):
// the state st, or when st is nil the State property.
func (r *runner) reportGlobal(ctx context.Context, st *uint32) error {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	props, err := r.conn.GetAll(rctx, busName, objManager, ifaceManager)
	cancel()
	if err != nil {
		return fmt.Errorf("read NetworkManager's state: %w", err)
	}
	state := u32(props["State"])
	if st != nil {
		state = *st
	}
	m := &event.Manager{
		Backend: Backend,
		States:  map[string]string{"NMState": StateName(state)},
		Env:     map[string]string{"CONNECTIVITY_STATE": ConnectivityName(u32(props["Connectivity"]))},
	}
	return r.send(ctx, event.Event{Kind: event.KindManager, Manager: m})
}

// send sends ev, stamped, unless ctx ends first.
func (r *runner) send(ctx context.Context, ev event.Event) error {
	ev.Source, ev.Time, ev.Initial = name, time.Now(), r.initial
	select {
	case r.out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// mark sends the startup marker: the initial replay is complete.
func (r *runner) mark(ctx context.Context) error {
	if err := r.send(ctx, event.Event{Kind: event.KindSync}); err != nil {
		return err
	}
	r.marked, r.initial = true, false
	return nil
}
