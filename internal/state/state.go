// Package state is netevd's authoritative model of the host's links, their
// addresses and routes. Model.Apply takes one observation (event.Event),
// folds it in and returns the Delta: the transitions it caused, per link, in
// a fixed order. An observation that changes nothing returns an empty Delta,
// and the pipeline stops there.
//
// The Model is safe for concurrent use: the pipeline's run loop applies
// events while readers (API, CLI, tests) take copies with Snapshot.
// It imports only event.
package state

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"

	"github.com/netevd/netevd/internal/event"
)

// Model holds the current state. The zero value is not usable; use New.
type Model struct {
	backend string

	mu         sync.Mutex // guards the fields below
	links      map[int]*linkRec
	hostRoutes map[event.Route]struct{} // routes without an output link (blackhole, ...)
	managers   map[int]*event.Manager   // the manager's latest report per ifindex; 0 for the manager itself
}

type linkRec struct {
	link   event.Link
	addrs  map[netip.Prefix]event.Addr
	routes map[event.Route]struct{}
	state  string
}

// New returns an empty model whose changes name backend as their backend.
func New(backend string) *Model {
	return &Model{
		backend:    backend,
		links:      make(map[int]*linkRec),
		hostRoutes: make(map[event.Route]struct{}),
		managers:   make(map[int]*event.Manager),
	}
}

// Operational derives the operational state of a link from kernel facts,
// using systemd-networkd's names: off (admin down), no-carrier, dormant,
// carrier (no addresses beyond host scope), degraded (addresses, but not
// routable) and routable (a global address and a default route through the
// link).
func Operational(l event.Link, addrs []event.Addr, routes []event.Route) string {
	switch {
	case !l.AdminUp:
		return event.StateOff
	case !l.Carrier:
		return event.StateNoCarrier
	case l.OperState == "dormant":
		return event.StateDormant
	}
	var global, any bool
	for _, a := range addrs {
		if a.Scope == event.ScopeHost {
			continue
		}
		any = true
		global = global || a.IsGlobal()
	}
	if global && slices.ContainsFunc(routes, event.Route.IsDefault) {
		return event.StateRoutable
	}
	if any {
		return event.StateDegraded
	}
	return event.StateCarrier
}

// view builds the immutable LinkState of the link with index idx, which
// may be known to the kernel (r), to the manager (mgr), or both.
func (m *Model) view(idx int) event.LinkState {
	var ls event.LinkState
	if r, ok := m.links[idx]; ok {
		ls = r.view()
	}
	if mgr, ok := m.managers[idx]; ok {
		ls.Manager = mgr
		if ls.Index == 0 && idx != 0 {
			ls.Index, ls.Name = idx, mgr.Name
		}
	}
	return ls
}

// view builds the immutable LinkState of r.
func (r *linkRec) view() event.LinkState {
	ls := event.LinkState{Link: r.link, State: r.state}
	if len(r.addrs) > 0 {
		ls.Addrs = make([]event.Addr, 0, len(r.addrs))
		for _, a := range r.addrs {
			ls.Addrs = append(ls.Addrs, a)
		}
		slices.SortFunc(ls.Addrs, compareAddr)
	}
	if len(r.routes) > 0 {
		ls.Routes = make([]event.Route, 0, len(r.routes))
		for rt := range r.routes {
			ls.Routes = append(ls.Routes, rt)
		}
		slices.SortFunc(ls.Routes, CompareRoute)
	}
	return ls
}

func (r *linkRec) operational() string {
	addrs := make([]event.Addr, 0, len(r.addrs))
	for _, a := range r.addrs {
		addrs = append(addrs, a)
	}
	routes := make([]event.Route, 0, 1)
	for rt := range r.routes {
		if rt.IsDefault() {
			routes = append(routes, rt)
			break
		}
	}
	return Operational(r.link, addrs, routes)
}

func compareAddr(a, b event.Addr) int {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

// CompareRoute orders routes by family, table, destination, metric and next hop.
func CompareRoute(a, b event.Route) int {
	return cmp.Or(
		cmp.Compare(a.Family, b.Family),
		cmp.Compare(a.Table, b.Table),
		a.Dst.Addr().Compare(b.Dst.Addr()),
		cmp.Compare(a.Dst.Bits(), b.Dst.Bits()),
		cmp.Compare(a.Priority, b.Priority),
		a.Gateway.Compare(b.Gateway),
		cmp.Compare(a.OutIndex, b.OutIndex),
		cmp.Compare(a.Type, b.Type),
		cmp.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.Scope, b.Scope),
		a.Src.Compare(b.Src),
		boolCompare(a.Multipath, b.Multipath),
	)
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// Snapshot returns a copy of every link's state, ordered by ifindex.
func (m *Model) Snapshot() []event.LinkState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]event.LinkState, 0, len(m.links))
	for idx := range m.links {
		out = append(out, m.view(idx))
	}
	slices.SortFunc(out, func(a, b event.LinkState) int { return cmp.Compare(a.Index, b.Index) })
	return out
}

// Link returns the state of the link with the given ifindex.
func (m *Model) Link(index int) (event.LinkState, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.links[index]; !ok {
		return event.LinkState{}, false
	}
	return m.view(index), true
}

// HostRoutes returns the routes that leave through no link (blackhole,
// unreachable, prohibit), sorted.
func (m *Model) HostRoutes() []event.Route {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]event.Route, 0, len(m.hostRoutes))
	for rt := range m.hostRoutes {
		out = append(out, rt)
	}
	slices.SortFunc(out, CompareRoute)
	return out
}
