package dhclient

import (
	"fmt"
	"strconv"
	"strings"
)

// The lexer splits a lease file into tokens the way dhclient's does, with
// one simplification: a word is any run of bytes up to white space or one
// of {};,"# so that addresses, dates and times are single words.

type tokKind uint8

const (
	tEOF          tokKind = iota
	tWord                 // a run of bytes without space, quotes, braces, ';', ',' or '#'
	tString               // a quoted string, escapes decoded
	tLBrace               // {
	tRBrace               // }
	tSemi                 // ;
	tComma                // ,
	tBad                  // a byte or escape that may not appear; text says which
	tUnterminated         // a string that runs to the end of the file
)

type token struct {
	kind  tokKind
	text  string
	line  int
	delta int // how the token changed the block depth
}

// describe names a token in an error message.
func describe(t token) string {
	switch t.kind {
	case tEOF, tUnterminated:
		return "end of file"
	case tWord:
		s := t.text
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return strconv.Quote(s)
	case tString:
		return "a quoted string"
	case tLBrace:
		return "'{'"
	case tRBrace:
		return "'}'"
	case tSemi:
		return "';'"
	case tComma:
		return "','"
	}
	return t.text
}

// lexer splits a lease file into tokens.
type lexer struct {
	src  []byte
	pos  int
	line int
}

func (l *lexer) next() token {
	for l.pos < len(l.src) {
		switch c := l.src[l.pos]; c {
		case '\n':
			l.line++
			l.pos++
		case ' ', '\t', '\r', '\f', '\v':
			l.pos++
		case '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
		default:
			return l.token(c)
		}
	}
	return token{kind: tEOF, line: l.line}
}

func (l *lexer) token(c byte) token {
	t := token{line: l.line}
	switch c {
	case '{':
		t.kind = tLBrace
	case '}':
		t.kind = tRBrace
	case ';':
		t.kind = tSemi
	case ',':
		t.kind = tComma
	case '"':
		return l.str()
	default:
		if c < 0x20 || c == 0x7f {
			l.pos++
			return token{kind: tBad, text: fmt.Sprintf("control byte 0x%02x", c), line: t.line}
		}
		start := l.pos
		for l.pos < len(l.src) && isWordByte(l.src[l.pos]) {
			l.pos++
		}
		t.kind, t.text = tWord, string(l.src[start:l.pos])
		return t
	}
	l.pos++
	return t
}

func isWordByte(c byte) bool {
	switch c {
	case '{', '}', ';', ',', '"', '#', ' ', '\t', '\r', '\n', '\f', '\v', 0x7f:
		return false
	}
	return c >= 0x20
}

// str reads a quoted string, l.pos at its opening quote. A bad escape
// makes a tBad token, but the whole string is consumed either way.
func (l *lexer) str() token {
	line := l.line
	l.pos++ // the opening quote
	var (
		b   strings.Builder
		bad string
	)
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		l.pos++
		switch c {
		case '"':
			if bad != "" {
				return token{kind: tBad, text: bad, line: line}
			}
			return token{kind: tString, text: b.String(), line: line}
		case '\n':
			l.line++
			b.WriteByte(c)
		case '\\':
			v, n, err := unescape(l.src[l.pos:])
			if err != "" && bad == "" {
				bad = err
			}
			for _, e := range l.src[l.pos : l.pos+n] {
				if e == '\n' {
					l.line++
				}
			}
			l.pos += n
			b.WriteByte(v)
		default:
			b.WriteByte(c)
		}
	}
	return token{kind: tUnterminated, line: line}
}

// unescape decodes the escape after a backslash, as dhclient's lexer does:
// \t \r \n \b, \ooo (three octal digits, the first 0-3), \xhh, and \c for
// any other c. It returns the byte, how many bytes it used and what is
// wrong, if anything.
func unescape(s []byte) (byte, int, string) {
	if len(s) == 0 {
		return 0, 0, "" // the caller sees the end of the file
	}
	switch c := s[0]; c {
	case 't':
		return '\t', 1, ""
	case 'r':
		return '\r', 1, ""
	case 'n':
		return '\n', 1, ""
	case 'b':
		return '\b', 1, ""
	case '0', '1', '2', '3':
		if len(s) < 3 || !isOctal(s[1]) || !isOctal(s[2]) {
			return 0, 1, "invalid octal escape in string"
		}
		return (c-'0')<<6 | (s[1]-'0')<<3 | (s[2] - '0'), 3, ""
	case 'x':
		if len(s) < 3 || !isHex(s[1]) || !isHex(s[2]) {
			return 0, 1, "invalid \\x escape in string"
		}
		return hexVal(s[1])<<4 | hexVal(s[2]), 3, ""
	default:
		return c, 1, ""
	}
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
