package script

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/netevd/netevd/internal/event"
)

// StandardDirs are the script directories under the scripts root, in the
// order EnsureDirs creates them. Callers must not modify the slice.
var StandardDirs = []string{
	"carrier.d", "no-carrier.d",
	"configured.d", "configuring.d", "degraded.d", "routable.d",
	"off.d", "dormant.d",
	"activated.d", "disconnected.d",
	"manager.d", "routes.d",
	"address-added.d", "address-removed.d",
	"link-added.d", "link-removed.d",
}

// One shared, read-only slice per answer of DirsFor, so that mapping a
// change allocates nothing.
var (
	dirsLinkAdded      = []string{"link-added.d"}
	dirsLinkRemoved    = []string{"link-removed.d"}
	dirsCarrier        = []string{"carrier.d"}
	dirsNoCarrier      = []string{"no-carrier.d"}
	dirsAddressAdded   = []string{"address-added.d"}
	dirsAddressRemoved = []string{"address-removed.d"}
	dirsRoutes         = []string{"routes.d"}

	// dirsState maps the operational states that have a directory of their
	// own to it. "carrier" and "no-carrier" are deliberately missing: those
	// directories run on CarrierUp and CarrierDown, which track the kernel's
	// carrier flag (IFF_LOWER_UP), so a script in carrier.d runs once per
	// carrier transition and not a second time for the state change that the
	// same transition causes.
	dirsState = map[string][]string{
		"routable":     {"routable.d"},
		"degraded":     {"degraded.d"},
		"off":          {"off.d"},
		"dormant":      {"dormant.d"},
		"configured":   {"configured.d"},
		"configuring":  {"configuring.d"},
		"activated":    {"activated.d"},
		"disconnected": {"disconnected.d"},
	}
)

// DirsFor returns the names of the script directories (relative to the
// scripts root) whose scripts run for c, nil if none:
//
//	LinkAdded        link-added.d
//	LinkRemoved      link-removed.d
//	CarrierUp        carrier.d
//	CarrierDown      no-carrier.d
//	AddressAdded     address-added.d
//	AddressRemoved   address-removed.d
//	RouteAdded       routes.d
//	RouteRemoved     routes.d
//	OperStateChanged <state>.d for routable, degraded, off, dormant,
//	                 configured, configuring, activated and disconnected;
//	                 nothing for other states (carrier.d and no-carrier.d
//	                 run on CarrierUp and CarrierDown instead, and states
//	                 such as enslaved or degraded-carrier have no directory)
//	LinkRenamed      nothing
//	RuleDeleted      nothing
//	ManagerStateChanged
//	                 manager.d for the manager itself (ifindex 0), else
//	                 <value>.d: networkd's OperationalState "routable"
//	                 selects routable.d, its AdministrativeState
//	                 "configured" configured.d, NetworkManager's device
//	                 state "activated" activated.d. A value that is not a
//	                 plain lower-case word (letters, digits, '-') selects
//	                 nothing.
//
// With a network manager the manager's states decide: under
// systemd-networkd and NetworkManager the kernel's carrier and derived
// state changes select nothing (the manager reports carrier, no-carrier,
// routable, ... itself); under dhclient, which knows only leases, carrier.d
// and no-carrier.d still follow the kernel but the derived states do not
// (routable.d runs for the lease). Link, address and route directories
// follow the kernel under every backend.
//
// The returned slice may be shared: callers must not modify it.
func DirsFor(c event.Change) []string {
	switch c.Type {
	case event.LinkAdded:
		return dirsLinkAdded
	case event.LinkRemoved:
		return dirsLinkRemoved
	case event.CarrierUp:
		if managesCarrier(c.Backend) {
			return nil
		}
		return dirsCarrier
	case event.CarrierDown:
		if managesCarrier(c.Backend) {
			return nil
		}
		return dirsNoCarrier
	case event.AddressAdded:
		return dirsAddressAdded
	case event.AddressRemoved:
		return dirsAddressRemoved
	case event.RouteAdded, event.RouteRemoved:
		return dirsRoutes
	case event.OperStateChanged:
		if c.Backend != "" && c.Backend != "none" {
			return nil
		}
		return dirsState[c.Link.State]
	case event.ManagerStateChanged:
		if c.Link.Index == 0 {
			return dirsManager
		}
		if !plainWord(c.Value) {
			return nil
		}
		return []string{c.Value + ".d"}
	}
	return nil
}

var dirsManager = []string{"manager.d"}

// managesCarrier reports whether the backend reports carrier changes
// itself.
func managesCarrier(backend string) bool {
	return backend == "systemd-networkd" || backend == "NetworkManager"
}

// plainWord reports whether s can name a script directory: 1 to 32 bytes
// of a-z, 0-9 and '-', starting with a letter.
func plainWord(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return true
}

// EnsureDirs creates the scripts root and every directory in StandardDirs
// below it with mode 0755 where they are missing. Existing directories are
// left as they are (their mode and owner are not changed); a path that
// exists and is not a directory is an error.
func (r *Runner) EnsureDirs() error {
	if err := os.MkdirAll(r.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("create scripts root: %w", err)
	}
	var errs []error
	for _, d := range StandardDirs {
		p := filepath.Join(r.cfg.Dir, d)
		err := os.Mkdir(p, 0o755)
		if err == nil || !errors.Is(err, fs.ErrExist) {
			if err != nil {
				errs = append(errs, fmt.Errorf("create script directory: %w", err))
			}
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("create script directory: %w", err))
			continue
		}
		if !fi.IsDir() {
			errs = append(errs, fmt.Errorf("create script directory %s: exists and is not a directory", p))
		}
	}
	return errors.Join(errs...)
}
