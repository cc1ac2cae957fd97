// Package event is netevd's vocabulary: what sources observe (Event), the
// kernel objects they carry (Link, Addr, Route, Rule), and the transitions
// the state model computes from them (Change, Delta).
//
// It imports nothing from netevd and nothing outside the standard library,
// so every other package may import it.
package event

import (
	"context"
	"net/netip"
	"time"
)

// Kind says what an Event observed.
type Kind uint8

// Event kinds. A "Gone" kind reports that the object no longer exists.
const (
	KindLink      Kind = iota + 1 // a link exists with the attributes in Link (new or changed)
	KindLinkGone                  // the link with Index was deleted
	KindAddr                      // Addr exists (added or its flags changed)
	KindAddrGone                  // Addr was deleted
	KindRoute                     // Route exists
	KindRouteGone                 // Route was deleted
	KindRuleGone                  // Rule was deleted (someone removed a policy rule)
	KindSync                      // Dump is the complete current state; replace everything
	KindRouteSync                 // Dump.Routes is the complete set of routes; links and addresses are unchanged
	KindManager                   // a network manager's view of one link (or of itself: Manager.Index 0)
)

var kindNames = [...]string{
	KindLink:      "link",
	KindLinkGone:  "link-gone",
	KindAddr:      "addr",
	KindAddrGone:  "addr-gone",
	KindRoute:     "route",
	KindRouteGone: "route-gone",
	KindRuleGone:  "rule-gone",
	KindSync:      "sync",
	KindRouteSync: "route-sync",
	KindManager:   "manager",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Event is one observation by a source. Messages are hints: the state model
// compares what an Event says with what it already knows and acts only on
// the difference, so a source may repeat itself freely.
type Event struct {
	Source string    // the source that observed it, e.g. "netlink"
	Kind   Kind      // what was observed; selects which field below is set
	Time   time.Time // when the source received it
	Index  int       // ifindex, for KindLinkGone

	Link  *Link  // KindLink
	Addr  *Addr  // KindAddr, KindAddrGone
	Route *Route // KindRoute, KindRouteGone
	Rule  *Rule  // KindRuleGone
	Dump  *Dump  // KindSync, KindRouteSync
	// Manager is set for KindManager.
	Manager *Manager

	// Initial marks the startup dump: the changes it produces are replayed
	// to scripts with NETEVD_INITIAL=1.
	//
	// A manager source sends its startup replay as KindManager events with
	// Initial set and ends it with one KindSync with Initial set and no Dump:
	// that marks the source as ready.
	Initial bool
}

// Manager is what a network manager (systemd-networkd, NetworkManager,
// dhclient) reports about one link, or about itself when Index is 0. Each
// report is complete: a property missing from States or Env is gone.
type Manager struct {
	Backend string // "systemd-networkd", "NetworkManager", "dhclient"
	Index   int    // ifindex; 0 for the manager as a whole (manager.d)
	Name    string // interface name as the manager reports it; "" if unknown

	// States are the properties whose changes select a script directory,
	// each named as the manager names it ("OperationalState",
	// "AdministrativeState", "DeviceState", "Lease") with the value that
	// names the directory ("routable" → routable.d). Scripts also get each
	// one as a variable of its own name.
	States map[string]string

	// Env holds further variables for scripts, named as the manager's own
	// dispatcher names them (JSON, CONNECTION_ID, IP4_ADDRESS_0, DHCP_*,
	// ...). Values are passed as they are; the script runner refuses an
	// event whose value holds NUL, CR or LF.
	Env map[string]string

	// What the manager learned for resolvers and the hostname.
	DNS      []netip.Addr
	Domains  []string
	Hostname string

	// Describe, if set, returns the manager's own description of the link
	// (networkd's Link.Describe JSON). The script runner calls it only
	// when scripts are about to run for a change of this link, and passes
	// the result as $JSON, so a manager that is busy answering does not
	// delay changes for which no script exists. It is not data: reports
	// compare equal whatever it is.
	Describe func(ctx context.Context) (string, error)

	// Refresh asks that a report whose States are unchanged but whose data
	// (Env, DNS, Domains, Hostname) changed re-run the directories of its
	// current States (a renewed DHCP lease with new options).
	Refresh bool

	// Gone reports that the manager no longer knows the link.
	Gone bool
}

// Dump is a complete read of the kernel's links, addresses and routes.
type Dump struct {
	Links  []Link
	Addrs  []Addr
	Routes []Route
}

// Link is the kernel's view of one network interface.
type Link struct {
	Index     int
	Name      string
	Kind      string // IFLA_INFO_KIND ("veth", "bridge", ...); "" for hardware
	MAC       string // "aa:bb:cc:dd:ee:ff"; "" when the link has none
	MTU       int
	AdminUp   bool   // IFF_UP
	Carrier   bool   // IFF_LOWER_UP
	OperState string // kernel IF_OPER_*: "up", "down", "dormant", "lowerlayerdown", "unknown", ...
	Flags     uint32 // raw IFF_* flags
	Master    int    // ifindex of the master device, 0 if none
}

// Addr is one address on one link.
type Addr struct {
	Index  int
	Prefix netip.Prefix // the local address with its prefix length
	Scope  uint8        // RT_SCOPE_*: 0 universe, 200 site, 253 link, 254 host
	Flags  uint32       // IFA_F_*
}

// Route scopes and the tables netevd cares about.
const (
	ScopeUniverse uint8 = 0
	ScopeLink     uint8 = 253
	ScopeHost     uint8 = 254

	TableMain  uint32 = 254
	TableLocal uint32 = 255
)

// IsGlobal reports whether a is usable beyond its link: universe scope and
// not IPv6 link-local.
func (a Addr) IsGlobal() bool {
	return a.Scope == ScopeUniverse && !a.Prefix.Addr().IsLinkLocalUnicast()
}

// Route is one unicast route. A multipath route is reported as one Route per
// next hop, each with Multipath set, so every Route belongs to one link and
// Route stays comparable (it is used as a map key).
type Route struct {
	Family    uint8        // unix.AF_INET or unix.AF_INET6
	Table     uint32       // RT_TABLE_*; main is 254
	Dst       netip.Prefix // 0.0.0.0/0 or ::/0 for a default route
	Src       netip.Addr   // preferred source, if any
	Gateway   netip.Addr   // next hop, if any
	OutIndex  int          // output ifindex; 0 for routes without one (blackhole, ...)
	Priority  uint32       // metric
	Protocol  uint8        // RTPROT_*
	Scope     uint8        // RT_SCOPE_*
	Type      uint8        // RTN_*
	Multipath bool         // one next hop of a multipath route
}

// IsDefault reports whether r is a default route.
func (r Route) IsDefault() bool { return r.Dst.IsValid() && r.Dst.Bits() == 0 }

// Rule is one policy routing rule.
type Rule struct {
	Family   uint8
	Priority uint32
	Table    uint32
	Src      netip.Prefix // invalid when the rule has no "from"
	Dst      netip.Prefix // invalid when the rule has no "to"
}
