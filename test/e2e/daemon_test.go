package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/nettest"
)

// waitTimeout bounds every wait for the daemon, a script or the kernel. It
// is generous on purpose: these tests check that things happen, never how
// fast.
const waitTimeout = 20 * time.Second

// maxLogDump bounds how many lines of the daemon's output a failing test
// prints.
const maxLogDump = 300

// pollEvery is how often a wait checks its condition again.
const pollEvery = 10 * time.Millisecond

// waitFor polls check until it reports true and returns its value. After
// waitTimeout it fails the test, naming what it waited for and adding what
// the detail functions say about the state of things.
func waitFor[T any](tb testing.TB, what string, check func() (T, bool), detail ...func() string) T {
	tb.Helper()
	return poll(tb, pollEvery, what, check, detail...)
}

// poll is waitFor checking every interval, for expensive checks.
func poll[T any](tb testing.TB, every time.Duration, what string, check func() (T, bool), detail ...func() string) T {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if v, ok := check(); ok {
			return v
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			fmt.Fprintf(&b, "gave up after %s waiting for %s", waitTimeout, what)
			for _, d := range detail {
				b.WriteString("\n")
				b.WriteString(d())
			}
			tb.Fatal(b.String())
		}
		time.Sleep(every)
	}
}

// logRec is one line of the daemon's JSON log.
type logRec map[string]any

func (r logRec) str(key string) string {
	s, _ := r[key].(string)
	return s
}

func (r logRec) num(key string) int64 {
	f, _ := r[key].(float64)
	return int64(f)
}

func (r logRec) msg() string { return r.str("msg") }

// daemon is one netevd process running in a namespace.
type daemon struct {
	tb   testing.TB
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // what Wait returned; read after done

	mu      sync.Mutex // guards the fields below
	partial []byte     // an unfinished line of output
	raw     []string   // every output line, in order
	logs    []logRec   // the lines that are JSON log records, in order
}

// daemonEnv is the environment the daemon runs with: the test's own minus
// anything that would configure it (NETEVD_*) or make it talk to a service
// manager, plus a marker that must never reach a script, and fixed LANG and
// TZ, which must.
func daemonEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "NETEVD_"), strings.HasPrefix(k, "LISTEN_"), strings.HasPrefix(k, "WATCHDOG_"),
			k == "NOTIFY_SOCKET", k == "LANG", k == "TZ":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "NETEVD_TEST_LEAK=1", "LANG=C.UTF-8", "TZ=UTC")
	return append(env, extra...)
}

// startDaemon runs `ip netns exec NS netevd --config cfg --log-format json
// args...` and waits until it logs "ready". ip netns exec execs the daemon
// in place, so the child's PID is the daemon's. The daemon is killed in
// tb.Cleanup if the test did not stop it, and its log is printed if the test
// failed.
func startDaemon(tb testing.TB, ns *nettest.NetNS, cfg string, env []string, args ...string) *daemon {
	tb.Helper()
	full := append([]string{"netns", "exec", ns.Name, netevdBin, "--config", cfg, "--log-format", "json"}, args...)
	cmd := exec.Command("ip", full...)
	cmd.Env = daemonEnv(env...)
	return runDaemonCmd(tb, cmd, "ip netns exec")
}

// insideBus is the bus variable of a daemon started inside a private mount
// namespace whose /run holds the private system bus.
const insideBus = "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket"

// runDaemonCmd starts cmd, which must exec the daemon in place (via names
// the wrapper, for the error message), and waits until it logs "ready".
// The daemon is killed in tb.Cleanup if the test did not stop it, and its
// log is printed if the test failed.
func runDaemonCmd(tb testing.TB, cmd *exec.Cmd, via string) *daemon {
	tb.Helper()
	d := &daemon{tb: tb, done: make(chan struct{}), cmd: cmd}
	d.cmd.Stdout = d
	d.cmd.Stderr = d
	d.cmd.WaitDelay = 5 * time.Second
	if err := d.cmd.Start(); err != nil {
		tb.Fatalf("start daemon: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	tb.Cleanup(func() {
		if !d.exited() {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if tb.Failed() {
			d.mu.Lock()
			defer d.mu.Unlock()
			lines := d.raw[max(0, len(d.raw)-maxLogDump):]
			tb.Logf("daemon (PID %d) output, the last %d of %d lines:\n%s",
				d.cmd.Process.Pid, len(lines), len(d.raw), strings.Join(lines, "\n"))
		}
	})
	d.waitLog("the daemon's \"ready\" log line", func(r logRec) bool { return r.msg() == "ready" })
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", d.pid())); err != nil || strings.TrimSpace(string(comm)) != "netevd" {
		tb.Fatalf("PID %d is not the daemon (comm %q, %v): %s did not exec in place", d.pid(), comm, err, via)
	}
	return d
}

// Write collects the daemon's output line by line.
func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.partial = append(d.partial, p...)
	for {
		i := bytes.IndexByte(d.partial, '\n')
		if i < 0 {
			break
		}
		line := string(d.partial[:i])
		d.partial = d.partial[i+1:]
		d.raw = append(d.raw, line)
		var r logRec
		if err := json.Unmarshal([]byte(line), &r); err == nil {
			d.logs = append(d.logs, r)
		}
	}
	return len(p), nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// records returns a copy of the log records so far.
func (d *daemon) records() []logRec {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]logRec(nil), d.logs...)
}

// find returns the position and record of the first log record at or after
// position from that matches, or -1.
func (d *daemon) find(from int, match func(logRec) bool) (int, logRec) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := max(from, 0); i < len(d.logs); i++ {
		if match(d.logs[i]) {
			return i, d.logs[i]
		}
	}
	return -1, nil
}

// waitLog waits for a log record that matches and returns it. It fails the
// test at once if the daemon exits meanwhile.
func (d *daemon) waitLog(what string, match func(logRec) bool) logRec {
	d.tb.Helper()
	_, r := d.waitLogFrom(0, what, match)
	return r
}

// waitLogFrom is waitLog for records at or after position from; it also
// returns the record's position.
func (d *daemon) waitLogFrom(from int, what string, match func(logRec) bool) (int, logRec) {
	d.tb.Helper()
	type hit struct {
		i int
		r logRec
	}
	h := waitFor(d.tb, what, func() (hit, bool) {
		if i, r := d.find(from, match); i >= 0 {
			return hit{i, r}, true
		}
		if d.exited() {
			d.tb.Fatalf("the daemon exited (%v) while waiting for %s", d.err, what)
		}
		return hit{}, false
	})
	return h.i, h.r
}

// signal sends sig to the daemon by PID.
func (d *daemon) signal(sig syscall.Signal) {
	d.tb.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.tb.Fatalf("send %v to the daemon: %v", sig, err)
	}
}

// stop sends SIGTERM and checks that the daemon exits 0 and logs "stopped".
func (d *daemon) stop() {
	d.tb.Helper()
	d.signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(waitTimeout):
		d.tb.Fatalf("the daemon did not exit within %s of SIGTERM", waitTimeout)
	}
	if d.err != nil {
		d.tb.Errorf("daemon exit after SIGTERM: %v, want exit status 0", d.err)
	}
	if i, _ := d.find(0, func(r logRec) bool { return r.msg() == "stopped" }); i < 0 {
		d.tb.Errorf("the daemon did not log \"stopped\" before it exited")
	}
}

// notifyListener is a unixgram socket standing in for systemd's
// NOTIFY_SOCKET; it collects every datagram it receives.
type notifyListener struct {
	path string
	conn *net.UnixConn
	done chan struct{}

	mu   sync.Mutex // guards msgs
	msgs []string
}

func listenNotify(tb testing.TB) *notifyListener {
	tb.Helper()
	// A short path: socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "netevd-notify-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifyListener{path: filepath.Join(dir, "notify.sock"), done: make(chan struct{})}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		tb.Fatalf("listen on %s: %v", n.path, err)
	}
	go func() {
		defer close(n.done)
		buf := make([]byte, 4096)
		for {
			k, _, err := n.conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		n.conn.Close()
		<-n.done
	})
	return n
}

func (n *notifyListener) env() string { return "NOTIFY_SOCKET=" + n.path }

func (n *notifyListener) messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// sync waits until the listener has read every datagram sent before this
// call: it sends a marker of its own and waits for it (a datagram socket
// keeps the order of its queue).
func (n *notifyListener) sync(tb testing.TB) {
	tb.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	marker := fmt.Sprintf("E2E-SYNC=%d", time.Now().UnixNano())
	if _, err := c.Write([]byte(marker)); err != nil {
		tb.Fatal(err)
	}
	n.waitMessage(tb, marker, 1)
}

// waitMessage waits until the datagram msg has arrived count times in all.
func (n *notifyListener) waitMessage(tb testing.TB, msg string, count int) {
	tb.Helper()
	waitFor(tb, fmt.Sprintf("%d× %q on NOTIFY_SOCKET", count, msg), func() (struct{}, bool) {
		seen := 0
		for _, m := range n.messages() {
			if m == msg {
				seen++
			}
		}
		return struct{}{}, seen >= count
	}, func() string { return fmt.Sprintf("received: %q", n.messages()) })
}

// processGone reports whether pid no longer runs: it does not exist, or it
// is a zombie nobody reaped yet (it cannot run or hold anything open).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return true
	}
	if err != nil {
		return false
	}
	// pid (comm) S ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state == 'Z' || state == 'X'
}

// procStatusKB returns a "kB" field of /proc/PID/status, such as VmRSS.
func procStatusKB(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		v, ok := strings.CutPrefix(s.Text(), field+":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			tb.Fatalf("parse %s %q: %v", field, v, err)
		}
		return n
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
