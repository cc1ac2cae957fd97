package sdbus

import (
	"context"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// Match selects signals. Empty fields match anything.
type Match struct {
	Sender        string // a bus name, e.g. "org.freedesktop.network1"
	Interface     string
	Member        string
	Path          string // an exact object path
	PathNamespace string // an object path and everything below it
}

// Signal is one received signal, its body as plain Go values.
type Signal struct {
	Sender    string // the unique name of the sender (":1.5")
	Path      string
	Interface string
	Member    string
	Body      []any
}

// Subscribe adds the match rules to the bus and returns a channel that
// receives the matching signals until ctx ends or the connection is lost;
// then the channel is closed. The channel is registered before the rules
// are added, so no matching signal sent after Subscribe returns is missed.
// It holds up to size signals; keep reading: when it is full the D-Bus
// library delivers further signals from goroutines of its own, out of
// order (SubscribeSeq's sequence numbers tell the true order).
func (c *Conn) Subscribe(ctx context.Context, size int, matches ...Match) (<-chan Signal, error) {
	return subscribe(c, ctx, size, matches, toSignal)
}

// subscribe is Subscribe with the conversion of each signal left to conv.
func subscribe[T any](c *Conn, ctx context.Context, size int, matches []Match, conv func(*dbus.Signal) T) (<-chan T, error) {
	raw := make(chan *dbus.Signal, size)
	c.c.Signal(raw)
	for _, m := range matches {
		if err := c.c.AddMatchSignalContext(ctx, matchOptions(m)...); err != nil {
			c.c.RemoveSignal(raw)
			return nil, fmt.Errorf("add match %+v on %s: %w", m, c.addr, err)
		}
	}
	out := make(chan T, size)
	go func() {
		defer close(out)
		defer c.c.RemoveSignal(raw)
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.Done():
				return
			case s, ok := <-raw:
				if !ok {
					return
				}
				if !matchesAny(s, matches) {
					continue
				}
				select {
				case out <- conv(s):
				case <-ctx.Done():
					return
				case <-c.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// toSignal converts a received signal, its body to plain Go values.
func toSignal(s *dbus.Signal) Signal {
	body := make([]any, len(s.Body))
	for i, v := range s.Body {
		body[i] = Plain(v)
	}
	iface, member := splitName(s.Name)
	return Signal{Sender: s.Sender, Path: string(s.Path), Interface: iface, Member: member, Body: body}
}

// matchesAny filters locally too: the library delivers every signal the
// connection receives to every channel.
func matchesAny(s *dbus.Signal, ms []Match) bool {
	iface, member := splitName(s.Name)
	path := string(s.Path)
	for _, m := range ms {
		if m.Interface != "" && m.Interface != iface || m.Member != "" && m.Member != member ||
			m.Path != "" && m.Path != path {
			continue
		}
		if ns := m.PathNamespace; ns != "" && path != ns && !(len(path) > len(ns) && path[:len(ns)] == ns && path[len(ns)] == '/') {
			continue
		}
		// The sender of a signal is a unique name; a well-known name in the
		// rule was resolved by the bus daemon, so it is not compared here.
		return true
	}
	return len(ms) == 0
}

func splitName(name string) (iface, member string) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '.' {
			return name[:i], name[i+1:]
		}
	}
	return "", name
}
