package resolved

import (
	"context"
	"errors"
	"sync"

	"github.com/netevd/netevd/internal/sdbus"
)

// caller calls one D-Bus method and discards its reply. The Action talks
// to the bus only through it, so tests can record the calls instead.
type caller interface {
	call(ctx context.Context, dest, path, method string, args ...any) error
	close() error
}

// lazyBus is a caller on one bus connection, dialled at the first call and
// dialled again after the connection was lost (the bus daemon restarted).
type lazyBus struct {
	addr string // "" is the system bus

	mu sync.Mutex // guards the fields below
	// conn is the current connection, nil before the first call and
	// after a loss; cancel ends its lifetime context.
	conn   *sdbus.Conn
	cancel context.CancelFunc
	closed bool
}

var errClosed = errors.New("action closed")

func (b *lazyBus) call(ctx context.Context, dest, path, method string, args ...any) error {
	c, err := b.get(ctx)
	if err != nil {
		return err
	}
	_, err = c.Call(ctx, dest, path, method, args...)
	if err == nil || !lost(c) || ctx.Err() != nil {
		return err
	}
	// The connection broke under the call: one more try on a new one.
	if c, err = b.get(ctx); err != nil {
		return err
	}
	_, err = c.Call(ctx, dest, path, method, args...)
	return err
}

// get returns a live connection, dialling one if needed. The connection
// outlives ctx; ctx bounds only the dial.
func (b *lazyBus) get(ctx context.Context) (*sdbus.Conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	if b.conn != nil {
		if !lost(b.conn) {
			return b.conn, nil
		}
		b.dropLocked()
	}
	life, cancel := context.WithCancel(context.Background())
	// Dial ties the connection to life; ctx ending during the dial ends
	// life too, which aborts the dial.
	stop := context.AfterFunc(ctx, cancel)
	c, err := sdbus.Dial(life, b.addr)
	if !stop() || err != nil {
		cancel()
		if err == nil {
			_ = c.Close()
			err = ctx.Err()
		}
		return nil, err
	}
	b.conn, b.cancel = c, cancel
	return c, nil
}

func (b *lazyBus) dropLocked() {
	_ = b.conn.Close()
	b.cancel()
	b.conn, b.cancel = nil, nil
}

func (b *lazyBus) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.conn != nil {
		b.dropLocked()
	}
	return nil
}

// lost reports whether c's connection is gone.
func lost(c *sdbus.Conn) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}
