package resolved

import (
	"net/netip"
	"slices"
	"strings"
)

// Address families as resolve1 expects them in SetLinkDNS.
const (
	afInet  int32 = 2  // AF_INET
	afInet6 int32 = 10 // AF_INET6
)

// MaxHostnameLen is the longest hostname netevd pushes: the kernel's
// HOST_NAME_MAX, which systemd-hostnamed also enforces.
const MaxHostnameLen = 64

// maxDomainLen is the longest domain name (RFC 1035, without the final dot).
const maxDomainLen = 253

// dnsServer is one a(iay) element of SetLinkDNS: the family and the
// address in network byte order (4 or 16 bytes).
type dnsServer struct {
	Family  int32
	Address []byte
}

// linkDomain is one a(sb) element of SetLinkDomains.
type linkDomain struct {
	Domain      string
	RoutingOnly bool
}

// dnsServers turns the manager's servers into SetLinkDNS's argument, in
// order. Invalid and unspecified addresses are dropped, IPv4-mapped IPv6
// addresses become IPv4, zones are dropped (resolved scopes a link's
// servers to the link), and duplicates are kept once. It also returns the
// addresses it dropped.
func dnsServers(addrs []netip.Addr) (out []dnsServer, dropped []netip.Addr) {
	seen := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() || a.IsUnspecified() {
			dropped = append(dropped, a)
			continue
		}
		a = a.Unmap().WithZone("")
		if seen[a] {
			continue
		}
		seen[a] = true
		if a.Is4() {
			b := a.As4()
			out = append(out, dnsServer{Family: afInet, Address: b[:]})
		} else {
			b := a.As16()
			out = append(out, dnsServer{Family: afInet6, Address: b[:]})
		}
	}
	return out, dropped
}

// linkDomains turns the manager's domains into SetLinkDomains's argument.
// An entry may hold several names separated by white space (dhclient's
// domain-name option does). A name is a search domain; "~name" is a
// routing-only domain, as networkd writes it, and "~." routes every query
// to the link. A trailing dot is dropped. Names that are not valid domain
// names are returned in refused; duplicates are kept once.
func linkDomains(entries []string) (out []linkDomain, refused []string) {
	seen := make(map[linkDomain]bool)
	for _, e := range entries {
		for _, f := range strings.Fields(e) {
			d := linkDomain{Domain: f}
			if rest, ok := strings.CutPrefix(f, "~"); ok {
				d = linkDomain{Domain: rest, RoutingOnly: true}
			}
			switch {
			case d.Domain == "." && d.RoutingOnly:
			case validDomain(d.Domain):
				d.Domain = strings.TrimSuffix(d.Domain, ".")
			default:
				refused = append(refused, f)
				continue
			}
			if seen[d] {
				continue
			}
			seen[d] = true
			out = append(out, d)
		}
	}
	return out, refused
}

// validDomain reports whether s is a domain name resolved accepts as a
// search domain: dot-separated labels of 1 to 63 letters, digits, '-' or
// '_' (SRV-style labels), not starting or ending with '-', at most 253
// characters, one optional trailing dot.
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > maxDomainLen {
		return false
	}
	return allLabels(s, func(c byte) bool { return ldh(c) || c == '_' })
}

// ValidHostname reports whether s may be pushed as the hostname: at most
// MaxHostnameLen characters, dot-separated RFC 1123 labels of 1 to 63
// letters, digits and '-', none starting or ending with '-'. No trailing
// dot, no '_', no spaces.
func ValidHostname(s string) bool {
	if s == "" || len(s) > MaxHostnameLen {
		return false
	}
	return allLabels(s, ldh)
}

func allLabels(s string, ok func(byte) bool) bool {
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			if !ok(label[i]) {
				return false
			}
		}
	}
	return true
}

// ldh reports whether c is a letter, a digit or a hyphen.
func ldh(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

func equalServers(a, b []dnsServer) bool {
	return slices.EqualFunc(a, b, func(x, y dnsServer) bool {
		return x.Family == y.Family && string(x.Address) == string(y.Address)
	})
}
