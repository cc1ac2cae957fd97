package routing

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/rtnl"
)

// Route is one declarative route (config.Route after validation). A route
// that names interfaces (Interface, a next hop's Interface) is installed
// while every one of them is routable and removed when one stops being so
// or goes; a route naming none is global: installed by Sync, removed by
// Close.
type Route struct {
	Name        string // for logs: "routing.routes[2]"
	Interface   string
	Destination string // prefix, address or "default"
	Gateway     string
	NextHops    []NextHop
	Type        string // unicast (or ""), blackhole, unreachable, prohibit
	Metric      uint32
	Src         string
	Pref        string // high, medium, low (or "")
	Table       uint32 // 0 means main
}

// NextHop is one next hop of a multipath Route; Interface "" means the
// route's Interface (which may be "" too: the kernel picks one).
type NextHop struct {
	Gateway   string
	Interface string
	Weight    int
}

// staticRoute is a parsed Route: spec without output interfaces, which
// are filled in from the named links when the route is installed.
type staticRoute struct {
	name    string
	spec    rtnl.RouteSpec
	dev     string   // the route's interface
	hopDevs []string // per next hop
	needs   []string // every interface named, sorted, distinct
}

func parseRoute(r Route) (staticRoute, error) {
	sr := staticRoute{name: r.Name, dev: r.Interface}
	s := &sr.spec
	s.Protocol = unix.RTPROT_STATIC
	s.Metric = r.Metric
	s.Table = r.Table
	if s.Table == 0 {
		s.Table = event.TableMain
	}
	switch strings.ToLower(r.Type) {
	case "", "unicast":
		s.Type = unix.RTN_UNICAST
	case "blackhole":
		s.Type = unix.RTN_BLACKHOLE
	case "unreachable":
		s.Type = unix.RTN_UNREACHABLE
	case "prohibit":
		s.Type = unix.RTN_PROHIBIT
	default:
		return sr, fmt.Errorf("%s: unknown route type %q", r.Name, r.Type)
	}
	var addrs []netip.Addr
	parse := func(what, v string) (netip.Addr, error) {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return a, fmt.Errorf("%s: %s: %w", r.Name, what, err)
		}
		addrs = append(addrs, a)
		return a, nil
	}
	var err error
	if r.Gateway != "" {
		if s.Gateway, err = parse("gateway", r.Gateway); err != nil {
			return sr, err
		}
	}
	for _, h := range r.NextHops {
		gw, err := parse("next hop", h.Gateway)
		if err != nil {
			return sr, err
		}
		if h.Weight < 0 || h.Weight > 256 {
			return sr, fmt.Errorf("%s: next hop %s: weight %d is not 1-256", r.Name, gw, h.Weight)
		}
		s.NextHops = append(s.NextHops, rtnl.NextHop{Gateway: gw, Weight: max(h.Weight, 1)})
		dev := h.Interface
		if dev == "" {
			dev = r.Interface
		}
		sr.hopDevs = append(sr.hopDevs, dev)
	}
	if r.Src != "" {
		if s.Src, err = parse("src", r.Src); err != nil {
			return sr, err
		}
	}
	if strings.EqualFold(r.Destination, "default") {
		if len(addrs) == 0 && r.Pref == "" {
			return sr, fmt.Errorf(`%s: "default" of which family?`, r.Name)
		}
		s.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		if len(addrs) > 0 && addrs[0].Is4() {
			s.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
	} else if s.Dst, err = netip.ParsePrefix(r.Destination); err != nil {
		a, aerr := netip.ParseAddr(r.Destination)
		if aerr != nil {
			return sr, fmt.Errorf("%s: destination: %w", r.Name, err)
		}
		s.Dst = netip.PrefixFrom(a, a.BitLen())
	}
	s.Family = family(s.Dst.Addr())
	for _, a := range addrs {
		if family(a) != s.Family {
			return sr, fmt.Errorf("%s: %s is not of the destination's family", r.Name, a)
		}
	}
	switch strings.ToLower(r.Pref) {
	case "", "medium":
	case "high":
		s.Pref = rtnl.PrefHigh
	case "low":
		s.Pref = rtnl.PrefLow
	default:
		return sr, fmt.Errorf("%s: unknown pref %q", r.Name, r.Pref)
	}
	if s.Pref != rtnl.PrefMedium && s.Family != unix.AF_INET6 {
		return sr, fmt.Errorf("%s: pref is for IPv6 routes only", r.Name)
	}
	if s.Type != unix.RTN_UNICAST && (s.Gateway.IsValid() || len(s.NextHops) > 0) {
		return sr, fmt.Errorf("%s: a %s route has no gateway", r.Name, r.Type)
	}
	for _, n := range append([]string{r.Interface}, sr.hopDevs...) {
		if n != "" && !slices.Contains(sr.needs, n) {
			sr.needs = append(sr.needs, n)
		}
	}
	slices.Sort(sr.needs)
	return sr, nil
}

// resolve returns the route to install given the links by name, with its
// output interfaces; ok is false while an interface the route names is
// missing or not routable. A gateway that is not on a subnet of its
// interface is an error naming the route.
func (sr staticRoute) resolve(links map[string]event.LinkState) (spec rtnl.RouteSpec, ok bool, err error) {
	for _, n := range sr.needs {
		if ls, found := links[n]; !found || ls.State != event.StateRoutable {
			return spec, false, nil
		}
	}
	spec = sr.spec
	spec.NextHops = slices.Clone(sr.spec.NextHops)
	if spec.Type != unix.RTN_UNICAST {
		return spec, true, nil
	}
	if sr.dev != "" {
		ls := links[sr.dev]
		if len(spec.NextHops) == 0 {
			spec.OutIndex = ls.Index
		}
		if spec.Gateway.IsValid() && !onSubnet(ls, spec.Gateway) {
			return spec, true, sr.notOnSubnet(spec.Gateway, ls)
		}
	}
	for i, dev := range sr.hopDevs {
		if dev == "" {
			continue
		}
		ls := links[dev]
		spec.NextHops[i].OutIndex = ls.Index
		if gw := spec.NextHops[i].Gateway; !onSubnet(ls, gw) {
			return spec, true, sr.notOnSubnet(gw, ls)
		}
	}
	return spec, true, nil
}

func (sr staticRoute) notOnSubnet(gw netip.Addr, ls event.LinkState) error {
	var nets []string
	for _, ad := range ls.Addrs {
		nets = append(nets, ad.Prefix.Masked().String())
	}
	return fmt.Errorf("%s (%s): gateway %s is not on a subnet of %s (%s); not installing it",
		sr.name, rtnl.FormatSpec(sr.spec, nil), gw, ls.Name, strings.Join(nets, ", "))
}

// onSubnet reports whether gw is reachable on the link without a gateway:
// an IPv6 link-local address, inside the prefix of one of the link's
// addresses, or covered by one of its routes without a gateway.
func onSubnet(ls event.LinkState, gw netip.Addr) bool {
	if gw.Is6() && gw.IsLinkLocalUnicast() {
		return true
	}
	for _, ad := range ls.Addrs {
		if ad.Prefix.Contains(gw) {
			return true
		}
	}
	for _, r := range ls.Routes {
		if !r.Gateway.IsValid() && !r.IsDefault() && (r.Type == 0 || r.Type == unix.RTN_UNICAST) && r.Dst.Contains(gw) {
			return true
		}
	}
	return false
}

// handleRoutes follows a change of a link for the declarative routes that
// name it. Called with mu held.
func (a *Action) handleRoutes(ctx context.Context, c event.Change) error {
	if len(a.routes) == 0 {
		return nil
	}
	names := []string{c.Link.Name}
	for n, ls := range a.named { // a rename: forget the old name
		if ls.Index == c.Link.Index && n != c.Link.Name {
			delete(a.named, n)
			names = append(names, n)
		}
	}
	if c.Type == event.LinkRemoved {
		delete(a.named, c.Link.Name)
	} else {
		a.named[c.Link.Name] = c.Link
	}
	var errs []error
	for i, sr := range a.routes {
		if slices.ContainsFunc(names, func(n string) bool { return slices.Contains(sr.needs, n) }) {
			errs = append(errs, a.reconcileRoute(ctx, i))
		}
	}
	return errors.Join(errs...)
}

// reconcileRoute installs route i if its interfaces are routable (and the
// kernel does not hold it already) or removes it if it was installed.
// Called with mu held.
func (a *Action) reconcileRoute(ctx context.Context, i int) error {
	sr := a.routes[i]
	want, ok, err := sr.resolve(a.named)
	old, applied := a.routeApplied[i]
	if !ok || err != nil {
		if applied {
			delete(a.routeApplied, i)
			err = errors.Join(err, a.removeRoute(ctx, old, sr.name, true))
		}
		return err
	}
	if a.opts.DryRun && applied && old.Same(want) && want.Same(old) {
		return nil
	}
	have, err := a.rt.ListSpecs(ctx, want.Table)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(have, want.Same) {
		if err := a.specReplace(ctx, want, sr.name); err != nil {
			delete(a.routeApplied, i)
			return err
		}
	}
	a.routeApplied[i] = want
	return nil
}

// removeRoute deletes the kernel's copy of s, if it holds one; in a dry
// run a route netevd would have installed (applied) is reported too.
// Called with mu held.
func (a *Action) removeRoute(ctx context.Context, s rtnl.RouteSpec, name string, applied bool) error {
	have, err := a.rt.ListSpecs(ctx, s.Table)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(have, s.Same) && !(a.opts.DryRun && applied) {
		return nil
	}
	return a.specDel(ctx, s, name)
}

func (a *Action) specReplace(ctx context.Context, s rtnl.RouteSpec, name string) error {
	cmd := "ip " + specCmd("replace", s, a.devName)
	if a.opts.DryRun {
		a.log.Info("dry run: would run", "cmd", cmd, "route", name)
		return nil
	}
	a.log.Debug("replacing route", "cmd", cmd, "route", name)
	if err := a.rt.ReplaceSpec(ctx, s); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (a *Action) specDel(ctx context.Context, s rtnl.RouteSpec, name string) error {
	cmd := "ip " + specCmd("del", s, a.devName)
	if a.opts.DryRun {
		a.log.Info("dry run: would run", "cmd", cmd, "route", name)
		return nil
	}
	a.log.Debug("deleting route", "cmd", cmd, "route", name)
	if err := a.rt.DeleteSpec(ctx, s); err != nil && !errors.Is(err, rtnl.ErrNotFound) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// devName names an interface from its index among the links seen.
// Called with mu held.
func (a *Action) devName(idx int) string {
	for n, ls := range a.named {
		if ls.Index == idx {
			return n
		}
	}
	return ""
}

// specCmd writes an ip command line (without "ip") for a declarative
// route: "-6 route replace default via fe80::1 dev eth1 table 254 ...".
func specCmd(verb string, s rtnl.RouteSpec, name func(int) string) string {
	f := rtnl.FormatSpec(s, name)
	if s.Family == unix.AF_INET6 {
		return "-6 route " + verb + " " + f[len("-6 "):]
	}
	return "route " + verb + " " + f
}

// syncRoutes makes the declarative routes match links, the complete
// current state: it installs what should be and removes leftovers of a
// previous run of routes that should not be. Called with mu held.
func (a *Action) syncRoutes(ctx context.Context, links []event.LinkState) error {
	if len(a.routes) == 0 {
		return nil
	}
	a.named = map[string]event.LinkState{}
	for _, ls := range links {
		if ls.Index > 0 {
			a.named[ls.Name] = ls
		}
	}
	var errs []error
	for i, sr := range a.routes {
		if _, ok, _ := sr.resolve(a.named); !ok {
			if _, applied := a.routeApplied[i]; !applied {
				// A leftover; sr.spec leaves the interfaces open.
				errs = append(errs, a.removeRoute(ctx, sr.spec, sr.name, false))
				continue
			}
		}
		errs = append(errs, a.reconcileRoute(ctx, i))
	}
	return errors.Join(errs...)
}

// closeRoutes removes every installed declarative route. Called with mu
// held.
func (a *Action) closeRoutes(ctx context.Context) error {
	var errs []error
	for i, s := range a.routeApplied {
		errs = append(errs, a.removeRoute(ctx, s, a.routes[i].name, true))
		delete(a.routeApplied, i)
	}
	return errors.Join(errs...)
}

// planRoutes returns the ip commands that install the declarative routes
// given links.
func (a *Action) planRoutes(links []event.LinkState) []string {
	named := map[string]event.LinkState{}
	for _, ls := range links {
		if ls.Index > 0 {
			named[ls.Name] = ls
		}
	}
	name := func(idx int) string {
		for n, ls := range named {
			if ls.Index == idx {
				return n
			}
		}
		return ""
	}
	var lines []string
	for _, sr := range a.routes {
		spec, ok, err := sr.resolve(named)
		switch {
		case err != nil:
			lines = append(lines, "# "+err.Error())
		case ok:
			lines = append(lines, "ip "+specCmd("replace", spec, name))
		default:
			lines = append(lines, fmt.Sprintf("# %s waits for %s to be routable: ip %s", sr.name,
				strings.Join(sr.needs, ", "), specCmd("replace", sr.spec, name)))
		}
	}
	return lines
}
