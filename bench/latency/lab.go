package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/bench/host"
	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/rtnl"
)

// The veth whose carrier is flapped: veth0 in the daemon's namespace, its
// peer vp0 in the peer namespace. The indexes differ on purpose: with equal
// ones the kernel rate-limits carrier-down events to about one a second
// (linkwatch).
const (
	linkName = "veth0"
	linkIdx  = 10
	peerName = "vp0"
	peerIdx  = 20
)

// waitLimit bounds every wait for an expected event; it guards against a
// hang and is not a performance threshold.
const waitLimit = 5 * time.Second

// bench owns everything the harness creates: the temporary directory, the
// two namespaces, the sockets and at most one running daemon.
type bench struct {
	o       options
	netevd  string // absolute path of the daemon binary
	tmp     string
	nsD     string // the daemon's namespace
	nsP     string // the peer namespace, where the carrier is driven
	probe   *probe
	setter  *rtnl.LinkSetter
	mon     *rtnl.Monitor    // the harness's monitor socket, nil if not running
	carrier chan carrierEdge // carrier changes of veth0 seen by mon
	monDone chan struct{}    // closed when watchCarrier returns
	daemon  *daemon          // the running daemon, nil if none
	nsMade  []string
}

// carrierEdge is one change of veth0's carrier seen on the monitor socket.
type carrierEdge struct {
	at int64 // CLOCK_MONOTONIC ns right after the datagram was read
	up bool
}

// monotonic returns CLOCK_MONOTONIC in nanoseconds, the clock the probe
// reads too.
func monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return ts.Nano()
}

// newBench builds the probe, the namespaces and the sockets. On error the
// returned bench (if not nil) still needs close.
func newBench(ctx context.Context, o options) (*bench, error) {
	netevd, err := filepath.Abs(o.netevd)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(netevd); err != nil || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("netevd binary %s: not an executable file (run make build first)", netevd)
	}
	tmp, err := os.MkdirTemp("", "netevd-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{o: o, netevd: netevd, tmp: tmp, nsD: o.prefix + "-d", nsP: o.prefix + "-p"}
	if b.probe, err = buildProbe(ctx, o.cc, tmp); err != nil {
		return b, err
	}
	for _, ns := range []string{b.nsD, b.nsP} {
		if err := ip("netns", "add", ns); err != nil {
			return b, err
		}
		b.nsMade = append(b.nsMade, ns)
	}
	// veth0 is up in the daemon's namespace; it has carrier only while vp0
	// is up, which the harness controls.
	if err := host.IPBatch(b.nsD,
		fmt.Sprintf("link add %s index %d type veth peer name %s index %d netns %s", linkName, linkIdx, peerName, peerIdx, b.nsP),
		"link set "+linkName+" up",
	); err != nil {
		return b, err
	}
	if b.setter, err = rtnl.OpenLinkSetter(rtnl.NetNS{Path: "/run/netns/" + b.nsP}); err != nil {
		return b, err
	}
	return b, nil
}

// watchCarrier forwards veth0's carrier changes until the monitor closes.
func (b *bench) watchCarrier() {
	defer close(b.monDone)
	last, known := false, false
	for {
		evs, err := b.mon.Receive()
		at := monotonic()
		if errors.Is(err, rtnl.ErrOverrun) {
			fmt.Fprintln(os.Stderr, "latency: monitor socket overrun; some carrier edges may be missing")
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range evs {
			if ev.Kind != event.KindLink || ev.Link.Index != linkIdx {
				continue
			}
			if known && ev.Link.Carrier == last {
				continue
			}
			last, known = ev.Link.Carrier, true
			select {
			case b.carrier <- carrierEdge{at: at, up: ev.Link.Carrier}:
			default: // nobody reads it in this phase
			}
		}
	}
}

// drainCarrier discards carrier edges already reported.
func (b *bench) drainCarrier() {
	for {
		select {
		case <-b.carrier:
		default:
			return
		}
	}
}

// waitCarrier returns the next edge to state up.
func (b *bench) waitCarrier(ctx context.Context, up bool) (carrierEdge, error) {
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		select {
		case e := <-b.carrier:
			if e.up == up {
				return e, nil
			}
		case <-timer.C:
			return carrierEdge{}, fmt.Errorf("the monitor saw no carrier %s on %s within %s", onOff(up), linkName, waitLimit)
		case <-ctx.Done():
			return carrierEdge{}, ctx.Err()
		}
	}
}

func onOff(up bool) string {
	if up {
		return "on"
	}
	return "off"
}

// close stops the daemon, closes the sockets, deletes the namespaces
// (killing, by PID, anything left in them) and the temporary directory.
func (b *bench) close() {
	if b.daemon != nil {
		if _, err := b.daemon.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "latency:", err)
		}
		b.daemon = nil
	}
	b.stopMonitor()
	if b.setter != nil {
		_ = b.setter.Close()
	}
	if b.probe != nil {
		b.probe.close()
	}
	for _, ns := range b.nsMade {
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := ip("netns", "del", ns); err != nil {
			fmt.Fprintln(os.Stderr, "latency:", err)
		}
	}
	if b.o.keep {
		fmt.Fprintln(os.Stderr, "latency: kept", b.tmp)
		return
	}
	_ = os.RemoveAll(b.tmp)
}

// writeConfig writes a daemon config whose scripts root is scripts.
func (b *bench) writeConfig(name, scripts string) (string, error) {
	path := filepath.Join(b.tmp, name)
	cfg := fmt.Sprintf("system:\n  backend: none\n  log_level: info\n  scripts_dir: %s\napi:\n  enabled: false\n", scripts)
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// startDaemon runs the daemon in the daemon's namespace and waits for its
// "ready" line. ip netns exec execs the binary in place, so the child's
// PID is the daemon's.
func (b *bench) startDaemon(ctx context.Context, config, logName string) (*daemon, error) {
	logf, err := os.Create(filepath.Join(b.tmp, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", b.nsD, b.netevd, "--config", config)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, b.o.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	d := &daemon{
		cmd:      cmd,
		pid:      cmd.Process.Pid,
		log:      logf,
		ready:    make(chan struct{}),
		finished: make(chan string, 1<<16),
		logDone:  make(chan struct{}),
	}
	b.daemon = d
	go d.readLog(stderr)

	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-d.ready:
	case <-d.logDone:
		return nil, fmt.Errorf("daemon exited before it was ready; see %s", logf.Name())
	case <-timer.C:
		return nil, fmt.Errorf("daemon logged no ready line within 10s; see %s", logf.Name())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.pid)); err != nil || exe != b.netevd {
		return nil, fmt.Errorf("PID %d runs %q, not %s", d.pid, exe, b.netevd)
	}
	return d, nil
}

// stopDaemon stops the running daemon and returns its final counters.
func (b *bench) stopDaemon() (map[string]string, error) {
	d := b.daemon
	b.daemon = nil
	return d.stop()
}

// daemon is one running netevd.
type daemon struct {
	cmd      *exec.Cmd
	pid      int
	log      *os.File
	ready    chan struct{}
	finished chan string // "script finished" lines
	logDone  chan struct{}

	mu      sync.Mutex // guards the fields below
	stopped string     // the "stopped" line
}

// readLog copies the daemon's stderr to its log file and picks out the
// lines the harness waits for.
func (d *daemon) readLog(r io.Reader) {
	defer close(d.logDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	readyOnce := sync.OnceFunc(func() { close(d.ready) })
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(d.log, line)
		switch {
		case strings.Contains(line, " msg=ready "):
			readyOnce()
		case strings.Contains(line, ` msg="script finished" `):
			select {
			case d.finished <- line:
			default:
			}
		case strings.Contains(line, " msg=stopped "):
			d.mu.Lock()
			d.stopped = line
			d.mu.Unlock()
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// waitFinished waits for the "script finished" line of a script whose path
// ends in suffix.
func (d *daemon) waitFinished(ctx context.Context, suffix string) (string, error) {
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		select {
		case line := <-d.finished:
			if strings.Contains(line, suffix+" ") {
				return line, nil
			}
		case <-timer.C:
			return "", fmt.Errorf("the daemon logged no finished run of %s within %s", suffix, waitLimit)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// stop sends SIGTERM, waits up to 10s, then SIGKILLs. It returns the
// key=value pairs of the daemon's "stopped" line.
func (d *daemon) stop() (map[string]string, error) {
	defer d.log.Close()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	var err error
	select {
	case err = <-exited:
	case <-timer.C:
		_ = d.cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("daemon (PID %d) ignored SIGTERM for 10s and was killed", d.pid)
	}
	<-d.logDone
	if err != nil {
		return nil, fmt.Errorf("daemon (PID %d): %w; see %s", d.pid, err, d.log.Name())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return logFields(d.stopped), nil
}

// logFields parses the key=value pairs of a text log line. Quoted values
// are unquoted.
func logFields(line string) map[string]string {
	out := make(map[string]string)
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		key, rest, ok := strings.Cut(line, "=")
		if !ok || strings.Contains(key, " ") {
			break
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		out[key] = val
		line = rest
	}
	return out
}

// children returns the PIDs listed in /proc/PID/task/*/children: the
// daemon's child processes that exist right now (zombies included).
func children(pid int) ([]int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil || len(tasks) == 0 {
		return nil, fmt.Errorf("no tasks for PID %d", pid)
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// environment describes the machine for the report.
func (b *bench) environment() envInfo {
	e := envInfo{
		goVersion: runtime.Version(),
		cpus:      runtime.NumCPU(),
		probe:     b.probe.kind,
		loadStart: host.LoadAvg(),
		daemonEnv: strings.Join(b.o.env, " "),
	}
	e.kernel = host.KernelRelease()
	if out, err := exec.Command(b.netevd, "version").Output(); err == nil {
		e.netevd = strings.TrimSpace(string(out))
	}
	if fi, err := os.Stat(b.netevd); err == nil {
		e.binSize = fi.Size()
	}
	return e
}
