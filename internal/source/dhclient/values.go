package dhclient

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Values of statements: names, times and numbers.

// parseIAID reads an IAID as dhclient writes it: four bytes as
// colon-separated hex, or as a quoted string when they are printable.
func parseIAID(t token) (string, bool) {
	var b []byte
	if t.kind == tString {
		b = []byte(t.text)
	} else {
		for _, part := range strings.Split(t.text, ":") {
			if len(part) < 1 || len(part) > 2 || !isHex(part[0]) || !isHex(part[len(part)-1]) {
				return "", false
			}
			v, _ := strconv.ParseUint(part, 16, 8)
			b = append(b, byte(v))
		}
	}
	if len(b) != 4 {
		return "", false
	}
	return fmt.Sprintf("%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]), true
}

// ifname reads the quoted interface name of an "interface" statement.
func (p *parser) ifname(block int) (string, error) {
	t := p.next()
	if t.kind != tString {
		return "", p.errorf(t, block, "interface: expected a quoted name, got %s", describe(t))
	}
	if err := validIfName(t.text); err != nil {
		return "", p.errorf(t, block, "interface %q: %v", t.text, err)
	}
	return t.text, nil
}

// validIfName checks a Linux interface name: 1 to 15 bytes, not "." or
// "..", without '/', ':', white space or control bytes.
func validIfName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > 15:
		return errors.New("longer than 15 bytes")
	case s == "." || s == "..":
		return errors.New("not a name")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '/' || c == ':' {
			return fmt.Errorf("byte %q is not allowed", c)
		}
	}
	return nil
}

// stringList reads "STRING [, STRING]... ;" (medium) and returns the
// strings separated by spaces.
func (p *parser) stringList(kw string, block int) (string, error) {
	var parts []string
	for {
		s, err := p.str(kw, block)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
		t := p.next()
		switch t.kind {
		case tSemi:
			return strings.Join(parts, " "), nil
		case tComma:
			continue
		}
		return "", p.errorf(t, block, "%s: expected ',' or ';', got %s", kw, describe(t))
	}
}

// option parses "option NAME VALUE;" after its keyword into opts. The
// value is one or more words and strings; commas separate array elements
// and spaces the fields of a record. Both become one space.
func (p *parser) option(opts *map[string]string, block int) error {
	nt := p.next()
	if nt.kind != tWord {
		return p.errorf(nt, block, "option: expected an option name, got %s", describe(nt))
	}
	if !validOptionName(nt.text) {
		return p.errorf(nt, block, "option: %s is not an option name", describe(nt))
	}
	var elems []string
	need := true // an element must come next: at the start and after ','
	for {
		t := p.next()
		switch t.kind {
		case tSemi:
			if need {
				return p.errorf(t, block, "option %s: missing value", nt.text)
			}
			if *opts == nil {
				*opts = map[string]string{}
			}
			(*opts)[nt.text] = strings.Join(elems, " ")
			return nil
		case tComma:
			if need {
				return p.errorf(t, block, "option %s: unexpected ','", nt.text)
			}
			need = true
		case tWord, tString:
			if p.atBlockStart(t) {
				p.unread(t)
				return p.errorf(t, block, "option %s: expected ';' before the lease at line %d", nt.text, t.line)
			}
			elems = append(elems, t.text)
			need = false
		default:
			return p.errorf(t, block, "option %s: unexpected %s", nt.text, describe(t))
		}
	}
}

// validOptionName accepts what dhclient writes: an identifier of letters,
// digits, '-' and '_', optionally prefixed by an option space and a dot
// ("dhcp6.name-servers").
func validOptionName(s string) bool {
	space, name, dotted := strings.Cut(s, ".")
	if dotted && !validIdent(space) {
		return false
	}
	if !dotted {
		name = s
	}
	return validIdent(name)
}

func validIdent(s string) bool {
	if s == "" || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// date parses the time of a renew, rebind or expire statement, and its ';'.
func (p *parser) date(kw string, block int) (time.Time, error) {
	t, err := p.word(kw, block)
	if err != nil {
		return time.Time{}, err
	}
	var v time.Time
	switch strings.ToLower(t.text) {
	case "never":
		v = Never
	case "epoch":
		if v, err = p.epoch(kw, block); err != nil {
			return time.Time{}, err
		}
	default:
		if v, err = p.calendar(kw, t, block); err != nil {
			return time.Time{}, err
		}
	}
	return v, p.semi(kw, block)
}

// calendar parses "W YYYY/MM/DD HH:MM:SS [OFFSET]" from its weekday on,
// up to the ';'.
func (p *parser) calendar(kw string, wd token, block int) (time.Time, error) {
	if n, err := strconv.Atoi(wd.text); err != nil || n < 0 || n > 6 {
		return time.Time{}, p.errorf(wd, block, "%s: expected never, epoch or a weekday 0-6, got %s", kw, describe(wd))
	}
	dt, err := p.word(kw, block)
	if err != nil {
		return time.Time{}, err
	}
	ymd, ok := splitInts(dt.text, "/", 3)
	if !ok {
		return time.Time{}, p.errorf(dt, block, "%s: %s is not a date YYYY/MM/DD", kw, describe(dt))
	}
	tm, err := p.word(kw, block)
	if err != nil {
		return time.Time{}, err
	}
	hms, ok := splitInts(tm.text, ":", 3)
	if !ok {
		return time.Time{}, p.errorf(tm, block, "%s: %s is not a time HH:MM:SS", kw, describe(tm))
	}
	year, month, day := ymd[0], ymd[1], ymd[2]
	if year <= 1900 {
		year += 1900 // as dhclient reads it
	}
	switch {
	case year < 1970 || year > 9999:
		return time.Time{}, p.errorf(dt, block, "%s: year %d out of range", kw, year)
	case month < 1 || month > 12:
		return time.Time{}, p.errorf(dt, block, "%s: month %d out of range", kw, month)
	case day < 1 || day > daysIn(year, month):
		return time.Time{}, p.errorf(dt, block, "%s: day %d out of range", kw, day)
	case hms[0] > 23 || hms[1] > 59 || hms[2] > 60:
		return time.Time{}, p.errorf(tm, block, "%s: time %s out of range", kw, tm.text)
	}
	v := time.Date(year, time.Month(month), day, hms[0], hms[1], hms[2], 0, time.UTC)
	if off := p.next(); off.kind == tWord {
		n, err := strconv.Atoi(off.text)
		if err != nil || n < -86400 || n > 86400 {
			return time.Time{}, p.errorf(off, block, "%s: expected ';' or an offset in seconds, got %s", kw, describe(off))
		}
		v = v.Add(time.Duration(n) * time.Second)
	} else {
		p.unread(off)
	}
	if v.After(Never) {
		v = Never
	}
	return v, nil
}

// splitInts splits s at sep into n non-negative decimal numbers.
func splitInts(s, sep string, n int) ([]int, bool) {
	parts := strings.Split(s, sep)
	if len(parts) != n {
		return nil, false
	}
	out := make([]int, n)
	for i, part := range parts {
		if part == "" || len(part) > 9 || strings.TrimLeft(part, "0123456789") != "" {
			return nil, false
		}
		out[i], _ = strconv.Atoi(part)
	}
	return out, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// epoch reads seconds since 1970 (without the ';').
func (p *parser) epoch(kw string, block int) (time.Time, error) {
	t, err := p.word(kw, block)
	if err != nil {
		return time.Time{}, err
	}
	n, perr := strconv.ParseInt(t.text, 10, 64)
	if perr != nil || n < 0 || n > Never.Unix() {
		return time.Time{}, p.errorf(t, block, "%s: %s is not a time in seconds since 1970", kw, describe(t))
	}
	return time.Unix(n, 0).UTC(), nil
}

// seconds reads a DHCPv6 duration: seconds in 32 bits (without the ';').
func (p *parser) seconds(kw string, block int) (time.Duration, error) {
	t, err := p.word(kw, block)
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseUint(t.text, 10, 32)
	if perr != nil {
		return 0, p.errorf(t, block, "%s: %s is not a number of seconds", kw, describe(t))
	}
	return time.Duration(n) * time.Second, nil
}

// lease6Times computes a lease6's renew and rebind (the earliest of its
// IAs) and expire (when its last address ends).
func lease6Times(ias []IA) (renew, rebind, expire time.Time) {
	for _, ia := range ias {
		if ia.Renew > 0 && !ia.Starts.IsZero() {
			if r := ia.Starts.Add(ia.Renew); renew.IsZero() || r.Before(renew) {
				renew = r
			}
		}
		if ia.Rebind > 0 && !ia.Starts.IsZero() {
			if r := ia.Starts.Add(ia.Rebind); rebind.IsZero() || r.Before(rebind) {
				rebind = r
			}
		}
		for _, a := range ia.Addrs {
			if e := a.end(); e.After(expire) {
				expire = e
			}
		}
	}
	return renew, rebind, expire
}
