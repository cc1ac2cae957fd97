// Package sdbus is netevd's only door to D-Bus: it connects to the system
// bus (or any bus address), calls methods, reads properties and delivers
// signals, with every D-Bus value turned into plain Go values (variants
// unwrapped, object paths and signatures as strings), so no other package
// imports the D-Bus library.
package sdbus

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"
)

// Conn is a private connection to one bus. Close it when done.
type Conn struct {
	c    *dbus.Conn
	addr string
}

// Dial connects to the bus at address, or to the system bus when address
// is "" (honouring DBUS_SYSTEM_BUS_ADDRESS), and authenticates.
func Dial(ctx context.Context, address string) (*Conn, error) {
	var (
		c   *dbus.Conn
		err error
	)
	opts := []dbus.ConnOption{dbus.WithContext(ctx)}
	if address == "" {
		c, err = dbus.ConnectSystemBus(opts...)
		address = "system bus"
	} else {
		c, err = dbus.Connect(address, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", address, err)
	}
	return &Conn{c: c, addr: address}, nil
}

// Close closes the connection. It is safe to call more than once.
func (c *Conn) Close() error {
	err := c.c.Close()
	if err != nil && strings.Contains(err.Error(), "closed") {
		return nil
	}
	return err
}

// Done is closed when the connection is lost or closed (the bus daemon
// restarted, for example).
func (c *Conn) Done() <-chan struct{} { return c.c.Context().Done() }

// String names the bus.
func (c *Conn) String() string { return c.addr }

// Call calls method ("interface.Member") on the object path of dest and
// returns its reply's values as plain Go values. Arguments are Go values;
// structs become D-Bus structs. Use Path for an object-path argument.
func (c *Conn) Call(ctx context.Context, dest, path, method string, args ...any) ([]any, error) {
	call := c.c.Object(dest, dbus.ObjectPath(path)).CallWithContext(ctx, method, 0, args...)
	if call.Err != nil {
		return nil, fmt.Errorf("%s %s %s: %w", dest, path, method, wrapErr(call.Err))
	}
	out := make([]any, len(call.Body))
	for i, v := range call.Body {
		out[i] = Plain(v)
	}
	return out, nil
}

// Path marks s as an object path argument for Call.
func Path(s string) any { return dbus.ObjectPath(s) }

// Get reads one property.
func (c *Conn) Get(ctx context.Context, dest, path, iface, prop string) (any, error) {
	out, err := c.Call(ctx, dest, path, "org.freedesktop.DBus.Properties.Get", iface, prop)
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		return nil, fmt.Errorf("%s %s Get %s.%s: %d values in reply, want 1", dest, path, iface, prop, len(out))
	}
	return out[0], nil
}

// GetAll reads every property of iface.
func (c *Conn) GetAll(ctx context.Context, dest, path, iface string) (map[string]any, error) {
	out, err := c.Call(ctx, dest, path, "org.freedesktop.DBus.Properties.GetAll", iface)
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		return nil, fmt.Errorf("%s %s GetAll %s: %d values in reply, want 1", dest, path, iface, len(out))
	}
	m, ok := out[0].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s %s GetAll %s: reply is %T, want a dictionary", dest, path, iface, out[0])
	}
	return m, nil
}

// NameHasOwner reports whether some connection owns the bus name.
func (c *Conn) NameHasOwner(ctx context.Context, name string) (bool, error) {
	out, err := c.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", name)
	if err != nil {
		return false, err
	}
	b, ok := out[0].(bool)
	if !ok {
		return false, fmt.Errorf("NameHasOwner %s: reply is %T, want a boolean", name, out[0])
	}
	return b, nil
}

// ErrorReply is a D-Bus error reply; errors from Call wrap it.
type ErrorReply struct {
	Name string // e.g. "org.freedesktop.DBus.Error.ServiceUnknown"
	Msg  string
}

func (e *ErrorReply) Error() string {
	if e.Msg == "" {
		return e.Name
	}
	return e.Name + ": " + e.Msg
}

func wrapErr(err error) error {
	var de dbus.Error
	var dep *dbus.Error
	switch {
	case errors.As(err, &de):
	case errors.As(err, &dep) && dep != nil:
		de = *dep
	default:
		return err
	}
	msg := ""
	if len(de.Body) > 0 {
		msg = fmt.Sprint(de.Body[0])
	}
	return &ErrorReply{Name: de.Name, Msg: msg}
}
