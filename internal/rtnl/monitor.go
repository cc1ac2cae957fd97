package rtnl

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// DefaultReadBuffer is the receive buffer, in bytes, that a Monitor asks
// for when MonitorConfig.ReadBuffer is 0.
const DefaultReadBuffer = 4 << 20

// malformedLogEvery bounds how often a Monitor logs malformed messages.
const malformedLogEvery = 10 * time.Second

var (
	// ErrOverrun matches (errors.Is) the error Receive returns when the
	// kernel dropped messages because the socket's receive buffer was full
	// (ENOBUFS). The Monitor has already replaced its socket with a fresh,
	// subscribed one, discarding the messages queued before the loss; the
	// caller must read the complete state again (Dump) and go on receiving.
	ErrOverrun = errors.New("rtnetlink monitor overrun, messages were lost")

	// ErrClosed matches the error Receive returns after Close.
	ErrClosed = errors.New("rtnetlink monitor closed")
)

// groups are the multicast groups a Monitor joins, all on one socket so
// the kernel's order of changes is kept across object types.
var groups = []uint32{
	unix.RTNLGRP_LINK,
	unix.RTNLGRP_IPV4_IFADDR,
	unix.RTNLGRP_IPV6_IFADDR,
	unix.RTNLGRP_IPV4_ROUTE,
	unix.RTNLGRP_IPV6_ROUTE,
	unix.RTNLGRP_IPV4_RULE, // 8
	unix.RTNLGRP_IPV6_RULE, // 19
}

// MonitorConfig says where and how a Monitor listens.
type MonitorConfig struct {
	NetNS      NetNS // the namespace to watch; zero is the current one
	ReadBuffer int   // receive buffer in bytes; 0 means DefaultReadBuffer
}

// MonitorStats counts what a Monitor received since it was opened.
type MonitorStats struct {
	Messages  uint64 // netlink messages received
	Malformed uint64 // messages dropped because they did not decode
	Overruns  uint64 // ENOBUFS reports (each one a Receive returning ErrOverrun)
}

// A Monitor is a NETLINK_ROUTE socket subscribed to link, IPv4/IPv6
// address, route and rule changes in one namespace. Receive must be called
// from one goroutine at a time; Close may be called from any goroutine and
// unblocks a pending Receive.
type Monitor struct {
	cfg   MonitorConfig
	log   *slog.Logger
	limit logLimit

	messages  atomic.Uint64
	malformed atomic.Uint64
	overruns  atomic.Uint64

	mu     sync.Mutex // guards the fields below
	conn   *netlink.Conn
	closed bool
}

// OpenMonitor opens a socket in cfg.NetNS, sizes its receive buffer and
// joins the groups. Changes made after it returns are reported by Receive.
func OpenMonitor(cfg MonitorConfig, log *slog.Logger) (*Monitor, error) {
	if cfg.ReadBuffer < 0 {
		return nil, fmt.Errorf("read buffer %d: must not be negative", cfg.ReadBuffer)
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = DefaultReadBuffer
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := openSubscribed(cfg)
	if err != nil {
		return nil, err
	}
	return &Monitor{cfg: cfg, log: log, limit: logLimit{every: malformedLogEvery}, conn: c}, nil
}

func openSubscribed(cfg MonitorConfig) (*netlink.Conn, error) {
	c, err := dial(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	if err := setReadBuffer(c, cfg.ReadBuffer); err != nil {
		_ = c.Close()
		return nil, err
	}
	for _, g := range groups {
		if err := c.JoinGroup(g); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("join rtnetlink group %d: %w", g, err)
		}
	}
	return c, nil
}

// Receive blocks until the kernel sends the next datagram and returns its
// decoded events, stamped with the time it arrived. The slice may be empty
// (filtered routes, ignored message types). Malformed messages are
// skipped, counted and logged (rate-limited). On ENOBUFS it returns an
// error matching ErrOverrun (see there); after Close one matching
// ErrClosed; any other error means the socket no longer works.
func (m *Monitor) Receive() ([]event.Event, error) {
	m.mu.Lock()
	c, closed := m.conn, m.closed
	m.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}

	msgs, err := c.Receive()
	if err != nil {
		if m.isClosed() {
			return nil, ErrClosed
		}
		if errors.Is(err, unix.ENOBUFS) {
			m.overruns.Add(1)
			if rerr := m.reopen(); rerr != nil {
				return nil, fmt.Errorf("resubscribe after overrun: %w", rerr)
			}
			return nil, fmt.Errorf("%w: %w", ErrOverrun, err)
		}
		return nil, fmt.Errorf("receive rtnetlink: %w", err)
	}

	now := time.Now()
	var evs []event.Event
	for _, msg := range msgs {
		m.messages.Add(1)
		got, err := decodeMessage(msg, now)
		if err != nil {
			m.malformed.Add(1)
			if ok, suppressed := m.limit.allow(now); ok {
				m.log.Warn("dropped malformed rtnetlink message", "err", err, "suppressed", suppressed)
			}
			continue
		}
		evs = append(evs, got...)
	}
	return evs, nil
}

// reopen replaces the socket by a freshly subscribed one. Whatever the old
// socket still held predates the loss and is stale once the caller has
// dumped; dropping it keeps it from overwriting the dump.
func (m *Monitor) reopen() error {
	c, err := openSubscribed(m.cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	old, closed := m.conn, m.closed
	if !closed {
		m.conn = c
	}
	m.mu.Unlock()
	if closed {
		_ = c.Close()
		return ErrClosed
	}
	_ = old.Close()
	return nil
}

func (m *Monitor) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// ReadBuffer returns the socket's receive buffer size as the kernel
// reports it (twice the requested size, see socket(7)).
func (m *Monitor) ReadBuffer() (int, error) {
	m.mu.Lock()
	c := m.conn
	m.mu.Unlock()
	n, err := c.ReadBuffer()
	if err != nil {
		return 0, fmt.Errorf("read buffer size: %w", err)
	}
	return n, nil
}

// Stats returns the counters so far.
func (m *Monitor) Stats() MonitorStats {
	return MonitorStats{
		Messages:  m.messages.Load(),
		Malformed: m.malformed.Load(),
		Overruns:  m.overruns.Load(),
	}
}

// Close closes the socket and unblocks a pending Receive. It is idempotent.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if err := m.conn.Close(); err != nil {
		return fmt.Errorf("close rtnetlink monitor: %w", err)
	}
	return nil
}
