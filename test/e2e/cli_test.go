package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netevd/netevd/internal/nettest"
)

// runCLI runs the netevd binary with args and returns stdout, stderr and
// the exit code.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(netevdBin, args...)
	cmd.Env = daemonEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run netevd %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestValidate checks that `netevd validate` lists every problem of a file
// with file:line and exits 1, and accepts a good file.
func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	good := filepath.Join(dir, "good.yaml")
	files := map[string]string{
		bad: `system:
  log_level: loud
  backend: none
  bogus_key: 1
scripts:
  timeout: -1s
  kill_grace: abc
monitoring:
  ignore: ["[a"]
`,
		good: "system:\n  backend: none\n  scripts_dir: /tmp/netevd-e2e-unused\nscripts:\n  timeout: 500ms\n",
	}
	for p, text := range files {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		file     string
		wantCode int
		want     []string // substrings of stderr
	}{
		{
			name: "every problem with file:line", file: bad, wantCode: 1,
			want: []string{
				bad + ":2: system.log_level",
				bad + ":4: unknown key \"bogus_key\"",
				bad + ":6: scripts.timeout",
				bad + ":7: scripts.kill_grace",
				bad + ":9: monitoring.ignore[0]",
				"5 problem(s)",
			},
		},
		{name: "good file", file: good, wantCode: 0, want: []string{good + ": ok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, "validate", tc.file)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestCheckScripts checks `netevd check-scripts` on one directory and on
// the scripts root: a refused script is listed with its reason and the
// exit code is 1; a clean directory exits 0.
func TestCheckScripts(t *testing.T) {
	t.Parallel()
	nettest.RequirePrivileged(t) // scripts must be owned by root to be trusted
	root := filepath.Join(t.TempDir(), "scripts")
	write := func(rel string, mode os.FileMode) string {
		p := filepath.Join(root, rel)
		mkdir0755(t, filepath.Dir(p))
		if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("carrier.d/10-ok", 0o755)
	world := write("carrier.d/20-world", 0o777)
	backup := write("carrier.d/30-old~", 0o755)
	clean := write("routable.d/10-ok", 0o755)

	stdout, stderr, code := runCLI(t, "check-scripts", filepath.Join(root, "carrier.d"))
	if code != 1 {
		t.Errorf("check-scripts carrier.d: exit code %d, want 1; stderr: %s", code, stderr)
	}
	wantLines := map[string][]string{
		ok:     {"yes", "ok"},
		world:  {"no", "world-writable"},
		backup: {"skip", "backup"},
	}
	for path, words := range wantLines {
		line := ""
		for _, l := range strings.Split(stdout, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == path {
				line = l
			}
		}
		for _, w := range words {
			if !strings.Contains(line, w) {
				t.Errorf("check-scripts: line for %s is %q, want it to say %q; output:\n%s", path, line, w, stdout)
			}
		}
	}

	stdout, _, code = runCLI(t, "check-scripts", "-o", "json", root)
	if code != 1 {
		t.Errorf("check-scripts -o json ROOT: exit code %d, want 1", code)
	}
	var reports []struct {
		Dir     string `json:"dir"`
		Scripts []struct {
			Path   string `json:"path"`
			Runs   bool   `json:"runs"`
			Reason string `json:"reason"`
		} `json:"scripts"`
	}
	if err := json.Unmarshal([]byte(stdout), &reports); err != nil {
		t.Fatalf("check-scripts -o json: %v\n%s", err, stdout)
	}
	found := false
	for _, r := range reports {
		for _, s := range r.Scripts {
			if s.Path == world {
				found = true
				if s.Runs || !strings.Contains(s.Reason, "world-writable") {
					t.Errorf("json: %s runs=%v reason=%q, want refused as world-writable", s.Path, s.Runs, s.Reason)
				}
			}
		}
	}
	if !found {
		t.Errorf("json output does not list %s:\n%s", world, stdout)
	}

	if _, stderr, code := runCLI(t, "check-scripts", filepath.Dir(clean)); code != 0 {
		t.Errorf("check-scripts on a clean directory: exit code %d, want 0; stderr: %s", code, stderr)
	}
}
