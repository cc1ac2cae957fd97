package event

import (
	"net/netip"
	"time"
)

// ChangeType is one kind of transition on a link. Its String form is the
// EVENT value scripts see and, for most types, the name of the script
// directory it selects (without ".d").
type ChangeType uint8

// Change types.
const (
	LinkAdded           ChangeType = iota + 1 // a new ifindex appeared
	LinkRemoved                               // the ifindex is gone
	LinkRenamed                               // same ifindex, new name (OldName says the old one)
	CarrierUp                                 // IFF_LOWER_UP set
	CarrierDown                               // IFF_LOWER_UP cleared
	AddressAdded                              // Addr appeared
	AddressRemoved                            // Addr disappeared
	RouteAdded                                // Route appeared
	RouteRemoved                              // Route disappeared
	OperStateChanged                          // the operational state (State) changed from OldState
	RuleDeleted                               // a policy rule was deleted (Rule)
	ManagerStateChanged                       // a network manager's state property changed (Property, Value, OldValue)
)

var changeNames = [...]string{
	LinkAdded:           "link-added",
	LinkRemoved:         "link-removed",
	LinkRenamed:         "link-renamed",
	CarrierUp:           "carrier",
	CarrierDown:         "no-carrier",
	AddressAdded:        "address-added",
	AddressRemoved:      "address-removed",
	RouteAdded:          "route-added",
	RouteRemoved:        "route-removed",
	OperStateChanged:    "state",
	RuleDeleted:         "rule-deleted",
	ManagerStateChanged: "manager-state",
}

func (t ChangeType) String() string {
	if int(t) < len(changeNames) && changeNames[t] != "" {
		return changeNames[t]
	}
	return "unknown"
}

// Operational states, named as systemd-networkd names them. With no network
// manager netevd derives them from the kernel (see state.Operational).
const (
	StateOff       = "off"        // administratively down
	StateNoCarrier = "no-carrier" // up, but no carrier
	StateDormant   = "dormant"    // carrier, but the kernel says dormant
	StateCarrier   = "carrier"    // carrier, no address beyond host scope
	StateDegraded  = "degraded"   // carrier and addresses, but not routable
	StateRoutable  = "routable"   // carrier, a global address and a default route
)

// LinkState is an immutable view of one link as the state model knows it:
// the kernel's attributes, its addresses and the routes that leave through it.
// Readers must not modify the slices.
type LinkState struct {
	Link
	Addrs  []Addr  // sorted by address
	Routes []Route // routes whose OutIndex is this link, sorted
	State  string  // operational state (StateOff, ...)

	// Manager is the network manager's latest report on this link; nil
	// with backend none or before the manager reported.
	Manager *Manager
}

// Gateway returns the gateway of the first default route of the given
// family (4 or 6) through this link, preferring the main table; the zero
// Addr if there is none.
func (ls *LinkState) Gateway(family int) netip.Addr {
	var found netip.Addr
	for _, r := range ls.Routes {
		if !r.IsDefault() || !r.Gateway.IsValid() {
			continue
		}
		if (family == 4) != r.Gateway.Is4() {
			continue
		}
		if r.Table == TableMain {
			return r.Gateway
		}
		if !found.IsValid() {
			found = r.Gateway
		}
	}
	return found
}

// Change is one transition on one link, the unit that actions act upon.
// It carries the link's state after the change, so an action never has to
// ask anybody else.
type Change struct {
	ID      uint64 // unique and increasing for the daemon's lifetime (NETEVD_EVENT_ID)
	Type    ChangeType
	Time    time.Time
	Initial bool   // produced by the startup replay
	Backend string // the backend whose vocabulary State uses ("none", ...)

	Link     LinkState // the link after the change (before it, for LinkRemoved)
	OldState string    // operational state before the change ("" if the link is new)
	OldName  string    // for LinkRenamed

	Addr  *Addr  // AddressAdded, AddressRemoved
	Route *Route // RouteAdded, RouteRemoved
	Rule  *Rule  // RuleDeleted

	// ManagerStateChanged: which manager property changed, from what to
	// what, and the manager's whole report after the change.
	Property string
	Value    string
	OldValue string
	Manager  *Manager

	// Coalesced counts the queued changes this one superseded before it ran.
	Coalesced int
}

// Delta is what one Event changed: the transitions per link, in order. An
// empty Delta means nothing changed and nothing runs.
type Delta struct {
	Changes []Change
}

// Empty reports whether d holds no change.
func (d Delta) Empty() bool { return len(d.Changes) == 0 }
