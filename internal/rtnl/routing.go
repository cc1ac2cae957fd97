package rtnl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// Errors a Router request can match with errors.Is, besides the kernel's
// errno (which stays in the chain).
var (
	// ErrExists: the rule or route is already there (EEXIST).
	ErrExists = errors.New("already exists")
	// ErrNotFound: there is no such rule or route (ENOENT, ESRCH).
	ErrNotFound = errors.New("not found")
)

// frActToTbl is FR_ACT_TO_TBL: a rule that looks up a table.
const frActToTbl = 1

// rtTableUnspec is RT_TABLE_UNSPEC, the header's table when the table
// number does not fit its 8 bits (RTA_TABLE/FRA_TABLE carry it).
const rtTableUnspec = 0

// Router adds, deletes and lists policy rules and routes in one namespace
// over a request socket it keeps open. It is safe for concurrent use;
// requests are serialized.
type Router struct {
	mu sync.Mutex
	c  *netlink.Conn
	ns NetNS
}

// OpenRouter opens a request socket in ns. Close releases it.
func OpenRouter(ns NetNS) (*Router, error) {
	c, err := dial(ns)
	if err != nil {
		return nil, err
	}
	return &Router{c: c, ns: ns}, nil
}

// Close closes the socket.
func (r *Router) Close() error {
	if err := r.c.Close(); err != nil {
		return fmt.Errorf("close rtnetlink request socket: %w", err)
	}
	return nil
}

// execute sends one request and waits for the kernel's answer; ctx ending
// unblocks it.
func (r *Router) execute(ctx context.Context, m netlink.Message) ([]netlink.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = r.c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			_ = r.c.SetDeadline(time.Time{})
		}
	}()
	msgs, err := r.c.Execute(m)
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	return msgs, classify(err)
}

// classify adds ErrExists/ErrNotFound to the kernel's errno.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w: %w", ErrExists, err)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// RuleAdd adds rule "from Src to Dst lookup Table priority Priority" (an
// invalid Src or Dst means "all"). A rule equal in all of these gives an
// error matching ErrExists: the kernel never holds it twice.
func (r *Router) RuleAdd(ctx context.Context, rule event.Rule) error {
	b, err := ruleMessage(rule)
	if err != nil {
		return err
	}
	_, err = r.execute(ctx, netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWRULE,
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
		Data: b,
	})
	if err != nil {
		return fmt.Errorf("add rule %s in %s: %w", FormatRule(rule), r.ns, err)
	}
	return nil
}

// RuleDel deletes one rule equal to rule; none gives an error matching
// ErrNotFound.
func (r *Router) RuleDel(ctx context.Context, rule event.Rule) error {
	b, err := ruleMessage(rule)
	if err != nil {
		return err
	}
	_, err = r.execute(ctx, netlink.Message{
		Header: netlink.Header{Type: unix.RTM_DELRULE, Flags: netlink.Request | netlink.Acknowledge},
		Data:   b,
	})
	if err != nil {
		return fmt.Errorf("delete rule %s in %s: %w", FormatRule(rule), r.ns, err)
	}
	return nil
}

// RuleList returns the IPv4 and IPv6 rules of the namespace, the kernel's
// own included, in the kernel's order per family. Only the fields of
// event.Rule are read: a rule that also selects by iif, fwmark, ... is
// listed like one that does not.
func (r *Router) RuleList(ctx context.Context) ([]event.Rule, error) {
	var rules []event.Rule
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		hdr := make([]byte, sizeofRuleHdr)
		hdr[0] = fam
		msgs, err := r.execute(ctx, netlink.Message{
			Header: netlink.Header{Type: unix.RTM_GETRULE, Flags: netlink.Request | netlink.Dump},
			Data:   hdr,
		})
		if err != nil {
			return nil, fmt.Errorf("list rules in %s: %w", r.ns, err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWRULE {
				continue
			}
			rule, err := decodeRule(m.Data)
			if err != nil {
				return nil, fmt.Errorf("list rules in %s: %w", r.ns, err)
			}
			if rule != nil {
				rules = append(rules, *rule)
			}
		}
	}
	return rules, nil
}

func ruleMessage(rule event.Rule) ([]byte, error) {
	fam := rule.Family
	if !isIP(fam) {
		return nil, fmt.Errorf("rule %s: family %d is not IPv4 or IPv6", FormatRule(rule), fam)
	}
	b := make([]byte, sizeofRuleHdr)
	b[0] = fam
	ae := netlink.NewAttributeEncoder()
	for _, sel := range []struct {
		p    netip.Prefix
		attr uint16
		len  int
	}{{rule.Dst, unix.FRA_DST, 1}, {rule.Src, unix.FRA_SRC, 2}} {
		if !sel.p.IsValid() {
			continue
		}
		if sel.p.Addr().Is4() != (fam == unix.AF_INET) {
			return nil, fmt.Errorf("rule %s: %s is not of the rule's family", FormatRule(rule), sel.p)
		}
		b[sel.len] = uint8(sel.p.Bits())
		ae.Bytes(sel.attr, sel.p.Addr().AsSlice())
	}
	if rule.Table < 256 {
		b[4] = uint8(rule.Table)
	} else {
		b[4] = rtTableUnspec
	}
	b[7] = frActToTbl
	ae.Uint32(unix.FRA_PRIORITY, rule.Priority)
	ae.Uint32(unix.FRA_TABLE, rule.Table)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode rule %s: %w", FormatRule(rule), err)
	}
	return append(b, attrs...), nil
}

// RouteReplace adds route, or replaces the route with its destination and
// metric (Priority) in its table: "ip route replace". Family, Table, Dst,
// Gateway (optional) and OutIndex are used, and Priority, Protocol, Scope
// and Type when set (Type 0 means unicast). An IPv6 link-local gateway
// needs OutIndex.
func (r *Router) RouteReplace(ctx context.Context, route event.Route) error {
	b, err := routeMessage(route, false)
	if err != nil {
		return err
	}
	if err := r.routeRequest(ctx, unix.RTM_NEWROUTE, b); err != nil {
		return fmt.Errorf("replace route %s in %s: %w", FormatRoute(route, ""), r.ns, err)
	}
	return nil
}

// RouteDel deletes the route matching route's family, table, destination,
// gateway, output interface and metric; none gives an error matching
// ErrNotFound.
func (r *Router) RouteDel(ctx context.Context, route event.Route) error {
	b, err := routeMessage(route, true)
	if err != nil {
		return err
	}
	if err := r.routeRequest(ctx, unix.RTM_DELROUTE, b); err != nil {
		return fmt.Errorf("delete route %s in %s: %w", FormatRoute(route, ""), r.ns, err)
	}
	return nil
}

// RouteList returns the routes in table, as Dump reports them (noise such
// as cached clones filtered, a multipath route as one Route per next hop).
func (r *Router) RouteList(ctx context.Context, table uint32) ([]event.Route, error) {
	var routes []event.Route
	err := r.eachRoute(ctx, func(b []byte) error {
		rs, err := decodeRoute(b)
		for _, rt := range rs {
			if rt.Table == table {
				routes = append(routes, rt)
			}
		}
		return err
	})
	return routes, err
}

// routeRequest sends an RTM_NEWROUTE (create or replace) or RTM_DELROUTE
// request and waits for the kernel's acknowledgement.
func (r *Router) routeRequest(ctx context.Context, typ uint16, data []byte) error {
	flags := netlink.Request | netlink.Acknowledge
	if typ == unix.RTM_NEWROUTE {
		flags |= netlink.Create | netlink.Replace
	}
	_, err := r.execute(ctx, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags}, Data: data})
	return err
}

// eachRoute dumps the routes of both families in every table and calls
// decode with each route message's payload.
func (r *Router) eachRoute(ctx context.Context, decode func([]byte) error) error {
	msgs, err := r.execute(ctx, netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETROUTE, Flags: netlink.Request | netlink.Dump},
		Data:   make([]byte, sizeofRtmsg),
	})
	if err != nil {
		return fmt.Errorf("list routes in %s: %w", r.ns, err)
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWROUTE {
			continue
		}
		if err := decode(m.Data); err != nil {
			return fmt.Errorf("list routes in %s: %w", r.ns, err)
		}
	}
	return nil
}

func routeMessage(route event.Route, del bool) ([]byte, error) {
	fam := route.Family
	if !isIP(fam) || !route.Dst.IsValid() || route.Dst.Addr().Is4() != (fam == unix.AF_INET) {
		return nil, fmt.Errorf("route %s: family %d and destination do not match", FormatRoute(route, ""), fam)
	}
	b := make([]byte, sizeofRtmsg)
	b[0] = fam
	b[1] = uint8(route.Dst.Bits())
	if route.Table < 256 {
		b[4] = uint8(route.Table)
	}
	b[5] = route.Protocol
	b[6] = route.Scope
	b[7] = route.Type
	if b[7] == 0 {
		b[7] = unix.RTN_UNICAST
	}
	if del {
		b[6] = unix.RT_SCOPE_NOWHERE // any scope
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.RTA_TABLE, route.Table)
	if route.Dst.Bits() > 0 {
		ae.Bytes(unix.RTA_DST, route.Dst.Addr().AsSlice())
	}
	if gw := route.Gateway; gw.IsValid() {
		if gw.Is4() != (fam == unix.AF_INET) {
			return nil, fmt.Errorf("route %s: gateway of another family", FormatRoute(route, ""))
		}
		ae.Bytes(unix.RTA_GATEWAY, gw.AsSlice())
	}
	if route.OutIndex > 0 {
		ae.Uint32(unix.RTA_OIF, uint32(route.OutIndex))
	}
	if route.Priority > 0 {
		ae.Uint32(unix.RTA_PRIORITY, route.Priority)
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode route %s: %w", FormatRoute(route, ""), err)
	}
	return append(b, attrs...), nil
}

// FormatRule writes rule in `ip rule` notation, without the verb:
// "-6 from 2001:db8::1 lookup 210 priority 10000".
func FormatRule(rule event.Rule) string {
	s := ""
	if rule.Family == unix.AF_INET6 {
		s = "-6 "
	}
	if rule.Src.IsValid() {
		s += "from " + hostOrPrefix(rule.Src) + " "
	} else {
		s += "from all "
	}
	if rule.Dst.IsValid() {
		s += "to " + hostOrPrefix(rule.Dst) + " "
	}
	return s + fmt.Sprintf("lookup %d priority %d", rule.Table, rule.Priority)
}

// FormatRoute writes route in `ip route` notation, without the verb; dev
// is the output interface's name ("" writes its index instead):
// "default via 192.0.2.1 dev eth1 table 210 proto static".
func FormatRoute(route event.Route, dev string) string {
	s := ""
	if route.Family == unix.AF_INET6 {
		s = "-6 "
	}
	switch {
	case route.Dst.IsValid() && route.Dst.Bits() == 0:
		s += "default"
	case route.Dst.IsValid():
		s += hostOrPrefix(route.Dst)
	default:
		s += "?"
	}
	if route.Gateway.IsValid() {
		s += " via " + route.Gateway.String()
	}
	switch {
	case dev != "":
		s += " dev " + dev
	case route.OutIndex > 0:
		s += fmt.Sprintf(" oif %d", route.OutIndex)
	}
	s += fmt.Sprintf(" table %d", route.Table)
	if route.Protocol == unix.RTPROT_STATIC {
		s += " proto static"
	} else if route.Protocol != 0 {
		s += fmt.Sprintf(" proto %d", route.Protocol)
	}
	if route.Priority > 0 {
		s += fmt.Sprintf(" metric %d", route.Priority)
	}
	return s
}

func hostOrPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
