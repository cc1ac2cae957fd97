package networkd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

// fakeNetworkd stands in for systemd-networkd and the bus: objects with
// properties, link descriptions, and the signals a test makes it send.
// Every message it delivers (a signal or a reply) takes the next sequence
// number, as a real connection numbers what it receives.
type fakeNetworkd struct {
	mu        sync.Mutex // guards the fields below
	seq       uint64
	owned     bool                      // networkd is on the bus
	busDown   bool                      // Dial fails
	props     map[string]map[string]any // object path → properties
	names     map[string]string         // link path → interface name
	desc      map[string]string         // link path → Describe JSON
	descErr   error                     // every Describe fails with it
	gate      chan struct{}             // if set, networkd answers calls only once it is closed
	calls     map[string]int            // method → number of calls
	conn      *fakeConn                 // the current connection
	dials     []time.Time               // when Dial was called
	lastOwner int
}

func newFakeNetworkd() *fakeNetworkd {
	return &fakeNetworkd{
		owned: true,
		props: map[string]map[string]any{managerPath: {}},
		names: map[string]string{},
		desc:  map[string]string{},
		calls: map[string]int{},
	}
}

// addLink adds a link with the given properties and description.
func (f *fakeNetworkd) addLink(idx int, name string, props map[string]any, desc string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := linkPath(idx)
	f.props[p] = maps.Clone(props)
	f.names[p] = name
	if desc == "" {
		desc = fmt.Sprintf(`{"Index":%d,"Name":%q}`, idx, name)
	}
	f.desc[p] = desc
	return p
}

func (f *fakeNetworkd) removeLink(idx int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := linkPath(idx)
	delete(f.props, p)
	delete(f.names, p)
	delete(f.desc, p)
}

func (f *fakeNetworkd) setManager(props map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.props[managerPath] = maps.Clone(props)
}

func (f *fakeNetworkd) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeNetworkd) dial(ctx context.Context, _ string) (bus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dials = append(f.dials, time.Now())
	if f.busDown {
		return nil, errors.New("dial unix /run/dbus/system_bus_socket: connect: no such file or directory")
	}
	f.conn = &fakeConn{f: f, sigs: make(chan sdbus.SeqSignal, 4096), done: make(chan struct{})}
	return f.conn, nil
}

// changed changes properties of the object at path and sends
// PropertiesChanged for them.
func (f *fakeNetworkd) changed(path string, changed map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.props[path] == nil {
		f.props[path] = map[string]any{}
	}
	maps.Copy(f.props[path], changed)
	iface := ifaceLink
	if path == managerPath {
		iface = ifaceManager
	}
	f.sendLocked(sdbus.Signal{
		Sender: ":1.1", Path: path, Interface: ifaceProps, Member: "PropertiesChanged",
		Body: []any{iface, maps.Clone(changed), []string{}},
	})
}

// send delivers a signal as it is.
func (f *fakeNetworkd) send(s sdbus.Signal) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sendLocked(s)
}

func (f *fakeNetworkd) sendLocked(s sdbus.Signal) uint64 {
	f.seq++
	if f.conn != nil && !f.conn.closed() {
		f.conn.sigs <- sdbus.SeqSignal{Signal: s, Seq: f.seq}
	}
	return f.seq
}

// sendSeq delivers a signal with the given sequence number, as a
// connection does when it hands over signals out of order.
func (f *fakeNetworkd) sendSeq(s sdbus.Signal, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.conn.closed() {
		f.conn.sigs <- sdbus.SeqSignal{Signal: s, Seq: seq}
	}
}

// nextSeq reserves a sequence number.
func (f *fakeNetworkd) nextSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return f.seq
}

// setProps changes properties without a signal.
func (f *fakeNetworkd) setProps(path string, props map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	maps.Copy(f.props[path], props)
}

// dialTimes returns when Dial was called.
func (f *fakeNetworkd) dialTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.dials)
}

// stop makes networkd leave the bus; start brings it back.
func (f *fakeNetworkd) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owned = false
	f.sendLocked(ownerChanged(fmt.Sprintf(":1.%d", f.lastOwner), ""))
}

func (f *fakeNetworkd) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owned = true
	f.lastOwner++
	f.sendLocked(ownerChanged("", fmt.Sprintf(":1.%d", f.lastOwner)))
}

func ownerChanged(old, new string) sdbus.Signal {
	return sdbus.Signal{Sender: busDaemon, Path: busDaemonPath, Interface: busDaemon, Member: "NameOwnerChanged",
		Body: []any{busName, old, new}}
}

// loseBus drops the connection (dbus-daemon stopped); later dials fail
// until restoreBus.
func (f *fakeNetworkd) loseBus() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.busDown, f.owned = true, false
	if f.conn != nil {
		f.conn.closeLocked()
	}
}

func (f *fakeNetworkd) restoreBus() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.busDown, f.owned = false, true
}

func unknownObject(path string) error {
	return &sdbus.ErrorReply{Name: errUnknownObj, Msg: "Unknown object '" + path + "'."}
}

func (f *fakeNetworkd) call(dest, path, method string, args []any) ([]any, error) {
	f.calls[method]++
	if dest == busDaemon {
		if method == busDaemon+".NameHasOwner" && len(args) == 1 && args[0] == busName {
			return []any{f.owned}, nil
		}
		return nil, &sdbus.ErrorReply{Name: errUnknownMeth}
	}
	if dest != busName {
		return nil, fmt.Errorf("call to %s", dest)
	}
	if !f.owned {
		return nil, &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.ServiceUnknown", Msg: "The name is not activatable"}
	}
	switch method {
	case ifaceProps + ".GetAll":
		props, ok := f.props[path]
		if !ok {
			return nil, unknownObject(path)
		}
		want := ifaceLink
		if path == managerPath {
			want = ifaceManager
		}
		if len(args) != 1 || args[0] != want {
			return nil, &sdbus.ErrorReply{Name: errUnknownIfc}
		}
		return []any{maps.Clone(props)}, nil
	case ifaceManager + ".GetLinkByIndex":
		if len(args) != 1 {
			return nil, &sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.InvalidArgs"}
		}
		idx, _ := args[0].(int32)
		p := linkPath(int(idx))
		if _, ok := f.names[p]; !ok {
			return nil, &sdbus.ErrorReply{Name: "org.freedesktop.network1.NoSuchLink", Msg: fmt.Sprintf("Link %d not known", idx)}
		}
		return []any{f.names[p], p}, nil
	case ifaceManager + ".ListLinks":
		var out []any
		for _, p := range slices.Sorted(maps.Keys(f.names)) {
			idx, err := linkIndex(p)
			if err != nil {
				return nil, err
			}
			out = append(out, []any{int32(idx), f.names[p], p})
		}
		return []any{out}, nil
	case ifaceLink + ".Describe":
		if f.descErr != nil {
			return nil, f.descErr
		}
		d, ok := f.desc[path]
		if !ok {
			return nil, unknownObject(path)
		}
		return []any{d}, nil
	}
	return nil, &sdbus.ErrorReply{Name: errUnknownMeth}
}

// fakeConn is one connection to the fake bus.
type fakeConn struct {
	f    *fakeNetworkd
	sigs chan sdbus.SeqSignal
	done chan struct{}
	once sync.Once
}

// hang makes networkd stop answering method calls (it is busy); answer
// lets it answer them again.
func (f *fakeNetworkd) hang() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = make(chan struct{})
}

func (f *fakeNetworkd) answer() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.gate)
	f.gate = nil
}

func (c *fakeConn) CallSeq(ctx context.Context, dest, path, method string, args ...any) ([]any, uint64, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if gate := c.f.gate; gate != nil && dest == busName {
		c.f.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
		}
		c.f.mu.Lock()
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
	}
	if c.closed() {
		return nil, 0, errors.New("connection closed")
	}
	c.f.seq++
	out, err := c.f.call(dest, path, method, args)
	return out, c.f.seq, err
}

func (c *fakeConn) SubscribeSeq(ctx context.Context, size int, matches ...sdbus.Match) (<-chan sdbus.SeqSignal, error) {
	return c.sigs, nil
}

func (c *fakeConn) Done() <-chan struct{} { return c.done }

func (c *fakeConn) Close() error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.closeLocked()
	return nil
}

// closeLocked closes the connection; the caller holds f.mu, so no signal
// is being sent meanwhile.
func (c *fakeConn) closeLocked() {
	c.once.Do(func() {
		close(c.done)
		close(c.sigs)
	})
}

func (c *fakeConn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns how many lines contain s.
func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness runs a Source against a fakeNetworkd and collects its events.
type harness struct {
	t      *testing.T
	nd     *fakeNetworkd
	src    *Source
	logs   *logBuffer
	events chan event.Event
	cancel context.CancelFunc
	done   chan error
}

// start runs a Source on nd; call it inside a synctest bubble.
func start(t *testing.T, nd *fakeNetworkd, opts Options, setup ...func(*Source)) *harness {
	t.Helper()
	logs := &logBuffer{}
	src, err := New(opts, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	src.dial = nd.dial
	src.netifDir = "testdata/netif"
	for _, f := range setup {
		f(src)
	}
	h := &harness{t: t, nd: nd, src: src, logs: logs, events: make(chan event.Event, 4096), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- src.Run(ctx, h.events) }()
	return h
}

// stop ends Run and checks that it returned nil.
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run = %v, want nil", err)
	}
}

// take returns the events sent so far (call after synctest.Wait).
func (h *harness) take() []event.Event {
	var out []event.Event
	for {
		select {
		case ev := <-h.events:
			out = append(out, ev)
		default:
			return out
		}
	}
}
