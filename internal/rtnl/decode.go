package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// ErrMalformed matches (errors.Is) every decoding error: a message whose
// header or known attributes do not have the layout the kernel ABI gives
// them.
var ErrMalformed = errors.New("malformed rtnetlink message")

var ne = binary.NativeEndian

const (
	nlmsgHeaderLen = 16

	sizeofIfInfomsg = 16 // struct ifinfomsg
	sizeofIfAddrmsg = 8  // struct ifaddrmsg
	sizeofRtmsg     = 12 // struct rtmsg
	sizeofRuleHdr   = 12 // struct fib_rule_hdr
	sizeofRtnexthop = 8  // struct rtnexthop
)

// operStates names IF_OPER_* values, indexed by value.
var operStates = [...]string{"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"}

var (
	ip6Multicast = netip.MustParsePrefix("ff00::/8")
	ip6LinkLocal = netip.MustParsePrefix("fe80::/10")
)

// Decode decodes one datagram as read from a NETLINK_ROUTE socket, one or
// more netlink messages, into events with Time set to now. Netlink control
// messages and message types netevd does not watch yield nothing. It
// returns an error matching ErrMalformed, and no events, if any message is
// malformed.
func Decode(b []byte, now time.Time) ([]event.Event, error) {
	var evs []event.Event
	for len(b) > 0 {
		if len(b) < nlmsgHeaderLen {
			return nil, fmt.Errorf("%w: %d trailing bytes, shorter than a netlink header", ErrMalformed, len(b))
		}
		l := int(ne.Uint32(b[0:4]))
		if l < nlmsgHeaderLen || l > len(b) {
			return nil, fmt.Errorf("%w: netlink length %d with %d bytes left", ErrMalformed, l, len(b))
		}
		m := netlink.Message{
			Header: netlink.Header{
				Length:   uint32(l),
				Type:     netlink.HeaderType(ne.Uint16(b[4:6])),
				Flags:    netlink.HeaderFlags(ne.Uint16(b[6:8])),
				Sequence: ne.Uint32(b[8:12]),
				PID:      ne.Uint32(b[12:16]),
			},
			Data: b[nlmsgHeaderLen:l],
		}
		got, err := decodeMessage(m, now)
		if err != nil {
			return nil, err
		}
		evs = append(evs, got...)
		b = b[min(align4(l), len(b)):]
	}
	return evs, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// decodeMessage decodes one netlink message. Multipath routes yield one
// event per next hop; ignored and filtered messages yield none.
func decodeMessage(m netlink.Message, now time.Time) ([]event.Event, error) {
	typ := uint16(m.Header.Type)
	var (
		evs []event.Event
		err error
	)
	switch typ {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		var l *event.Link
		l, err = decodeLink(m.Data)
		switch {
		case l == nil:
		case typ == unix.RTM_DELLINK:
			evs = []event.Event{{Kind: event.KindLinkGone, Time: now, Index: l.Index}}
		default:
			evs = []event.Event{{Kind: event.KindLink, Time: now, Link: l}}
		}
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		var a *event.Addr
		a, err = decodeAddr(m.Data)
		if a != nil {
			kind := event.KindAddr
			if typ == unix.RTM_DELADDR {
				kind = event.KindAddrGone
			}
			evs = []event.Event{{Kind: kind, Time: now, Addr: a}}
		}
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		var rs []event.Route
		rs, err = decodeRoute(m.Data)
		kind := event.KindRoute
		if typ == unix.RTM_DELROUTE {
			kind = event.KindRouteGone
		}
		for i := range rs {
			evs = append(evs, event.Event{Kind: kind, Time: now, Route: &rs[i]})
		}
	case unix.RTM_DELRULE:
		var r *event.Rule
		r, err = decodeRule(m.Data)
		if r != nil {
			evs = []event.Event{{Kind: event.KindRuleGone, Time: now, Rule: r}}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", typeName(typ), err)
	}
	return evs, nil
}

func typeName(t uint16) string {
	switch t {
	case unix.RTM_NEWLINK:
		return "RTM_NEWLINK"
	case unix.RTM_DELLINK:
		return "RTM_DELLINK"
	case unix.RTM_NEWADDR:
		return "RTM_NEWADDR"
	case unix.RTM_DELADDR:
		return "RTM_DELADDR"
	case unix.RTM_NEWROUTE:
		return "RTM_NEWROUTE"
	case unix.RTM_DELROUTE:
		return "RTM_DELROUTE"
	case unix.RTM_DELRULE:
		return "RTM_DELRULE"
	}
	return fmt.Sprintf("message type %d", t)
}

// malformed builds an error matching ErrMalformed.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// attrs returns a decoder for the attributes that follow a fixed header.
func attrs(b []byte) (*netlink.AttributeDecoder, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, malformed("attributes: %v", err)
	}
	return ad, nil
}

// attrsDone turns a decoder's iteration error into ErrMalformed.
func attrsDone(ad *netlink.AttributeDecoder) error {
	err := ad.Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrMalformed): // from our own ipAttr or via
		return err
	}
	return malformed("attributes: %v", err)
}

// decodeLink decodes an ifinfomsg and its attributes. It returns nil and
// no error for link messages that do not describe a link (any family but
// AF_UNSPEC: bridge port and IPv6 per-link messages).
func decodeLink(b []byte) (*event.Link, error) {
	if len(b) < sizeofIfInfomsg {
		return nil, malformed("ifinfomsg of %d bytes", len(b))
	}
	if b[0] != unix.AF_UNSPEC {
		return nil, nil
	}
	index := int32(ne.Uint32(b[4:8]))
	if index <= 0 {
		return nil, malformed("ifindex %d", index)
	}
	flags := ne.Uint32(b[8:12])
	l := &event.Link{
		Index:     int(index),
		Flags:     flags,
		AdminUp:   flags&unix.IFF_UP != 0,
		Carrier:   flags&unix.IFF_LOWER_UP != 0,
		OperState: operStates[0],
	}
	ad, err := attrs(b[sizeofIfInfomsg:])
	if err != nil {
		return nil, err
	}
	var named bool
	for ad.Next() {
		switch ad.Type() {
		case unix.IFLA_IFNAME:
			l.Name, named = ad.String(), true
		case unix.IFLA_ADDRESS:
			if mac := ad.Bytes(); len(mac) > 0 {
				l.MAC = net.HardwareAddr(mac).String()
			}
		case unix.IFLA_MTU:
			l.MTU = int(ad.Uint32())
		case unix.IFLA_OPERSTATE:
			if s := ad.Uint8(); int(s) < len(operStates) {
				l.OperState = operStates[s]
			}
		case unix.IFLA_MASTER:
			l.Master = int(ad.Uint32())
		case unix.IFLA_LINKINFO:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == unix.IFLA_INFO_KIND {
						l.Kind = nad.String()
					}
				}
				return nil
			})
		}
	}
	if err := attrsDone(ad); err != nil {
		return nil, err
	}
	if !named {
		return nil, malformed("link %d has no IFLA_IFNAME", index)
	}
	return l, nil
}

// ipFrom converts an address attribute of the given family.
func ipFrom(family uint8, b []byte) (netip.Addr, error) {
	want := 4
	if family == unix.AF_INET6 {
		want = 16
	}
	if len(b) != want {
		return netip.Addr{}, malformed("address of %d bytes in family %d", len(b), family)
	}
	a, _ := netip.AddrFromSlice(b)
	return a, nil
}

// ipAttr decodes the current attribute as an address of family, recording
// a length error in the decoder.
func ipAttr(ad *netlink.AttributeDecoder, family uint8) netip.Addr {
	var a netip.Addr
	ad.Do(func(b []byte) error {
		var err error
		a, err = ipFrom(family, b)
		return err
	})
	return a
}

func isIP(family uint8) bool { return family == unix.AF_INET || family == unix.AF_INET6 }

// prefix builds address/bits, checking bits against the family.
func prefix(a netip.Addr, bits uint8) (netip.Prefix, error) {
	if int(bits) > a.BitLen() {
		return netip.Prefix{}, malformed("prefix length %d for %s", bits, a)
	}
	return netip.PrefixFrom(a, int(bits)), nil
}

// decodeAddr decodes an ifaddrmsg. Families other than IPv4 and IPv6
// yield nil and no error.
func decodeAddr(b []byte) (*event.Addr, error) {
	if len(b) < sizeofIfAddrmsg {
		return nil, malformed("ifaddrmsg of %d bytes", len(b))
	}
	family, plen, hflags, scope := b[0], b[1], b[2], b[3]
	if !isIP(family) {
		return nil, nil
	}
	index := int32(ne.Uint32(b[4:8]))
	if index <= 0 {
		return nil, malformed("ifindex %d", index)
	}
	ad, err := attrs(b[sizeofIfAddrmsg:])
	if err != nil {
		return nil, err
	}
	var local, address netip.Addr
	var flags uint32
	for ad.Next() {
		switch ad.Type() {
		case unix.IFA_LOCAL:
			local = ipAttr(ad, family)
		case unix.IFA_ADDRESS:
			address = ipAttr(ad, family)
		case unix.IFA_FLAGS:
			flags = ad.Uint32()
		}
	}
	if err := attrsDone(ad); err != nil {
		return nil, err
	}
	ip := local
	if !ip.IsValid() {
		ip = address
	}
	if !ip.IsValid() {
		return nil, malformed("address on link %d has neither IFA_LOCAL nor IFA_ADDRESS", index)
	}
	p, err := prefix(ip, plen)
	if err != nil {
		return nil, err
	}
	return &event.Addr{
		Index:  int(index),
		Prefix: p,
		Scope:  scope,
		// IFA_FLAGS holds all 32 bits; the header holds the low 8 and is
		// all there is on kernels older than 3.14.
		Flags: flags | uint32(hflags),
	}, nil
}

// decodeRoute decodes an rtmsg: one Route, or one per next hop of a
// multipath route. Non-IP families and filtered routes yield nil and no
// error.
func decodeRoute(b []byte) ([]event.Route, error) {
	if len(b) < sizeofRtmsg {
		return nil, malformed("rtmsg of %d bytes", len(b))
	}
	family, dstLen := b[0], b[1]
	if !isIP(family) {
		return nil, nil
	}
	r := event.Route{
		Family:   family,
		Table:    uint32(b[4]),
		Protocol: b[5],
		Scope:    b[6],
		Type:     b[7],
	}
	rtmFlags := ne.Uint32(b[8:12])
	ad, err := attrs(b[sizeofRtmsg:])
	if err != nil {
		return nil, err
	}
	var (
		dst       netip.Addr
		multipath []byte
	)
	for ad.Next() {
		switch ad.Type() {
		case unix.RTA_DST:
			dst = ipAttr(ad, family)
		case unix.RTA_PREFSRC:
			r.Src = ipAttr(ad, family)
		case unix.RTA_GATEWAY:
			r.Gateway = ipAttr(ad, family)
		case unix.RTA_VIA:
			ad.Do(func(b []byte) error {
				gw, err := via(b)
				if gw.IsValid() {
					r.Gateway = gw
				}
				return err
			})
		case unix.RTA_OIF:
			r.OutIndex = int(ad.Uint32())
		case unix.RTA_PRIORITY:
			r.Priority = ad.Uint32()
		case unix.RTA_TABLE:
			r.Table = ad.Uint32()
		case unix.RTA_MULTIPATH:
			multipath = ad.Bytes()
		}
	}
	if err := attrsDone(ad); err != nil {
		return nil, err
	}
	if !dst.IsValid() {
		if dstLen != 0 {
			return nil, malformed("route with /%d and no RTA_DST", dstLen)
		}
		dst = netip.IPv4Unspecified()
		if family == unix.AF_INET6 {
			dst = netip.IPv6Unspecified()
		}
	}
	if r.Dst, err = prefix(dst, dstLen); err != nil {
		return nil, err
	}
	if !keepRoute(r, rtmFlags) {
		return nil, nil
	}
	if multipath == nil {
		return []event.Route{r}, nil
	}
	return nextHops(r, multipath)
}

// via decodes RTA_VIA (struct rtvia): a next hop of another family, as in
// an IPv4 route via an IPv6 gateway. Non-IP families yield no address.
func via(b []byte) (netip.Addr, error) {
	if len(b) < 2 {
		return netip.Addr{}, malformed("RTA_VIA of %d bytes", len(b))
	}
	family := ne.Uint16(b[0:2])
	if family > 0xff || !isIP(uint8(family)) {
		return netip.Addr{}, nil
	}
	return ipFrom(uint8(family), b[2:])
}

// nextHops expands RTA_MULTIPATH, a packed list of struct rtnexthop each
// followed by its attributes, into one Route per hop based on r.
func nextHops(r event.Route, b []byte) ([]event.Route, error) {
	var out []event.Route
	for len(b) > 0 {
		if len(b) < sizeofRtnexthop {
			return nil, malformed("rtnexthop of %d bytes", len(b))
		}
		l := int(ne.Uint16(b[0:2]))
		if l < sizeofRtnexthop || l > len(b) {
			return nil, malformed("rtnexthop length %d with %d bytes left", l, len(b))
		}
		h := r
		h.Multipath = true
		h.Gateway = netip.Addr{}
		h.OutIndex = int(int32(ne.Uint32(b[4:8])))
		ad, err := attrs(b[sizeofRtnexthop:l])
		if err != nil {
			return nil, err
		}
		for ad.Next() {
			switch ad.Type() {
			case unix.RTA_GATEWAY:
				h.Gateway = ipAttr(ad, r.Family)
			case unix.RTA_VIA:
				ad.Do(func(b []byte) error {
					gw, err := via(b)
					if gw.IsValid() {
						h.Gateway = gw
					}
					return err
				})
			}
		}
		if err := attrsDone(ad); err != nil {
			return nil, err
		}
		out = append(out, h)
		b = b[min(align4(l), len(b)):]
	}
	if len(out) == 0 {
		return nil, malformed("empty RTA_MULTIPATH")
	}
	return out, nil
}

// keepRoute is the noise filter described in the package documentation.
func keepRoute(r event.Route, rtmFlags uint32) bool {
	if r.Table == event.TableLocal {
		return false
	}
	switch r.Type {
	case unix.RTN_UNICAST, unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT:
	default:
		return false
	}
	if rtmFlags&unix.RTM_F_CLONED != 0 {
		return false
	}
	if r.Family == unix.AF_INET6 && (within(r.Dst, ip6Multicast) || within(r.Dst, ip6LinkLocal)) {
		return false
	}
	return true
}

// within reports whether every address of p lies in outer.
func within(p, outer netip.Prefix) bool {
	return p.Bits() >= outer.Bits() && outer.Contains(p.Addr())
}

// decodeRule decodes a fib_rule_hdr (RTM_DELRULE). Non-IP families yield
// nil and no error.
func decodeRule(b []byte) (*event.Rule, error) {
	if len(b) < sizeofRuleHdr {
		return nil, malformed("fib_rule_hdr of %d bytes", len(b))
	}
	family, dstLen, srcLen := b[0], b[1], b[2]
	if !isIP(family) {
		return nil, nil
	}
	r := &event.Rule{Family: family, Table: uint32(b[4])}
	ad, err := attrs(b[sizeofRuleHdr:])
	if err != nil {
		return nil, err
	}
	var src, dst netip.Addr
	for ad.Next() {
		switch ad.Type() {
		case unix.FRA_SRC:
			src = ipAttr(ad, family)
		case unix.FRA_DST:
			dst = ipAttr(ad, family)
		case unix.FRA_PRIORITY:
			r.Priority = ad.Uint32()
		case unix.FRA_TABLE:
			r.Table = ad.Uint32()
		}
	}
	if err := attrsDone(ad); err != nil {
		return nil, err
	}
	if r.Src, err = rulePrefix(src, srcLen); err != nil {
		return nil, err
	}
	if r.Dst, err = rulePrefix(dst, dstLen); err != nil {
		return nil, err
	}
	return r, nil
}

// rulePrefix builds a rule selector: the zero Prefix when the rule has
// none ("from all").
func rulePrefix(a netip.Addr, bits uint8) (netip.Prefix, error) {
	if !a.IsValid() {
		if bits != 0 {
			return netip.Prefix{}, malformed("rule selector /%d without an address", bits)
		}
		return netip.Prefix{}, nil
	}
	return prefix(a, bits)
}
