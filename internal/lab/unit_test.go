package lab

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/netevd/netevd/examples"
)

func TestCheckOptions(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "netevd")
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		wantErr string // "" means valid
	}{
		{"executable", Options{Binary: exe}, ""},
		{"no binary", Options{}, "no netevd binary given"},
		{"missing", Options{Binary: filepath.Join(dir, "nope")}, "no such file"},
		{"not executable", Options{Binary: plain}, "is not an executable file"},
		{"directory", Options{Binary: dir}, "is not an executable file"},
		{"negative steps", Options{Binary: exe, Steps: -1}, "must not be negative"},
		{"negative delay", Options{Binary: exe, Delay: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkOptions(&tt.opts)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (err == nil) || !strings.Contains(got, tt.wantErr) {
				t.Fatalf("checkOptions() = %q, want error containing %q", got, tt.wantErr)
			}
		})
	}
	t.Run("relative path made absolute", func(t *testing.T) {
		t.Chdir(dir)
		opts := Options{Binary: "./netevd"}
		if err := checkOptions(&opts); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(opts.Binary, exe); diff != "" {
			t.Errorf("Binary (-got +want):\n%s", diff)
		}
	})
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	config, err := writeFiles(dir, BackendNone)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	want := `# Written by netevd lab for a throw-away network namespace.
system:
  scripts_dir: "` + dir + `/scripts"
  log_format: text
  log_level: info
  backend: none
api:
  enabled: false
`
	if diff := cmp.Diff(string(got), want); diff != "" {
		t.Errorf("config (-got +want):\n%s", diff)
	}

	// Every embedded script is copied as is, 0755 in 0755 directories,
	// which the daemon's ownership and permission checks accept.
	var copied int
	err = fs.WalkDir(examples.Scripts, "scripts", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		info, err := os.Stat(dst)
		if err != nil {
			return err
		}
		if got, want := info.Mode().Perm(), fs.FileMode(0o755); got != want {
			t.Errorf("%s: mode %v, want %v", dst, got, want)
		}
		if d.IsDir() {
			return nil
		}
		copied++
		src, err := fs.ReadFile(examples.Scripts, p)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(dst)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(string(got), string(src)); diff != "" {
			t.Errorf("%s (-got +want):\n%s", dst, diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if copied < 9 {
		t.Errorf("copied %d scripts, want the 9 examples", copied)
	}
}

func TestReadyLine(t *testing.T) {
	tests := []struct {
		line string
		want bool
	}{
		{`time=2026-01-02T03:04:05Z level=INFO msg=ready links=2`, true},
		{`time=2026-01-02T03:04:05Z level=INFO msg=ready`, true},
		{`{"time":"2026-01-02T03:04:05Z","level":"INFO","msg":"ready","links":2}`, true},
		{`level=INFO msg="ready soon"`, false},
		{`level=INFO msg=readying`, false},
		{`level=INFO msg=started note=msg=ready-ish`, false},
		{`{"msg":"not ready"}`, false},
		{``, false},
	}
	for _, tt := range tests {
		if got := readyLine(tt.line); got != tt.want {
			t.Errorf("readyLine(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func TestLineWriter(t *testing.T) {
	var out strings.Builder
	w := &lineWriter{out: &syncWriter{w: &out}, prefix: "daemon | ", ready: make(chan struct{})}
	writes := []string{"level=INFO msg=star", "ting\r\nlevel=INFO msg=ready\n", "a\nb\n\nlevel=INFO msg=ready\n", "tail"}
	for _, s := range writes {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	select {
	case <-w.ready:
	default:
		t.Error("ready not closed after a ready line")
	}
	w.flush()
	want := "daemon | level=INFO msg=starting\ndaemon | level=INFO msg=ready\ndaemon | a\ndaemon | b\ndaemon | \n" +
		"daemon | level=INFO msg=ready\ndaemon | tail\n"
	if diff := cmp.Diff(out.String(), want); diff != "" {
		t.Errorf("output (-got +want):\n%s", diff)
	}
}

func TestLineWriterSplitsLongLines(t *testing.T) {
	var out strings.Builder
	w := &lineWriter{out: &syncWriter{w: &out}, prefix: "> ", ready: make(chan struct{})}
	long := strings.Repeat("x", maxLine+10)
	w.Write([]byte(long + "\n"))
	want := "> " + long[:maxLine] + "\n> " + long[maxLine:] + "\n"
	if got := out.String(); got != want {
		t.Errorf("got %d bytes %q..., want %d bytes", len(got), got[:min(len(got), 20)], len(want))
	}
}

func TestDaemonEnv(t *testing.T) {
	got := daemonEnv([]string{"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=3", "LISTEN_PID=1", "HOME=/root", "WATCHDOG_USEC=1"})
	if diff := cmp.Diff(got, []string{"PATH=/bin", "HOME=/root"}); diff != "" {
		t.Errorf("daemonEnv (-got +want):\n%s", diff)
	}
}
