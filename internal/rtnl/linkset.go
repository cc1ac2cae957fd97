package rtnl

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// LinkSetter changes the administrative state of links in one namespace
// over a request socket it keeps open, so that repeated changes cost one
// netlink round trip each and no process. The daemon never changes links;
// tests and benchmarks use it to drive the kernel. It is safe for
// concurrent use.
type LinkSetter struct {
	c  *netlink.Conn
	ns NetNS
}

// OpenLinkSetter opens a request socket in ns. Close releases it.
func OpenLinkSetter(ns NetNS) (*LinkSetter, error) {
	c, err := dial(ns)
	if err != nil {
		return nil, err
	}
	return &LinkSetter{c: c, ns: ns}, nil
}

// SetUp sets (up) or clears IFF_UP on the link with ifindex index, as
// `ip link set DEV up|down` does, and returns once the kernel has
// acknowledged the request. The kernel's error (ENODEV for an unknown
// index, ...) is wrapped.
func (s *LinkSetter) SetUp(index int, up bool) error {
	// struct ifinfomsg: family, pad, type, index, flags, change.
	b := make([]byte, sizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:8], uint32(int32(index)))
	if up {
		binary.NativeEndian.PutUint32(b[8:12], unix.IFF_UP)
	}
	binary.NativeEndian.PutUint32(b[12:16], unix.IFF_UP) // change only IFF_UP
	_, err := s.c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWLINK, Flags: netlink.Request | netlink.Acknowledge},
		Data:   b,
	})
	if err != nil {
		state := "down"
		if up {
			state = "up"
		}
		return fmt.Errorf("set link %d %s in %s: %w", index, state, s.ns, err)
	}
	return nil
}

// Close closes the socket.
func (s *LinkSetter) Close() error {
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("close rtnetlink request socket: %w", err)
	}
	return nil
}
