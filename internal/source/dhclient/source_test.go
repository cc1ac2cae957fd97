package dhclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
)

// fakeWatcher is a watcher the test signals by hand.
type fakeWatcher struct{ ch chan struct{} }

func (f *fakeWatcher) Changes() <-chan struct{} { return f.ch }
func (f *fakeWatcher) Close() error             { return nil }

// harness runs a Source on a temp directory with a fake watcher and fake
// interfaces, inside a synctest bubble: time is fake, and synctest.Wait
// says when the source has nothing left to do.
type harness struct {
	t   *testing.T
	dir string
	src *Source
	w   *fakeWatcher
	out chan event.Event

	cancel context.CancelFunc
	done   chan error

	mu    sync.Mutex     // guards links
	links map[string]int // interface name → ifindex
}

const testDebounce = 200 * time.Millisecond

func newHarness(t *testing.T, links map[string]int) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), w: &fakeWatcher{ch: make(chan struct{}, 1)},
		out: make(chan event.Event, 100), links: links, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := New(Options{Dirs: []string{h.dir}, Debounce: testDebounce}, log)
	if err != nil {
		t.Fatal(err)
	}
	src.ifindex = func(name string) (int, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if i, ok := h.links[name]; ok {
			return i, nil
		}
		return 0, fmt.Errorf("route ip+net: no such network interface")
	}
	src.watch = func(dirs, files []string, _ *slog.Logger) (watcher, error) { return h.w, nil }
	h.src = src
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.src.Run(ctx, h.out) }()
	h.t.Cleanup(h.stop)
	synctest.Wait()
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

func (h *harness) setLink(name string, index int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if index == 0 {
		delete(h.links, name)
	} else {
		h.links[name] = index
	}
}

// write writes a file in the lease directory and signals the watcher.
func (h *harness) write(name, content string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	h.signal()
}

func (h *harness) signal() {
	select {
	case h.w.ch <- struct{}{}:
	default:
	}
}

// settle lets the debounce (and any re-reads) run out and waits until the
// source is idle.
func (h *harness) settle() {
	time.Sleep(10 * testDebounce)
	synctest.Wait()
}

// events returns the events sent so far and not yet returned, summarised.
func (h *harness) events() []string {
	h.t.Helper()
	var out []string
	for {
		select {
		case ev := <-h.out:
			out = append(out, summary(h.t, ev))
		default:
			return out
		}
	}
}

// manager returns the Manager of the next event.
func (h *harness) next() *event.Manager {
	h.t.Helper()
	select {
	case ev := <-h.out:
		return ev.Manager
	default:
		h.t.Fatal("no event")
		return nil
	}
}

// summary describes a report in one line and checks what every event must
// be.
func summary(tb testing.TB, ev event.Event) string {
	tb.Helper()
	if ev.Source != "dhclient" {
		tb.Errorf("event from %q, want dhclient", ev.Source)
	}
	if ev.Kind == event.KindSync {
		if ev.Dump != nil {
			tb.Errorf("sync with a dump")
		}
		return fmt.Sprintf("sync initial=%v", ev.Initial)
	}
	m := ev.Manager
	if ev.Kind != event.KindManager || m == nil || m.Backend != "dhclient" {
		tb.Fatalf("event %+v: want a dhclient manager report", ev)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s[%d]", m.Name, m.Index)
	if m.Gone {
		b.WriteString(" gone")
	} else {
		fmt.Fprintf(&b, " %s %s", m.States["Lease"], strings.TrimSpace(m.Env["DHCP_ADDRESS"]+" "+m.Env["DHCP6_ADDRESS"]))
	}
	if m.Refresh {
		b.WriteString(" refresh")
	}
	if ev.Initial {
		b.WriteString(" initial")
	}
	return b.String()
}

// dhcpTime writes t as dhclient does: weekday, date and time in UTC.
func dhcpTime(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%d %s", t.Weekday(), t.Format("2006/01/02 15:04:05"))
}

// block is a lease block for iface with the address, expiring at expire,
// with extra statements.
func block(iface, addr string, expire time.Time, extra ...string) string {
	return fmt.Sprintf("lease {\n  interface %q;\n  fixed-address %s;\n  %s\n  renew %s;\n  expire %s;\n}\n",
		iface, addr, strings.Join(extra, "\n  "), dhcpTime(expire.Add(-time.Hour/2)), dhcpTime(expire))
}

func TestRunStartup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"eth0": 2, "eth1": 3})
		now := time.Now()
		h.write("dhclient.leases", block("eth0", "192.0.2.10", now.Add(time.Hour), `option routers 192.0.2.1;`)+
			block("eth1", "198.51.100.10", now.Add(-time.Minute))+
			block("ghost0", "203.0.113.10", now.Add(time.Hour)))
		h.write("dhcpd.leases", block("eth0", "192.0.2.99", now.Add(time.Hour))) // a server's file: not read
		h.start()
		want := []string{"eth0[2] routable 192.0.2.10 initial", "eth1[3] expired 198.51.100.10 initial", "sync initial=true"}
		if diff := cmp.Diff(h.events(), want); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}
		h.settle() // the signal from writing before the start
		if got := h.events(); len(got) > 0 {
			t.Errorf("events after the replay with nothing changed: %q", got)
		}
	})
}

// TestRunStartupEmpty: with no lease files the source is ready at once.
func TestRunStartupEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{})
		h.start()
		if diff := cmp.Diff(h.events(), []string{"sync initial=true"}); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}
	})
}

// TestRunExpiry: when the current lease expires the next newest unexpired
// one takes over; when none is left the interface's lease has expired.
func TestRunExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"eth0": 2})
		now := time.Now()
		h.write("dhclient.eth0.leases",
			block("eth0", "192.0.2.1", now.Add(60*time.Second), `option domain-name-servers 192.0.2.53;`)+
				block("eth0", "192.0.2.2", now.Add(10*time.Second), `option domain-name-servers 192.0.2.53;`))
		h.start()
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.2 initial", "sync initial=true"}); diff != "" {
			t.Errorf("startup (-got +want):\n%s", diff)
		}

		time.Sleep(time.Until(now.Add(10 * time.Second)))
		synctest.Wait()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.1 refresh"}); diff != "" {
			t.Errorf("after the newer lease expired (-got +want):\n%s", diff)
		}

		time.Sleep(time.Until(now.Add(60 * time.Second)))
		synctest.Wait()
		got := h.next()
		if s := summary(t, event.Event{Source: "dhclient", Kind: event.KindManager, Manager: got}); s != "eth0[2] expired 192.0.2.2" {
			t.Errorf("after both expired: %s, want eth0[2] expired 192.0.2.2", s)
		}
		if got.DNS != nil || got.Domains != nil || got.Hostname != "" {
			t.Errorf("an expired lease carries resolver data: %v %v %q", got.DNS, got.Domains, got.Hostname)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := h.events(); len(got) > 0 {
			t.Errorf("events with nothing left to expire: %q", got)
		}

		// A new lease after the expiry runs routable.d again.
		exp3 := time.Now().Add(time.Hour)
		h.write("dhclient.eth0.leases", block("eth0", "192.0.2.3", exp3))
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.3"}); diff != "" {
			t.Errorf("new lease (-got +want):\n%s", diff)
		}

		// An hour away: the source looks again every maxExpiryWait on the
		// way (the monotonic clock stops in suspend) and reports nothing
		// until the lease has expired.
		before := h.src.Stats().Scans
		time.Sleep(time.Until(exp3) - time.Second)
		synctest.Wait()
		if got := h.events(); len(got) > 0 {
			t.Errorf("events before the expiry: %q", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] expired 192.0.2.3"}); diff != "" {
			t.Errorf("expiry an hour away (-got +want):\n%s", diff)
		}
		if got := h.src.Stats().Scans - before; got < uint64(time.Hour/maxExpiryWait) {
			t.Errorf("%d scans in an hour, want at least %d", got, time.Hour/maxExpiryWait)
		}
	})
}

// TestRunChanges: a renewal that moves only the times is reported without
// Refresh, a rewrite that changes nothing is not reported, new data is
// reported with Refresh, a removed file is Gone.
func TestRunChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"eth0": 2})
		now := time.Now()
		first := block("eth0", "192.0.2.1", now.Add(time.Hour), `option domain-name-servers 192.0.2.53;`)
		h.write("dhclient.leases", first)
		h.start()
		h.settle()
		h.events()

		steps := []struct {
			name    string
			content string // "" removes the file
			want    []string
		}{
			{"renewal with the same data", first + block("eth0", "192.0.2.1", now.Add(2*time.Hour), `option domain-name-servers 192.0.2.53;`),
				[]string{"eth0[2] routable 192.0.2.1"}},
			{"the same file again", first + block("eth0", "192.0.2.1", now.Add(2*time.Hour), `option domain-name-servers 192.0.2.53;`),
				nil},
			{"rewritten, compacted, same current lease", block("eth0", "192.0.2.1", now.Add(2*time.Hour), `option domain-name-servers 192.0.2.53;`),
				nil},
			{"renewal with a new DNS server", block("eth0", "192.0.2.1", now.Add(3*time.Hour), `option domain-name-servers 192.0.2.54;`),
				[]string{"eth0[2] routable 192.0.2.1 refresh"}},
			{"a new address", block("eth0", "192.0.2.7", now.Add(3*time.Hour), `option domain-name-servers 192.0.2.54;`),
				[]string{"eth0[2] routable 192.0.2.7 refresh"}},
			{"file removed", "", []string{"eth0[2] gone"}},
			{"back", first, []string{"eth0[2] routable 192.0.2.1"}},
		}
		for _, st := range steps {
			if st.content == "" {
				if err := os.Remove(filepath.Join(h.dir, "dhclient.leases")); err != nil {
					t.Fatal(err)
				}
				h.signal()
			} else {
				h.write("dhclient.leases", st.content)
			}
			h.settle()
			if diff := cmp.Diff(h.events(), st.want); diff != "" {
				t.Errorf("%s: events (-got +want):\n%s", st.name, diff)
			}
		}
		if m := h.src.Stats(); m.ParseErrors != 0 {
			t.Errorf("parse errors: %d", m.ParseErrors)
		}
	})
}

// TestRunMidWrite: a file caught while dhclient rewrites it (empty, or
// ending inside a block) is read again before it is believed, so the
// interface does not flap.
func TestRunMidWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"eth0": 2})
		now := time.Now()
		old := block("eth0", "192.0.2.1", now.Add(time.Hour))
		renewed := block("eth0", "192.0.2.1", now.Add(time.Hour), `option host-name "h1";`)
		h.write("dhclient.leases", old)
		h.start()
		h.events()

		// Truncated in place, then (within the re-reads) written again.
		h.write("dhclient.leases", "")
		time.Sleep(testDebounce + testDebounce/2)
		synctest.Wait()
		h.write("dhclient.leases", renewed)
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.1 refresh"}); diff != "" {
			t.Errorf("rewrite in place (-got +want):\n%s", diff)
		}

		// Half a block appended: the complete ones still count meanwhile.
		half := renewed + "lease {\n  interface \"eth0\";\n  fixed-address 192.0.2.2;\n"
		h.write("dhclient.leases", half)
		time.Sleep(testDebounce + testDebounce/2)
		synctest.Wait()
		if got := h.events(); len(got) > 0 {
			t.Errorf("events for a file ending mid-block: %q", got)
		}
		h.write("dhclient.leases", renewed+block("eth0", "192.0.2.2", now.Add(time.Hour)))
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.2 refresh"}); diff != "" {
			t.Errorf("completed append (-got +want):\n%s", diff)
		}
		if m := h.src.Stats(); m.ParseErrors != 0 {
			t.Errorf("parse errors logged for files caught mid-write: %d", m.ParseErrors)
		}

		// A file that stays cut off is believed after the re-reads: its
		// complete blocks count, the cut one is an error.
		h.write("dhclient.leases", half)
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.1 refresh"}); diff != "" {
			t.Errorf("stays cut off (-got +want):\n%s", diff)
		}
		if m := h.src.Stats(); m.ParseErrors != 1 {
			t.Errorf("parse errors: %d, want 1", m.ParseErrors)
		}

		// And a file that stays empty has no lease.
		h.write("dhclient.leases", "")
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] gone"}); diff != "" {
			t.Errorf("stays empty (-got +want):\n%s", diff)
		}
	})
}

// TestRunInterfaces: a lease for an interface that does not exist is
// reported once it does; an interface replaced under the same name is gone
// under its old index first.
func TestRunInterfaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{})
		now := time.Now()
		content := block("eth5", "192.0.2.5", now.Add(time.Hour))
		h.write("dhclient.leases", content)
		h.start()
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"sync initial=true"}); diff != "" {
			t.Errorf("startup (-got +want):\n%s", diff)
		}

		h.setLink("eth5", 7)
		h.write("dhclient.leases", content) // any change of the files re-checks
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth5[7] routable 192.0.2.5"}); diff != "" {
			t.Errorf("interface appeared (-got +want):\n%s", diff)
		}

		h.setLink("eth5", 9)
		h.write("dhclient.leases", content+block("eth5", "192.0.2.6", now.Add(time.Hour)))
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth5[7] gone", "eth5[9] routable 192.0.2.6"}); diff != "" {
			t.Errorf("interface replaced (-got +want):\n%s", diff)
		}

		// Deleted: nothing to report until the lease goes, then Gone under
		// the index it had.
		h.setLink("eth5", 0)
		h.write("dhclient.leases", content)
		h.settle()
		if got := h.events(); len(got) > 0 {
			t.Errorf("events for a deleted interface: %q", got)
		}
		h.write("dhclient.leases", "# nothing\n")
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth5[9] gone"}); diff != "" {
			t.Errorf("lease gone (-got +want):\n%s", diff)
		}
	})
}

// TestRunFiles: leases of one interface in several files are ordered by
// the files' modification times; DHCPv4 and DHCPv6 leases make one report.
func TestRunFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"eth0": 2})
		now := time.Now()
		h.write("dhclient.leases", block("eth0", "192.0.2.1", now.Add(time.Hour)))
		h.write("dhclient.eth0.leases", block("eth0", "192.0.2.2", now.Add(time.Hour)))
		touch := func(name string, mtime time.Time) {
			if err := os.Chtimes(filepath.Join(h.dir, name), mtime, mtime); err != nil {
				t.Fatal(err)
			}
			h.signal()
		}
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		touch("dhclient.leases", base)
		touch("dhclient.eth0.leases", base.Add(time.Second))
		h.start()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.2 initial", "sync initial=true"}); diff != "" {
			t.Errorf("startup (-got +want):\n%s", diff)
		}
		touch("dhclient.leases", base.Add(2*time.Second))
		h.settle()
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.1 refresh"}); diff != "" {
			t.Errorf("the other file is newer (-got +want):\n%s", diff)
		}

		starts := now.Unix()
		h.write("dhclient6.leases", fmt.Sprintf(`lease6 {
  interface "eth0";
  ia-na 0:0:0:1 { starts %d; renew 1800; rebind 2880; iaaddr 2001:db8::5 { starts %d; preferred-life 3000; max-life 3600; } }
  option dhcp6.name-servers 2001:db8::53;
}
`, starts, starts))
		h.settle()
		m := h.next()
		if got := summary(t, event.Event{Source: "dhclient", Kind: event.KindManager, Manager: m}); got != "eth0[2] routable 192.0.2.1 2001:db8::5 refresh" {
			t.Errorf("with a DHCPv6 lease: %s", got)
		}
		if m.Env["DHCP6_DNS"] != "2001:db8::53" || len(m.DNS) != 1 || m.DNS[0].String() != "2001:db8::53" {
			t.Errorf("DHCPv6 DNS: env %q, DNS %v", m.Env["DHCP6_DNS"], m.DNS)
		}
	})
}

// TestRunDebounce: a burst of changes is read once.
func TestRunDebounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, map[string]int{"eth0": 2})
		h.start()
		h.events()
		before := h.src.Stats().Scans
		for i := range 5 {
			h.write("dhclient.leases", block("eth0", fmt.Sprintf("192.0.2.%d", i+1), time.Now().Add(time.Hour)))
			time.Sleep(testDebounce / 2)
			synctest.Wait()
		}
		h.settle()
		if got := h.src.Stats().Scans - before; got != 1 {
			t.Errorf("%d scans for one burst, want 1", got)
		}
		if diff := cmp.Diff(h.events(), []string{"eth0[2] routable 192.0.2.5"}); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}

		// A stream of writes cannot put the read off for ever.
		before = h.src.Stats().Scans
		for i := range 6 * debounceCap {
			h.write("dhclient.leases", block("eth0", fmt.Sprintf("192.0.2.%d", 10+i%2), time.Now().Add(time.Hour)))
			time.Sleep(testDebounce / 2)
			synctest.Wait()
		}
		if got := h.src.Stats().Scans - before; got < 2 {
			t.Errorf("%d scans during %s of writes every %s, want at least 2", got, 6*debounceCap*testDebounce/2, testDebounce/2)
		}
	})
}

func TestRunWatchFails(t *testing.T) {
	src, err := New(Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("too many open files")
	src.watch = func(dirs, files []string, _ *slog.Logger) (watcher, error) { return nil, boom }
	if err := src.Run(context.Background(), make(chan event.Event, 1)); !errors.Is(err, boom) {
		t.Errorf("Run: %v, want %v", err, boom)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		want    Options
		wantErr string
	}{
		{"defaults", Options{}, Options{Dirs: DefaultDirs, Files: []string{}, Debounce: DefaultDebounce}, ""},
		{"no dirs", Options{Dirs: []string{}, Files: []string{"/a/b/../x.leases", "/a/x.leases"}},
			Options{Dirs: []string{}, Files: []string{"/a/x.leases"}, Debounce: DefaultDebounce}, ""},
		{"relative dir", Options{Dirs: []string{"var/lib/dhcp"}}, Options{}, `lease directory "var/lib/dhcp": must be an absolute path`},
		{"relative file", Options{Files: []string{"x"}}, Options{}, `lease file "x": must be an absolute path`},
		{"negative debounce", Options{Debounce: -1}, Options{}, "debounce -1ns: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts, nil)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("New: %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s.opts, tt.want, cmp.Comparer(func(a, b func() time.Time) bool { return a == nil && b == nil })); diff != "" {
				t.Errorf("options (-got +want):\n%s", diff)
			}
			if s.Name() != "dhclient" {
				t.Errorf("Name() = %q", s.Name())
			}
		})
	}
}
