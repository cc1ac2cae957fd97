package nm

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/netevd/netevd/internal/event"
)

// snapshot is one read of a NetworkManager device and of the objects its
// properties point to, each as the property map D-Bus returned (values as
// sdbus.Plain makes them). A nil map means the object does not exist (its
// path was "/") or could not be read.
type snapshot struct {
	Path     string         // the device's object path
	Device   map[string]any // org.freedesktop.NetworkManager.Device
	Active   map[string]any // org.freedesktop.NetworkManager.Connection.Active
	Filename string         // the connection profile's file, "" if unknown
	IP4      map[string]any // org.freedesktop.NetworkManager.IP4Config
	IP6      map[string]any // org.freedesktop.NetworkManager.IP6Config
	DHCP4    map[string]any // org.freedesktop.NetworkManager.DHCP4Config
	DHCP6    map[string]any // org.freedesktop.NetworkManager.DHCP6Config
}

// activeExternal is NM_ACTIVATION_STATE_FLAG_EXTERNAL in the active
// connection's StateFlags: NetworkManager did not create the configuration,
// it only follows it (nm-dispatcher's CONNECTION_EXTERNAL=1).
const activeExternal = 0x80

// report builds the Manager report for the device in the given state: the
// state selects the directory, the rest becomes the variables that
// nm-dispatcher gives its scripts. It also returns the names of the
// variables whose values held NUL, CR or LF; those values are passed
// escaped ("\n" as the two characters '\' 'n'), so one hostile DHCP option
// or connection name cannot stop the event.
func (s *snapshot) report(index int, state, reason uint32) (*event.Manager, []string) {
	env := map[string]string{
		"DEVICE_STATE_REASON":      strconv.FormatUint(uint64(reason), 10),
		"DEVICE_STATE_REASON_NAME": ReasonName(reason),
	}
	iface := str(s.Device["Interface"])
	if iface != "" {
		env["DEVICE_IFACE"] = iface
	}
	if ip := str(s.Device["IpInterface"]); ip != "" {
		env["DEVICE_IP_IFACE"] = ip
	}
	if a := s.Active; a != nil {
		setNonEmpty(env, "CONNECTION_ID", str(a["Id"]))
		setNonEmpty(env, "CONNECTION_UUID", str(a["Uuid"]))
		setNonEmpty(env, "CONNECTION_DBUS_PATH", objPath(a["Connection"]))
		setNonEmpty(env, "CONNECTION_FILENAME", s.Filename)
		if u32(a["StateFlags"])&activeExternal != 0 {
			env["CONNECTION_EXTERNAL"] = "1"
		}
	}
	ip4 := parseIPConfig(s.IP4, 4)
	ip6 := parseIPConfig(s.IP6, 6)
	ip4.addItems(env, "IP4")
	ip6.addItems(env, "IP6")
	addDHCP(env, "DHCP4_", s.DHCP4)
	addDHCP(env, "DHCP6_", s.DHCP6)

	var escaped []string
	for k, v := range env {
		if strings.ContainsAny(v, "\x00\r\n") {
			env[k] = controlEscaper.Replace(v)
			escaped = append(escaped, k)
		}
	}
	slices.Sort(escaped)

	m := &event.Manager{
		Backend: Backend,
		Index:   index,
		Name:    iface,
		States:  map[string]string{"DeviceState": DeviceStateName(state)},
		Env:     env,
		DNS:     append(ip4.dns, ip6.dns...),
	}
	for _, d := range slices.Concat(ip4.domains, ip6.domains, ip4.searches, ip6.searches) {
		if d != "" && !slices.Contains(m.Domains, d) {
			m.Domains = append(m.Domains, d)
		}
	}
	return m, escaped
}

var controlEscaper = strings.NewReplacer("\x00", `\0`, "\r", `\r`, "\n", `\n`)

func setNonEmpty(env map[string]string, k, v string) {
	if v != "" {
		env[k] = v
	}
}

// ipConfig is what an IP4Config or IP6Config object says.
type ipConfig struct {
	family      int
	addrs       []string // "ADDRESS/PREFIX"
	gateway     string
	routes      []string // "DEST/PREFIX NEXT_HOP METRIC"
	nameservers []string
	dns         []netip.Addr
	domains     []string
	searches    []string
	wins        []string
}

// parseIPConfig reads the properties of an IP4Config (family 4) or
// IP6Config (family 6) object. Values of an unexpected type are ignored.
func parseIPConfig(p map[string]any, family int) ipConfig {
	c := ipConfig{family: family}
	if p == nil {
		return c
	}
	for _, d := range dicts(p["AddressData"]) {
		addr, prefix := str(d["address"]), d["prefix"]
		if addr == "" || prefix == nil {
			continue
		}
		c.addrs = append(c.addrs, addr+"/"+strconv.FormatUint(uint64(u32(prefix)), 10))
	}
	c.gateway = str(p["Gateway"])
	defaultHop := c.unspecified()
	for _, d := range dicts(p["RouteData"]) {
		dest, prefix := str(d["dest"]), d["prefix"]
		if dest == "" || prefix == nil || u32(prefix) == 0 {
			continue // like nm-dispatcher, leave default routes out: IPn_GATEWAY has them
		}
		hop := str(d["next-hop"])
		if hop == "" {
			hop = defaultHop
		}
		c.routes = append(c.routes, fmt.Sprintf("%s/%d %s %d", dest, u32(prefix), hop, u32(d["metric"])))
	}
	c.nameservers = nameservers(p, family)
	for _, ns := range c.nameservers {
		if a, err := netip.ParseAddr(ns); err == nil {
			c.dns = append(c.dns, a)
		}
	}
	c.domains = strs(p["Domains"])
	c.searches = strs(p["Searches"])
	if family == 4 {
		c.wins = strs(p["WinsServerData"])
	}
	return c
}

// unspecified is the address nm-dispatcher prints for a missing gateway or
// next hop. nm-dispatcher prints "0.0.0.0" for IPv6 gateways too; netevd
// prints "::" there.
func (c ipConfig) unspecified() string {
	if c.family == 6 {
		return "::"
	}
	return "0.0.0.0"
}

// nameservers returns the DNS servers of an IP config object: IPv4 from
// NameserverData (NetworkManager 1.14 and later) or else the deprecated
// Nameservers (IPv4 addresses as uint32 in the host's byte order), IPv6
// from Nameservers (16-byte arrays).
func nameservers(p map[string]any, family int) []string {
	var out []string
	if family == 4 {
		if nd, ok := p["NameserverData"]; ok {
			for _, d := range dicts(nd) {
				if a := str(d["address"]); a != "" {
					out = append(out, a)
				}
			}
			return out
		}
		list, _ := p["Nameservers"].([]any)
		for _, v := range list {
			n, ok := v.(uint32)
			if !ok {
				continue
			}
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], n)
			out = append(out, netip.AddrFrom4(b).String())
		}
		return out
	}
	list, _ := p["Nameservers"].([]any)
	for _, v := range list {
		b, ok := v.([]byte)
		if !ok || len(b) != 16 {
			continue
		}
		out = append(out, netip.AddrFrom16([16]byte(b)).String())
	}
	return out
}

// present reports whether the config holds anything. NetworkManager keeps
// an empty IP config object on devices that are not activated; like
// nm-dispatcher for a "down" event, netevd then sets no IPn_ variables.
func (c ipConfig) present() bool {
	return len(c.addrs) > 0 || c.gateway != "" || len(c.routes) > 0 || len(c.nameservers) > 0 ||
		len(c.domains) > 0
}

// addItems adds the variables nm-dispatcher sets for an IP config, with
// prefix "IP4" or "IP6": IPn_ADDRESS_i ("ADDRESS/PREFIX GATEWAY", the
// gateway on the first address only, the unspecified address on the
// others), IPn_NUM_ADDRESSES (when there are addresses), IPn_GATEWAY (the
// unspecified address when there is none), IPn_NAMESERVERS and IPn_DOMAINS
// (when not empty; search domains are not domains), IP4_WINS_SERVERS,
// IPn_ROUTE_i ("DEST/PREFIX NEXT_HOP METRIC", default routes left out) and
// IPn_NUM_ROUTES (always for IPv4, when not zero for IPv6).
func (c ipConfig) addItems(env map[string]string, prefix string) {
	if !c.present() {
		return
	}
	gw := cmp.Or(c.gateway, c.unspecified())
	for i, a := range c.addrs {
		hop := gw
		if i > 0 {
			hop = c.unspecified() // nm-dispatcher gives the gateway to the first address only
		}
		env[prefix+"_ADDRESS_"+strconv.Itoa(i)] = a + " " + hop
	}
	if len(c.addrs) > 0 {
		env[prefix+"_NUM_ADDRESSES"] = strconv.Itoa(len(c.addrs))
	}
	env[prefix+"_GATEWAY"] = gw
	setNonEmpty(env, prefix+"_NAMESERVERS", strings.Join(c.nameservers, " "))
	setNonEmpty(env, prefix+"_DOMAINS", strings.Join(nonEmpty(c.domains), " "))
	setNonEmpty(env, prefix+"_WINS_SERVERS", strings.Join(nonEmpty(c.wins), " "))
	for i, r := range c.routes {
		env[prefix+"_ROUTE_"+strconv.Itoa(i)] = r
	}
	if len(c.routes) > 0 || c.family == 4 {
		env[prefix+"_NUM_ROUTES"] = strconv.Itoa(len(c.routes))
	}
}

// addDHCP adds every string option of a DHCP4Config or DHCP6Config object
// as prefix + the option's name in upper case (domain_name_servers →
// DHCP4_DOMAIN_NAME_SERVERS), as nm-dispatcher does: an option whose name
// then holds anything but A-Z, 0-9 and '_' is left out. Like nm-dispatcher
// it also passes DHCPv4 option 245 (Azure's endpoint, "private_245") as
// DHCP4_UNKNOWN_245, the name dhclient gives it.
func addDHCP(env map[string]string, prefix string, p map[string]any) {
	if p == nil {
		return
	}
	opts, _ := p["Options"].(map[string]any)
	for k, v := range opts {
		s, ok := v.(string)
		if !ok {
			continue
		}
		name := strings.ToUpper(k)
		if !varName(name) {
			continue
		}
		env[prefix+name] = s
	}
	if prefix == "DHCP4_" {
		if v, ok := opts["private_245"].(string); ok {
			if _, has := opts["unknown_245"]; !has {
				env["DHCP4_UNKNOWN_245"] = v
			}
		}
	}
}

// varName reports whether s is non-empty and only A-Z, 0-9 and '_'.
func varName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		default:
			return false
		}
	}
	return true
}

func nonEmpty(ss []string) []string {
	return slices.DeleteFunc(slices.Clone(ss), func(s string) bool { return s == "" })
}

// Typed accessors for plain D-Bus values; a value of another type reads
// as the zero value.

func str(v any) string {
	s, _ := v.(string)
	return s
}

func u32(v any) uint32 {
	n, _ := v.(uint32)
	return n
}

// objPath returns an object path property, "" for none ("/").
func objPath(v any) string {
	s, _ := v.(string)
	if s == "/" {
		return ""
	}
	return s
}

func strs(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// dicts returns an aa{sv} property as its dictionaries.
func dicts(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if d, ok := e.(map[string]any); ok {
			out = append(out, d)
		}
	}
	return out
}
