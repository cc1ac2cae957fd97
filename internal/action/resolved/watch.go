package resolved

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/netevd/netevd/internal/sdbus"
)

// Backoff between attempts to watch the bus.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

const (
	busName  = "org.freedesktop.DBus"
	busPath  = "/org/freedesktop/DBus"
	busIface = "org.freedesktop.DBus"
)

// Run watches the bus for systemd-resolved and systemd-hostnamed coming
// onto it. When resolved gets a new owner (it restarted, and forgot what
// links it was given), Run pushes every link's DNS servers and domains
// again; when either service appears, Run retries the pushes that failed.
// Run is optional: without it the action still works, and a push that
// failed is retried at the link's next change only.
//
// Run keeps a connection of its own, dials again with a backoff when it is
// lost, and returns nil when ctx ends.
func (a *Action) Run(ctx context.Context) error {
	backoff := minBackoff
	var owner string // resolved's unique name when last seen
	for quiet := false; ; quiet = true {
		started := time.Now()
		err := a.watch(ctx, &owner)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > maxBackoff {
			backoff, quiet = minBackoff, false // it worked for a while
		}
		level := slog.LevelWarn // once per outage
		if quiet {
			level = slog.LevelDebug
		}
		a.log.Log(ctx, level, "watching the bus for systemd-resolved", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// watch subscribes to NameOwnerChanged and handles it until the
// connection is lost or ctx ends. owner carries resolved's unique name
// across reconnections, so a restart while nobody watched is noticed.
func (a *Action) watch(ctx context.Context, owner *string) error {
	conn, err := sdbus.Dial(ctx, a.opts.BusAddress)
	if err != nil {
		return err
	}
	defer conn.Close()
	sigs, err := conn.Subscribe(ctx, 64, sdbus.Match{Sender: busName, Path: busPath, Interface: busIface, Member: "NameOwnerChanged"})
	if err != nil {
		return err
	}

	// The work runs beside the reader, so a slow push never makes the
	// reader drop signals; kicks coalesce.
	resolvedUp := make(chan bool, 1) // true: resolved restarted
	hostnameUp := make(chan struct{}, 1)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		// A resync that failed (resolved still starting, say) is tried
		// again with a backoff until one succeeds.
		var retry <-chan time.Time
		delay := minBackoff
		for {
			restarted, again := false, false
			select {
			case <-wctx.Done():
				return
			case restarted = <-resolvedUp:
			case <-retry:
				again = true
			case <-hostnameUp:
				if err := a.pushHostname(wctx); err != nil && wctx.Err() == nil {
					a.log.Warn("retrying the hostname", "error", err)
				}
				continue
			}
			if a.resync(wctx, restarted, again) {
				retry, delay = nil, minBackoff
			} else {
				retry, delay = time.After(delay), min(2*delay, maxBackoff)
			}
		}
	})
	kickResolved := func(restarted bool) {
		select {
		case resolvedUp <- restarted:
		case was := <-resolvedUp: // merge with the queued kick
			resolvedUp <- restarted || was
		}
	}

	// Catch up with what happened while nobody watched.
	now, err := nameOwner(ctx, conn, resolveDest)
	if err != nil {
		return err
	}
	kickResolved(*owner != "" && now != "" && now != *owner)
	if now != "" {
		*owner = now
	}
	hostnameUp <- struct{}{}

	for s := range sigs {
		if len(s.Body) != 3 {
			continue
		}
		name, _ := s.Body[0].(string)
		newOwner, _ := s.Body[2].(string)
		if newOwner == "" {
			continue
		}
		switch name {
		case resolveDest:
			*owner = newOwner
			kickResolved(true)
		case hostnameDest:
			select {
			case hostnameUp <- struct{}{}:
			default:
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("connection to the bus lost")
}

// nameOwner returns the unique name owning name, or "" when nobody does.
func nameOwner(ctx context.Context, conn *sdbus.Conn, name string) (string, error) {
	ok, err := conn.NameHasOwner(ctx, name)
	if err != nil || !ok {
		return "", err
	}
	out, err := conn.Call(ctx, busName, busPath, busIface+".GetNameOwner", name)
	var reply *sdbus.ErrorReply
	if errors.As(err, &reply) && reply.Name == "org.freedesktop.DBus.Error.NameHasNoOwner" {
		return "", nil // gone in between
	}
	if err != nil {
		return "", err
	}
	s, _ := out[0].(string)
	return s, nil
}

// resync pushes every link's DNS servers and domains that resolved lacks:
// all of them when it restarted, else those whose push failed, and
// reports whether all of them are in place now. Errors are logged here,
// at debug level when quiet (a retry): no change is being handled to
// return them to.
func (a *Action) resync(ctx context.Context, restarted, quiet bool) bool {
	if !a.opts.UseDNS && !a.opts.UseDomain {
		return true
	}
	type entry struct {
		idx int
		st  *linkState
	}
	a.mu.Lock()
	links := make([]entry, 0, len(a.links))
	for idx, st := range a.links {
		links = append(links, entry{idx, st})
	}
	a.mu.Unlock()
	slices.SortFunc(links, func(x, y entry) int { return cmp.Compare(x.idx, y.idx) })
	if restarted {
		a.log.Info("systemd-resolved restarted; pushing every link's settings again", "links", len(links))
	}
	ok := true
	for _, e := range links {
		st := e.st
		st.mu.Lock()
		if restarted {
			st.dns, st.domains = nil, nil
		}
		var errs []error
		if a.opts.UseDNS {
			errs = append(errs, a.pushDNS(ctx, e.idx, st))
		}
		if a.opts.UseDomain {
			errs = append(errs, a.pushDomains(ctx, e.idx, st))
		}
		st.mu.Unlock()
		if ctx.Err() != nil {
			return true // shutting down: nothing to retry
		}
		if err := errors.Join(errs...); err != nil {
			ok = false
			level := slog.LevelWarn
			if quiet {
				level = slog.LevelDebug
			}
			a.log.Log(ctx, level, "pushing again to systemd-resolved; will retry", "error", err)
		}
	}
	return ok
}
