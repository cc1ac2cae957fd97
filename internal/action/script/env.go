package script

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// scriptPath is the fixed PATH scripts get.
const scriptPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// PayloadVersion is the version of the JSON document scripts read on stdin
// (the "version" field). It changes only when a field changes meaning or
// disappears; new fields may be added without a new version.
const PayloadVersion = 1

// maxNameLen is the longest interface name the kernel accepts (IFNAMSIZ is
// 16 including the terminating NUL).
const maxNameLen = 15

// ValidName reports whether name is a safe interface name: 1 to 15 bytes,
// each an ASCII letter, digit, '.', '_' or '-' (^[A-Za-z0-9._-]{1,15}$).
// The kernel accepts more (any byte but '/', ':', NUL and whitespace), but
// a name outside this set is almost certainly hostile and is refused unless
// Config.AllowUnsafeNames is set.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// UnsafeValueError says that an environment variable for a script would
// have contained NUL, newline or carriage return. The event is refused.
type UnsafeValueError struct {
	Var   string
	Value string
}

func (e *UnsafeValueError) Error() string {
	return fmt.Sprintf("variable %s would contain a control character: %s", e.Var, strconv.Quote(e.Value))
}

// baseEnv returns the variables every script gets before the event's own:
// the fixed PATH and LANG and TZ when the daemon has them.
func baseEnv() []string {
	env := []string{"PATH=" + scriptPath}
	for _, k := range []string{"LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Environ returns the complete, sorted environment (KEY=VALUE) a script
// gets for c. It refuses (with an *UnsafeValueError) a change for which a
// value would contain NUL, newline or carriage return. It does not check
// the interface name against ValidName; Handle does that first.
//
// Always set: PATH, LINK, LINKINDEX, STATE, OLD_STATE, BACKEND, EVENT,
// ADDRESSES, IPV4_ADDRESSES, IPV6_ADDRESSES, GATEWAY, GATEWAY6,
// NETEVD_EVENT_ID and the networkd-dispatcher aliases IFACE, ADDR,
// IP_ADDRS, IP6_ADDRS and OperationalState (empty when there is no value).
// Set only when they apply: LANG and TZ (copied from the daemon),
// NETEVD_INITIAL=1 (startup replay; absent otherwise), ADDRESS (address
// events), ROUTE_DST, ROUTE_GATEWAY, ROUTE_TABLE (route events) and
// OLD_LINK (renames).
func (r *Runner) Environ(c event.Change) ([]string, error) {
	ls := &c.Link
	var all, v4p, v6p, v4, v6 []string
	for _, a := range ls.Addrs {
		ip := a.Prefix.Addr()
		all = append(all, ip.String())
		if ip.Is4() {
			v4p = append(v4p, a.Prefix.String())
		} else {
			v6p = append(v6p, a.Prefix.String())
		}
		// networkd-dispatcher leaves loopback and IPv6 link-local
		// addresses out of its lists; the aliases do the same.
		if ip.IsLoopback() || (ip.Is6() && ip.IsLinkLocalUnicast()) {
			continue
		}
		if ip.Is4() {
			v4 = append(v4, ip.String())
		} else {
			v6 = append(v6, ip.String())
		}
	}
	addr := ""
	switch {
	case len(v4) > 0:
		addr = v4[0]
	case len(v6) > 0:
		addr = v6[0]
	}

	state, oldState := ls.State, c.OldState
	if c.Type == event.ManagerStateChanged {
		state, oldState = c.Value, c.OldValue
	}
	opState := ls.State
	mgr := ls.Manager
	if mgr != nil && mgr.States["OperationalState"] != "" {
		opState = mgr.States["OperationalState"]
	}

	env := slices.Clone(r.baseEnv)
	add := func(k, v string) { env = append(env, k+"="+v) }
	add("LINK", ls.Name)
	add("LINKINDEX", strconv.Itoa(ls.Index))
	add("STATE", state)
	add("OLD_STATE", oldState)
	add("BACKEND", c.Backend)
	add("EVENT", c.Type.String())
	add("ADDRESSES", strings.Join(all, " "))
	add("IPV4_ADDRESSES", strings.Join(v4p, " "))
	add("IPV6_ADDRESSES", strings.Join(v6p, " "))
	add("GATEWAY", addrString(ls.Gateway(4)))
	add("GATEWAY6", addrString(ls.Gateway(6)))
	add("NETEVD_EVENT_ID", strconv.FormatUint(c.ID, 10))
	if c.Initial {
		add("NETEVD_INITIAL", "1")
	}
	if c.Addr != nil && (c.Type == event.AddressAdded || c.Type == event.AddressRemoved) {
		add("ADDRESS", c.Addr.Prefix.String())
	}
	if c.Route != nil && (c.Type == event.RouteAdded || c.Type == event.RouteRemoved) {
		add("ROUTE_DST", prefixString(c.Route.Dst))
		add("ROUTE_GATEWAY", addrString(c.Route.Gateway))
		add("ROUTE_TABLE", strconv.FormatUint(uint64(c.Route.Table), 10))
	}
	if c.Type == event.LinkRenamed {
		add("OLD_LINK", c.OldName)
	}
	add("IFACE", ls.Name)
	add("ADDR", addr)
	add("IP_ADDRS", strings.Join(v4, " "))
	add("IP6_ADDRS", strings.Join(v6, " "))
	add("OperationalState", opState)
	if mgr != nil {
		if err := addManager(&env, mgr); err != nil {
			return nil, err
		}
	}

	for _, kv := range env {
		if strings.ContainsAny(kv, "\x00\n\r") {
			k, v, _ := strings.Cut(kv, "=")
			return nil, &UnsafeValueError{Var: k, Value: v}
		}
	}
	slices.Sort(env)
	return env, nil
}

// addManager adds what the network manager reported: DNS and DOMAINS, each
// state property under its own name (AdministrativeState, DeviceState,
// ...), and the manager's own variables (JSON, CONNECTION_ID, DHCP_*).
// netevd's variables win: a manager variable of the same name is left out.
func addManager(env *[]string, m *event.Manager) error {
	have := make(map[string]bool, len(*env)+len(m.States)+len(m.Env))
	for _, kv := range *env {
		k, _, _ := strings.Cut(kv, "=")
		have[k] = true
	}
	set := func(k, v string) error {
		if !validVarName(k) {
			return fmt.Errorf("the %s backend reported a variable whose name is not a valid environment name: %s", m.Backend, strconv.Quote(k))
		}
		if !have[k] {
			have[k] = true
			*env = append(*env, k+"="+v)
		}
		return nil
	}
	dns := make([]string, len(m.DNS))
	for i, a := range m.DNS {
		dns[i] = a.String()
	}
	if err := errors.Join(set("DNS", strings.Join(dns, " ")), set("DOMAINS", strings.Join(m.Domains, " "))); err != nil {
		return err
	}
	for _, kv := range []map[string]string{m.States, m.Env} {
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			if err := set(k, kv[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// validVarName reports whether k is a portable environment variable name:
// [A-Za-z_][A-Za-z0-9_]*.
func validVarName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		default:
			return false
		}
	}
	return true
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// Payload is the JSON document a script reads on stdin: the whole change.
// Field names are snake_case; every field is always present (absent values
// are "", 0, false, [] or null), so scripts can rely on the shape.
type Payload struct {
	Version   int            `json:"version"`   // PayloadVersion
	ID        uint64         `json:"id"`        // NETEVD_EVENT_ID
	Event     string         `json:"event"`     // EVENT
	Time      string         `json:"time"`      // RFC 3339 with nanoseconds
	Initial   bool           `json:"initial"`   // startup replay
	Backend   string         `json:"backend"`   // BACKEND
	Coalesced int            `json:"coalesced"` // queued changes this one superseded
	Link      PayloadLink    `json:"link"`      // the link after the change
	OldState  string         `json:"old_state"` // OLD_STATE
	OldName   string         `json:"old_name"`  // renames only
	Addresses []PayloadAddr  `json:"addresses"` // all addresses of the link
	Routes    []PayloadRoute `json:"routes"`    // routes leaving through the link
	Address   *PayloadAddr   `json:"address"`   // address events, else null
	Route     *PayloadRoute  `json:"route"`     // route events, else null

	// Manager state changes: which property changed from what to what;
	// "" otherwise. Manager is the network manager's report on the link,
	// null with backend none.
	Property string          `json:"property"`
	Value    string          `json:"value"`
	OldValue string          `json:"old_value"`
	Manager  *PayloadManager `json:"manager"`
}

// PayloadManager is a network manager's report in Payload.
type PayloadManager struct {
	States   map[string]string `json:"states"`
	Env      map[string]string `json:"env"`
	DNS      []string          `json:"dns"`
	Domains  []string          `json:"domains"`
	Hostname string            `json:"hostname"`
}

// PayloadLink is the link part of Payload.
type PayloadLink struct {
	Index     int    `json:"index"`
	Name      string `json:"name"`
	Kind      string `json:"kind"` // "veth", "bridge", ...; "" for hardware
	MAC       string `json:"mac"`
	MTU       int    `json:"mtu"`
	AdminUp   bool   `json:"admin_up"`
	Carrier   bool   `json:"carrier"`
	OperState string `json:"oper_state"` // the kernel's IF_OPER_* ("up", "down", ...)
	State     string `json:"state"`      // the operational state (STATE)
}

// PayloadAddr is one address.
type PayloadAddr struct {
	Address   string `json:"address"` // with prefix length: "10.0.0.1/24"
	IP        string `json:"ip"`      // without: "10.0.0.1"
	PrefixLen int    `json:"prefix_len"`
	Family    int    `json:"family"` // 4 or 6
	Scope     string `json:"scope"`  // "global", "site", "link", "host" or a number
	Flags     uint32 `json:"flags"`  // raw IFA_F_*
}

// PayloadRoute is one route.
type PayloadRoute struct {
	Family    int    `json:"family"` // 4 or 6
	Table     uint32 `json:"table"`
	Dst       string `json:"dst"`     // "0.0.0.0/0" for a default route
	Gateway   string `json:"gateway"` // "" if none
	Src       string `json:"src"`     // preferred source, "" if none
	IfIndex   int    `json:"ifindex"`
	Metric    uint32 `json:"metric"`
	Protocol  string `json:"protocol"` // "kernel", "boot", "static", "dhcp", "ra", ... or a number
	Scope     string `json:"scope"`
	Type      string `json:"type"` // "unicast", "blackhole", ... or a number
	Multipath bool   `json:"multipath"`
}

// NewPayload returns the stdin document for c.
func NewPayload(c event.Change) Payload {
	ls := &c.Link
	p := Payload{
		Version:   PayloadVersion,
		ID:        c.ID,
		Event:     c.Type.String(),
		Time:      c.Time.Format(time.RFC3339Nano),
		Initial:   c.Initial,
		Backend:   c.Backend,
		Coalesced: c.Coalesced,
		Link: PayloadLink{
			Index:     ls.Index,
			Name:      ls.Name,
			Kind:      ls.Kind,
			MAC:       ls.MAC,
			MTU:       ls.MTU,
			AdminUp:   ls.AdminUp,
			Carrier:   ls.Carrier,
			OperState: ls.OperState,
			State:     ls.State,
		},
		OldState:  c.OldState,
		OldName:   c.OldName,
		Addresses: make([]PayloadAddr, 0, len(ls.Addrs)),
		Routes:    make([]PayloadRoute, 0, len(ls.Routes)),
	}
	for _, a := range ls.Addrs {
		p.Addresses = append(p.Addresses, payloadAddr(a))
	}
	for _, rt := range ls.Routes {
		p.Routes = append(p.Routes, payloadRoute(rt))
	}
	if c.Addr != nil {
		a := payloadAddr(*c.Addr)
		p.Address = &a
	}
	if c.Route != nil {
		rt := payloadRoute(*c.Route)
		p.Route = &rt
	}
	p.Property, p.Value, p.OldValue = c.Property, c.Value, c.OldValue
	if m := ls.Manager; m != nil {
		pm := PayloadManager{
			States: nonNil(m.States), Env: nonNil(m.Env),
			DNS: make([]string, len(m.DNS)), Domains: append([]string{}, m.Domains...), Hostname: m.Hostname,
		}
		for i, a := range m.DNS {
			pm.DNS[i] = a.String()
		}
		p.Manager = &pm
	}
	return p
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func payloadAddr(a event.Addr) PayloadAddr {
	ip := a.Prefix.Addr()
	fam := 6
	if ip.Is4() {
		fam = 4
	}
	return PayloadAddr{
		Address:   prefixString(a.Prefix),
		IP:        addrString(ip),
		PrefixLen: a.Prefix.Bits(),
		Family:    fam,
		Scope:     scopeName(a.Scope),
		Flags:     a.Flags,
	}
}

func payloadRoute(r event.Route) PayloadRoute {
	fam := 0
	switch {
	case r.Family == unix.AF_INET:
		fam = 4
	case r.Family == unix.AF_INET6:
		fam = 6
	case r.Dst.IsValid() && r.Dst.Addr().Is4():
		fam = 4
	case r.Dst.IsValid():
		fam = 6
	}
	return PayloadRoute{
		Family:    fam,
		Table:     r.Table,
		Dst:       prefixString(r.Dst),
		Gateway:   addrString(r.Gateway),
		Src:       addrString(r.Src),
		IfIndex:   r.OutIndex,
		Metric:    r.Priority,
		Protocol:  protocolName(r.Protocol),
		Scope:     scopeName(r.Scope),
		Type:      routeTypeName(r.Type),
		Multipath: r.Multipath,
	}
}

// Names as iproute2 prints them (rt_scopes, rt_protos, rtnl_rtntype).
func scopeName(s uint8) string {
	switch s {
	case 0:
		return "global"
	case 200:
		return "site"
	case 253:
		return "link"
	case 254:
		return "host"
	case 255:
		return "nowhere"
	}
	return strconv.Itoa(int(s))
}

func protocolName(p uint8) string {
	switch p {
	case 0:
		return "unspec"
	case 1:
		return "redirect"
	case 2:
		return "kernel"
	case 3:
		return "boot"
	case 4:
		return "static"
	case 9:
		return "ra"
	case 11:
		return "zebra"
	case 12:
		return "bird"
	case 16:
		return "dhcp"
	case 18:
		return "keepalived"
	case 42:
		return "babel"
	case 186:
		return "bgp"
	case 187:
		return "isis"
	case 188:
		return "ospf"
	case 189:
		return "rip"
	}
	return strconv.Itoa(int(p))
}

func routeTypeName(t uint8) string {
	switch t {
	case 0:
		return "unspec"
	case 1:
		return "unicast"
	case 2:
		return "local"
	case 3:
		return "broadcast"
	case 4:
		return "anycast"
	case 5:
		return "multicast"
	case 6:
		return "blackhole"
	case 7:
		return "unreachable"
	case 8:
		return "prohibit"
	case 9:
		return "throw"
	case 10:
		return "nat"
	}
	return strconv.Itoa(int(t))
}
