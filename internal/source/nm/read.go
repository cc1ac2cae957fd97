package nm

import (
	"context"
	"errors"
	"fmt"

	"github.com/netevd/netevd/internal/sdbus"
)

// NetworkManager's bus name, objects and interfaces.
const (
	busName          = "org.freedesktop.NetworkManager"
	objManager       = "/org/freedesktop/NetworkManager"
	devicesNamespace = "/org/freedesktop/NetworkManager/Devices"

	ifaceManager     = "org.freedesktop.NetworkManager"
	ifaceDevice      = "org.freedesktop.NetworkManager.Device"
	ifaceActive      = "org.freedesktop.NetworkManager.Connection.Active"
	ifaceSettingConn = "org.freedesktop.NetworkManager.Settings.Connection"
	ifaceIP4Config   = "org.freedesktop.NetworkManager.IP4Config"
	ifaceIP6Config   = "org.freedesktop.NetworkManager.IP6Config"
	ifaceDHCP4Config = "org.freedesktop.NetworkManager.DHCP4Config"
	ifaceDHCP6Config = "org.freedesktop.NetworkManager.DHCP6Config"

	busDBus   = "org.freedesktop.DBus"
	objDBus   = "/org/freedesktop/DBus"
	ifaceDBus = "org.freedesktop.DBus"
)

// bus is what the source needs of a bus connection (*sdbus.Conn); tests
// substitute a fake.
type bus interface {
	Call(ctx context.Context, dest, path, method string, args ...any) ([]any, error)
	Get(ctx context.Context, dest, path, iface, prop string) (any, error)
	GetAll(ctx context.Context, dest, path, iface string) (map[string]any, error)
	NameHasOwner(ctx context.Context, name string) (bool, error)
	Subscribe(ctx context.Context, size int, matches ...sdbus.Match) (<-chan sdbus.Signal, error)
	Done() <-chan struct{}
	Close() error
}

// listDevices returns the object paths of the devices NetworkManager
// manages or knows (GetDevices: realized devices).
func listDevices(ctx context.Context, b bus) ([]string, error) {
	out, err := b.Call(ctx, busName, objManager, ifaceManager+".GetDevices")
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		return nil, fmt.Errorf("GetDevices: %d values in reply, want 1", len(out))
	}
	return strs(out[0]), nil
}

// readDevice reads the device at path and the objects it points to: its
// active connection (and that connection's profile file), IP configs and
// DHCP configs. An error reading the device itself is returned; an error
// reply for one of the other objects (it went away meanwhile) leaves that
// part of the snapshot empty.
func readDevice(ctx context.Context, b bus, path string) (*snapshot, error) {
	dev, err := b.GetAll(ctx, busName, path, ifaceDevice)
	if err != nil {
		return nil, err
	}
	s := &snapshot{Path: path, Device: dev}
	getAll := func(prop, iface string) (map[string]any, error) {
		p := objPath(dev[prop])
		if p == "" {
			return nil, nil
		}
		return optional(b.GetAll(ctx, busName, p, iface))
	}
	if s.Active, err = getAll("ActiveConnection", ifaceActive); err != nil {
		return nil, err
	}
	if conn := objPath(s.Active["Connection"]); conn != "" {
		v, err := optional(b.Get(ctx, busName, conn, ifaceSettingConn, "Filename"))
		if err != nil {
			return nil, err
		}
		s.Filename = str(v)
	}
	for _, o := range []struct {
		dst         *map[string]any
		prop, iface string
	}{
		{&s.IP4, "Ip4Config", ifaceIP4Config},
		{&s.IP6, "Ip6Config", ifaceIP6Config},
		{&s.DHCP4, "Dhcp4Config", ifaceDHCP4Config},
		{&s.DHCP6, "Dhcp6Config", ifaceDHCP6Config},
	} {
		if *o.dst, err = getAll(o.prop, o.iface); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// optional turns a D-Bus error reply into "nothing there": objects that a
// device points to may disappear between two reads.
func optional[T any](v T, err error) (T, error) {
	var reply *sdbus.ErrorReply
	if errors.As(err, &reply) {
		var zero T
		return zero, nil
	}
	return v, err
}

// stateReason reads a StateReason property, (state, reason).
func stateReason(v any) (state, reason uint32) {
	t, _ := v.([]any)
	if len(t) != 2 {
		return 0, 0
	}
	return u32(t[0]), u32(t[1])
}
