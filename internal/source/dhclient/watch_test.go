package dhclient

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
)

// These tests use real inotify and real time; they wait for what must
// happen (generously) and never for what must not.

const waitTimeout = 20 * time.Second

// runReal runs a Source with real file watching and fake interfaces until
// the test ends.
func runReal(t *testing.T, opts Options, links map[string]int) (*Source, <-chan event.Event) {
	t.Helper()
	opts.Debounce = 5 * time.Millisecond
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := New(opts, log)
	if err != nil {
		t.Fatal(err)
	}
	src.ifindex = func(name string) (int, error) {
		if i, ok := links[name]; ok {
			return i, nil
		}
		return 0, fmt.Errorf("no such network interface")
	}
	out := make(chan event.Event)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return src, out
}

// expect waits for the next event and checks its summary.
func expect(t *testing.T, out <-chan event.Event, want string) {
	t.Helper()
	select {
	case ev := <-out:
		if got := summary(t, ev); got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no event after %s, want %q", waitTimeout, want)
	}
}

// waitScan waits until the source has read the files after the call.
func waitScan(t *testing.T, src *Source, before uint64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for src.Stats().Scans <= before {
		if time.Now().After(deadline) {
			t.Fatalf("no scan after %s", waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWatchFileChanges: in-place writes, appends (what dhclient does),
// write-and-rename (what other tools do) and removal are all seen, and an
// unchanged rewrite is not reported.
func TestWatchFileChanges(t *testing.T) {
	nettest.CheckGoroutines(t)
	dir := t.TempDir()
	src, out := runReal(t, Options{Dirs: []string{dir}}, map[string]int{"eth0": 2})
	expect(t, out, "sync initial=true")
	path := filepath.Join(dir, "dhclient.leases")
	exp := time.Now().Add(time.Hour)

	writeFile(t, path, block("eth0", "192.0.2.1", exp))
	expect(t, out, "eth0[2] routable 192.0.2.1")

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(block("eth0", "192.0.2.2", exp)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	expect(t, out, "eth0[2] routable 192.0.2.2 refresh")

	third := block("eth0", "192.0.2.3", exp)
	writeFile(t, path+".new", third)
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	expect(t, out, "eth0[2] routable 192.0.2.3 refresh")

	// The same content again, truncated and written in place: no report.
	// If there were one, it would come before the next.
	before := src.Stats().Scans
	writeFile(t, path, third)
	waitScan(t, src, before)
	writeFile(t, path, block("eth0", "192.0.2.4", exp))
	expect(t, out, "eth0[2] routable 192.0.2.4 refresh")

	// Files that are not dhclient's do not count.
	writeFile(t, filepath.Join(dir, "dhcpd.leases"), block("eth1", "192.0.2.9", exp))
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expect(t, out, "eth0[2] gone")
}

// TestWatchDirectories: directories that do not exist yet are waited for,
// and a directory removed or renamed away and created again is watched
// again.
func TestWatchDirectories(t *testing.T) {
	nettest.CheckGoroutines(t)
	base := t.TempDir()
	leaseDir := filepath.Join(base, "var", "lib", "dhcp")
	explicit := filepath.Join(base, "custom", "dir", "my.lease")
	_, out := runReal(t, Options{Dirs: []string{leaseDir}, Files: []string{explicit}}, map[string]int{"eth0": 2, "eth1": 3})
	expect(t, out, "sync initial=true")
	exp := time.Now().Add(time.Hour)

	mkdir := func(d string) {
		t.Helper()
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mkdir(leaseDir)
	writeFile(t, filepath.Join(leaseDir, "dhclient.eth0.leases"), block("eth0", "192.0.2.1", exp))
	expect(t, out, "eth0[2] routable 192.0.2.1")

	mkdir(filepath.Dir(explicit))
	writeFile(t, explicit, block("eth1", "198.51.100.1", exp))
	expect(t, out, "eth1[3] routable 198.51.100.1")

	if err := os.RemoveAll(filepath.Join(base, "var")); err != nil {
		t.Fatal(err)
	}
	expect(t, out, "eth0[2] gone")

	mkdir(leaseDir)
	writeFile(t, filepath.Join(leaseDir, "dhclient.leases"), block("eth0", "192.0.2.2", exp))
	expect(t, out, "eth0[2] routable 192.0.2.2")

	if err := os.Rename(leaseDir, leaseDir+".old"); err != nil {
		t.Fatal(err)
	}
	expect(t, out, "eth0[2] gone")
	writeFile(t, filepath.Join(leaseDir+".old", "dhclient.leases"), block("eth0", "192.0.2.8", exp))
	mkdir(leaseDir)
	writeFile(t, filepath.Join(leaseDir, "dhclient.leases"), block("eth0", "192.0.2.3", exp))
	expect(t, out, "eth0[2] routable 192.0.2.3")

	if err := os.Remove(explicit); err != nil {
		t.Fatal(err)
	}
	expect(t, out, "eth1[3] gone")
}

func TestWatcherRelevance(t *testing.T) {
	fw := &fsWatcher{
		dirs:    map[string]bool{"/var/lib/dhcp": true},
		files:   map[string]bool{"/etc/x/my.lease": true},
		targets: []string{"/var/lib/dhcp", "/etc/x"},
	}
	tests := []struct {
		path               string
		relevant, onTarget bool
	}{
		{"/var/lib/dhcp/dhclient.leases", true, false},
		{"/var/lib/dhcp/dhclient6.eth0.leases", true, false},
		{"/var/lib/dhcp/dhcpd.leases", false, false},
		{"/var/lib/dhcp/dhclient.leases.new", false, false},
		{"/etc/x/my.lease", true, false},
		{"/etc/x/dhclient.leases", false, false}, // only the named file counts there
		{"/etc/x/other", false, false},
		{"/var/lib/dhcp", false, true},
		{"/var/lib", false, true},
		{"/var", false, true},
		{"/var/lib/dhcpcd", false, false},
		{"/etc", false, true},
		{"/etc/xy", false, false},
	}
	for _, tt := range tests {
		if got := fw.relevant(tt.path); got != tt.relevant {
			t.Errorf("relevant(%q) = %v, want %v", tt.path, got, tt.relevant)
		}
		if got := fw.onTargetPath(tt.path); got != tt.onTarget {
			t.Errorf("onTargetPath(%q) = %v, want %v", tt.path, got, tt.onTarget)
		}
	}
}
