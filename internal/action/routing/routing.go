// Package routing is the policy routing action for multi-homed hosts
// (DESIGN.md §4): every interface that matches routing.policy_rules gets its
// own table, table_base + ifindex, holding a default route through that
// interface's own gateway, and for each of its addresses (IPv4 and IPv6,
// not link-local) two rules:
//
//	from <addr> lookup <table>  at priority Min
//	to <addr> lookup <table>    at priority Min+1
//
// Min..Max is the range of rule priorities netevd owns. The priorities are
// fixed, so a rule is the same whatever the order or repetition of events
// and the kernel refuses to hold it twice (NLM_F_EXCL compares all its
// fields). Within the range netevd removes every rule it did not compute.
// In a table it owns it manages only default routes.
//
// The action reconciles: for each change of a policy link it computes the
// desired rules and routes from the link's state after the change, lists
// what the kernel holds, and adds what is missing and deletes what is
// extra. The gateway is the link's own default route in the main table
// (lowest metric), never another interface's; an address that appears
// before its gateway gets its rules at once and the table's route when the
// gateway appears. A rule in the owned range deleted by someone else
// (systemd-networkd does it with ManageForeignRoutingPolicyRules=yes) is
// restored, at most once per RestoreInterval plus one trailing pass.
//
// Sync removes leftovers of a previous run after the startup replay; Close
// removes everything owned unless KeepOnExit.
package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/rtnl"
)

// DefaultRestoreInterval is the default of Options.RestoreInterval.
const DefaultRestoreInterval = 200 * time.Millisecond

// ownEchoTTL is how long a rule netevd deleted itself is remembered, so
// that the kernel's notification of that deletion is not taken for someone
// else's.
const ownEchoTTL = 10 * time.Second

// Options configures the action; see config.Routing.
type Options struct {
	Interfaces  []string // path.Match globs of the policy interfaces
	TableBase   uint32   // table = TableBase + ifindex
	PriorityMin uint32   // "from" rules; "to" rules use PriorityMin+1
	PriorityMax uint32   // last priority owned
	KeepOnExit  bool     // Close leaves everything in place
	DryRun      bool     // log the ip commands, change nothing

	// RestoreInterval is the least time between two restorations of
	// rules deleted by someone else; 0 means DefaultRestoreInterval.
	RestoreInterval time.Duration

	NetNS rtnl.NetNS // the namespace to act in; zero is the daemon's own
}

// Action is the policy routing action. It is safe for concurrent use.
type Action struct {
	opts Options
	log  *slog.Logger
	rt   *rtnl.Router

	bg     context.Context // for the trailing restore
	stopBG context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	links       map[int]event.LinkState // policy links, as last seen
	applied     map[int]desired         // what was last reconciled per link
	refused     map[int]bool            // links whose table is reserved, logged once
	ownDeleted  map[event.Rule]time.Time
	lastRestore time.Time
	timer       *time.Timer
	warned      bool
}

// desired is what one policy link should have in the kernel.
type desired struct {
	rules  []event.Rule  // sorted
	routes []event.Route // default routes, one per family at most
}

func (d desired) equal(o desired) bool {
	return slices.Equal(d.rules, o.rules) && slices.Equal(d.routes, o.routes)
}

// New checks opts and opens a request socket in opts.NetNS.
func New(opts Options, log *slog.Logger) (*Action, error) {
	for _, p := range opts.Interfaces {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("routing: interface pattern %q: %w", p, err)
		}
	}
	if opts.PriorityMin == 0 || opts.PriorityMax <= opts.PriorityMin {
		return nil, fmt.Errorf("routing: priority range %d-%d needs at least two priorities above 0", opts.PriorityMin, opts.PriorityMax)
	}
	if opts.TableBase == 0 {
		return nil, errors.New("routing: table base must not be 0")
	}
	if opts.RestoreInterval <= 0 {
		opts.RestoreInterval = DefaultRestoreInterval
	}
	rt, err := rtnl.OpenRouter(opts.NetNS)
	if err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	bg, stop := context.WithCancel(context.Background())
	return &Action{
		opts:       opts,
		log:        log.With("component", "routing"),
		rt:         rt,
		bg:         bg,
		stopBG:     stop,
		links:      map[int]event.LinkState{},
		applied:    map[int]desired{},
		refused:    map[int]bool{},
		ownDeleted: map[event.Rule]time.Time{},
	}, nil
}

// Name implements pipeline.Action.
func (a *Action) Name() string { return "routing" }

// Table returns the table of the link with ifindex index.
func (a *Action) Table(index int) uint32 { return a.opts.TableBase + uint32(index) }

func (a *Action) owned(priority uint32) bool {
	return priority >= a.opts.PriorityMin && priority <= a.opts.PriorityMax
}

// Matches reports whether the interface name is a policy interface.
func (a *Action) Matches(name string) bool {
	for _, p := range a.opts.Interfaces {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// reserved reports whether t is a table netevd must not use: unspec (0),
// default (253), main (254), local (255).
func reserved(t uint32) bool { return t == 0 || (t >= 253 && t <= 255) }

// Handle implements pipeline.Action.
func (a *Action) Handle(ctx context.Context, c event.Change) error {
	if c.Type == event.RuleDeleted {
		if c.Rule != nil && a.owned(c.Rule.Priority) {
			return a.ruleDeleted(ctx, *c.Rule)
		}
		return nil
	}
	idx := c.Link.Index
	if idx <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	_, known := a.links[idx]
	if c.Type == event.LinkRemoved || !a.Matches(c.Link.Name) {
		delete(a.refused, idx)
		if !known {
			return nil
		}
		return a.remove(ctx, idx)
	}
	t := a.Table(idx)
	if ok, err := a.usable(ctx, c.Link); !ok || err != nil {
		return err
	}
	want := a.desired(c.Link)
	a.links[idx] = c.Link
	force := c.Initial || c.Type == event.LinkAdded ||
		(c.Type == event.RouteRemoved && c.Route != nil && c.Route.Table == t)
	if have, ok := a.applied[idx]; ok && !force && have.equal(want) {
		return nil
	}
	return a.reconcileLink(ctx, c.Link, want)
}

// usable reports whether the link's table may be used: it is not a
// reserved table, and when netevd first meets the link nobody else uses
// it (a rule outside the owned range that looks it up, or a route in it
// other than a default route through the link). A refused link is logged
// once and left alone until it is removed. Called with mu held.
func (a *Action) usable(ctx context.Context, ls event.LinkState) (bool, error) {
	idx, t := ls.Index, a.Table(ls.Index)
	if refused, checked := a.refused[idx]; checked {
		return !refused, nil
	}
	if _, known := a.links[idx]; known {
		return true, nil
	}
	if reserved(t) {
		a.refused[idx] = true
		a.log.Error("not configuring policy routing: the link's table is reserved (0, 253-255); change routing.table_base",
			"link", ls.Name, "ifindex", idx, "table", t)
		return false, nil
	}
	rules, err := a.rt.RuleList(ctx)
	if err != nil {
		return false, err
	}
	routes, err := a.rt.RouteList(ctx, t)
	if err != nil {
		return false, err
	}
	var users []string
	for _, r := range rules {
		if r.Table == t && !a.owned(r.Priority) {
			users = append(users, "rule "+rtnl.FormatRule(r))
		}
	}
	for _, r := range routes {
		if !r.IsDefault() || r.OutIndex != idx {
			users = append(users, "route "+rtnl.FormatRoute(r, ""))
		}
	}
	a.refused[idx] = len(users) > 0
	if len(users) > 0 {
		a.log.Error("not configuring policy routing: the link's table is in use by someone else; change routing.table_base",
			"link", ls.Name, "ifindex", idx, "table", t, "used_by", strings.Join(users, "; "))
		return false, nil
	}
	return true, nil
}

// desired computes the rules and routes of a policy link from its state.
func (a *Action) desired(ls event.LinkState) desired {
	t := a.Table(ls.Index)
	var d desired
	families := map[uint8]bool{}
	for _, ad := range ls.Addrs {
		ip := ad.Prefix.Addr()
		if ad.Scope >= event.ScopeLink || ip.IsLinkLocalUnicast() || ip.IsLoopback() || ad.Flags&unix.IFA_F_DADFAILED != 0 {
			continue
		}
		host := netip.PrefixFrom(ip, ip.BitLen())
		fam := family(ip)
		families[fam] = true
		d.rules = append(d.rules,
			event.Rule{Family: fam, Priority: a.opts.PriorityMin, Table: t, Src: host},
			event.Rule{Family: fam, Priority: a.opts.PriorityMin + 1, Table: t, Dst: host})
	}
	slices.SortFunc(d.rules, compareRules)
	d.rules = slices.Compact(d.rules)
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if !families[fam] {
			continue
		}
		gw := ownGateway(ls, fam)
		if !gw.IsValid() {
			continue
		}
		d.routes = append(d.routes, event.Route{Family: fam, Table: t, Dst: defaultDst(fam),
			Gateway: gw, OutIndex: ls.Index, Protocol: unix.RTPROT_STATIC, Type: unix.RTN_UNICAST})
	}
	return d
}

// ownGateway returns the gateway of the link's own default route of the
// family in the main table, the one with the lowest metric.
func ownGateway(ls event.LinkState, fam uint8) netip.Addr {
	var best *event.Route
	for i, r := range ls.Routes {
		if r.Family != fam || r.Table != event.TableMain || !r.IsDefault() || r.OutIndex != ls.Index ||
			!r.Gateway.IsValid() || family(r.Gateway) != fam || (r.Type != 0 && r.Type != unix.RTN_UNICAST) {
			continue
		}
		if best == nil || r.Priority < best.Priority {
			best = &ls.Routes[i]
		}
	}
	if best == nil {
		return netip.Addr{}
	}
	return best.Gateway
}

func family(ip netip.Addr) uint8 {
	if ip.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func defaultDst(fam uint8) netip.Prefix {
	if fam == unix.AF_INET {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

func compareRules(x, y event.Rule) int {
	if c := int(x.Family) - int(y.Family); c != 0 {
		return c
	}
	if c := int(x.Priority) - int(y.Priority); c != 0 {
		return c
	}
	if c := x.Src.Addr().Compare(y.Src.Addr()); c != 0 {
		return c
	}
	return x.Dst.Addr().Compare(y.Dst.Addr())
}

// sameRoute reports whether a kernel route is the desired one; the metric
// is not compared (the kernel gives IPv6 routes 1024).
func sameRoute(have, want event.Route) bool {
	return have.Family == want.Family && have.Dst == want.Dst && have.Gateway == want.Gateway &&
		have.OutIndex == want.OutIndex
}

// reconcileLink makes the kernel hold exactly want for the link: first the
// routes (so that a rule never points at an empty table for long), then
// the rules. Called with mu held.
func (a *Action) reconcileLink(ctx context.Context, ls event.LinkState, want desired) error {
	t := a.Table(ls.Index)
	delete(a.applied, ls.Index)
	routes, err := a.rt.RouteList(ctx, t)
	if err != nil {
		return err
	}
	var errs []error
	for _, have := range routes {
		if !have.IsDefault() || slices.ContainsFunc(want.routes, func(w event.Route) bool { return sameRoute(have, w) }) {
			continue
		}
		errs = append(errs, a.routeDel(ctx, have, ls.Name))
	}
	for _, w := range want.routes {
		if !slices.ContainsFunc(routes, func(h event.Route) bool { return sameRoute(h, w) }) {
			errs = append(errs, a.routeReplace(ctx, w, ls.Name))
		}
	}
	rules, err := a.rt.RuleList(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var have []event.Rule
	for _, r := range rules {
		if a.owned(r.Priority) && r.Table == t {
			have = append(have, r)
		}
	}
	for i, r := range have {
		// Delete what is not wanted, and any second copy (a copy that
		// differs in a selector netevd does not read, such as iif).
		if !slices.Contains(want.rules, r) || slices.Contains(have[:i], r) {
			errs = append(errs, a.ruleDel(ctx, r))
		}
	}
	for _, w := range want.rules {
		if !slices.Contains(have, w) {
			errs = append(errs, a.ruleAdd(ctx, w))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("link %s: %w", ls.Name, err)
	}
	a.applied[ls.Index] = want
	return nil
}

// remove deletes everything owned for the link. Called with mu held.
func (a *Action) remove(ctx context.Context, idx int) error {
	ls := a.links[idx]
	delete(a.links, idx)
	delete(a.applied, idx)
	if err := a.reconcileLink(ctx, ls, desired{}); err != nil {
		return err
	}
	delete(a.applied, idx)
	return nil
}

func (a *Action) ruleAdd(ctx context.Context, r event.Rule) error {
	if a.opts.DryRun {
		a.log.Info("dry run: would run", "cmd", "ip "+ruleCmd("add", r))
		return nil
	}
	a.log.Debug("adding rule", "cmd", "ip "+ruleCmd("add", r))
	if err := a.rt.RuleAdd(ctx, r); err != nil && !errors.Is(err, rtnl.ErrExists) {
		return err
	}
	return nil
}

func (a *Action) ruleDel(ctx context.Context, r event.Rule) error {
	if a.opts.DryRun {
		a.log.Info("dry run: would run", "cmd", "ip "+ruleCmd("del", r))
		return nil
	}
	a.log.Debug("deleting rule", "cmd", "ip "+ruleCmd("del", r))
	a.ownDeleted[r] = time.Now()
	if err := a.rt.RuleDel(ctx, r); err != nil {
		delete(a.ownDeleted, r)
		if !errors.Is(err, rtnl.ErrNotFound) {
			return err
		}
	}
	return nil
}

func (a *Action) routeReplace(ctx context.Context, r event.Route, dev string) error {
	if a.opts.DryRun {
		a.log.Info("dry run: would run", "cmd", "ip "+routeCmd("replace", r, dev))
		return nil
	}
	a.log.Debug("replacing route", "cmd", "ip "+routeCmd("replace", r, dev))
	return a.rt.RouteReplace(ctx, r)
}

func (a *Action) routeDel(ctx context.Context, r event.Route, dev string) error {
	if a.opts.DryRun {
		a.log.Info("dry run: would run", "cmd", "ip "+routeCmd("del", r, dev))
		return nil
	}
	a.log.Debug("deleting route", "cmd", "ip "+routeCmd("del", r, dev))
	if err := a.rt.RouteDel(ctx, r); err != nil && !errors.Is(err, rtnl.ErrNotFound) {
		return err
	}
	return nil
}

// ruleCmd and routeCmd write an ip command line (without "ip"), with the
// family option first: "-6 rule add from 2001:db8::1 lookup 210 priority 10000".
func ruleCmd(verb string, r event.Rule) string {
	s := rtnl.FormatRule(r)
	if r.Family == unix.AF_INET6 {
		return "-6 rule " + verb + " " + s[len("-6 "):]
	}
	return "rule " + verb + " " + s
}

func routeCmd(verb string, r event.Route, dev string) string {
	s := rtnl.FormatRoute(r, dev)
	if r.Family == unix.AF_INET6 {
		return "-6 route " + verb + " " + s[len("-6 "):]
	}
	return "route " + verb + " " + s
}

// Plan returns the ip commands that would install the desired state of the
// policy links among links, in order (routes, then rules).
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
	return lines
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
	return errors.Join(append(errs, err)...)
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
		err = errors.Join(append(errs, rerr)...)
	}
	if cerr := a.rt.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}
