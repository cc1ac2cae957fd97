package rtnl

import (
	"fmt"
	"os"
	"runtime"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NetNS names the network namespace a socket is bound to. The zero value
// is the calling process's namespace.
type NetNS struct {
	Path string // a namespace file, e.g. /run/netns/NAME; wins over FD
	FD   int    // an open namespace handle, used when Path is ""; 0 means none
}

func (ns NetNS) String() string {
	switch {
	case ns.Path != "":
		return ns.Path
	case ns.FD > 0:
		return fmt.Sprintf("fd %d", ns.FD)
	}
	return "current namespace"
}

// dial opens a NETLINK_ROUTE socket in ns. The namespace is entered only
// by a locked helper thread for the socket(2) call (mdlayher/socket), so
// the caller's thread never changes namespace.
func dial(ns NetNS) (*netlink.Conn, error) {
	cfg := &netlink.Config{}
	var f *os.File
	switch {
	case ns.Path != "":
		var err error
		if f, err = os.Open(ns.Path); err != nil {
			return nil, fmt.Errorf("open network namespace: %w", err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	case ns.FD > 0:
		cfg.NetNS = ns.FD
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, cfg)
	runtime.KeepAlive(f)
	if err != nil {
		return nil, fmt.Errorf("dial rtnetlink in %s: %w", ns, err)
	}
	return c, nil
}

// setReadBuffer sizes the socket's receive buffer to n bytes (the kernel
// doubles the value for bookkeeping). SO_RCVBUFFORCE ignores
// net.core.rmem_max but needs CAP_NET_ADMIN; without it SO_RCVBUF is used,
// capped by rmem_max.
func setReadBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	if serr == nil {
		return nil
	}
	if err := c.SetReadBuffer(n); err != nil {
		return fmt.Errorf("set receive buffer to %d bytes: %w", n, err)
	}
	return nil
}
