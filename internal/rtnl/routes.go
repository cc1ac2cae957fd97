package rtnl

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// IPv6 route preferences (RTA_PREF, ICMPV6_ROUTER_PREF_*). The zero value
// is medium, the kernel's default.
const (
	PrefMedium uint8 = 0
	PrefHigh   uint8 = 1
	PrefLow    uint8 = 3
)

// DefaultIPv6Metric is the metric the kernel gives an IPv6 route added
// with none.
const DefaultIPv6Metric = 1024

// NextHop is one next hop of a multipath route.
type NextHop struct {
	Gateway  netip.Addr
	OutIndex int // 0: the kernel picks the interface from the gateway
	Weight   int // 1-256; 0 means 1
}

// RouteSpec is a route with everything "ip route" can say about the
// routes of routing.routes: next hops with weights, type, preferred
// source, metric and IPv6 preference. Unlike event.Route a multipath route
// is one RouteSpec.
type RouteSpec struct {
	Family   uint8 // unix.AF_INET or unix.AF_INET6
	Table    uint32
	Dst      netip.Prefix
	Type     uint8 // RTN_UNICAST (0 means unicast), RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT
	Gateway  netip.Addr
	OutIndex int
	NextHops []NextHop // two or more for a multipath route; then Gateway and OutIndex are unset
	Src      netip.Addr
	Metric   uint32
	Pref     uint8 // IPv6 only: PrefMedium, PrefHigh or PrefLow
	Protocol uint8 // RTPROT_*
}

func (s RouteSpec) typ() uint8 {
	if s.Type == 0 {
		return unix.RTN_UNICAST
	}
	return s.Type
}

// Same reports whether the kernel's route have is the route s asks for:
// every field s sets is equal. An output interface s leaves to the kernel
// (0) is not compared, nor the one the kernel reports for a route of
// another type than unicast (IPv6 puts them on lo), nor an IPv6 metric s
// leaves at 0 (the kernel's is 1024).
func (s RouteSpec) Same(have RouteSpec) bool {
	if s.Family != have.Family || s.Table != have.Table || s.Dst != have.Dst || s.typ() != have.typ() ||
		s.Src != have.Src || s.Pref != have.Pref {
		return false
	}
	if s.Metric != have.Metric && (s.Family != unix.AF_INET6 || s.Metric != 0 || have.Metric != DefaultIPv6Metric) {
		return false
	}
	if s.Protocol != 0 && s.Protocol != have.Protocol {
		return false
	}
	if s.typ() != unix.RTN_UNICAST {
		return true
	}
	if s.Gateway != have.Gateway || (s.OutIndex != 0 && s.OutIndex != have.OutIndex) || len(s.NextHops) != len(have.NextHops) {
		return false
	}
	for i, h := range s.NextHops {
		k := have.NextHops[i]
		if h.Gateway != k.Gateway || max(h.Weight, 1) != max(k.Weight, 1) || (h.OutIndex != 0 && h.OutIndex != k.OutIndex) {
			return false
		}
	}
	return true
}

// ReplaceSpec adds s or replaces the route with its destination and
// metric in its table: "ip route replace".
func (r *Router) ReplaceSpec(ctx context.Context, s RouteSpec) error {
	b, err := specMessage(s, false)
	if err != nil {
		return err
	}
	if err := r.routeRequest(ctx, unix.RTM_NEWROUTE, b); err != nil {
		return fmt.Errorf("replace route %s in %s: %w", FormatSpec(s, nil), r.ns, err)
	}
	return nil
}

// DeleteSpec deletes the route with s's family, table, destination and
// metric, whatever its type and next hops; none gives an error matching
// ErrNotFound.
func (r *Router) DeleteSpec(ctx context.Context, s RouteSpec) error {
	b, err := specMessage(s, true)
	if err != nil {
		return err
	}
	if err := r.routeRequest(ctx, unix.RTM_DELROUTE, b); err != nil {
		return fmt.Errorf("delete route %s in %s: %w", FormatSpec(s, nil), r.ns, err)
	}
	return nil
}

// ListSpecs returns the unicast, blackhole, unreachable and prohibit
// routes of both families in table, cached clones left out.
func (r *Router) ListSpecs(ctx context.Context, table uint32) ([]RouteSpec, error) {
	var out []RouteSpec
	err := r.eachRoute(ctx, func(b []byte) error {
		s, err := decodeSpec(b)
		if s != nil && s.Table == table {
			out = append(out, *s)
		}
		return err
	})
	return out, err
}

func specMessage(s RouteSpec, del bool) ([]byte, error) {
	fam := s.Family
	if !isIP(fam) || !s.Dst.IsValid() || s.Dst.Addr().Is4() != (fam == unix.AF_INET) {
		return nil, fmt.Errorf("route %s: family %d and destination do not match", FormatSpec(s, nil), fam)
	}
	ofFamily := func(a netip.Addr) bool { return !a.IsValid() || a.Is4() == (fam == unix.AF_INET) }
	if !ofFamily(s.Gateway) || !ofFamily(s.Src) {
		return nil, fmt.Errorf("route %s: address of another family", FormatSpec(s, nil))
	}
	b := make([]byte, sizeofRtmsg)
	b[0] = fam
	b[1] = uint8(s.Dst.Bits())
	if s.Table < 256 {
		b[4] = uint8(s.Table)
	}
	b[5] = s.Protocol
	b[6] = unix.RT_SCOPE_UNIVERSE
	b[7] = s.typ()
	if s.typ() == unix.RTN_UNICAST && !s.Gateway.IsValid() && len(s.NextHops) == 0 {
		b[6] = unix.RT_SCOPE_LINK
	}
	metric := s.Metric
	if del {
		b[5] = 0
		b[6] = unix.RT_SCOPE_NOWHERE
		b[7] = unix.RTN_UNSPEC
		if fam == unix.AF_INET6 && metric == 0 {
			metric = DefaultIPv6Metric
		}
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.RTA_TABLE, s.Table)
	if s.Dst.Bits() > 0 {
		ae.Bytes(unix.RTA_DST, s.Dst.Addr().AsSlice())
	}
	if metric > 0 {
		ae.Uint32(unix.RTA_PRIORITY, metric)
	}
	if !del {
		if s.Src.IsValid() {
			ae.Bytes(unix.RTA_PREFSRC, s.Src.AsSlice())
		}
		if fam == unix.AF_INET6 && s.Pref != PrefMedium {
			ae.Uint8(unix.RTA_PREF, s.Pref)
		}
		if s.typ() == unix.RTN_UNICAST {
			if s.Gateway.IsValid() {
				ae.Bytes(unix.RTA_GATEWAY, s.Gateway.AsSlice())
			}
			if s.OutIndex > 0 {
				ae.Uint32(unix.RTA_OIF, uint32(s.OutIndex))
			}
			if len(s.NextHops) > 0 {
				mp, err := multipath(fam, s.NextHops)
				if err != nil {
					return nil, fmt.Errorf("route %s: %w", FormatSpec(s, nil), err)
				}
				ae.Bytes(unix.RTA_MULTIPATH, mp)
			}
		}
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode route %s: %w", FormatSpec(s, nil), err)
	}
	return append(b, attrs...), nil
}

// multipath encodes RTA_MULTIPATH: a struct rtnexthop per hop, each
// followed by its RTA_GATEWAY. rtnh_hops is the weight minus one.
func multipath(fam uint8, hops []NextHop) ([]byte, error) {
	var out []byte
	for _, h := range hops {
		w := max(h.Weight, 1)
		if w > 256 {
			return nil, fmt.Errorf("next hop %s: weight %d is above 256", h.Gateway, w)
		}
		if !h.Gateway.IsValid() || h.Gateway.Is4() != (fam == unix.AF_INET) {
			return nil, fmt.Errorf("next hop %q: no gateway of the route's family", h.Gateway)
		}
		ae := netlink.NewAttributeEncoder()
		ae.Bytes(unix.RTA_GATEWAY, h.Gateway.AsSlice())
		attrs, err := ae.Encode()
		if err != nil {
			return nil, err
		}
		hdr := make([]byte, sizeofRtnexthop)
		ne.PutUint16(hdr[0:2], uint16(sizeofRtnexthop+len(attrs)))
		hdr[3] = uint8(w - 1)
		ne.PutUint32(hdr[4:8], uint32(int32(h.OutIndex)))
		out = append(out, hdr...)
		out = append(out, attrs...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out, nil
}

// decodeSpec decodes an rtmsg into a RouteSpec; routes of other families
// or types, local-table routes and cached clones yield nil.
func decodeSpec(b []byte) (*RouteSpec, error) {
	if len(b) < sizeofRtmsg {
		return nil, malformed("rtmsg of %d bytes", len(b))
	}
	fam, dstLen := b[0], b[1]
	if !isIP(fam) {
		return nil, nil
	}
	s := &RouteSpec{Family: fam, Table: uint32(b[4]), Protocol: b[5], Type: b[7]}
	switch s.Type {
	case unix.RTN_UNICAST, unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT:
	default:
		return nil, nil
	}
	if ne.Uint32(b[8:12])&unix.RTM_F_CLONED != 0 {
		return nil, nil
	}
	ad, err := attrs(b[sizeofRtmsg:])
	if err != nil {
		return nil, err
	}
	var (
		dst netip.Addr
		mp  []byte
	)
	for ad.Next() {
		switch ad.Type() {
		case unix.RTA_DST:
			dst = ipAttr(ad, fam)
		case unix.RTA_PREFSRC:
			s.Src = ipAttr(ad, fam)
		case unix.RTA_GATEWAY:
			s.Gateway = ipAttr(ad, fam)
		case unix.RTA_OIF:
			s.OutIndex = int(ad.Uint32())
		case unix.RTA_PRIORITY:
			s.Metric = ad.Uint32()
		case unix.RTA_TABLE:
			s.Table = ad.Uint32()
		case unix.RTA_PREF:
			s.Pref = ad.Uint8()
		case unix.RTA_MULTIPATH:
			mp = ad.Bytes()
		}
	}
	if err := attrsDone(ad); err != nil {
		return nil, err
	}
	if !dst.IsValid() {
		dst = netip.IPv4Unspecified()
		if fam == unix.AF_INET6 {
			dst = netip.IPv6Unspecified()
		}
	}
	if s.Dst, err = prefix(dst, dstLen); err != nil {
		return nil, err
	}
	for len(mp) > 0 {
		if len(mp) < sizeofRtnexthop {
			return nil, malformed("rtnexthop of %d bytes", len(mp))
		}
		l := int(ne.Uint16(mp[0:2]))
		if l < sizeofRtnexthop || l > len(mp) {
			return nil, malformed("rtnexthop length %d with %d bytes left", l, len(mp))
		}
		h := NextHop{Weight: int(mp[3]) + 1, OutIndex: int(int32(ne.Uint32(mp[4:8])))}
		had, err := attrs(mp[sizeofRtnexthop:l])
		if err != nil {
			return nil, err
		}
		for had.Next() {
			if had.Type() == unix.RTA_GATEWAY {
				h.Gateway = ipAttr(had, fam)
			}
		}
		if err := attrsDone(had); err != nil {
			return nil, err
		}
		s.NextHops = append(s.NextHops, h)
		mp = mp[min(align4(l), len(mp)):]
	}
	return s, nil
}

// FormatSpec writes s in `ip route` notation, without the verb; name
// gives an interface's name from its index (nil, or "" from it, writes
// "oif INDEX"):
// "-6 2001:db8:1::/48 via fe80::1 dev eth1 src 2001:db8::10 table 100 proto static metric 10 pref high"
// "192.0.2.0/24 table 254 proto static nexthop via 198.51.100.1 dev eth0 weight 1 nexthop via ..."
func FormatSpec(s RouteSpec, name func(int) string) string {
	dev := func(idx int) string {
		if name != nil {
			if n := name(idx); n != "" {
				return " dev " + n
			}
		}
		return fmt.Sprintf(" oif %d", idx)
	}
	var sb strings.Builder
	if s.Family == unix.AF_INET6 {
		sb.WriteString("-6 ")
	}
	switch s.typ() {
	case unix.RTN_BLACKHOLE:
		sb.WriteString("blackhole ")
	case unix.RTN_UNREACHABLE:
		sb.WriteString("unreachable ")
	case unix.RTN_PROHIBIT:
		sb.WriteString("prohibit ")
	}
	switch {
	case s.Dst.IsValid() && s.Dst.Bits() == 0:
		sb.WriteString("default")
	case s.Dst.IsValid():
		sb.WriteString(s.Dst.String())
	default:
		sb.WriteString("?")
	}
	if s.typ() == unix.RTN_UNICAST {
		if s.Gateway.IsValid() {
			sb.WriteString(" via " + s.Gateway.String())
		}
		if s.OutIndex > 0 {
			sb.WriteString(dev(s.OutIndex))
		}
	}
	if s.Src.IsValid() {
		sb.WriteString(" src " + s.Src.String())
	}
	fmt.Fprintf(&sb, " table %d", s.Table)
	if s.Protocol == unix.RTPROT_STATIC {
		sb.WriteString(" proto static")
	} else if s.Protocol != 0 {
		fmt.Fprintf(&sb, " proto %d", s.Protocol)
	}
	if s.Metric > 0 {
		fmt.Fprintf(&sb, " metric %d", s.Metric)
	}
	if s.Family == unix.AF_INET6 {
		switch s.Pref {
		case PrefHigh:
			sb.WriteString(" pref high")
		case PrefLow:
			sb.WriteString(" pref low")
		}
	}
	if s.typ() == unix.RTN_UNICAST {
		for _, h := range s.NextHops {
			sb.WriteString(" nexthop via " + h.Gateway.String())
			if h.OutIndex > 0 {
				sb.WriteString(dev(h.OutIndex))
			}
			fmt.Fprintf(&sb, " weight %d", max(h.Weight, 1))
		}
	}
	return sb.String()
}
