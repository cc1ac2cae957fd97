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
//
// The same action installs the declarative routes of routing.routes
// (Options.Routes, routes.go): a route naming interfaces while all of them
// are routable, a global one from Sync to Close. They are reconciled with
// "replace" after checking the kernel's copy, at every change of a link
// they name, so a route is never duplicated and one deleted by someone
// else comes back at the next change of its link.
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

	// Routes are the declarative routes (routing.routes); see Route.
	Routes []Route
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

	routes       []staticRoute              // parsed Options.Routes
	named        map[string]event.LinkState // every link seen, by name (for routes)
	routeApplied map[int]rtnl.RouteSpec     // index in routes → what was installed
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
	var routes []staticRoute
	for i, r := range opts.Routes {
		if r.Name == "" {
			r.Name = fmt.Sprintf("routes[%d]", i)
		}
		sr, err := parseRoute(r)
		if err != nil {
			return nil, fmt.Errorf("routing: %w", err)
		}
		routes = append(routes, sr)
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

		routes:       routes,
		named:        map[string]event.LinkState{},
		routeApplied: map[int]rtnl.RouteSpec{},
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
	return errors.Join(a.handlePolicy(ctx, c), a.handleRoutes(ctx, c))
}

// handlePolicy follows a change of a link for policy routing. Called with
// mu held.
func (a *Action) handlePolicy(ctx context.Context, c event.Change) error {
	idx := c.Link.Index
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
