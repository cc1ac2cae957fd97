package routing

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/rtnl"
)

// Plan returns the ip commands that would install the desired state of the
// policy links among links, in order (routes, then rules), then those of
// the declarative routes ("#" lines for routes waiting for an interface or
// refused).
func (a *Action) Plan(links []event.LinkState) []string {
	var lines []string
	for _, ls := range links {
		if ls.Index <= 0 || !a.Matches(ls.Name) || reserved(a.Table(ls.Index)) {
			continue
		}
		d := a.desired(ls)
		for _, r := range d.routes {
			lines = append(lines, "ip "+routeCmd("replace", r, ls.Name))
		}
		for _, r := range d.rules {
			lines = append(lines, "ip "+ruleCmd("add", r))
		}
	}
	return append(lines, a.planRoutes(links)...)
}

// ruleDeleted handles the kernel's report that an owned rule was deleted.
func (a *Action) ruleDeleted(ctx context.Context, r event.Rule) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	now := time.Now()
	for k, at := range a.ownDeleted {
		if now.Sub(at) > ownEchoTTL {
			delete(a.ownDeleted, k)
		}
	}
	if _, ours := a.ownDeleted[r]; ours {
		delete(a.ownDeleted, r)
		return nil
	}
	wanted := false
	for _, d := range a.applied {
		if slices.Contains(d.rules, r) {
			wanted = true
			break
		}
	}
	if !wanted {
		return nil
	}
	if !a.warned {
		a.warned = true
		a.log.Warn("someone else deleted an owned rule; restoring it (likely systemd-networkd (ManageForeignRoutingPolicyRules=yes); "+
			"set ManageForeignRoutingPolicyRules=no in networkd.conf to stop the fight). Further deletions are logged at debug level",
			"rule", rtnl.FormatRule(r))
	} else {
		a.log.Debug("owned rule deleted by someone else; restoring", "rule", rtnl.FormatRule(r))
	}
	if wait := a.opts.RestoreInterval - now.Sub(a.lastRestore); wait > 0 {
		if a.timer == nil {
			a.wg.Add(1)
			a.timer = time.AfterFunc(wait, func() {
				defer a.wg.Done()
				a.mu.Lock()
				defer a.mu.Unlock()
				a.timer = nil
				if a.closed {
					return
				}
				if err := a.restore(a.bg); err != nil {
					a.log.Error("restoring policy rules", "error", err)
				}
			})
		}
		return nil
	}
	return a.restore(ctx)
}

// restore reconciles every policy link. Called with mu held.
func (a *Action) restore(ctx context.Context) error {
	a.lastRestore = time.Now()
	var errs []error
	for _, ls := range a.links {
		errs = append(errs, a.reconcileLink(ctx, ls, a.desired(ls)))
	}
	return errors.Join(errs...)
}

// Sync makes the kernel match links, the complete current state (the state
// model's snapshot after the startup replay): it configures every policy
// link, forgets links that are gone, and removes every rule in the owned
// priority range that no policy link wants (leftovers of a previous run)
// with the default routes of the tables those rules pointed at.
func (a *Action) Sync(ctx context.Context, links []event.LinkState) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	var errs []error
	present := map[int]bool{}
	for _, ls := range links {
		if ls.Index <= 0 || !a.Matches(ls.Name) {
			continue
		}
		if ok, err := a.usable(ctx, ls); !ok || err != nil {
			errs = append(errs, err)
			continue
		}
		present[ls.Index] = true
		a.links[ls.Index] = ls
		errs = append(errs, a.reconcileLink(ctx, ls, a.desired(ls)))
	}
	for idx := range a.links {
		if !present[idx] {
			errs = append(errs, a.remove(ctx, idx))
		}
	}
	wanted := map[event.Rule]bool{}
	tables := map[uint32]bool{}
	for idx, ls := range a.links {
		tables[a.Table(idx)] = true
		for _, r := range a.desired(ls).rules {
			wanted[r] = true
		}
	}
	n, err := a.removeOwnedRules(ctx, func(r event.Rule) bool { return !wanted[r] }, tables)
	if n > 0 {
		a.log.Info("removed leftover policy rules from a previous run", "rules", n)
	}
	return errors.Join(append(errs, err, a.syncRoutes(ctx, links))...)
}

// removeOwnedRules deletes the rules in the owned range for which drop
// holds, and the default routes of the tables they pointed at unless keep
// lists the table. Called with mu held.
func (a *Action) removeOwnedRules(ctx context.Context, drop func(event.Rule) bool, keep map[uint32]bool) (int, error) {
	rules, err := a.rt.RuleList(ctx)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	tables := map[uint32]bool{}
	for _, r := range rules {
		if !a.owned(r.Priority) || !drop(r) {
			continue
		}
		n++
		errs = append(errs, a.ruleDel(ctx, r))
		if !keep[r.Table] && !reserved(r.Table) {
			tables[r.Table] = true
		}
	}
	for t := range tables {
		routes, err := a.rt.RouteList(ctx, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rt := range routes {
			if rt.IsDefault() {
				errs = append(errs, a.routeDel(ctx, rt, ""))
			}
		}
	}
	return n, errors.Join(errs...)
}

// Close removes every rule in the owned range and the default routes of
// the tables they and the policy links use, unless KeepOnExit, and releases
// the socket. Handle and Sync do nothing after Close.
func (a *Action) Close(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	if a.timer != nil && a.timer.Stop() {
		a.wg.Done()
	}
	a.timer = nil
	a.mu.Unlock()
	a.stopBG()
	a.wg.Wait()

	a.mu.Lock()
	defer a.mu.Unlock()
	var err error
	if a.opts.KeepOnExit {
		a.log.Info("keeping policy rules and routes (routing.keep_on_exit)")
	} else {
		var errs []error
		for idx, ls := range a.links {
			errs = append(errs, a.reconcileLink(ctx, ls, desired{}))
			delete(a.links, idx)
		}
		_, rerr := a.removeOwnedRules(ctx, func(event.Rule) bool { return true }, nil)
		err = errors.Join(append(errs, rerr, a.closeRoutes(ctx))...)
	}
	if cerr := a.rt.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}
