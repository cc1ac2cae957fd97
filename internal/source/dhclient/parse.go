package dhclient

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
)

// ErrTruncated marks a file that ends inside a block or a string: it was
// cut off, or read while dhclient was writing it.
var ErrTruncated = errors.New("unexpected end of file")

// ParseError is a statement or block that ParseLeases rejected. Line is the
// line of the offending token; Block, when not 0, is the line of the lease
// block that was rejected whole because of it.
type ParseError struct {
	File  string
	Line  int
	Block int
	Err   error
}

func (e *ParseError) Error() string {
	if e.Block > 0 {
		return fmt.Sprintf("%s:%d: %v (lease at line %d rejected)", e.File, e.Line, e.Err, e.Block)
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// ParseLeases reads a dhclient lease file and returns its leases in file
// order, and an error for each block or statement it rejected. A block
// that does not parse completely is rejected whole; the blocks around it
// still count. filename names the file in errors and in Lease.File, and
// gives the interface of blocks without an "interface" statement
// (InterfaceFromFileName).
//
// The format is dhclient's (dhclient.leases(5)): "lease { ... }" and
// "lease6 { ... }" blocks of statements that end in ';', "default-duid",
// '#' comments to the end of the line, strings in double quotes with the
// escapes \t \r \n \b \ooo (octal) \xhh and \c for any other c, and
// keywords in any case. Inside "lease": interface, fixed-address, bootp,
// filename, server-name, medium, name, key, option, renew, rebind and
// expire. Inside "lease6": interface, name, option, released, abandoned and
// ia-na, ia-ta and ia-pd blocks with starts, renew, rebind, option and
// iaaddr (iaprefix in ia-pd) blocks with starts, preferred-life, max-life
// and option.
//
// A time (renew, rebind, expire) is written in one of three forms:
//
//	renew 4 2026/11/26 01:40:28;            weekday (0 = Sunday, not checked against the date), date and time in UTC, optionally followed by an offset in seconds
//	expire never;                           the lease does not expire (Never)
//	renew epoch 1795663890; # Thu Nov 26 …  seconds since 1970, what dhclient writes with "db-time-format local"; the comment is for people
//
// As in dhclient, a year of 1900 or less counts from 1900. Times in lease6
// blocks ("starts") are seconds since 1970, and T1, T2 and lifetimes are
// seconds.
func ParseLeases(r io.Reader, filename string) ([]Lease, []error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", filename, err)}
	}
	return parseLeases(data, filename)
}

func parseLeases(data []byte, file string) ([]Lease, []error) {
	p := &parser{file: file, lx: lexer{src: data, line: 1}}
	var (
		leases []Lease
		errs   []error
	)
	for {
		t := p.next()
		switch {
		case t.kind == tEOF:
			return leases, errs
		case t.kind == tSemi:
		case t.kind == tWord && isBlockKeyword(t.text):
			l, err := p.lease(t)
			if err != nil {
				errs = append(errs, err)
				p.resync()
				continue
			}
			leases = append(leases, l)
		case t.kind == tWord && strings.EqualFold(t.text, "default-duid"):
			// The DHCPv6 client's DUID; not lease data.
			if err := p.defaultDUID(); err != nil {
				errs = append(errs, err)
				p.resync()
			}
		case t.kind == tRBrace:
			errs = append(errs, p.errorf(t, 0, "unexpected '}' outside a block"))
		default:
			errs = append(errs, p.errorf(t, 0, "unexpected %s outside a lease block", describe(t)))
			p.resync()
		}
	}
}

func isBlockKeyword(s string) bool {
	return strings.EqualFold(s, "lease") || strings.EqualFold(s, "lease6")
}

// parser reads blocks and statements from a lexer. It keeps a stack of
// tokens read ahead and the depth of open blocks, so that after an error
// it can skip to the end of the rejected block (resync).
type parser struct {
	file  string
	lx    lexer
	back  []token // tokens pushed back, the next one last
	last  token   // the token next returned last
	depth int     // how many blocks are open
}

func (p *parser) next() token {
	var t token
	if n := len(p.back); n > 0 {
		t = p.back[n-1]
		p.back = p.back[:n-1]
	} else {
		t = p.lx.next()
		switch {
		case t.kind == tLBrace:
			t.delta = 1
		case t.kind == tRBrace && p.depth > 0:
			t.delta = -1
		}
	}
	p.depth += t.delta
	p.last = t
	return t
}

func (p *parser) unread(t token) {
	p.depth -= t.delta
	p.back = append(p.back, t)
}

// atBlockStart reports whether t starts a new top-level block ("lease {"),
// which no statement inside a block can look like: a block before it was
// not closed. The tokens stay unread.
func (p *parser) atBlockStart(t token) bool {
	if t.kind != tWord || !isBlockKeyword(t.text) {
		return false
	}
	n := p.next()
	p.unread(n)
	return n.kind == tLBrace
}

// resync skips what is left of a rejected statement or block: to the end
// of the block the parser is in, to the next ';' outside blocks, or to the
// start of the next lease block, whichever comes first. The token that
// was rejected may itself start the next block.
func (p *parser) resync() {
	last := p.last
	if p.atBlockStart(last) {
		p.unread(last)
		p.depth = 0
		return
	}
	if p.depth == 0 && (last.kind == tSemi || last.kind == tRBrace) {
		return // the statement is over
	}
	for {
		t := p.next()
		switch t.kind {
		case tEOF, tUnterminated:
			p.depth = 0
			return
		case tSemi, tRBrace:
			if p.depth == 0 {
				return
			}
		case tWord:
			if p.atBlockStart(t) {
				p.unread(t)
				p.depth = 0
				return
			}
		}
	}
}

// errorf returns a ParseError at t; block is the line of the lease block
// being parsed, or 0.
func (p *parser) errorf(t token, block int, format string, args ...any) error {
	if t.kind == tEOF || t.kind == tUnterminated {
		what := "the block is not closed"
		if t.kind == tUnterminated {
			what = "a string is not closed"
		}
		return &ParseError{File: p.file, Line: t.line, Block: block, Err: fmt.Errorf("%w: %s", ErrTruncated, what)}
	}
	if t.kind == tBad {
		return &ParseError{File: p.file, Line: t.line, Block: block, Err: errors.New(t.text)}
	}
	return &ParseError{File: p.file, Line: t.line, Block: block, Err: fmt.Errorf(format, args...)}
}

// word reads a word for the statement kw.
func (p *parser) word(kw string, block int) (token, error) {
	t := p.next()
	if t.kind != tWord {
		return t, p.errorf(t, block, "%s: expected a value, got %s", kw, describe(t))
	}
	return t, nil
}

// str reads a quoted string for the statement kw.
func (p *parser) str(kw string, block int) (string, error) {
	t := p.next()
	if t.kind != tString {
		return "", p.errorf(t, block, "%s: expected a quoted string, got %s", kw, describe(t))
	}
	return t.text, nil
}

// semi reads the ';' that ends the statement kw.
func (p *parser) semi(kw string, block int) error {
	if t := p.next(); t.kind != tSemi {
		return p.errorf(t, block, "%s: expected ';', got %s", kw, describe(t))
	}
	return nil
}

// open reads the '{' that opens the block kw.
func (p *parser) open(kw string, block int) error {
	if t := p.next(); t.kind != tLBrace {
		return p.errorf(t, block, "%s: expected '{', got %s", kw, describe(t))
	}
	return nil
}

// statement reads the keyword of the next statement in a block. It
// returns ok false at the block's closing '}'.
func (p *parser) statement(block int) (kw token, ok bool, err error) {
	for {
		t := p.next()
		switch t.kind {
		case tRBrace:
			return t, false, nil
		case tSemi: // an empty statement
			continue
		case tWord:
			if p.atBlockStart(t) {
				p.unread(t)
				return t, false, p.errorf(t, block, "the block is not closed before the lease at line %d", t.line)
			}
			return t, true, nil
		}
		return t, false, p.errorf(t, block, "expected a statement, got %s", describe(t))
	}
}

func (p *parser) defaultDUID() error {
	if _, err := p.str("default-duid", 0); err != nil {
		return err
	}
	return p.semi("default-duid", 0)
}

// lease parses a lease or lease6 block; kw is its keyword.
func (p *parser) lease(kw token) (Lease, error) {
	l := Lease{File: p.file, Line: kw.line, IPv6: strings.EqualFold(kw.text, "lease6"), Options: map[string]string{}}
	if err := p.open(kw.text, kw.line); err != nil {
		return Lease{}, err
	}
	var err error
	if l.IPv6 {
		err = p.lease6Body(&l)
	} else {
		err = p.lease4Body(&l)
	}
	if err != nil {
		return Lease{}, err
	}
	if l.Interface == "" {
		l.Interface = InterfaceFromFileName(filepath.Base(p.file))
	}
	bad := func(msg string) error {
		return &ParseError{File: p.file, Line: kw.line, Block: kw.line, Err: errors.New(msg)}
	}
	switch {
	case l.Interface == "":
		return Lease{}, bad("no interface statement, and the file name names no interface")
	case !l.IPv6 && !l.FixedAddress.IsValid():
		return Lease{}, bad("no fixed-address")
	case l.IPv6 && len(l.IAs) == 0:
		return Lease{}, bad("no ia-na, ia-ta or ia-pd")
	}
	if l.IPv6 {
		l.Renew, l.Rebind, l.Expire = lease6Times(l.IAs)
	}
	return l, nil
}

func (p *parser) lease4Body(l *Lease) error {
	block := l.Line
	for {
		kw, ok, err := p.statement(block)
		if err != nil || !ok {
			return err
		}
		name := strings.ToLower(kw.text)
		switch name {
		case "interface":
			if l.Interface, err = p.ifname(block); err != nil {
				return err
			}
		case "fixed-address":
			t, err := p.word(name, block)
			if err != nil {
				return err
			}
			a, perr := netip.ParseAddr(t.text)
			if perr != nil || !a.Is4() {
				return p.errorf(t, block, "fixed-address: %s is not an IPv4 address", describe(t))
			}
			l.FixedAddress = a
		case "bootp":
			l.BOOTP = true
		case "filename":
			if l.Filename, err = p.str(name, block); err != nil {
				return err
			}
		case "server-name":
			if l.ServerName, err = p.str(name, block); err != nil {
				return err
			}
		case "medium":
			if l.Medium, err = p.stringList(name, block); err != nil {
				return err
			}
			continue // stringList read the ';'
		case "name", "key":
			t := p.next()
			if t.kind != tString && t.kind != tWord {
				return p.errorf(t, block, "%s: expected a name, got %s", name, describe(t))
			}
			if name == "name" {
				l.Name = t.text
			} else {
				l.Key = t.text
			}
		case "option":
			if err := p.option(&l.Options, block); err != nil {
				return err
			}
			continue // option read the ';'
		case "renew", "rebind", "expire":
			t, err := p.date(name, block)
			if err != nil {
				return err
			}
			switch name {
			case "renew":
				l.Renew = t
			case "rebind":
				l.Rebind = t
			default:
				l.Expire = t
			}
			continue // date read the ';'
		default:
			return p.errorf(kw, block, "unknown statement %s in a lease block", describe(kw))
		}
		if err := p.semi(name, block); err != nil {
			return err
		}
	}
}

func (p *parser) lease6Body(l *Lease) error {
	block := l.Line
	for {
		kw, ok, err := p.statement(block)
		if err != nil || !ok {
			return err
		}
		name := strings.ToLower(kw.text)
		switch name {
		case "interface":
			if l.Interface, err = p.ifname(block); err != nil {
				return err
			}
		case "name":
			if l.Name, err = p.str(name, block); err != nil {
				return err
			}
		case "released", "abandoned":
			l.Released = true
		case "option":
			if err := p.option(&l.Options, block); err != nil {
				return err
			}
			continue
		case "ia-na", "ia-ta", "ia-pd":
			ia, err := p.ia(name, block)
			if err != nil {
				return err
			}
			l.IAs = append(l.IAs, ia)
			continue // the IA block ends without ';'
		default:
			return p.errorf(kw, block, "unknown statement %s in a lease6 block", describe(kw))
		}
		if err := p.semi(name, block); err != nil {
			return err
		}
	}
}

// ia parses "ia-na IAID { ... }" after its keyword.
func (p *parser) ia(kind string, block int) (IA, error) {
	ia := IA{Type: kind}
	t := p.next()
	switch t.kind {
	case tWord, tString:
		id, ok := parseIAID(t)
		if !ok {
			return IA{}, p.errorf(t, block, "%s: IAID %s is not 4 bytes", kind, describe(t))
		}
		ia.IAID = id
	default:
		return IA{}, p.errorf(t, block, "%s: expected an IAID, got %s", kind, describe(t))
	}
	if err := p.open(kind, block); err != nil {
		return IA{}, err
	}
	for {
		kw, ok, err := p.statement(block)
		if err != nil {
			return IA{}, err
		}
		if !ok {
			return ia, nil
		}
		name := strings.ToLower(kw.text)
		switch name {
		case "starts":
			if ia.Starts, err = p.epoch(name, block); err != nil {
				return IA{}, err
			}
		case "renew", "rebind":
			d, err := p.seconds(name, block)
			if err != nil {
				return IA{}, err
			}
			if name == "renew" {
				ia.Renew = d
			} else {
				ia.Rebind = d
			}
		case "option":
			if err := p.option(&ia.Options, block); err != nil {
				return IA{}, err
			}
			continue
		case "iaaddr", "iaprefix":
			if (name == "iaprefix") != (kind == "ia-pd") {
				return IA{}, p.errorf(kw, block, "%s in %s", name, kind)
			}
			a, err := p.iaAddr(name, block)
			if err != nil {
				return IA{}, err
			}
			ia.Addrs = append(ia.Addrs, a)
			continue
		default:
			return IA{}, p.errorf(kw, block, "unknown statement %s in %s", describe(kw), kind)
		}
		if err := p.semi(name, block); err != nil {
			return IA{}, err
		}
	}
}

// iaAddr parses "iaaddr ADDRESS { ... }" or "iaprefix PREFIX { ... }"
// after its keyword.
func (p *parser) iaAddr(kind string, block int) (IAAddr, error) {
	var a IAAddr
	t, err := p.word(kind, block)
	if err != nil {
		return a, err
	}
	if kind == "iaaddr" {
		ip, perr := netip.ParseAddr(t.text)
		if perr != nil || !ip.Is6() || ip.Zone() != "" {
			return a, p.errorf(t, block, "iaaddr: %s is not an IPv6 address", describe(t))
		}
		a.Prefix = netip.PrefixFrom(ip, 128)
	} else {
		pf, perr := netip.ParsePrefix(t.text)
		if perr != nil || !pf.Addr().Is6() {
			return a, p.errorf(t, block, "iaprefix: %s is not an IPv6 prefix", describe(t))
		}
		a.Prefix = pf
	}
	if err := p.open(kind, block); err != nil {
		return a, err
	}
	for {
		kw, ok, err := p.statement(block)
		if err != nil {
			return IAAddr{}, err
		}
		if !ok {
			return a, nil
		}
		name := strings.ToLower(kw.text)
		switch name {
		case "starts":
			if a.Starts, err = p.epoch(name, block); err != nil {
				return IAAddr{}, err
			}
		case "preferred-life", "max-life":
			d, err := p.seconds(name, block)
			if err != nil {
				return IAAddr{}, err
			}
			if name == "max-life" {
				a.MaxLife = d
			} else {
				a.PreferredLife = d
			}
		case "option":
			if err := p.option(&a.Options, block); err != nil {
				return IAAddr{}, err
			}
			continue
		default:
			return IAAddr{}, p.errorf(kw, block, "unknown statement %s in %s", describe(kw), kind)
		}
		if err := p.semi(name, block); err != nil {
			return IAAddr{}, err
		}
	}
}
