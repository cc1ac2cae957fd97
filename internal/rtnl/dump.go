package rtnl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// dumpAttempts bounds how often Dump retries an interrupted read.
const dumpAttempts = 5

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS: leave the counters out
// of dumped link messages, which netevd does not use.
const rtextFilterSkipStats = 1 << 3

// ErrDumpInterrupted matches the error Dump returns when the kernel marked
// every attempt as interrupted by concurrent changes (NLM_F_DUMP_INTR).
// Dump then also returns its last read, which is usable: a Monitor
// subscribed before the dump reports the changes that interrupted it.
//
// The netlink library hides the final NLMSG_DONE, so an interruption the
// kernel flags only there goes unseen; the same subscription covers it.
var ErrDumpInterrupted = errors.New("rtnetlink dump interrupted by concurrent changes")

// Dump reads all links, addresses and routes of ns over one request
// socket, decoded and filtered as Decode does. An interrupted dump
// (NLM_F_DUMP_INTR, or EINTR from the kernel) is retried a few times. When
// ctx ends, Dump returns ctx's error.
func Dump(ctx context.Context, ns NetNS) (*event.Dump, error) {
	return dump(ctx, ns, dumpAll)
}

// DumpRoutes reads only the routes of ns, as Dump does. The kernel removes
// IPv4 routes without a notification when their address is deleted or their
// link goes down, so a watcher re-reads the routes after such a change.
func DumpRoutes(ctx context.Context, ns NetNS) (*event.Dump, error) {
	return dump(ctx, ns, dumpRoutes)
}

// What a dump reads.
const (
	dumpAll = iota
	dumpRoutes
)

func dump(ctx context.Context, ns NetNS, what int) (*event.Dump, error) {
	c, err := dial(ns)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// Unblock a pending read when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var last *event.Dump
	for range dumpAttempts {
		d, err := dumpOnce(c, what)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dump %s: %w", ns, context.Cause(ctx))
		}
		switch {
		case err == nil:
			return d, nil
		case errors.Is(err, ErrDumpInterrupted):
			last = d
		case errors.Is(err, unix.EINTR):
		default:
			return nil, fmt.Errorf("dump %s: %w", ns, err)
		}
	}
	return last, fmt.Errorf("dump %s: %w %d times", ns, ErrDumpInterrupted, dumpAttempts)
}

// dumpOnce reads links, then addresses, then routes (or only the routes).
// If the kernel flagged any part as interrupted it still returns the whole
// read, with an error matching ErrDumpInterrupted.
func dumpOnce(c *netlink.Conn, what int) (*event.Dump, error) {
	// struct ifinfomsg (AF_UNSPEC) + IFLA_EXT_MASK.
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.IFLA_EXT_MASK, rtextFilterSkipStats)
	linkAttrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode link dump request: %w", err)
	}
	requests := []struct {
		typ  uint16
		data []byte
	}{
		{unix.RTM_GETLINK, append(make([]byte, sizeofIfInfomsg), linkAttrs...)},
		{unix.RTM_GETADDR, make([]byte, sizeofIfAddrmsg)}, // AF_UNSPEC: IPv4 and IPv6
		{unix.RTM_GETROUTE, make([]byte, sizeofRtmsg)},    // AF_UNSPEC: all tables, all families
	}
	if what == dumpRoutes {
		requests = requests[2:]
	}

	d := &event.Dump{}
	var interrupted bool
	for _, req := range requests {
		msgs, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(req.typ), Flags: netlink.Request | netlink.Dump},
			Data:   req.data,
		})
		if err != nil {
			return nil, fmt.Errorf("%s dump: %w", dumpName(req.typ), err)
		}
		for _, msg := range msgs {
			if msg.Header.Flags&netlink.DumpInterrupted != 0 {
				interrupted = true
			}
			evs, err := decodeMessage(msg, time.Time{})
			if err != nil {
				return nil, fmt.Errorf("%s dump: %w", dumpName(req.typ), err)
			}
			for _, ev := range evs {
				switch ev.Kind {
				case event.KindLink:
					d.Links = append(d.Links, *ev.Link)
				case event.KindAddr:
					d.Addrs = append(d.Addrs, *ev.Addr)
				case event.KindRoute:
					d.Routes = append(d.Routes, *ev.Route)
				}
			}
		}
	}
	if interrupted {
		return d, ErrDumpInterrupted
	}
	return d, nil
}

func dumpName(t uint16) string {
	switch t {
	case unix.RTM_GETLINK:
		return "link"
	case unix.RTM_GETADDR:
		return "address"
	}
	return "route"
}
