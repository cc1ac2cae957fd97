package nm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

// world is a fake NetworkManager on a fake bus: objects with properties,
// an owner flag for the bus name, and the connections the source dialled.
// Tests change it and emit signals; the source reads it through fakeConn.
type world struct {
	mu      sync.Mutex                           // guards the fields below
	objects map[string]map[string]map[string]any // path → interface → properties
	devices []string                             // GetDevices, in order
	owner   bool                                 // NetworkManager owns its name
	dialErr error                                // what dial returns; nil to connect
	dials   int                                  // dial attempts
	failGet int                                  // GetDevices calls still to fail, as right after NetworkManager starts
	conn    *fakeConn                            // the newest connection
	onRead  func(path string)                    // called (without mu) before each read of a device
	ifindex map[string]int                       // kernel ifindex by interface name
}

func newWorld() *world {
	w := &world{objects: map[string]map[string]map[string]any{}, owner: true, ifindex: map[string]int{}}
	w.set(objManager, ifaceManager, map[string]any{"State": uint32(20), "Connectivity": uint32(1)})
	return w
}

// set merges props into the object's interface, creating both as needed.
func (w *world) set(path, iface string, props map[string]any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.objects[path]
	if o == nil {
		o = map[string]map[string]any{}
		w.objects[path] = o
	}
	if o[iface] == nil {
		o[iface] = map[string]any{}
	}
	maps.Copy(o[iface], props)
	if iface == ifaceDevice && !slices.Contains(w.devices, path) {
		w.devices = append(w.devices, path)
	}
}

// remove deletes an object (or, with ifaces, some of its interfaces).
func (w *world) remove(path string, ifaces ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(ifaces) == 0 {
		delete(w.objects, path)
	}
	for _, i := range ifaces {
		delete(w.objects[path], i)
	}
	if len(w.objects[path]) == 0 {
		delete(w.objects, path)
	}
	if _, ok := w.objects[path][ifaceDevice]; !ok {
		w.devices = slices.DeleteFunc(w.devices, func(p string) bool { return p == path })
	}
}

// addDevice adds a device with the properties NetworkManager 1.42 has,
// in state, with no active connection and empty IP configs.
func (w *world) addDevice(path, iface string, index int, state uint32) {
	n := path[strings.LastIndexByte(path, '/')+1:]
	ip4, ip6 := "/org/freedesktop/NetworkManager/IP4Config/"+n, "/org/freedesktop/NetworkManager/IP6Config/"+n
	w.set(ip4, ifaceIP4Config, map[string]any{"AddressData": []any{}, "Gateway": "", "RouteData": []any{},
		"NameserverData": []any{}, "Domains": []string{}, "Searches": []string{}})
	w.set(ip6, ifaceIP6Config, map[string]any{"AddressData": []any{}, "Gateway": "", "RouteData": []any{},
		"Nameservers": []any{}, "Domains": []string{}, "Searches": []string{}})
	w.set(path, ifaceDevice, map[string]any{
		"Interface": iface, "IpInterface": "", "State": state, "StateReason": []any{state, uint32(0)},
		"ActiveConnection": "/", "Ip4Config": ip4, "Ip6Config": ip6, "Dhcp4Config": "/", "Dhcp6Config": "/",
	})
	w.mu.Lock()
	w.ifindex[iface] = index
	w.mu.Unlock()
}

// activate gives the device at path an active connection with a static
// address, as NetworkManager has it once activated.
func (w *world) activate(path, id, addr string) {
	n := path[strings.LastIndexByte(path, '/')+1:]
	ac := "/org/freedesktop/NetworkManager/ActiveConnection/" + n
	w.set(ac, ifaceActive, map[string]any{"Id": id, "Uuid": "uuid-" + id, "Connection": "/org/freedesktop/NetworkManager/Settings/" + n, "StateFlags": uint32(92)})
	w.set(path, ifaceDevice, map[string]any{"ActiveConnection": ac, "IpInterface": w.deviceProp(path, "Interface")})
	pfx, bits, _ := strings.Cut(addr, "/")
	var plen uint32
	fmt.Sscan(bits, &plen)
	w.set("/org/freedesktop/NetworkManager/IP4Config/"+n, ifaceIP4Config, map[string]any{
		"AddressData": []any{map[string]any{"address": pfx, "prefix": plen}},
	})
}

func (w *world) deviceProp(path, prop string) any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.objects[path][ifaceDevice][prop]
}

func (w *world) setOwner(owner bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.owner = owner
}

func (w *world) setDialErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dialErr = err
}

func (w *world) dialCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dials
}

// emit delivers a signal on the newest connection, if it is subscribed
// and alive.
func (w *world) emit(sig sdbus.Signal) {
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sigs == nil || c.lost || !matchAny(sig, c.matches) {
		return
	}
	c.sigs <- sig
}

// matchAny reports whether the bus would deliver sig for one of ms (the
// sender is not compared: the fake's signals all come from the right one).
func matchAny(sig sdbus.Signal, ms []sdbus.Match) bool {
	for _, m := range ms {
		if m.Interface != "" && m.Interface != sig.Interface || m.Member != "" && m.Member != sig.Member ||
			m.Path != "" && m.Path != sig.Path ||
			m.PathNamespace != "" && sig.Path != m.PathNamespace && !strings.HasPrefix(sig.Path, m.PathNamespace+"/") {
			continue
		}
		return true
	}
	return false
}

func (w *world) emitDeviceState(path string, state, old, reason uint32) {
	w.set(path, ifaceDevice, map[string]any{"State": state, "StateReason": []any{state, reason}})
	w.emit(sdbus.Signal{Sender: ":1.0", Path: path, Interface: ifaceDevice, Member: "StateChanged",
		Body: []any{state, old, reason}})
}

func (w *world) emitOwner(owner string) {
	w.setOwner(owner != "")
	old := ""
	if owner == "" {
		old = ":1.0"
	}
	w.emit(sdbus.Signal{Sender: "org.freedesktop.DBus", Path: objDBus, Interface: ifaceDBus,
		Member: "NameOwnerChanged", Body: []any{busName, old, owner}})
}

// loseBus ends the newest connection as a dbus-daemon restart would.
func (w *world) loseBus() {
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost {
		return
	}
	c.lost = true
	close(c.done)
	if c.sigs != nil {
		close(c.sigs)
	}
}

// source returns a Source that dials w.
func (w *world) source(log *slog.Logger) *Source {
	s, err := New(Options{}, log)
	if err != nil {
		panic(err)
	}
	s.dial = func(ctx context.Context, address string) (bus, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.dials++
		if w.dialErr != nil {
			return nil, w.dialErr
		}
		w.conn = &fakeConn{w: w, done: make(chan struct{})}
		return w.conn, nil
	}
	s.ifindex = func(name string) (int, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if idx, ok := w.ifindex[name]; ok {
			return idx, nil
		}
		return 0, fmt.Errorf("route ip+net: no such network interface")
	}
	return s
}

// fakeConn is one connection to the world's bus.
type fakeConn struct {
	w    *world
	done chan struct{}

	mu      sync.Mutex // guards the fields below
	sigs    chan sdbus.Signal
	matches []sdbus.Match // what the source subscribed to
	lost    bool
	closed  bool
}

var errUnknownObject = &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.UnknownObject"}

func (c *fakeConn) alive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost || c.closed {
		return errors.New("dbus: connection closed by user")
	}
	return nil
}

func (c *fakeConn) Call(ctx context.Context, dest, path, method string, args ...any) ([]any, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.owner {
		return nil, &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}
	}
	if w.failGet > 0 {
		w.failGet--
		return nil, &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.UnknownMethod",
			Msg: "Object does not exist at path “/org/freedesktop/NetworkManager”"}
	}
	if dest != busName || path != objManager || method != ifaceManager+".GetDevices" {
		return nil, &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.UnknownMethod", Msg: method}
	}
	return []any{slices.Clone(w.devices)}, nil
}

func (c *fakeConn) GetAll(ctx context.Context, dest, path, iface string) (map[string]any, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	w := c.w
	w.mu.Lock()
	hook := w.onRead
	w.mu.Unlock()
	if hook != nil && iface == ifaceDevice {
		hook(path)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.owner {
		return nil, &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}
	}
	props, ok := w.objects[path][iface]
	if !ok {
		return nil, errUnknownObject
	}
	return maps.Clone(props), nil
}

func (c *fakeConn) Get(ctx context.Context, dest, path, iface, prop string) (any, error) {
	all, err := c.GetAll(ctx, dest, path, iface)
	if err != nil {
		return nil, err
	}
	v, ok := all[prop]
	if !ok {
		return nil, &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.UnknownProperty"}
	}
	return v, nil
}

func (c *fakeConn) NameHasOwner(ctx context.Context, name string) (bool, error) {
	if err := c.alive(); err != nil {
		return false, err
	}
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return name == busName && c.w.owner, nil
}

// Subscribe checks that the source asks for what it handles, then returns
// the connection's signal channel. Like sdbus, the channel closes when ctx
// ends or the connection is lost.
func (c *fakeConn) Subscribe(ctx context.Context, size int, ms ...sdbus.Match) (<-chan sdbus.Signal, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sigs != nil {
		return nil, errors.New("fake: subscribed twice")
	}
	c.sigs = make(chan sdbus.Signal, size)
	c.matches = ms
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.lost {
			c.lost = true
			close(c.sigs)
		}
	})
	return c.sigs, nil
}

func (c *fakeConn) Done() <-chan struct{} { return c.done }

func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// describe renders an event in one line for comparisons.
func describe(ev event.Event) string {
	var b strings.Builder
	if ev.Initial {
		b.WriteString("initial ")
	}
	if ev.Source != name {
		fmt.Fprintf(&b, "source=%q ", ev.Source)
	}
	switch ev.Kind {
	case event.KindSync:
		b.WriteString("sync")
		if ev.Dump != nil {
			b.WriteString(" with a dump")
		}
	case event.KindManager:
		m := ev.Manager
		if m.Gone {
			fmt.Fprintf(&b, "gone %d", m.Index)
			break
		}
		fmt.Fprintf(&b, "%d", m.Index)
		if m.Name != "" {
			b.WriteString(" " + m.Name)
		}
		keys := slices.Sorted(maps.Keys(m.States))
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, m.States[k])
		}
		if m.Backend != Backend {
			fmt.Fprintf(&b, " backend=%q", m.Backend)
		}
	default:
		fmt.Fprintf(&b, "kind %v", ev.Kind)
	}
	return b.String()
}

// collect returns what is queued on out now.
func collect(out chan event.Event) []event.Event {
	var evs []event.Event
	for {
		select {
		case ev := <-out:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

func describeAll(evs []event.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, describe(ev))
	}
	return out
}

// logRecorder is a slog.Handler that keeps "LEVEL msg" of every record.
type logRecorder struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newLogRecorder() (*slog.Logger, func() []string) {
	h := logRecorder{mu: &sync.Mutex{}, msgs: new([]string)}
	return slog.New(h), func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		return slices.Clone(*h.msgs)
	}
}

func (h logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.msgs = append(*h.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (h logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logRecorder) WithGroup(string) slog.Handler      { return h }

// countLogs counts the messages at level that contain substr.
func countLogs(msgs []string, level, substr string) int {
	n := 0
	for _, m := range msgs {
		if strings.HasPrefix(m, level+" ") && strings.Contains(m, substr) {
			n++
		}
	}
	return n
}
