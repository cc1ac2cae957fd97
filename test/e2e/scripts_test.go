package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/netevd/netevd/internal/nettest"
)

// carrierUp creates veth0 (index 10) in the lab's namespace with its peer
// vp0 (index 20) down, sets veth0 up, then gives it carrier.
func carrierUp(l *lab) {
	l.tb.Helper()
	nettest.VethPair(l.tb, l.ns, l.peer, "veth0", 10, "vp0", 20)
	l.ns.Run("link", "set", "dev", "veth0", "addrgenmode", "none")
	l.ns.Run("link", "set", "dev", "veth0", "up")
	l.peer.Run("link", "set", "dev", "vp0", "up")
}

// TestTimeoutKillsProcessGroup runs a script that hangs with a background
// child that ignores SIGTERM: at the timeout both must die, and the next
// script in the directory must still run.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{Timeout: "500ms", KillGrace: "500ms"})
	pids := filepath.Join(filepath.Dir(l.out), "hang.pids")
	hang := l.addScript("carrier.d", "10-hang", fmt.Sprintf(`
( trap '' TERM; exec sleep 300 ) &
echo "$$ $!" > '%[1]s.tmp'
mv '%[1]s.tmp' '%[1]s'
sleep 300
`, pids))
	l.addRecorder("carrier.d", "20-record")
	d := l.start(nil)

	carrierUp(l)
	d.waitLog("the timeout of "+hang, func(r logRec) bool {
		timedOut, _ := r["timed_out"].(bool)
		return r.msg() == "script finished" && r.str("script") == hang && timedOut
	})
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatalf("the hanging script did not record its PIDs: %v", err)
	}
	var scriptPID, childPID int
	if _, err := fmt.Sscan(string(b), &scriptPID, &childPID); err != nil {
		t.Fatalf("parse %q: %v", b, err)
	}
	for _, p := range []struct {
		what string
		pid  int
	}{{"the script", scriptPID}, {"the script's background child (it ignores SIGTERM)", childPID}} {
		waitFor(t, fmt.Sprintf("%s (PID %d) to be gone", p.what, p.pid), func() (struct{}, bool) {
			return struct{}{}, processGone(p.pid)
		})
	}
	r := l.take("carrier.d", map[string]string{"LINK": "veth0"})
	checkContract(t, r, false)
	if r.Script != "20-record" {
		t.Errorf("record from %q, want 20-record", r.Script)
	}
	d.stop()
}

// TestFloodingScript runs a script that writes 10 MiB to stdout and 10 MiB
// without a newline to stderr: the daemon logs the truncation, keeps its
// memory bounded and handles the next event.
func TestFloodingScript(t *testing.T) {
	t.Parallel()
	const size = 10 << 20
	l := newLab(t, labOptions{})
	flood := l.addScript("carrier.d", "10-flood", fmt.Sprintf(`
yes 0123456789abcdef | head -c %[1]d
head -c %[1]d /dev/zero >&2
`, size))
	l.addRecorder("no-carrier.d", "50-record")
	d := l.start(nil)
	before := procStatusKB(t, d.pid(), "VmRSS")

	carrierUp(l)
	for _, stream := range []string{"stdout", "stderr"} {
		r := d.waitLog("the truncation of "+stream, func(r logRec) bool {
			return r.msg() == "script output truncated" && r.str("script") == flood && r.str("stream") == stream
		})
		if got := r.num("logged_bytes") + r.num("dropped_bytes"); got != size {
			t.Errorf("%s: logged %d + dropped %d bytes = %d, want %d", stream,
				r.num("logged_bytes"), r.num("dropped_bytes"), got, size)
		}
		if r.num("logged_bytes") > 64<<10 {
			t.Errorf("%s: logged %d bytes, want at most 64 KiB", stream, r.num("logged_bytes"))
		}
	}
	d.waitLog("the end of "+flood, func(r logRec) bool {
		return r.msg() == "script finished" && r.str("script") == flood && r.num("exit_code") == 0
	})

	// The daemon still works.
	l.peer.Run("link", "set", "dev", "vp0", "down")
	checkContract(t, l.take("no-carrier.d", map[string]string{"LINK": "veth0"}), false)

	// An absolute bound, and a bound on the growth that is smaller than
	// what one stream wrote: a daemon that held any stream's output whole
	// would break it.
	const bound, growth = 64 << 10, 8 << 10 // KiB
	rss, hwm := procStatusKB(t, d.pid(), "VmRSS"), procStatusKB(t, d.pid(), "VmHWM")
	t.Logf("daemon VmRSS %d KiB when ready, %d KiB after the flood, peak (VmHWM) %d KiB", before, rss, hwm)
	if rss >= bound || hwm >= bound {
		t.Errorf("daemon VmRSS %d KiB, peak %d KiB; want both under %d KiB", rss, hwm, bound)
	}
	if hwm-before >= growth {
		t.Errorf("daemon peak VmRSS %d KiB is %d KiB above the %d KiB it had when ready; want less than %d KiB",
			hwm, hwm-before, before, growth)
	}
	d.stop()
}

// TestUntrustedScripts puts scripts that others could change next to a
// trusted one: they are refused with the reason, the trusted one runs. A
// directory others could write to is refused as a whole.
func TestUntrustedScripts(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	marker := func(name string) string { return filepath.Join(filepath.Dir(l.out), "ran-"+name) }
	world := l.addScript("carrier.d", "10-world", fmt.Sprintf("touch '%s'\n", marker("10-world")))
	if err := os.Chmod(world, 0o777); err != nil {
		t.Fatal(err)
	}
	nobody := l.addScript("carrier.d", "20-nobody", fmt.Sprintf("touch '%s'\n", marker("20-nobody")))
	if err := os.Chown(nobody, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	l.addRecorder("carrier.d", "30-record")
	// A world-writable directory: nothing in it may run.
	l.addRecorder("link-added.d", "50-record")
	openDir := filepath.Join(l.root, "link-added.d")
	if err := os.Chmod(openDir, 0o777); err != nil {
		t.Fatal(err)
	}
	d := l.start(nil)

	carrierUp(l)
	checkContract(t, l.take("carrier.d", map[string]string{"LINK": "veth0"}), false)
	for _, w := range []struct{ path, reason string }{
		{world, "world-writable"},
		{nobody, "not owned by root (uid 65534)"},
	} {
		d.waitLog("the refusal of "+w.path, func(r logRec) bool {
			return r.msg() == "refusing script" && r.str("script") == w.path && strings.Contains(r.str("reason"), w.reason)
		})
	}
	d.waitLog("the refusal of "+openDir, func(r logRec) bool {
		return r.msg() == "refusing script directory" && r.str("dir") == openDir &&
			strings.Contains(r.str("reason"), "world-writable")
	})
	d.stop()
	for _, name := range []string{"10-world", "20-nobody"} {
		if _, err := os.Stat(marker(name)); err == nil {
			t.Errorf("the refused script %s ran", name)
		}
	}
	for _, r := range l.records() {
		if r.Dir == "link-added.d" {
			t.Errorf("a script in the world-writable %s ran: %v", openDir, r)
		}
	}
}

// TestDryRun runs the daemon with --dry-run: scripts are logged with their
// environment and not run, and no directory is created.
func TestDryRun(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	rec := l.addRecorder("carrier.d", "50-record")
	d := l.start(nil, "--dry-run")

	carrierUp(l)
	r := d.waitLog("the dry run of "+rec, func(r logRec) bool {
		return r.msg() == "dry run: would run script" && r.str("script") == rec && r.str("event") == "carrier"
	})
	var env []string
	for _, v := range r["env"].([]any) {
		s, _ := v.(string)
		env = append(env, s)
	}
	for _, want := range []string{"LINK=veth0", "LINKINDEX=10", "EVENT=carrier", "BACKEND=none", "PATH=" + scriptPATH} {
		if !slices.Contains(env, want) {
			t.Errorf("dry-run env %q lacks %s", env, want)
		}
	}
	var payload struct {
		Event string `json:"event"`
		Link  struct {
			Name string `json:"name"`
		} `json:"link"`
	}
	if err := json.Unmarshal([]byte(r.str("json")), &payload); err != nil || payload.Event != "carrier" || payload.Link.Name != "veth0" {
		t.Errorf("dry-run json %q: event %q, link %q, error %v; want carrier and veth0", r.str("json"), payload.Event, payload.Link.Name, err)
	}
	d.stop()

	if recs := l.records(); len(recs) > 0 {
		t.Errorf("scripts ran in dry-run mode:\n%s", l.describeRecords())
	}
	if _, err := os.Stat(filepath.Join(l.root, "routable.d")); err == nil {
		t.Errorf("dry run created %s", filepath.Join(l.root, "routable.d"))
	}
	if i, r := d.find(0, func(r logRec) bool { return r.msg() == "script finished" }); i >= 0 {
		t.Errorf("a script ran in dry-run mode: %v", r)
	}
}
