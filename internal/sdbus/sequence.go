package sdbus

import (
	"context"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// Ordering signals against method replies.
//
// A client that reads an object's state with a method call while it also
// listens to the object's change signals cannot tell from the values alone
// whether a signal it receives after the reply is older or newer than the
// reply: the library hands signals and replies over on different paths. A
// connection numbers every message it receives, in the order they arrive
// on the socket, and a bus delivers the messages of one sender in the order
// that sender sent them. So a signal whose sequence number is smaller than
// a reply's was sent before that reply, and the reply already reflects it.
// CallSeq and SubscribeSeq expose those numbers (used by the
// systemd-networkd source).

// SeqSignal is a Signal with the sequence number the connection gave it.
type SeqSignal struct {
	Signal
	Seq uint64 // position in the connection's receive order; never 0
}

// CallSeq is Call that also returns the sequence number of the reply (0 if
// no reply message arrived, e.g. on a timeout). Unlike Call it never makes
// the bus start a service (bus activation): a watcher must not start the
// daemon it watches, so a call to a name nobody owns fails at once with
// org.freedesktop.DBus.Error.ServiceUnknown.
func (c *Conn) CallSeq(ctx context.Context, dest, path, method string, args ...any) ([]any, uint64, error) {
	call := c.c.Object(dest, dbus.ObjectPath(path)).CallWithContext(ctx, method, dbus.FlagNoAutoStart, args...)
	seq := uint64(call.ResponseSequence)
	if call.Err != nil {
		return nil, seq, fmt.Errorf("%s %s %s: %w", dest, path, method, wrapErr(call.Err))
	}
	out := make([]any, len(call.Body))
	for i, v := range call.Body {
		out[i] = Plain(v)
	}
	return out, seq, nil
}

// SubscribeSeq is Subscribe with sequence numbers. The channel is registered
// before the match rules are added, so no matching signal that the bus
// sends after SubscribeSeq returns is missed. Keep reading: when the
// channel is full the library delivers further signals from goroutines of
// its own, out of order (the sequence numbers still tell the true order).
func (c *Conn) SubscribeSeq(ctx context.Context, size int, matches ...Match) (<-chan SeqSignal, error) {
	return subscribe(c, ctx, size, matches, func(s *dbus.Signal) SeqSignal {
		return SeqSignal{Signal: toSignal(s), Seq: uint64(s.Sequence)}
	})
}

func matchOptions(m Match) []dbus.MatchOption {
	var opts []dbus.MatchOption
	if m.Sender != "" {
		opts = append(opts, dbus.WithMatchSender(m.Sender))
	}
	if m.Interface != "" {
		opts = append(opts, dbus.WithMatchInterface(m.Interface))
	}
	if m.Member != "" {
		opts = append(opts, dbus.WithMatchMember(m.Member))
	}
	if m.Path != "" {
		opts = append(opts, dbus.WithMatchObjectPath(dbus.ObjectPath(m.Path)))
	}
	if m.PathNamespace != "" {
		opts = append(opts, dbus.WithMatchPathNamespace(dbus.ObjectPath(m.PathNamespace)))
	}
	return opts
}
