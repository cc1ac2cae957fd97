package dhclient

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/netevd/netevd/internal/event"
)

// The state property of a report and its values.
const (
	stateProperty = "Lease"
	stateRoutable = "routable" // a lease is current: routable.d runs
	stateExpired  = "expired"  // every lease of the interface has expired
)

// ifaceLeases are one interface's leases per family, oldest first.
type ifaceLeases struct {
	v4, v6 []*Lease
}

// pick returns the current lease of ls, oldest first, at now (the newest
// that has not expired; nil if none) and the newest lease.
func pick(ls []*Lease, now time.Time) (current, newest *Lease) {
	if len(ls) == 0 {
		return nil, nil
	}
	for i := len(ls) - 1; i >= 0; i-- {
		if !ls[i].expired(now) {
			return ls[i], ls[len(ls)-1]
		}
	}
	return nil, ls[len(ls)-1]
}

// view is what the lease files say about one interface at one moment.
type view struct {
	name   string
	state  string // stateRoutable or stateExpired
	v4, v6 *Lease // the leases the report describes; nil for a family without
}

// viewOf works out the state of an interface: routable with its current
// leases if it has any, else expired with its newest leases.
func viewOf(name string, il *ifaceLeases, now time.Time) view {
	c4, n4 := pick(il.v4, now)
	c6, n6 := pick(il.v6, now)
	if c4 != nil || c6 != nil {
		return view{name: name, state: stateRoutable, v4: c4, v6: c6}
	}
	return view{name: name, state: stateExpired, v4: n4, v6: n6}
}

// fingerprint identifies the data of the view's leases, without their
// times: it changes when a renewal brings new data.
func (v view) fingerprint() string {
	var b strings.Builder
	for _, l := range []*Lease{v.v4, v.v6} {
		if l != nil {
			j, _ := json.Marshal(withoutTimes(*l))
			b.Write(j)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// manager builds the report for the view. It also returns notes on values
// it could not pass as they are, for the log.
func (v view) manager(index int) (*event.Manager, []string) {
	m := &event.Manager{
		Backend: name,
		Index:   index,
		Name:    v.name,
		States:  map[string]string{stateProperty: v.state},
		Env:     map[string]string{},
	}
	var notes []string
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	setEnv := func(k, val string) {
		safe, changed := envValue(val)
		if changed {
			note("%s holds bytes a script cannot get as they are; passed escaped as %q", k, safe)
		}
		m.Env[k] = safe
	}

	// Options first, so that the fixed names win a clash.
	for _, l := range []*Lease{v.v6, v.v4} {
		if l == nil {
			continue
		}
		for _, opt := range slices.Sorted(maps.Keys(l.Options)) {
			setEnv("DHCP_"+envName(opt), l.Options[opt])
		}
	}
	var dns []string
	var domains []string
	if l := v.v4; l != nil {
		setEnv("DHCP_ADDRESS", l.FixedAddress.String())
		setEnv("DHCP_SUBNET_MASK", l.Options["subnet-mask"])
		setEnv("DHCP_GATEWAY", l.Options["routers"])
		setEnv("DHCP_DNS", l.Options["domain-name-servers"])
		setEnv("DHCP_DOMAIN", l.Options["domain-name"])
		setEnv("DHCP_HOSTNAME", l.Options["host-name"])
		m.Env["DHCP_LEASE"] = leaseJSONString(l) // JSON escapes what needs it
		dns = append(dns, strings.Fields(l.Options["domain-name-servers"])...)
		domains = append(domains, strings.Fields(l.Options["domain-name"])...)
		domains = append(domains, strings.Fields(l.Options["domain-search"])...)
	}
	if l := v.v6; l != nil {
		setEnv("DHCP6_ADDRESS", joinStrings(l.Addresses()))
		setEnv("DHCP6_PREFIX", joinStrings(l.Prefixes()))
		setEnv("DHCP6_DNS", l.Options["dhcp6.name-servers"])
		setEnv("DHCP6_DOMAIN", l.Options["dhcp6.domain-search"])
		m.Env["DHCP6_LEASE"] = leaseJSONString(l)
		dns = append(dns, strings.Fields(l.Options["dhcp6.name-servers"])...)
		domains = append(domains, strings.Fields(l.Options["dhcp6.domain-search"])...)
	}
	if v.state != stateRoutable {
		// An expired lease configures nothing.
		return m, notes
	}

	for _, s := range dns {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			note("DNS server %q is not an IP address; left out", s)
			continue
		}
		if !slices.Contains(m.DNS, a) {
			m.DNS = append(m.DNS, a)
		}
	}
	for _, d := range domains {
		d = strings.TrimSuffix(d, ".")
		if d == "" {
			continue
		}
		if !plainName(d) {
			note("domain %q is not a domain name; left out", d)
			continue
		}
		if !slices.Contains(m.Domains, d) {
			m.Domains = append(m.Domains, d)
		}
	}
	if h, ok := v.v4hostname(); ok {
		if plainName(h) && !strings.ContainsAny(h, " ") {
			m.Hostname = h
		} else {
			note("host-name %q is not a host name; left out", h)
		}
	}
	return m, notes
}

func (v view) v4hostname() (string, bool) {
	if v.v4 == nil {
		return "", false
	}
	h, ok := v.v4.Options["host-name"]
	return h, ok && h != ""
}

// plainName reports whether s can be a DNS name: printable ASCII without
// spaces, at most 253 bytes.
func plainName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// leaseJSONString encodes l for DHCP_LEASE: one line, since JSON escapes
// every control character, and without HTML escapes.
func leaseJSONString(l *Lease) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil { // cannot happen: every field encodes
		return "{}"
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func joinStrings[T fmt.Stringer](xs []T) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = x.String()
	}
	return strings.Join(parts, " ")
}

// envName turns an option name into the rest of a variable name:
// upper-cased, with every byte that is not a letter or digit as '_'
// ("domain-name-servers" → DOMAIN_NAME_SERVERS, "dhcp6.name-servers" →
// DHCP6_NAME_SERVERS).
func envName(opt string) string {
	b := []byte(strings.ToUpper(opt))
	for i, c := range b {
		if !isAlnum(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

// envValue returns val in a form a script can get: bytes that are not
// printable, or not UTF-8, become \ooo (octal) and a backslash becomes \\,
// as dhclient-script would see them. It reports whether anything changed.
func envValue(val string) (string, bool) {
	clean := true
	for i := 0; i < len(val); {
		r, n := utf8.DecodeRuneInString(val[i:])
		if r == '\\' || r < ' ' || r == 0x7f || (r == utf8.RuneError && n == 1) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return val, false
	}
	var b strings.Builder
	for i := 0; i < len(val); {
		r, n := utf8.DecodeRuneInString(val[i:])
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r < ' ' || r == 0x7f || (r == utf8.RuneError && n == 1):
			fmt.Fprintf(&b, `\%03o`, val[i])
		default:
			b.WriteString(val[i : i+n])
		}
		i += n
	}
	return b.String(), true
}

// sameReport reports whether two reports say the same; Refresh is not
// compared.
func sameReport(a, b *event.Manager) bool {
	return a.Backend == b.Backend && a.Index == b.Index && a.Name == b.Name && a.Gone == b.Gone &&
		a.Hostname == b.Hostname && maps.Equal(a.States, b.States) && maps.Equal(a.Env, b.Env) &&
		slices.Equal(a.DNS, b.DNS) && slices.Equal(a.Domains, b.Domains)
}
