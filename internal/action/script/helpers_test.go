package script

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

// rec is one recorded log record with its attributes flattened.
type rec struct {
	Level slog.Level
	Msg   string
	Attrs map[string]any
}

// recorder is a slog.Handler that keeps every record, for assertions.
type recorder struct {
	mu    *sync.Mutex
	recs  *[]rec
	attrs []slog.Attr
}

func newRecorder() *recorder { return &recorder{mu: new(sync.Mutex), recs: new([]rec)} }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	m := make(map[string]any)
	for _, a := range h.attrs {
		m[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, rec{Level: r.Level, Msg: r.Message, Attrs: m})
	return nil
}

func (h *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{mu: h.mu, recs: h.recs, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *recorder) WithGroup(string) slog.Handler { return h }

// find returns the records with message msg.
func (h *recorder) find(msg string) []rec {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []rec
	for _, r := range *h.recs {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// requireRoot skips tests that need files owned by root (only root can
// create them) or chown.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: scripts must be owned by root to run, and the tests chown files")
	}
}

// newTestRunner returns a Runner on a fresh scripts root with the standard
// directories, and the recorder receiving its logs.
func newTestRunner(t testing.TB, cfg Config) (*Runner, *recorder) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "netevd")
	}
	h := newRecorder()
	r, err := New(cfg, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.EnsureDirs(); err != nil {
		t.Fatal(err)
	}
	return r, h
}

// writeScript writes an executable (0755 unless mode says otherwise)
// script into dir and returns its path.
func writeScript(t testing.TB, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// testChange is an AddressAdded change on veth0 with IPv4 and IPv6
// addresses and default routes.
func testChange() event.Change {
	return event.Change{
		ID:      42,
		Type:    event.AddressAdded,
		Time:    time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC),
		Backend: "none",
		Link: event.LinkState{
			Link: event.Link{
				Index: 10, Name: "veth0", Kind: "veth", MAC: "02:00:00:00:00:01", MTU: 1500,
				AdminUp: true, Carrier: true, OperState: "up",
			},
			Addrs: []event.Addr{
				{Index: 10, Prefix: netip.MustParsePrefix("10.0.0.1/24")},
				{Index: 10, Prefix: netip.MustParsePrefix("127.0.0.2/8"), Scope: event.ScopeHost},
				{Index: 10, Prefix: netip.MustParsePrefix("192.0.2.7/32")},
				{Index: 10, Prefix: netip.MustParsePrefix("2001:db8::1/64")},
				{Index: 10, Prefix: netip.MustParsePrefix("fe80::1/64"), Scope: event.ScopeLink, Flags: 0x80},
			},
			Routes: []event.Route{
				{Family: unix.AF_INET, Table: 100, Dst: netip.MustParsePrefix("0.0.0.0/0"),
					Gateway: netip.MustParseAddr("10.0.0.253"), OutIndex: 10, Protocol: 4, Type: 1},
				{Family: unix.AF_INET, Table: event.TableMain, Dst: netip.MustParsePrefix("0.0.0.0/0"),
					Gateway: netip.MustParseAddr("10.0.0.254"), OutIndex: 10, Protocol: 16, Type: 1, Priority: 100},
				{Family: unix.AF_INET6, Table: event.TableMain, Dst: netip.MustParsePrefix("::/0"),
					Gateway: netip.MustParseAddr("fe80::fe"), OutIndex: 10, Protocol: 9, Type: 1, Priority: 1024},
			},
			State: event.StateRoutable,
		},
		OldState: event.StateDegraded,
		Addr:     &event.Addr{Index: 10, Prefix: netip.MustParsePrefix("10.0.0.1/24")},
	}
}

// gone reports whether pid no longer runs (it does not exist, or it is a
// zombie waiting for a parent that does not reap it).
func gone(pid int) bool {
	if err := unix.Kill(pid, 0); err == unix.ESRCH {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// waitGone polls until every pid is gone, for at most 10s.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !gone(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d still running", pid)
				unix.Kill(pid, unix.SIGKILL) // ours: started by the script under test
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// checkGoroutines fails the test if, at its end, more goroutines run than
// at the call (polling briefly: a goroutine that closed a channel may
// still be on its way out).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines at the start, %d at the end:\n%s",
					before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
