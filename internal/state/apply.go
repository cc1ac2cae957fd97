package state

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"github.com/netevd/netevd/internal/event"
)

// Apply folds ev into the model and returns the transitions it caused. The
// changes of one link come in this order: link added, renamed, carrier,
// addresses removed, addresses added, routes removed, routes added, and last
// the operational state. Every change carries the link's state after the
// whole event. Changes are returned without IDs; the pipeline numbers them.
func (m *Model) Apply(ev event.Event) event.Delta {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := builder{m: m, ev: ev}
	switch ev.Kind {
	case event.KindLink:
		if ev.Link != nil {
			b.link(*ev.Link)
		}
	case event.KindLinkGone:
		b.linkGone(ev.Index)
	case event.KindAddr:
		if ev.Addr != nil {
			b.addr(*ev.Addr)
		}
	case event.KindAddrGone:
		if ev.Addr != nil {
			b.addrGone(*ev.Addr)
		}
	case event.KindRoute:
		if ev.Route != nil {
			b.route(*ev.Route)
		}
	case event.KindRouteGone:
		if ev.Route != nil {
			b.routeGone(*ev.Route)
		}
	case event.KindRuleGone:
		if ev.Rule != nil {
			rule := *ev.Rule
			b.extra = append(b.extra, event.Change{Type: event.RuleDeleted, Rule: &rule})
		}
	case event.KindSync:
		if ev.Dump != nil {
			b.sync(ev.Dump)
		}
	case event.KindRouteSync:
		if ev.Dump != nil {
			b.syncRoutes(ev.Dump.Routes)
		}
	case event.KindManager:
		if ev.Manager != nil {
			b.manager(ev.Manager)
		}
	}
	return b.finish()
}

// builder collects the changes of one Apply call per link.
type builder struct {
	m     *Model
	ev    event.Event
	order []int // touched ifindexes, in first-touch order
	byIdx map[int]*linkDelta
	extra []event.Change // changes that belong to no link
}

type linkDelta struct {
	index   int
	old     string           // operational state before the event ("" if new)
	removed *event.LinkState // the link's last state, if it was deleted
	changes []event.Change   // Type and payload only; finish fills the rest
}

func (b *builder) touch(index int) *linkDelta {
	if ld, ok := b.byIdx[index]; ok {
		return ld
	}
	if b.byIdx == nil {
		b.byIdx = make(map[int]*linkDelta)
	}
	ld := &linkDelta{index: index}
	if r, ok := b.m.links[index]; ok {
		ld.old = r.state
	}
	b.byIdx[index] = ld
	b.order = append(b.order, index)
	return ld
}

func (b *builder) add(index int, c event.Change) {
	ld := b.touch(index)
	ld.changes = append(ld.changes, c)
}

func (b *builder) link(l event.Link) {
	r, ok := b.m.links[l.Index]
	b.touch(l.Index)
	if !ok {
		r = &linkRec{
			link:   l,
			addrs:  make(map[netip.Prefix]event.Addr),
			routes: make(map[event.Route]struct{}),
		}
		b.m.links[l.Index] = r
		b.add(l.Index, event.Change{Type: event.LinkAdded})
		if l.Carrier {
			b.add(l.Index, event.Change{Type: event.CarrierUp})
		}
		return
	}
	old := r.link
	r.link = l
	if old.Name != l.Name {
		b.add(l.Index, event.Change{Type: event.LinkRenamed, OldName: old.Name})
	}
	if old.Carrier != l.Carrier {
		t := event.CarrierDown
		if l.Carrier {
			t = event.CarrierUp
		}
		b.add(l.Index, event.Change{Type: t})
	}
}

func (b *builder) linkGone(index int) {
	_, ok := b.m.links[index]
	if !ok {
		return
	}
	ld := b.touch(index)
	v := b.m.view(index)
	ld.removed = &v
	delete(b.m.links, index)
	delete(b.m.managers, index)
}

func (b *builder) addr(a event.Addr) {
	r, ok := b.m.links[a.Index]
	if !ok {
		return // the kernel announces a link before its addresses; a stray one is stale
	}
	old, had := r.addrs[a.Prefix]
	r.addrs[a.Prefix] = a
	if had {
		if old != a {
			b.touch(a.Index) // flags changed: may change the operational state
		}
		return
	}
	b.add(a.Index, event.Change{Type: event.AddressAdded, Addr: &a})
}

func (b *builder) addrGone(a event.Addr) {
	r, ok := b.m.links[a.Index]
	if !ok {
		return
	}
	old, had := r.addrs[a.Prefix]
	if !had {
		return
	}
	delete(r.addrs, a.Prefix)
	b.add(a.Index, event.Change{Type: event.AddressRemoved, Addr: &old})
}

func (b *builder) route(rt event.Route) {
	if rt.OutIndex == 0 {
		b.m.hostRoutes[rt] = struct{}{}
		return
	}
	r, ok := b.m.links[rt.OutIndex]
	if !ok {
		return
	}
	if _, had := r.routes[rt]; had {
		return
	}
	r.routes[rt] = struct{}{}
	b.add(rt.OutIndex, event.Change{Type: event.RouteAdded, Route: &rt})
}

func (b *builder) routeGone(rt event.Route) {
	if rt.OutIndex == 0 {
		delete(b.m.hostRoutes, rt)
		return
	}
	r, ok := b.m.links[rt.OutIndex]
	if !ok {
		return
	}
	if _, had := r.routes[rt]; !had {
		return
	}
	delete(r.routes, rt)
	b.add(rt.OutIndex, event.Change{Type: event.RouteRemoved, Route: &rt})
}

// sync makes the model equal to d, producing the changes that lead there.
func (b *builder) sync(d *event.Dump) {
	present := make(map[int]bool, len(d.Links))
	for _, l := range d.Links {
		present[l.Index] = true
	}
	gone := make([]int, 0)
	for idx := range b.m.links {
		if !present[idx] {
			gone = append(gone, idx)
		}
	}
	slices.Sort(gone)
	for _, idx := range gone {
		b.linkGone(idx)
	}
	links := slices.Clone(d.Links)
	slices.SortFunc(links, func(x, y event.Link) int { return cmp.Compare(x.Index, y.Index) })
	for _, l := range links {
		b.link(l)
	}

	wantAddrs := make(map[int]map[netip.Prefix]event.Addr)
	for _, a := range d.Addrs {
		if wantAddrs[a.Index] == nil {
			wantAddrs[a.Index] = make(map[netip.Prefix]event.Addr)
		}
		wantAddrs[a.Index][a.Prefix] = a
	}
	for _, l := range links {
		r := b.m.links[l.Index]
		for _, a := range sortedAddrs(r.addrs) {
			if _, keep := wantAddrs[l.Index][a.Prefix]; !keep {
				b.addrGone(a)
			}
		}
		for _, a := range sortedAddrs(wantAddrs[l.Index]) {
			b.addr(a)
		}
	}
	b.syncRoutes(d.Routes)
}

// syncRoutes makes the model's routes equal to routes. The kernel removes
// IPv4 routes without a notification when their address or link goes, so
// sources re-read the routes then.
func (b *builder) syncRoutes(routes []event.Route) {
	want := make(map[int]map[event.Route]struct{})
	clear(b.m.hostRoutes)
	for _, rt := range routes {
		if rt.OutIndex == 0 {
			b.m.hostRoutes[rt] = struct{}{}
			continue
		}
		if want[rt.OutIndex] == nil {
			want[rt.OutIndex] = make(map[event.Route]struct{})
		}
		want[rt.OutIndex][rt] = struct{}{}
	}
	idxs := make([]int, 0, len(b.m.links))
	for idx := range b.m.links {
		idxs = append(idxs, idx)
	}
	slices.Sort(idxs)
	for _, idx := range idxs {
		r := b.m.links[idx]
		for _, rt := range sortedRoutes(r.routes) {
			if _, keep := want[idx][rt]; !keep {
				b.routeGone(rt)
			}
		}
		for _, rt := range sortedRoutes(want[idx]) {
			b.route(rt)
		}
	}
}

// manager folds in a network manager's report on one link (or on itself,
// index 0). Every state property whose value changed is one change; a
// Refresh report whose states are unchanged but whose data changed re-runs
// every state.
func (b *builder) manager(m *event.Manager) {
	old := b.m.managers[m.Index]
	if m.Gone {
		delete(b.m.managers, m.Index)
		return
	}
	cp := cloneManager(m)
	b.m.managers[m.Index] = cp
	props := make([]string, 0, len(cp.States))
	for p := range cp.States {
		props = append(props, p)
	}
	slices.Sort(props)
	changed := false
	for _, p := range props {
		var was string
		if old != nil {
			was = old.States[p]
		}
		if v := cp.States[p]; v != was {
			changed = true
			b.add(m.Index, event.Change{Type: event.ManagerStateChanged, Property: p, Value: v, OldValue: was, Manager: cp})
		}
	}
	if changed || !cp.Refresh || old == nil || sameData(old, cp) {
		return
	}
	for _, p := range props {
		v := cp.States[p]
		b.add(m.Index, event.Change{Type: event.ManagerStateChanged, Property: p, Value: v, OldValue: v, Manager: cp})
	}
}

func cloneManager(m *event.Manager) *event.Manager {
	cp := *m
	cp.States = maps.Clone(m.States)
	cp.Env = maps.Clone(m.Env)
	cp.DNS = slices.Clone(m.DNS)
	cp.Domains = slices.Clone(m.Domains)
	return &cp
}

func sameData(a, b *event.Manager) bool {
	return maps.Equal(a.Env, b.Env) && slices.Equal(a.DNS, b.DNS) &&
		slices.Equal(a.Domains, b.Domains) && a.Hostname == b.Hostname && a.Name == b.Name
}

func sortedAddrs(m map[netip.Prefix]event.Addr) []event.Addr {
	out := make([]event.Addr, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, compareAddr)
	return out
}

func sortedRoutes(m map[event.Route]struct{}) []event.Route {
	out := make([]event.Route, 0, len(m))
	for rt := range m {
		out = append(out, rt)
	}
	slices.SortFunc(out, CompareRoute)
	return out
}

// finish computes each touched link's new operational state and fills in
// the common fields of every change.
func (b *builder) finish() event.Delta {
	var d event.Delta
	fill := func(c *event.Change, ls event.LinkState, old string) {
		c.Time = b.ev.Time
		c.Initial = b.ev.Initial
		c.Backend = b.m.backend
		c.Link = ls
		c.OldState = old
	}
	for _, idx := range b.order {
		ld := b.byIdx[idx]
		if ld.removed != nil {
			if _, back := b.m.links[idx]; !back {
				c := event.Change{Type: event.LinkRemoved}
				fill(&c, *ld.removed, ld.old)
				d.Changes = append(d.Changes, c)
				continue
			}
		}
		r, known := b.m.links[idx]
		if known {
			if st := r.operational(); st != r.state {
				r.state = st
				ld.changes = append(ld.changes, event.Change{Type: event.OperStateChanged})
			}
		}
		if len(ld.changes) == 0 {
			continue
		}
		ls := b.m.view(idx)
		for i := range ld.changes {
			fill(&ld.changes[i], ls, ld.old)
			d.Changes = append(d.Changes, ld.changes[i])
		}
	}
	for i := range b.extra {
		fill(&b.extra[i], event.LinkState{}, "")
		d.Changes = append(d.Changes, b.extra[i])
	}
	return d
}
