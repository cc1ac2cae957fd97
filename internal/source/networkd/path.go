package networkd

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Object paths of systemd-networkd's bus API.
const (
	managerPath = "/org/freedesktop/network1"
	linkPrefix  = "/org/freedesktop/network1/link/"
)

// linkIndex returns the ifindex of a Link object path such as
// /org/freedesktop/network1/link/_310.
//
// systemd builds the last segment with bus_label_escape: every byte that is
// not an ASCII letter, and every digit in the first position, becomes '_'
// and two lower-case hex digits. So ifindex 10 is "_310" (only the first
// digit escaped), and decoders must also accept the fully escaped "_31_30".
// The decoded label must be a canonical positive decimal number that fits
// an ifindex (no sign, no leading zero, at most 2^31-1).
func linkIndex(path string) (int, error) {
	label, ok := strings.CutPrefix(path, linkPrefix)
	if !ok || label == "" || strings.Contains(label, "/") {
		return 0, fmt.Errorf("%q is not a networkd link object path", path)
	}
	s, err := unescapeLabel(label)
	if err != nil {
		return 0, fmt.Errorf("link object path %q: %w", path, err)
	}
	if s == "" || s[0] == '0' || len(s) > 10 {
		return 0, fmt.Errorf("link object path %q: %q is not an ifindex", path, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("link object path %q: %q is not an ifindex", path, s)
		}
	}
	idx, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("link object path %q: %q is not an ifindex", path, s)
	}
	return int(idx), nil
}

// unescapeLabel reverses systemd's bus_label_escape: "_xx" (two hex digits,
// either case) is the byte 0xxx, every other byte stands for itself, and
// the label "_" alone is the empty string.
func unescapeLabel(label string) (string, error) {
	if label == "_" {
		return "", nil
	}
	var b strings.Builder
	b.Grow(len(label))
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(label) {
			return "", errors.New("truncated escape")
		}
		hi, ok1 := unhex(label[i+1])
		lo, ok2 := unhex(label[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("bad escape %q", label[i:i+3])
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// linkPath is the object path systemd gives the link with ifindex idx (> 0):
// its first digit escaped, the others as they are.
func linkPath(idx int) string {
	s := strconv.Itoa(idx)
	return linkPrefix + "_3" + s[:1] + s[1:]
}
