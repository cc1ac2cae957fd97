package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/netevd/netevd/internal/action/script"
	"github.com/netevd/netevd/internal/nettest"
)

// scriptPATH is the fixed PATH the script contract promises.
const scriptPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lab is one test's world: the namespace the daemon runs in, a peer
// namespace that drives carrier from outside, a scripts root and a
// directory the recording scripts write to.
type lab struct {
	tb      testing.TB
	ns      *nettest.NetNS // the daemon's namespace
	peer    *nettest.NetNS // the far end of veth pairs
	root    string         // system.scripts_dir
	out     string         // recorders write <out>/<dir>/<event id>.<script>.<pid>
	cfgPath string

	mu       sync.Mutex      // guards consumed
	consumed map[string]bool // record paths take already returned
}

// labOptions are the config keys tests vary.
type labOptions struct {
	AllowUnsafeNames bool
	Timeout          string   // scripts.timeout, e.g. "500ms"; "" for the default
	KillGrace        string   // scripts.kill_grace
	Ignore           []string // monitoring.ignore
}

// newLab creates the namespaces (skipping the test without root), the
// scripts root (0755, owned by root) and the config file.
func newLab(t *testing.T, o labOptions) *lab {
	t.Helper()
	l := &lab{tb: t, ns: nettest.NewNetNS(t), peer: nettest.NewNetNS(t), consumed: map[string]bool{}}
	dir := t.TempDir()
	l.root = filepath.Join(dir, "scripts")
	l.out = filepath.Join(dir, "out")
	l.cfgPath = filepath.Join(dir, "netevd.yaml")
	for _, d := range []string{l.root, l.out} {
		mkdir0755(t, d)
	}
	if strings.ContainsAny(dir, "'\n") {
		t.Fatalf("temp dir %q cannot be quoted in a script", dir)
	}
	l.writeConfig(o)
	return l
}

func mkdir0755(tb testing.TB, dir string) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		tb.Fatal(err)
	}
}

// config returns the config for o: kernel events only, no API or metrics,
// JSON logs, scripts under l.root.
func (l *lab) config(o labOptions) map[string]any {
	system := map[string]any{"backend": "none", "scripts_dir": l.root, "log_format": "json"}
	if o.AllowUnsafeNames {
		system["allow_unsafe_names"] = true
	}
	scripts := map[string]any{}
	if o.Timeout != "" {
		scripts["timeout"] = o.Timeout
	}
	if o.KillGrace != "" {
		scripts["kill_grace"] = o.KillGrace
	}
	cfg := map[string]any{
		"system":  system,
		"scripts": scripts,
		"api":     map[string]any{"enabled": false},
		"metrics": map[string]any{"enabled": false},
	}
	if o.Ignore != nil {
		cfg["monitoring"] = map[string]any{"ignore": o.Ignore}
	}
	return cfg
}

// writeConfig writes the config for o to l.cfgPath (as JSON, which is YAML).
func (l *lab) writeConfig(o labOptions) {
	l.tb.Helper()
	b, err := json.MarshalIndent(l.config(o), "", "  ")
	if err != nil {
		l.tb.Fatal(err)
	}
	l.writeRawConfig(string(b) + "\n")
}

func (l *lab) writeRawConfig(text string) {
	l.tb.Helper()
	// Write and rename, so a SIGHUP never reads half a file.
	tmp := l.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		l.tb.Fatal(err)
	}
	if err := os.Rename(tmp, l.cfgPath); err != nil {
		l.tb.Fatal(err)
	}
}

// start runs the daemon in l.ns with l's config.
func (l *lab) start(env []string, args ...string) *daemon {
	l.tb.Helper()
	return startDaemon(l.tb, l.ns, l.cfgPath, env, args...)
}

// addScript writes a root-owned 0755 shell script <root>/<dir>/<name>.
func (l *lab) addScript(dir, name, body string) string {
	l.tb.Helper()
	d := filepath.Join(l.root, dir)
	mkdir0755(l.tb, d)
	p := filepath.Join(d, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		l.tb.Fatal(err)
	}
	if err := os.Chmod(p, 0o755); err != nil {
		l.tb.Fatal(err)
	}
	return p
}

// addRecorder adds a script to dir that writes its environment and its
// stdin to a file of its own under <out>/<dir>. The environment is built
// from scratch by the daemon, so the output path is part of the script.
// The record appears complete or not at all (written, then renamed).
func (l *lab) addRecorder(dir, name string) string {
	l.tb.Helper()
	outDir := filepath.Join(l.out, dir)
	mkdir0755(l.tb, outDir)
	body := fmt.Sprintf(`# Records the environment and stdin for the test.
f='%s'/"$NETEVD_EVENT_ID.%s.$$"
env > "$f.tmp"
printf '%%s\n' '--- stdin' >> "$f.tmp"
cat >> "$f.tmp"
mv "$f.tmp" "$f"
`, outDir, name)
	return l.addScript(dir, name, body)
}

// record is what one run of a recorder saw.
type record struct {
	Dir    string // the script directory, e.g. "carrier.d"
	Script string // the script's name
	Path   string // the record file
	ID     uint64 // NETEVD_EVENT_ID
	Env    map[string]string
	Stdin  []byte
}

func (r record) String() string {
	initial := ""
	if r.Env["NETEVD_INITIAL"] != "" {
		initial = " initial"
	}
	return fmt.Sprintf("%s/%s #%d %s %s[%s] state=%s old=%s addr=%s route=%s%s", r.Dir, r.Script, r.ID,
		r.Env["EVENT"], strconv.Quote(r.Env["LINK"]), r.Env["LINKINDEX"], r.Env["STATE"], r.Env["OLD_STATE"],
		r.Env["ADDRESS"], r.Env["ROUTE_DST"], initial)
}

// records returns every complete record, ordered by event id, directory
// and script.
func (l *lab) records() []record {
	l.tb.Helper()
	dirs, err := os.ReadDir(l.out)
	if err != nil {
		l.tb.Fatal(err)
	}
	var out []record
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(l.out, d.Name()))
		if err != nil {
			l.tb.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f.Name(), ".tmp") {
				continue
			}
			out = append(out, readRecord(l.tb, d.Name(), filepath.Join(l.out, d.Name(), f.Name())))
		}
	}
	slices.SortFunc(out, func(a, b record) int {
		if a.ID != b.ID {
			if a.ID < b.ID {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Dir+"/"+a.Script, b.Dir+"/"+b.Script)
	})
	return out
}

func readRecord(tb testing.TB, dir, path string) record {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	envPart, stdin, ok := bytes.Cut(b, []byte("\n--- stdin\n"))
	if !ok {
		tb.Fatalf("record %s has no stdin separator:\n%s", path, b)
	}
	r := record{Dir: dir, Path: path, Env: map[string]string{}, Stdin: stdin}
	// <id>.<script>.<pid>
	if parts := strings.Split(filepath.Base(path), "."); len(parts) >= 3 {
		r.Script = strings.Join(parts[1:len(parts)-1], ".")
	}
	for _, line := range strings.Split(string(envPart), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			tb.Fatalf("record %s: environment line without '=': %q", path, line)
		}
		r.Env[k] = v
	}
	if s := r.Env["NETEVD_EVENT_ID"]; s != "" {
		if r.ID, err = strconv.ParseUint(s, 10, 64); err != nil {
			tb.Fatalf("record %s: NETEVD_EVENT_ID %q: %v", path, s, err)
		}
	}
	return r
}

// describeRecords lists every record, for failure messages.
func (l *lab) describeRecords() string {
	recs := l.records()
	var b strings.Builder
	fmt.Fprintf(&b, "%d records so far:", len(recs))
	for _, r := range recs {
		b.WriteString("\n  ")
		b.WriteString(r.String())
	}
	return b.String()
}

// hasEnv reports whether r's environment holds every pair in want.
func (r record) hasEnv(want map[string]string) bool {
	for k, v := range want {
		if got, ok := r.Env[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// waitRecord waits for a record in dir whose environment holds every pair
// in match and returns the first one.
func (l *lab) waitRecord(dir string, match map[string]string) record {
	l.tb.Helper()
	return waitFor(l.tb, fmt.Sprintf("a record in %s with %v", dir, match), func() (record, bool) {
		for _, r := range l.records() {
			if r.Dir == dir && r.hasEnv(match) {
				return r, true
			}
		}
		return record{}, false
	}, l.describeRecords)
}

// take is waitRecord for records not returned by take before.
func (l *lab) take(dir string, match map[string]string) record {
	l.tb.Helper()
	r := waitFor(l.tb, fmt.Sprintf("a new record in %s with %v", dir, match), func() (record, bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, r := range l.records() {
			if r.Dir == dir && !l.consumed[r.Path] && r.hasEnv(match) {
				l.consumed[r.Path] = true
				return r, true
			}
		}
		return record{}, false
	}, l.describeRecords)
	return r
}

// allowedEnv is every variable the script contract lets a kernel-event
// script see, plus PWD, which /bin/sh sets itself.
var allowedEnv = map[string]bool{
	"PATH": true, "LANG": true, "TZ": true,
	"LINK": true, "LINKINDEX": true, "STATE": true, "OLD_STATE": true, "EVENT": true, "BACKEND": true,
	"ADDRESSES": true, "IPV4_ADDRESSES": true, "IPV6_ADDRESSES": true, "GATEWAY": true, "GATEWAY6": true,
	"ADDRESS": true, "ROUTE_DST": true, "ROUTE_GATEWAY": true, "ROUTE_TABLE": true, "OLD_LINK": true,
	"NETEVD_EVENT_ID": true, "NETEVD_INITIAL": true,
	"IFACE": true, "ADDR": true, "IP_ADDRS": true, "IP6_ADDRS": true, "OperationalState": true,
	"PWD": true,
}

// dirEvents is the EVENT each directory runs for.
var dirEvents = map[string][]string{
	"link-added.d":      {"link-added"},
	"link-removed.d":    {"link-removed"},
	"carrier.d":         {"carrier"},
	"no-carrier.d":      {"no-carrier"},
	"address-added.d":   {"address-added"},
	"address-removed.d": {"address-removed"},
	"routes.d":          {"route-added", "route-removed"},
	"routable.d":        {"state"},
	"degraded.d":        {"state"},
	"off.d":             {"state"},
}

// checkContract checks what every record must satisfy: the fixed and
// inherited variables, no leak from the daemon's environment, the aliases,
// NETEVD_INITIAL exactly when initial, and a stdin document that agrees
// with the environment.
func checkContract(tb testing.TB, r record, initial bool) {
	tb.Helper()
	e := r.Env
	fixed := map[string]string{"PATH": scriptPATH, "BACKEND": "none", "TZ": "UTC", "LANG": "C.UTF-8"}
	for k, want := range fixed {
		if got := e[k]; got != want {
			tb.Errorf("%v: %s=%q, want %q", r, k, got, want)
		}
	}
	for k := range e {
		if !allowedEnv[k] {
			tb.Errorf("%v: unexpected variable %s=%q (leaked from the daemon's environment?)", r, k, e[k])
		}
	}
	if e["IFACE"] != e["LINK"] {
		tb.Errorf("%v: IFACE=%q, want LINK=%q", r, e["IFACE"], e["LINK"])
	}
	if e["OperationalState"] != e["STATE"] {
		tb.Errorf("%v: OperationalState=%q, want STATE=%q", r, e["OperationalState"], e["STATE"])
	}
	if v, ok := e["NETEVD_INITIAL"]; initial && v != "1" {
		tb.Errorf("%v: NETEVD_INITIAL=%q (set: %v), want 1", r, v, ok)
	} else if !initial && ok {
		tb.Errorf("%v: NETEVD_INITIAL=%q, want it absent", r, v)
	}
	if evs, ok := dirEvents[r.Dir]; ok && !slices.Contains(evs, e["EVENT"]) {
		tb.Errorf("%v: EVENT=%q in %s, want one of %q", r, e["EVENT"], r.Dir, evs)
	}
	if r.ID == 0 {
		tb.Errorf("%v: NETEVD_EVENT_ID=%q, want a positive number", r, e["NETEVD_EVENT_ID"])
	}

	var p script.Payload
	if err := json.Unmarshal(r.Stdin, &p); err != nil {
		tb.Errorf("%v: stdin is not the JSON document: %v\n%s", r, err, r.Stdin)
		return
	}
	got := map[string]string{
		"version": strconv.Itoa(p.Version), "id": strconv.FormatUint(p.ID, 10), "event": p.Event,
		"initial": strconv.FormatBool(p.Initial), "backend": p.Backend,
		"link.name": p.Link.Name, "link.index": strconv.Itoa(p.Link.Index), "link.state": p.Link.State,
		"old_state": p.OldState,
	}
	want := map[string]string{
		"version": "1", "id": e["NETEVD_EVENT_ID"], "event": e["EVENT"],
		"initial": strconv.FormatBool(initial), "backend": "none",
		"link.name": e["LINK"], "link.index": e["LINKINDEX"], "link.state": e["STATE"],
		"old_state": e["OLD_STATE"],
	}
	if a, ok := e["ADDRESS"]; ok {
		want["address"] = a
		if p.Address != nil {
			got["address"] = p.Address.Address
		}
	}
	if dst, ok := e["ROUTE_DST"]; ok {
		want["route"] = dst + " via " + e["ROUTE_GATEWAY"] + " table " + e["ROUTE_TABLE"]
		if p.Route != nil {
			got["route"] = p.Route.Dst + " via " + p.Route.Gateway + " table " + strconv.FormatUint(uint64(p.Route.Table), 10)
		}
	}
	for k, w := range want {
		if got[k] != w {
			tb.Errorf("%v: stdin %s=%q, want %q", r, k, got[k], w)
		}
	}
}

// checkUniqueRuns checks that no script ran twice for one change.
func checkUniqueRuns(tb testing.TB, recs []record) {
	tb.Helper()
	seen := map[string]record{}
	for _, r := range recs {
		k := fmt.Sprintf("%s/%s#%d", r.Dir, r.Script, r.ID)
		if old, dup := seen[k]; dup {
			tb.Errorf("script ran twice for one change: %v and %v", old, r)
		}
		seen[k] = r
	}
}
