// Package resolved pushes what a network manager learned for a link (DNS
// servers, search domains, the hostname) to systemd-resolved
// (org.freedesktop.resolve1) and systemd-hostnamed
// (org.freedesktop.hostname1) over D-Bus, as backends.dhclient.use_dns,
// use_domain and use_hostname ask. As upstream, those switches apply to
// whichever backend reports the data.
//
// Action implements pipeline.Action and is wired in cmd/netevd. It reads
// the manager's report that every Change carries (Change.Link.Manager),
// pushes a value only when it differs from what it last pushed for that
// link, and forgets a link (RevertLink) when the link is removed. It talks
// to the bus only through internal/sdbus.
package resolved

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

// Hostname methods (Options.HostnameMethod).
const (
	HostnameStatic    = "static"    // SetStaticHostname: /etc/hostname and the kernel's, persists
	HostnameTransient = "transient" // SetHostname: the kernel's only, until reboot
)

// DefaultTimeout bounds one D-Bus call when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// The D-Bus names the action uses.
const (
	resolveDest    = "org.freedesktop.resolve1"
	resolvePath    = "/org/freedesktop/resolve1"
	resolveManager = "org.freedesktop.resolve1.Manager"
	hostnameDest   = "org.freedesktop.hostname1"
	hostnamePath   = "/org/freedesktop/hostname1"
	hostnameIface  = "org.freedesktop.hostname1"

	// errNoSuchLink is resolved's reply for an ifindex it does not know.
	errNoSuchLink = "org.freedesktop.resolve1.NoSuchLink"
	// errLinkBusy is resolved's reply for a link whose settings it takes
	// from its network manager (networkd: "Link veth0 is managed.").
	errLinkBusy = "org.freedesktop.resolve1.LinkBusy"
)

// errManaged says that resolved takes a link's settings from the link's
// network manager and refuses them from anybody else. That is no failure:
// resolved already has what the manager knows.
var errManaged = errors.New("resolved takes this link's settings from its network manager")

// Options configure an Action.
type Options struct {
	// BusAddress is the D-Bus address of the system bus; "" means the
	// system bus (honouring DBUS_SYSTEM_BUS_ADDRESS).
	BusAddress string
	// UseDNS pushes the link's DNS servers (SetLinkDNS).
	UseDNS bool
	// UseDomain pushes the link's search domains (SetLinkDomains).
	UseDomain bool
	// UseHostname pushes the hostname the manager learned on the link.
	UseHostname bool
	// HostnameMethod is HostnameStatic (the default when "") or
	// HostnameTransient.
	HostnameMethod string
	// Timeout bounds each D-Bus call; DefaultTimeout when zero.
	Timeout time.Duration
}

// Stats are the Action's counters since New.
type Stats struct {
	// Pushes counts D-Bus calls that succeeded: SetLinkDNS,
	// SetLinkDomains, SetStaticHostname/SetHostname and RevertLink.
	Pushes uint64
	// Failures counts calls that failed (an error reply, no reply within
	// the timeout, no bus). Calls interrupted by shutdown are not counted.
	Failures uint64
	// Refused counts values that were not pushed because they are not
	// valid: hostnames and search domains.
	Refused uint64
}

// Action pushes DNS servers, search domains and the hostname from the
// manager's reports to systemd-resolved and systemd-hostnamed. It is safe
// for concurrent use.
type Action struct {
	opts       Options
	log        *slog.Logger
	bus        caller
	hostMethod string // hostname1 method, with its interface

	pushes, failures, refused atomic.Uint64

	hostMu   sync.Mutex // held while pushing the hostname; guards the fields below
	hostWant string     // the hostname last asked for by a link's report
	hostFrom string     // the link whose report asked for it
	host     string     // the hostname this action last set

	mu    sync.Mutex // guards the fields below
	links map[int]*linkState
}

// linkState is what the action knows about one link. For each value it
// keeps the manager's input it last handled (so an unchanged input costs
// nothing and logs nothing), what that input asks for, and what resolved
// has now (which differs after a failed push, until a retry succeeds).
type linkState struct {
	mu sync.Mutex // held while pushing for the link; guards the fields below

	name    string
	removed bool // the link is gone; nothing more is pushed
	// managedLogged: resolved said the link is its manager's (LinkBusy).
	managedLogged bool

	dnsSeen bool
	dnsIn   []netip.Addr
	dnsWant []dnsServer
	dns     []dnsServer // resolved's servers for the link, as far as we know

	domainsSeen bool
	domainsIn   []string
	domainsWant []linkDomain
	domains     []linkDomain

	hostSeen bool
	hostIn   string
}

// New returns an Action for opts. It starts nothing and does not connect
// to the bus; the first push does.
func New(opts Options, log *slog.Logger) (*Action, error) {
	var method string
	switch opts.HostnameMethod {
	case "", HostnameStatic:
		opts.HostnameMethod, method = HostnameStatic, "SetStaticHostname"
	case HostnameTransient:
		method = "SetHostname"
	default:
		return nil, fmt.Errorf("hostname method %q: want %q or %q", opts.HostnameMethod, HostnameStatic, HostnameTransient)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("call timeout %v: must not be negative", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Action{
		opts:       opts,
		log:        log.With("component", "resolved"),
		bus:        &lazyBus{addr: opts.BusAddress},
		hostMethod: hostnameIface + "." + method,
		links:      make(map[int]*linkState),
	}, nil
}

// Name returns "resolved".
func (a *Action) Name() string { return "resolved" }

// Stats returns the current counters.
func (a *Action) Stats() Stats {
	return Stats{Pushes: a.pushes.Load(), Failures: a.failures.Load(), Refused: a.refused.Load()}
}

// Close closes the bus connection. It is safe to call more than once;
// Handle fails after Close.
func (a *Action) Close() error { return a.bus.close() }

// Handle pushes the DNS servers, search domains and hostname of the
// manager's report on c's link, each when enabled and when it differs from
// what was last pushed for the link. An empty list after a non-empty one
// clears the link's list in resolved; an empty hostname changes nothing.
// LinkRemoved forgets the link and reverts its resolved settings. A failed
// push is tried again at the link's next change, and by Run when the
// service comes (back) onto the bus.
func (a *Action) Handle(ctx context.Context, c event.Change) error {
	idx, name := c.Link.Index, c.Link.Name
	if idx <= 0 {
		return nil // the manager itself, or host-wide changes
	}
	if idx > math.MaxInt32 {
		return fmt.Errorf("link %s: ifindex %d out of range", name, idx)
	}
	if c.Type == event.LinkRemoved {
		return a.forget(ctx, idx, name)
	}
	m := c.Link.Manager
	if m == nil {
		return nil
	}
	st := a.link(idx)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.name = name
	var errs []error
	if a.opts.UseDNS {
		if !st.dnsSeen || !slices.Equal(st.dnsIn, m.DNS) {
			want, dropped := dnsServers(m.DNS)
			if len(dropped) > 0 {
				a.log.Warn("ignoring invalid DNS servers", "link", name, "index", idx, "servers", fmt.Sprint(dropped))
			}
			st.dnsSeen, st.dnsIn, st.dnsWant = true, slices.Clone(m.DNS), want
		}
		errs = append(errs, a.pushDNS(ctx, idx, st))
	}
	if a.opts.UseDomain {
		if !st.domainsSeen || !slices.Equal(st.domainsIn, m.Domains) {
			want, refused := linkDomains(m.Domains)
			if len(refused) > 0 {
				a.refused.Add(uint64(len(refused)))
				a.log.Warn("refusing invalid search domains", "link", name, "index", idx, "domains", fmt.Sprintf("%q", refused))
			}
			st.domainsSeen, st.domainsIn, st.domainsWant = true, slices.Clone(m.Domains), want
		}
		errs = append(errs, a.pushDomains(ctx, idx, st))
	}
	if a.opts.UseHostname {
		if !st.hostSeen || st.hostIn != m.Hostname {
			st.hostSeen, st.hostIn = true, m.Hostname
			a.wantHostname(idx, name, m.Hostname)
		}
		if err := a.pushHostname(ctx); err != nil {
			errs = append(errs, fmt.Errorf("link %s (index %d): %w", name, idx, err))
		}
	}
	return errors.Join(errs...)
}

// link returns idx's state, creating it.
func (a *Action) link(idx int) *linkState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.links[idx]
	if st == nil {
		st = &linkState{}
		a.links[idx] = st
	}
	return st
}

// pushDNS makes resolved's servers for the link what it wants. st.mu must
// be held.
func (a *Action) pushDNS(ctx context.Context, idx int, st *linkState) error {
	if st.removed || equalServers(st.dnsWant, st.dns) {
		return nil
	}
	want := st.dnsWant
	err := a.call(ctx, "", resolveDest, resolvePath, resolveManager+".SetLinkDNS", int32(idx), want)
	if errors.Is(err, errManaged) {
		st.dns = want // nothing to retry until the manager's values change
		a.managed(idx, st)
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s (index %d): set DNS servers [%s]: %w", st.name, idx, formatServers(want), err)
	}
	st.dns = want
	a.log.Info("DNS servers pushed to systemd-resolved", "link", st.name, "index", idx, "dns", formatServers(want))
	return nil
}

// pushDomains makes resolved's domains for the link what it wants. st.mu
// must be held.
func (a *Action) pushDomains(ctx context.Context, idx int, st *linkState) error {
	if st.removed || slices.Equal(st.domainsWant, st.domains) {
		return nil
	}
	want := st.domainsWant
	err := a.call(ctx, "", resolveDest, resolvePath, resolveManager+".SetLinkDomains", int32(idx), want)
	if errors.Is(err, errManaged) {
		st.domains = want
		a.managed(idx, st)
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s (index %d): set search domains [%s]: %w", st.name, idx, formatDomains(want), err)
	}
	st.domains = want
	a.log.Info("search domains pushed to systemd-resolved", "link", st.name, "index", idx, "domains", formatDomains(want))
	return nil
}

// managed logs, once per link, that resolved takes the link's settings
// from its network manager. st.mu must be held.
func (a *Action) managed(idx int, st *linkState) {
	if st.managedLogged {
		return
	}
	st.managedLogged = true
	a.log.Info("systemd-resolved takes this link's DNS settings from its network manager; not pushing them",
		"link", st.name, "index", idx)
}

// wantHostname handles a new hostname from link idx's report: an empty
// one changes nothing, an invalid one is refused, a valid one becomes the
// hostname to set.
func (a *Action) wantHostname(idx int, name, in string) {
	h := strings.TrimSuffix(in, ".")
	switch {
	case h == "":
		// Nothing learned: the hostname stays as it is.
	case !ValidHostname(h):
		a.refused.Add(1)
		a.log.Warn("refusing hostname: not RFC 1123 labels of at most 64 characters in all",
			"link", name, "index", idx, "hostname", in)
	default:
		a.hostMu.Lock()
		a.hostWant, a.hostFrom = h, name
		a.hostMu.Unlock()
	}
}

// pushHostname sets the wanted hostname unless this action set it already.
func (a *Action) pushHostname(ctx context.Context) error {
	a.hostMu.Lock()
	defer a.hostMu.Unlock()
	h := a.hostWant
	if h == "" || h == a.host {
		return nil
	}
	if err := a.call(ctx, "", hostnameDest, hostnamePath, a.hostMethod, h, false); err != nil {
		return fmt.Errorf("set %s hostname %q: %w", a.opts.HostnameMethod, h, err)
	}
	a.host = h
	a.log.Info("hostname pushed to systemd-hostnamed", "hostname", h, "method", a.opts.HostnameMethod, "from", a.hostFrom)
	return nil
}

// forget drops a removed link's state and, if the action had pushed DNS
// servers or domains for it, reverts the link in resolved. resolved has
// usually dropped the link already and says so (NoSuchLink): that is
// success.
func (a *Action) forget(ctx context.Context, idx int, name string) error {
	a.mu.Lock()
	st := a.links[idx]
	delete(a.links, idx)
	a.mu.Unlock()
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.removed = true
	if len(st.dns) == 0 && len(st.domains) == 0 {
		return nil
	}
	if err := a.call(ctx, errNoSuchLink, resolveDest, resolvePath, resolveManager+".RevertLink", int32(idx)); err != nil {
		return fmt.Errorf("link %s (index %d) removed: revert its resolved settings: %w", name, idx, err)
	}
	a.log.Debug("link removed; resolved settings reverted", "link", name, "index", idx)
	return nil
}

// call calls method with the call timeout and counts the outcome. An
// error reply named ok counts as success and returns nil.
func (a *Action) call(ctx context.Context, ok, dest, path, method string, args ...any) error {
	cctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	err := a.bus.call(cctx, dest, path, method, args...)
	var reply *sdbus.ErrorReply
	switch {
	case err == nil || ok != "" && errors.As(err, &reply) && reply.Name == ok:
		a.pushes.Add(1)
		return nil
	case errors.As(err, &reply) && reply.Name == errLinkBusy:
		return errManaged
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%w)", ctx.Err(), err) // shutdown: not a failure
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("no reply within %v: %w", a.opts.Timeout, err)
	}
	a.failures.Add(1)
	return err
}

func formatServers(s []dnsServer) string {
	var b strings.Builder
	for i, d := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		a, _ := netip.AddrFromSlice(d.Address)
		b.WriteString(a.String())
	}
	return b.String()
}

func formatDomains(s []linkDomain) string {
	var b strings.Builder
	for i, d := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		if d.RoutingOnly {
			b.WriteByte('~')
		}
		b.WriteString(d.Domain)
	}
	return b.String()
}
