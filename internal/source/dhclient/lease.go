package dhclient

import (
	"encoding/json"
	"net/netip"
	"strings"
	"time"
)

// Never is the time of a lease that does not expire: dhclient writes
// "expire never;", and a DHCPv6 lifetime of 0xffffffff seconds is infinite.
// It is the last second JSON can hold.
var Never = time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC)

// Infinite is the DHCPv6 lifetime that never ends (0xffffffff seconds).
const Infinite = 0xffffffff * time.Second

// Lease is one block of a dhclient lease file: a DHCPv4 "lease { ... }" or
// a DHCPv6 "lease6 { ... }".
type Lease struct {
	File string // the file name given to ParseLeases
	Line int    // the line of "lease {" or "lease6 {"

	// Interface is the "interface" statement or, without one, the
	// interface named by the file name (dhclient.eth0.leases).
	Interface string
	IPv6      bool // a lease6 block

	// DHCPv4 statements.
	FixedAddress netip.Addr // the leased address
	BOOTP        bool       // "bootp;": a BOOTP lease
	Filename     string     // "filename": the boot file
	ServerName   string     // "server-name": the boot server
	Medium       string     // "medium": media types, space-separated
	Name         string     // "name": the pseudo-interface the lease belongs to
	Key          string     // "key": the name of the authentication key

	// DHCPv6 statements.
	IAs      []IA // ia-na, ia-ta and ia-pd, in file order
	Released bool // "released;" or "abandoned;"

	// Options maps each option name as written ("domain-name-servers",
	// "dhcp6.name-servers") to its value as dhclient-script would see it:
	// array elements and record fields separated by one space, strings
	// without their quotes and with their escapes decoded. A value may
	// hold any byte, newlines included.
	Options map[string]string

	// Renew, Rebind and Expire are absolute times; zero when absent.
	// For a lease6 they are computed from the IAs: the earliest renew and
	// rebind, and the latest end of an address's valid lifetime (Never when
	// it is infinite). A lease without an expire time has expired, as
	// dhclient treats it.
	Renew, Rebind, Expire time.Time
}

// IA is one identity association of a lease6 block.
type IA struct {
	Type   string    // "ia-na", "ia-ta" or "ia-pd"
	IAID   string    // four bytes as lowercase colon-separated hex, "4a:e3:52:49"
	Starts time.Time // when the IA was bound
	// Renew and Rebind are T1 and T2, counted from Starts (ia-ta has none).
	Renew, Rebind time.Duration
	Addrs         []IAAddr
	Options       map[string]string
}

// IAAddr is one iaaddr (an address, as a /128) or iaprefix (a delegated
// prefix) of an IA.
type IAAddr struct {
	Prefix netip.Prefix
	Starts time.Time
	// Lifetimes are counted from Starts; Infinite never ends.
	PreferredLife, MaxLife time.Duration
	Options                map[string]string
}

// expired reports whether l no longer holds at now.
func (l *Lease) expired(now time.Time) bool {
	return l.Released || !l.Expire.After(now)
}

// end returns when the address stops being valid; Never for an infinite
// lifetime.
func (a IAAddr) end() time.Time {
	if a.MaxLife >= Infinite {
		return Never
	}
	return a.Starts.Add(a.MaxLife)
}

// Addresses returns the addresses a lease assigns to the interface: the
// fixed-address of a DHCPv4 lease, the iaaddr addresses of a lease6.
func (l *Lease) Addresses() []netip.Addr {
	if !l.IPv6 {
		if l.FixedAddress.IsValid() {
			return []netip.Addr{l.FixedAddress}
		}
		return nil
	}
	var out []netip.Addr
	for _, ia := range l.IAs {
		if ia.Type == "ia-pd" {
			continue
		}
		for _, a := range ia.Addrs {
			out = append(out, a.Prefix.Addr())
		}
	}
	return out
}

// Prefixes returns the prefixes delegated to a lease6 (ia-pd).
func (l *Lease) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, ia := range l.IAs {
		if ia.Type != "ia-pd" {
			continue
		}
		for _, a := range ia.Addrs {
			out = append(out, a.Prefix)
		}
	}
	return out
}

// The JSON form of a lease: what scripts get in DHCP_LEASE and DHCP6_LEASE.
// Times are RFC 3339 in UTC or "never"; lifetimes and T1/T2 are seconds.
// The file and line the lease came from are left out: they are not lease
// data and change when dhclient compacts its file.
type (
	leaseJSON struct {
		Interface    string            `json:"interface"`
		IPv6         bool              `json:"ipv6,omitempty"`
		FixedAddress string            `json:"fixed_address,omitempty"`
		BOOTP        bool              `json:"bootp,omitempty"`
		Filename     *string           `json:"filename,omitempty"`
		ServerName   *string           `json:"server_name,omitempty"`
		Medium       *string           `json:"medium,omitempty"`
		Name         *string           `json:"name,omitempty"`
		Key          *string           `json:"key,omitempty"`
		IAs          []iaJSON          `json:"ia,omitempty"`
		Released     bool              `json:"released,omitempty"`
		Options      map[string]string `json:"options"`
		Renew        string            `json:"renew,omitempty"`
		Rebind       string            `json:"rebind,omitempty"`
		Expire       string            `json:"expire,omitempty"`
	}
	iaJSON struct {
		Type    string            `json:"type"`
		IAID    string            `json:"iaid"`
		Starts  string            `json:"starts,omitempty"`
		Renew   int64             `json:"renew"`
		Rebind  int64             `json:"rebind"`
		Addrs   []iaAddrJSON      `json:"addresses"`
		Options map[string]string `json:"options,omitempty"`
	}
	iaAddrJSON struct {
		Address       string            `json:"address,omitempty"`
		Prefix        string            `json:"prefix,omitempty"`
		Starts        string            `json:"starts,omitempty"`
		PreferredLife int64             `json:"preferred_life"`
		MaxLife       int64             `json:"max_life"`
		Options       map[string]string `json:"options,omitempty"`
	}
)

// MarshalJSON encodes the lease as scripts see it in DHCP_LEASE: compact,
// keys in a fixed order, option maps sorted by name.
func (l Lease) MarshalJSON() ([]byte, error) {
	j := leaseJSON{
		Interface:  l.Interface,
		IPv6:       l.IPv6,
		BOOTP:      l.BOOTP,
		Filename:   optional(l.Filename),
		ServerName: optional(l.ServerName),
		Medium:     optional(l.Medium),
		Name:       optional(l.Name),
		Key:        optional(l.Key),
		Released:   l.Released,
		Options:    l.Options,
		Renew:      jsonTime(l.Renew),
		Rebind:     jsonTime(l.Rebind),
		Expire:     jsonTime(l.Expire),
	}
	if j.Options == nil {
		j.Options = map[string]string{}
	}
	if l.FixedAddress.IsValid() {
		j.FixedAddress = l.FixedAddress.String()
	}
	for _, ia := range l.IAs {
		ij := iaJSON{Type: ia.Type, IAID: ia.IAID, Starts: jsonTime(ia.Starts),
			Renew: seconds(ia.Renew), Rebind: seconds(ia.Rebind), Options: ia.Options, Addrs: []iaAddrJSON{}}
		for _, a := range ia.Addrs {
			aj := iaAddrJSON{Starts: jsonTime(a.Starts), PreferredLife: seconds(a.PreferredLife),
				MaxLife: seconds(a.MaxLife), Options: a.Options}
			if ia.Type == "ia-pd" {
				aj.Prefix = a.Prefix.String()
			} else {
				aj.Address = a.Prefix.Addr().String()
			}
			ij.Addrs = append(ij.Addrs, aj)
		}
		j.IAs = append(j.IAs, ij)
	}
	return json.Marshal(j)
}

// optional maps "" to nil, so that empty statements are left out.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func jsonTime(t time.Time) string {
	switch {
	case t.IsZero():
		return ""
	case !t.Before(Never):
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// withoutTimes returns a copy of l that keeps its data and drops its
// times: two leases that differ only in when they were bound and when they
// end are the same lease renewed.
func withoutTimes(l Lease) Lease {
	l.Renew, l.Rebind, l.Expire = time.Time{}, time.Time{}, time.Time{}
	if l.IAs != nil {
		ias := make([]IA, len(l.IAs))
		for i, ia := range l.IAs {
			ia.Starts = time.Time{}
			addrs := make([]IAAddr, len(ia.Addrs))
			for k, a := range ia.Addrs {
				a.Starts = time.Time{}
				addrs[k] = a
			}
			ia.Addrs = addrs
			ias[i] = ia
		}
		l.IAs = ias
	}
	return l
}

// leaseFilePrefixes and leaseFileSuffixes define which files in a watched
// directory are dhclient lease files.
var (
	leaseFilePrefixes = []string{"dhclient6", "dhclient"}
	leaseFileSuffixes = []string{".leases", ".lease"}
)

// IsLeaseFileName reports whether base, a file name without directory, is
// the name of a dhclient lease file: "dhclient" or "dhclient6" followed by
// anything and ".leases" or ".lease". Backup and editor files ("~") and
// hidden files are not.
func IsLeaseFileName(base string) bool {
	if strings.HasPrefix(base, ".") || strings.ContainsAny(base, "~/") {
		return false
	}
	if !strings.HasPrefix(base, "dhclient") {
		return false
	}
	for _, s := range leaseFileSuffixes {
		if strings.HasSuffix(base, s) {
			return true
		}
	}
	return false
}

// InterfaceFromFileName returns the interface a lease file's name is
// about, or "" when the name says none: dhclient.eth0.leases,
// dhclient6.eth0.leases and dhclient-eth0.leases (RHEL) name eth0, and so
// does NetworkManager's dhclient-<uuid>-eth0.lease.
func InterfaceFromFileName(base string) string {
	rest := ""
	for _, p := range leaseFilePrefixes {
		if r, ok := strings.CutPrefix(base, p); ok {
			rest = r
			break
		}
	}
	for _, s := range leaseFileSuffixes {
		if r, ok := strings.CutSuffix(rest, s); ok {
			rest = r
			break
		}
	}
	if rest == "" || (rest[0] != '.' && rest[0] != '-') {
		return ""
	}
	rest = rest[1:]
	if len(rest) > 37 && rest[36] == '-' && isUUID(rest[:36]) {
		rest = rest[37:]
	}
	if validIfName(rest) != nil {
		return ""
	}
	return rest
}

// isUUID reports whether s has the form 8-4-4-4-12 of hex digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
