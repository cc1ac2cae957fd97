package dhclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse feeds the parser anything, seeded with the real lease files in
// testdata/. Whatever the input, the parser must not crash; every lease it
// returns must be complete (an interface, an address or IAs, encodable);
// every error must name the file and a line; and garbage after a good file
// must not take any of the good file's leases away.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.leases")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata: %v", err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2]) // cut off mid-block
	}
	for _, s := range []string{
		`lease {`, `lease6 { ia-na "abcd" { iaaddr ::1 {`, `"unterminated`, `}}}{{{`, "lease { option a \"\\",
		`lease { interface "e"; fixed-address 1.2.3.4; expire epoch 253402300799; }`,
		`lease { interface "e"; fixed-address 1.2.3.4; expire 6 9999/12/31 23:59:59 86400; }`,
	} {
		f.Add([]byte(s))
	}
	good, err := os.ReadFile("testdata/dnsmasq-options.leases")
	if err != nil {
		f.Fatal(err)
	}
	goodLeases, goodErrs := parseLeases(good, "f.leases")
	if len(goodLeases) == 0 || len(goodErrs) > 0 {
		f.Fatalf("the good file parses to %d leases and errors %q", len(goodLeases), errStrings(goodErrs))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		leases, errs := parseLeases(data, "f.leases")
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, l := range leases {
			checkComplete(t, l, lines)
		}
		for _, err := range errs {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "f.leases" || pe.Line < 1 || pe.Line > lines || pe.Block > pe.Line {
				t.Errorf("error %v: want a ParseError naming f.leases and a line in 1..%d", err, lines)
			}
		}

		withGarbage := append(append(append([]byte(nil), good...), '\n'), data...)
		all, _ := parseLeases(withGarbage, "f.leases")
		if len(all) < len(goodLeases) {
			t.Fatalf("garbage after a good file left %d of its %d leases", len(all), len(goodLeases))
		}
		if diff := cmp.Diff(all[:len(goodLeases)], goodLeases, cmpOpts); diff != "" {
			t.Errorf("garbage after a good file changed its leases (-got +want):\n%s", diff)
		}
	})
}

// checkComplete checks that a lease the parser returned is whole and that
// its report is safe to hand to scripts.
func checkComplete(t *testing.T, l Lease, lines int) {
	t.Helper()
	if err := validIfName(l.Interface); err != nil {
		t.Errorf("lease at line %d: interface %q: %v", l.Line, l.Interface, err)
	}
	if l.Line < 1 || l.Line > lines {
		t.Errorf("lease at line %d: want a line in 1..%d", l.Line, lines)
	}
	if l.IPv6 && len(l.IAs) == 0 {
		t.Errorf("lease6 at line %d has no IA", l.Line)
	}
	if !l.IPv6 && !l.FixedAddress.Is4() {
		t.Errorf("lease at line %d has no IPv4 fixed-address", l.Line)
	}
	for _, tm := range [...]struct {
		name string
		v    bool
	}{{"renew", l.Renew.After(Never)}, {"rebind", l.Rebind.After(Never)}, {"expire", l.Expire.After(Never)}} {
		if tm.v {
			t.Errorf("lease at line %d: %s after Never", l.Line, tm.name)
		}
	}
	for name := range l.Options {
		if !validOptionName(name) {
			t.Errorf("lease at line %d: option name %q", l.Line, name)
		}
	}
	if _, err := json.Marshal(l); err != nil {
		t.Errorf("lease at line %d: JSON: %v", l.Line, err)
	}
	v := view{name: l.Interface, state: stateRoutable}
	if l.IPv6 {
		v.v6 = &l
	} else {
		v.v4 = &l
	}
	m, _ := v.manager(1)
	for k, val := range m.Env {
		if strings.ContainsAny(val, "\x00\r\n") || strings.ContainsAny(k, "\x00\r\n=") {
			t.Errorf("lease at line %d: env %q=%q holds a byte a script cannot get", l.Line, k, val)
		}
	}
}
