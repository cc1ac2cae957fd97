package networkd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/netevd/netevd/internal/event"
)

// Backend is the Backend of every report, the BACKEND scripts see.
const Backend = "systemd-networkd"

// The properties whose changes select script directories; every other
// string property goes to Manager.Env under its own name.
const (
	propOperational    = "OperationalState"
	propAdministrative = "AdministrativeState"
)

// stateLinger is the AdministrativeState networkd gives a link the kernel
// removed; the object goes away with it.
const stateLinger = "linger"

// maxJSON bounds $JSON: one environment string may hold at most 128 KiB
// (MAX_ARG_STRLEN) including the name and the terminating NUL. For a longer
// description Describe returns an error (the script runner logs it and
// runs the scripts without JSON) rather than making exec fail.
const maxJSON = 128<<10 - len("JSON=") - 1

// object is what the source knows about one networkd object: a link, or
// the Manager itself (index 0).
type object struct {
	path string
	name string // interface name as networkd reports it; "" for the manager

	// props are the object's string properties; seq says, per property,
	// the sequence number of the message its value came from, so that an
	// older signal never overwrites a newer value (see sdbus.CallSeq).
	props map[string]string
	seq   map[string]uint64

	// pending: the object is being read for the first time and has not
	// been reported. reading: a background read is in flight.
	pending, reading bool
}

func newObject(path string) *object {
	return &object{path: path, props: map[string]string{}, seq: map[string]uint64{}}
}

// replace takes a complete read of the object's properties (GetAll) whose
// reply had sequence number seq. A property that a newer signal set
// already keeps its value.
func (o *object) replace(all map[string]any, seq uint64) {
	for k := range o.props {
		if _, ok := all[k]; !ok && o.seq[k] < seq {
			delete(o.props, k)
			delete(o.seq, k)
		}
	}
	for k, v := range all {
		s, ok := v.(string)
		if !ok || o.seq[k] > seq {
			continue
		}
		o.props[k], o.seq[k] = s, seq
	}
}

// apply takes the changed properties of a PropertiesChanged signal with
// sequence number seq. It reports whether a value changed, and how many
// values it skipped because a newer message had set them already.
func (o *object) apply(changed map[string]any, seq uint64) (diff bool, stale int) {
	for k, v := range changed {
		s, ok := v.(string)
		if !ok {
			continue
		}
		if o.seq[k] > seq {
			stale++
			continue
		}
		if old, had := o.props[k]; !had || old != s {
			diff = true
		}
		o.props[k], o.seq[k] = s, seq
	}
	return diff, stale
}

// forget drops the sequence numbers: they belong to one bus connection.
func (o *object) forget() { clear(o.seq) }

// states returns the properties that select script directories.
func (o *object) states() map[string]string {
	st := make(map[string]string, 2)
	for _, k := range []string{propOperational, propAdministrative} {
		if v := o.props[k]; v != "" {
			st[k] = v
		}
	}
	return st
}

// report is the report on the object with ifindex idx as far as its
// properties go: the two state properties in States, every other
// non-empty string property in Env.
func (o *object) report(idx int) *event.Manager {
	m := &event.Manager{
		Backend: Backend,
		Index:   idx,
		Name:    o.name,
		States:  o.states(),
		Env:     make(map[string]string, len(o.props)),
	}
	for k, v := range o.props {
		if v == "" || k == propOperational || k == propAdministrative {
			continue
		}
		m.Env[k] = v
	}
	return m
}

// compactDescription checks that text, what Link.Describe returned, is a
// JSON object and returns it as one compact line (networkd sends it
// compact; whitespace between tokens, newlines included, is removed).
func compactDescription(text string) (string, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(text)); err != nil {
		return "", fmt.Errorf("link description: %w", err)
	}
	if b.Len() == 0 || b.Bytes()[0] != '{' {
		return "", fmt.Errorf("link description is not a JSON object: %.40q", text)
	}
	return b.String(), nil
}

// readStateFile reads networkd's state file for one link,
// <dir>/links/<idx> (KEY=VALUE lines; "# This is private data. Do not
// parse." — it is the fallback when the bus cannot say). It returns the DNS
// servers and search domains in it.
func readStateFile(dir string, idx int) (dns []netip.Addr, domains []string, err error) {
	f, err := os.Open(filepath.Join(dir, "links", fmt.Sprint(idx)))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	vals, err := parseStateFile(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	for _, tok := range strings.Fields(vals["DNS"]) {
		if a, ok := parseDNSToken(tok); ok && !slices.Contains(dns, a) {
			dns = append(dns, a)
		}
	}
	for _, tok := range strings.Fields(vals["DOMAINS"]) {
		if !slices.Contains(domains, tok) {
			domains = append(domains, tok)
		}
	}
	return dns, domains, nil
}

// parseStateFile reads KEY=VALUE lines, skipping blank lines and comments.
func parseStateFile(f *os.File) (map[string]string, error) {
	vals := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, errors.New("line without '='")
		}
		vals[k] = v
	}
	return vals, s.Err()
}

// parseDNSToken parses one server as networkd writes it in a state file:
// an address, optionally as "[v6]:port" or "v4:port", with "%ifindex" and
// "#server-name" suffixes.
func parseDNSToken(tok string) (netip.Addr, bool) {
	tok, _, _ = strings.Cut(tok, "#")
	if a, err := netip.ParseAddr(tok); err == nil {
		return a.WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(tok); err == nil {
		return ap.Addr().WithZone(""), true
	}
	if i := strings.LastIndexByte(tok, '%'); i > 0 {
		return parseDNSToken(tok[:i])
	}
	return netip.Addr{}, false
}
