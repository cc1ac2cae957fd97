package script

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// readPIDs reads the PIDs a test script wrote, one per line, and registers
// a cleanup that kills whichever of them still runs (they are the test's
// own processes).
func readPIDs(t *testing.T, file string, want int) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			if !gone(pid) {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
	})
	if len(pids) != want {
		t.Fatalf("%s holds %d PIDs, want %d", file, len(pids), want)
	}
	return pids
}

// waitFile polls until file exists, for at most 10s.
func waitFile(t *testing.T, file string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(file); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", file)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(file string) bool {
	_, err := os.Stat(file)
	return !errors.Is(err, fs.ErrNotExist)
}

func TestHandleEnvironmentAndStdin(t *testing.T) {
	requireRoot(t)
	checkGoroutines(t)
	setDaemonEnv(t)
	r, h := newTestRunner(t, Config{})
	out := t.TempDir()
	script := writeScript(t, filepath.Join(r.cfg.Dir, "address-added.d"), "10-dump", `#!/bin/sh
cat > `+out+`/stdin.json
env -0 > `+out+`/env
pwd > `+out+`/pwd
echo "$$ $(cut -d' ' -f5 /proc/$$/stat)" > `+out+`/pgrp
echo hello from stdout
printf 'hello from stderr\r\nno newline at the end' >&2
`, 0o755)
	c := testChange()
	if err := r.Handle(context.Background(), c); err != nil {
		t.Fatalf("Handle() = %v", err)
	}

	// Environment: exactly Environ's, plus what the shell itself adds.
	b, err := os.ReadFile(filepath.Join(out, "env"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00") {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "PWD", "OLDPWD", "SHLVL", "_":
			continue
		}
		got = append(got, kv)
	}
	slices.Sort(got)
	want, err := r.Environ(c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("script environment (-got +want):\n%s", diff)
	}

	// Stdin: the payload.
	b, err = os.ReadFile(filepath.Join(out, "stdin.json"))
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(NewPayload(c))
	if !bytes.Equal(b, wantJSON) {
		t.Errorf("stdin = %s\nwant %s", b, wantJSON)
	}

	// Working directory and own process group.
	if b, _ := os.ReadFile(filepath.Join(out, "pwd")); string(b) != "/\n" {
		t.Errorf("working directory = %q, want /", b)
	}
	b, _ = os.ReadFile(filepath.Join(out, "pgrp"))
	if f := strings.Fields(string(b)); len(f) != 2 || f[0] != f[1] {
		t.Errorf("pid and process group = %q, want the script to lead its own group", b)
	}

	// Logs.
	var lines []string
	for _, rc := range h.find("script output") {
		if rc.Attrs["script"] != script || rc.Attrs["link"] != "veth0" {
			t.Errorf("output record without script/link: %+v", rc)
		}
		lines = append(lines, rc.Attrs["stream"].(string)+": "+rc.Attrs["line"].(string))
	}
	slices.Sort(lines)
	wantLines := []string{"stderr: hello from stderr", "stderr: no newline at the end", "stdout: hello from stdout"}
	if diff := cmp.Diff(lines, wantLines); diff != "" {
		t.Errorf("logged output (-got +want):\n%s", diff)
	}
	fin := h.find("script finished")
	if len(fin) != 1 {
		t.Fatalf("script finished records = %+v, want 1", fin)
	}
	if fin[0].Level != slog.LevelInfo || fin[0].Attrs["exit_code"] != int64(0) || fin[0].Attrs["event"] != "address-added" ||
		fin[0].Attrs["script"] != script || fin[0].Attrs["link"] != "veth0" {
		t.Errorf("script finished = %+v", fin[0])
	}
	if _, ok := fin[0].Attrs["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms = %#v, want a float", fin[0].Attrs["duration_ms"])
	}
	if diff := cmp.Diff(r.Stats(), Stats{Runs: 1}); diff != "" {
		t.Errorf("Stats() (-got +want):\n%s", diff)
	}
}

func TestHandleOrderAndFailures(t *testing.T) {
	requireRoot(t)
	checkGoroutines(t)
	r, h := newTestRunner(t, Config{})
	dir := filepath.Join(r.cfg.Dir, "carrier.d")
	order := filepath.Join(t.TempDir(), "order")
	for name, code := range map[string]int{"10-a": 0, "2-a": 3, "b": 0, "a": 0} {
		writeScript(t, dir, name, "#!/bin/sh\necho "+name+" >> "+order+"\nexit "+strconv.Itoa(code)+"\n", 0o755)
	}
	writeScript(t, dir, "c", "#!/bin/sh\nkill -KILL $$\n", 0o755)
	c := event.Change{ID: 7, Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}
	err := r.Handle(context.Background(), c)
	wantErr := "2 of 5 scripts failed: " + filepath.Join(dir, "2-a") + ": exit status 3, " +
		filepath.Join(dir, "c") + ": killed by SIGKILL"
	if err == nil || err.Error() != wantErr {
		t.Errorf("Handle() = %v, want %q", err, wantErr)
	}
	b, _ := os.ReadFile(order)
	if got, want := string(b), "10-a\n2-a\na\nb\n"; got != want {
		t.Errorf("scripts ran in order %q, want %q", got, want)
	}
	var got []string
	for _, rc := range h.find("script finished") {
		s := filepath.Base(rc.Attrs["script"].(string)) + " " + rc.Level.String() + " " + strconv.FormatInt(rc.Attrs["exit_code"].(int64), 10)
		if sig, ok := rc.Attrs["signal"]; ok {
			s += " " + sig.(string)
		}
		got = append(got, s)
	}
	want := []string{"10-a INFO 0", "2-a WARN 3", "a INFO 0", "b INFO 0", "c WARN -1 SIGKILL"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("script finished records (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(r.Stats(), Stats{Runs: 5, Failures: 2}); diff != "" {
		t.Errorf("Stats() (-got +want):\n%s", diff)
	}
}

func TestHandleStartFailure(t *testing.T) {
	requireRoot(t)
	checkGoroutines(t)
	r, h := newTestRunner(t, Config{})
	dir := filepath.Join(r.cfg.Dir, "link-added.d")
	marker := filepath.Join(t.TempDir(), "ran")
	writeScript(t, dir, "10-no-shebang", "touch "+marker+"\n", 0o755)
	writeScript(t, dir, "20-ok", "#!/bin/sh\ntouch "+marker+"\n", 0o755)
	c := event.Change{Type: event.LinkAdded, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}
	err := r.Handle(context.Background(), c)
	if err == nil || !strings.HasPrefix(err.Error(), "1 of 2 scripts failed: ") || !strings.Contains(err.Error(), "did not start") {
		t.Errorf("Handle() = %v, want 1 of 2 failed (did not start)", err)
	}
	if !exists(marker) {
		t.Error("the script after the one that could not start did not run")
	}
	fin := h.find("script finished")
	if len(fin) != 2 || fin[0].Level != slog.LevelWarn || !strings.Contains(fin[0].Attrs["error"].(string), "exec format error") {
		t.Errorf("script finished records = %+v, want a warning with exec format error first", fin)
	}
}

func TestHandleUnsafeName(t *testing.T) {
	requireRoot(t)
	for _, name := range []string{"a;touch x", "$(reboot)", "eth0:1", "1234567890123456", "", "a b", "tab\tx"} {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			r, h := newTestRunner(t, Config{})
			marker := filepath.Join(t.TempDir(), "ran")
			writeScript(t, filepath.Join(r.cfg.Dir, "carrier.d"), "10-up", "#!/bin/sh\ntouch "+marker+"\n", 0o755)
			c := event.Change{ID: 9, Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 33, Name: name}}}
			if err := r.Handle(context.Background(), c); err != nil {
				t.Errorf("Handle() = %v, want nil (refusals are logged, not returned)", err)
			}
			if exists(marker) {
				t.Error("a script ran for an interface with an unsafe name")
			}
			if got := r.Stats().Refused; got != 1 {
				t.Errorf("Stats().Refused = %d, want 1", got)
			}
			recs := h.find("refusing event for interface with unsafe name")
			if len(recs) != 1 {
				t.Fatalf("refusal records = %+v, want 1", recs)
			}
			want := map[string]any{"component": "script", "name": strconv.Quote(name), "event": "carrier",
				"ifindex": int64(33), "event_id": uint64(9), "scripts": int64(1)}
			if diff := cmp.Diff(recs[0].Attrs, want); diff != "" || recs[0].Level != slog.LevelWarn {
				t.Errorf("refusal record level %v (-got +want):\n%s", recs[0].Level, diff)
			}
		})
	}
}

func TestHandleUnsafeNameAllowed(t *testing.T) {
	requireRoot(t)
	r, _ := newTestRunner(t, Config{AllowUnsafeNames: true})
	out := filepath.Join(t.TempDir(), "link")
	writeScript(t, filepath.Join(r.cfg.Dir, "carrier.d"), "10-up", "#!/bin/sh\nprintf '%s' \"$LINK\" > "+out+"\n", 0o755)
	name := "x$(touch y);`id` *"
	c := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 33, Name: name}}}
	if err := r.Handle(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != name {
		t.Errorf("script saw LINK=%q (%v), want %q unchanged", b, err, name)
	}
	if got := r.Stats().Refused; got != 0 {
		t.Errorf("Stats().Refused = %d, want 0", got)
	}
}

func TestHandleUnsafeValue(t *testing.T) {
	requireRoot(t)
	r, h := newTestRunner(t, Config{AllowUnsafeNames: true})
	marker := filepath.Join(t.TempDir(), "ran")
	writeScript(t, filepath.Join(r.cfg.Dir, "carrier.d"), "10-up", "#!/bin/sh\ntouch "+marker+"\n", 0o755)
	for _, c := range []event.Change{
		{Type: event.CarrierUp, Backend: "none\nLINK=evil", Link: event.LinkState{Link: event.Link{Index: 1, Name: "veth0"}}},
		{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 1, Name: "a\nb"}}},
	} {
		if err := r.Handle(context.Background(), c); err != nil {
			t.Errorf("Handle() = %v, want nil", err)
		}
	}
	if exists(marker) {
		t.Error("a script ran with a newline in a variable")
	}
	if got := r.Stats().Refused; got != 2 {
		t.Errorf("Stats().Refused = %d, want 2", got)
	}
	if recs := h.find("refusing event with unsafe value"); len(recs) != 2 {
		t.Errorf("refusal records = %+v, want 2", recs)
	}
}

func TestHandleTimeoutKillsProcessGroup(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name       string
		body       string // writes the PIDs of the group to $P
		pids       int
		wantSignal string
	}{
		{"shell dies at SIGTERM", "echo $$ > $P\nsleep 300 & echo $! >> $P\nsleep 300 & echo $! >> $P\nwait\n", 3, "SIGTERM"},
		{"group ignores SIGTERM", "trap '' TERM\necho $$ > $P\nsleep 300 & echo $! >> $P\nwhile :; do sleep 1; done\n", 2, "SIGKILL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			r, h := newTestRunner(t, Config{Timeout: time.Second, KillGrace: 200 * time.Millisecond})
			pidFile := filepath.Join(t.TempDir(), "pids")
			writeScript(t, filepath.Join(r.cfg.Dir, "carrier.d"), "10-hang", "#!/bin/sh\nP="+pidFile+"\n"+tt.body, 0o755)
			c := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}
			err := r.Handle(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), "timed out") {
				t.Errorf("Handle() = %v, want a timeout", err)
			}
			waitGone(t, readPIDs(t, pidFile, tt.pids))
			fin := h.find("script finished")
			if len(fin) != 1 || fin[0].Level != slog.LevelWarn || fin[0].Attrs["timed_out"] != true || fin[0].Attrs["signal"] != tt.wantSignal {
				t.Errorf("script finished = %+v, want a warning with timed_out and signal %s", fin, tt.wantSignal)
			}
			if diff := cmp.Diff(r.Stats(), Stats{Runs: 1, Failures: 1, Timeouts: 1}); diff != "" {
				t.Errorf("Stats() (-got +want):\n%s", diff)
			}
		})
	}
}

// A script that exits while a background child keeps its stdout open does
// not hang the runner; the child is left alone.
func TestHandleBackgroundChildHoldsOutput(t *testing.T) {
	requireRoot(t)
	checkGoroutines(t)
	r, h := newTestRunner(t, Config{KillGrace: 300 * time.Millisecond})
	pidFile := filepath.Join(t.TempDir(), "pids")
	writeScript(t, filepath.Join(r.cfg.Dir, "carrier.d"), "10-bg",
		"#!/bin/sh\nsleep 300 &\necho $! > "+pidFile+"\necho started\n", 0o755)
	c := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}
	if err := r.Handle(context.Background(), c); err != nil {
		t.Errorf("Handle() = %v, want nil", err)
	}
	pids := readPIDs(t, pidFile, 1)
	if gone(pids[0]) {
		t.Error("the background child of a script that exited normally was killed")
	}
	if recs := h.find("script left a process holding its output open; stopped reading it"); len(recs) != 1 {
		t.Errorf("leftover warnings = %+v, want 1", recs)
	}
	if recs := h.find("script output"); len(recs) != 1 || recs[0].Attrs["line"] != "started" {
		t.Errorf("output records = %+v, want the line before exit", recs)
	}
}

func TestHandleCancelKillsProcessGroup(t *testing.T) {
	requireRoot(t)
	checkGoroutines(t)
	r, h := newTestRunner(t, Config{Timeout: time.Minute, KillGrace: 200 * time.Millisecond})
	tmp := t.TempDir()
	pidFile, ready, marker := filepath.Join(tmp, "pids"), filepath.Join(tmp, "ready"), filepath.Join(tmp, "next")
	dir := filepath.Join(r.cfg.Dir, "routable.d")
	writeScript(t, dir, "10-hang", "#!/bin/sh\necho $$ > "+pidFile+"\nsleep 300 &\necho $! >> "+pidFile+
		"\ntouch "+ready+"\nwait\n", 0o755)
	writeScript(t, dir, "20-next", "#!/bin/sh\ntouch "+marker+"\n", 0o755)
	c := event.Change{Type: event.OperStateChanged, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}, State: "routable"}}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- r.Handle(ctx, c) }()
	waitFile(t, ready)
	pids := readPIDs(t, pidFile, 2)
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Handle() = %v, want context.Canceled", err)
	}
	waitGone(t, pids)
	if exists(marker) {
		t.Error("a script started after the context ended")
	}
	fin := h.find("script finished")
	if len(fin) != 1 || fin[0].Attrs["canceled"] != true || fin[0].Attrs["signal"] != "SIGTERM" {
		t.Errorf("script finished = %+v, want one canceled by SIGTERM", fin)
	}
	if diff := cmp.Diff(r.Stats(), Stats{Runs: 1}); diff != "" {
		t.Errorf("Stats() (-got +want):\n%s", diff)
	}
}

func TestHandleLargeOutputIsCapped(t *testing.T) {
	requireRoot(t)
	checkGoroutines(t)
	const total, limit = 10_000_000, 1000
	r, h := newTestRunner(t, Config{MaxOutput: limit})
	writeScript(t, filepath.Join(r.cfg.Dir, "carrier.d"), "10-loud", `#!/bin/sh
head -c `+strconv.Itoa(total)+` /dev/zero | tr '\0' x
yes line | head -c `+strconv.Itoa(total)+` >&2
`, 0o755)
	c := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := r.Handle(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("handling 20 MB of output allocated %d bytes, want < 4 MiB", alloc)
	}

	logged := map[string]int{}
	records := map[string]int{}
	for _, rc := range h.find("script output") {
		logged[rc.Attrs["stream"].(string)] += len(rc.Attrs["line"].(string))
		records[rc.Attrs["stream"].(string)]++
	}
	if logged["stdout"] != limit || records["stdout"] != 1 {
		t.Errorf("stdout: %d bytes in %d records logged, want %d in 1 (cut)", logged["stdout"], records["stdout"], limit)
	}
	if logged["stderr"] != limit/5*4 || records["stderr"] != limit/5 { // "line\n" is 5 bytes
		t.Errorf("stderr: %d bytes in %d records logged, want %d in %d", logged["stderr"], records["stderr"], limit/5*4, limit/5)
	}
	trunc := h.find("script output truncated")
	if len(trunc) != 2 {
		t.Fatalf("truncation records = %+v, want one per stream", trunc)
	}
	for _, rc := range trunc {
		l, d := rc.Attrs["logged_bytes"].(int64), rc.Attrs["dropped_bytes"].(int64)
		if l != limit || l+d != total {
			t.Errorf("%s: logged %d + dropped %d bytes, want %d + %d", rc.Attrs["stream"], l, d, limit, total-limit)
		}
	}
}

func TestHandleDryRun(t *testing.T) {
	requireRoot(t)
	r, h := newTestRunner(t, Config{DryRun: true})
	marker := filepath.Join(t.TempDir(), "ran")
	script := writeScript(t, filepath.Join(r.cfg.Dir, "address-added.d"), "10-up", "#!/bin/sh\ntouch "+marker+"\n", 0o755)
	c := testChange()
	if err := r.Handle(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if exists(marker) {
		t.Error("a script ran in dry-run mode")
	}
	recs := h.find("dry run: would run script")
	if len(recs) != 1 {
		t.Fatalf("dry-run records = %+v, want 1", recs)
	}
	wantEnv, _ := r.Environ(c)
	wantJSON, _ := json.Marshal(NewPayload(c))
	if recs[0].Attrs["script"] != script || recs[0].Attrs["json"] != string(wantJSON) {
		t.Errorf("dry-run record = %+v", recs[0])
	}
	if diff := cmp.Diff(recs[0].Attrs["env"], any(wantEnv)); diff != "" {
		t.Errorf("dry-run env (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(r.Stats(), Stats{}); diff != "" {
		t.Errorf("Stats() (-got +want):\n%s", diff)
	}
}

func TestHandleNothingToRun(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
	}{
		{"missing root", func(t *testing.T, root string) {}},
		{"empty directory", func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, "carrier.d"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"only skipped files", func(t *testing.T, root string) {
			dir := filepath.Join(root, "carrier.d")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			writeScript(t, dir, ".x", okScript, 0o755)
			writeScript(t, dir, "x~", okScript, 0o755)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "netevd")
			tt.setup(t, root)
			h := newRecorder()
			r, err := New(Config{Dir: root}, slog.New(h))
			if err != nil {
				t.Fatal(err)
			}
			// A hostile name does not matter when there is nothing to run.
			c := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "a;b"}}}
			if err := r.Handle(context.Background(), c); err != nil {
				t.Errorf("Handle() = %v, want nil", err)
			}
			if diff := cmp.Diff(r.Stats(), Stats{}); diff != "" {
				t.Errorf("Stats() (-got +want):\n%s", diff)
			}
			for _, rc := range *h.recs {
				if rc.Level > slog.LevelDebug {
					t.Errorf("unexpected log record %+v", rc)
				}
			}
		})
	}
}

func TestHandleRenameIsLogged(t *testing.T) {
	r, h := newTestRunner(t, Config{})
	c := event.Change{Type: event.LinkRenamed, OldName: "eth0", Link: event.LinkState{Link: event.Link{Index: 4, Name: "wan0"}}}
	if err := r.Handle(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	recs := h.find("link renamed; no scripts run for renames")
	want := map[string]any{"component": "script", "old_name": `"eth0"`, "name": `"wan0"`, "ifindex": int64(4)}
	if len(recs) != 1 || recs[0].Level != slog.LevelInfo {
		t.Fatalf("rename records = %+v, want one at info", recs)
	}
	if diff := cmp.Diff(recs[0].Attrs, want); diff != "" {
		t.Errorf("rename record (-got +want):\n%s", diff)
	}
}

// With nothing to run, Handle's allocations do not depend on how often it
// ran (nothing accumulates) and stay small. Under the race detector only
// the bound is checked.
func TestHandleNoScriptsAllocations(t *testing.T) {
	root := t.TempDir()
	r, err := New(Config{Dir: root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.EnsureDirs(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	empty := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}
	missing := event.Change{Type: event.OperStateChanged, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}, State: "routable"}}
	if err := os.Remove(filepath.Join(root, "routable.d")); err != nil {
		t.Fatal(err)
	}
	none := event.Change{Type: event.RuleDeleted}
	for _, tc := range []struct {
		name string
		c    event.Change
		max  float64
	}{{"empty directory", empty, 12}, {"missing directory", missing, 12}, {"no directory", none, 0}} {
		first := testing.AllocsPerRun(100, func() { r.Handle(ctx, tc.c) })
		second := testing.AllocsPerRun(1000, func() { r.Handle(ctx, tc.c) })
		if (first != second && !raceEnabled) || second > tc.max {
			t.Errorf("%s: %v then %v allocations per Handle, want the same and at most %v", tc.name, first, second, tc.max)
		}
	}
}

// Manager states run <value>.d even where the directory is not one of the
// standard set (NetworkManager's unavailable.d, networkd's
// degraded-carrier.d), and the manager itself runs manager.d with no link
// name to check.
func TestHandleManagerDirectories(t *testing.T) {
	requireRoot(t)
	r, _ := newTestRunner(t, Config{})
	out := filepath.Join(t.TempDir(), "ran")
	for _, d := range []string{"unavailable.d", "manager.d"} {
		dir := filepath.Join(r.cfg.Dir, d)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeScript(t, dir, "10-rec", "#!/bin/sh\necho \""+d+" $LINK $STATE $OLD_STATE\" >> "+out+"\n", 0o755)
	}
	mgr := &event.Manager{Backend: "NetworkManager", Index: 10, States: map[string]string{"DeviceState": "unavailable"}}
	dev := event.Change{ID: 1, Type: event.ManagerStateChanged, Backend: "NetworkManager", Property: "DeviceState",
		Value: "unavailable", OldValue: "activated", Manager: mgr,
		Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}, Manager: mgr}}
	self := &event.Manager{Backend: "NetworkManager", States: map[string]string{"NMState": "connected-global"}}
	whole := event.Change{ID: 2, Type: event.ManagerStateChanged, Backend: "NetworkManager", Property: "NMState",
		Value: "connected-global", Manager: self, Link: event.LinkState{Manager: self}}
	for _, c := range []event.Change{dev, whole} {
		if err := r.Handle(t.Context(), c); err != nil {
			t.Fatalf("Handle(%s): %v", c.Value, err)
		}
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "unavailable.d veth0 unavailable activated\nmanager.d  connected-global \n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("scripts ran (-want +got):\n%s", diff)
	}
}

// A manager's description of the link is fetched only when a script will
// run, and reaches it as $JSON; a failing description leaves JSON out.
func TestHandleDescribesOnlyForScripts(t *testing.T) {
	requireRoot(t)
	r, logs := newTestRunner(t, Config{})
	calls := 0
	fail := false
	mgr := &event.Manager{Backend: "systemd-networkd", Index: 10, States: map[string]string{"OperationalState": "routable"},
		Describe: func(context.Context) (string, error) {
			calls++
			if fail {
				return "", errors.New("networkd is gone")
			}
			return `{"Index":10}`, nil
		}}
	c := event.Change{ID: 7, Type: event.ManagerStateChanged, Backend: "systemd-networkd", Property: "OperationalState",
		Value: "routable", Manager: mgr, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}, Manager: mgr}}

	if err := r.Handle(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Fatalf("Describe called %d times with no script to run, want 0", calls)
	}

	out := filepath.Join(t.TempDir(), "json")
	writeScript(t, filepath.Join(r.cfg.Dir, "routable.d"), "10-json", "#!/bin/sh\nprintf '%s' \"${JSON-unset}\" > "+out+"\n", 0o755)
	if err := r.Handle(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != `{"Index":10}` || calls != 1 {
		t.Errorf("script saw JSON %q after %d Describe calls, want {\"Index\":10} after 1", got, calls)
	}
	if _, ok := mgr.Env["JSON"]; ok {
		t.Errorf("the report was modified: %v", mgr.Env)
	}

	fail = true
	if err := r.Handle(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != "unset" {
		t.Errorf("after a failed Describe the script saw JSON %q, want it unset", got)
	}
	if len(logs.find("manager did not describe the link; scripts run without JSON")) != 1 {
		t.Errorf("the failed Describe was not logged once")
	}
}
