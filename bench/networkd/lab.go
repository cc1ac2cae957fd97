package main

import (
	"bufio"
	"bytes"
	"context"
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

	"github.com/netevd/netevd/bench/host"
	"github.com/netevd/netevd/internal/rtnl"
	"github.com/netevd/netevd/internal/sdbus"
)

// The veth networkd manages: veth0 in the daemons' namespace, its peer vp0
// in the peer namespace. The indexes differ on purpose: with equal ones
// the kernel rate-limits carrier-down events to about one a second
// (linkwatch).
const (
	linkName = "veth0"
	linkIdx  = 10
	peerName = "vp0"
	peerIdx  = 20
	linkAddr = "10.81.0.1/24"
	peerAddr = "10.81.0.2"
)

// The names the dispatchers' scripts report, and the floor's.
const (
	nameNetevd     = "netevd"
	nameDispatcher = "networkd-dispatcher"
	nameFloor      = "floor"
)

// waitLimit bounds every wait for an expected event; it guards against a
// hang and is not a performance threshold.
const waitLimit = 5 * time.Second

const networkdBus = "org.freedesktop.network1"

// networkFile is the .network file networkd gets: a static address and
// gateway, so veth0 is routable as soon as it has carrier; no IPv6 RA
// (without IPv6AcceptRA=no the link stays "configuring" waiting for a
// router advertisement), no link-local addresses, nothing pushed to
// resolved or hostnamed.
const networkFile = `[Match]
Name=` + linkName + `

[Network]
Address=` + linkAddr + `
Gateway=` + peerAddr + `
IPv6AcceptRA=no
LinkLocalAddressing=no
DNSDefaultRoute=no

[DHCPv4]
UseHostname=no
UseDNS=no
`

// innerScript sets up the daemons' private mount namespace (it runs under
// unshare -m -u in PREFIX-d) and stays there as `sleep infinity`: its PID
// is the one nsenter joins. $W is the temporary directory.
const innerScript = `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
mount -t tmpfs tmpfs /etc/systemd/network
umount -l /sys
mount -t sysfs -o ro sysfs /sys
cp "$W/10-veth0.network" /etc/systemd/network/
dbus-daemon --system --fork --nopidfile
"$NETWORKD" > "$W/networkd.log" 2>&1 &
echo ready
exec sleep infinity
`

// lab owns everything the harness creates: the temporary directory, the
// two namespaces, the processes in them, the bus connection and the
// netlink socket.
type lab struct {
	o      options
	netevd string // absolute path of the daemon binary
	tmp    string
	nsD    string // the daemons' namespace
	nsP    string // the peer namespace, where the carrier is driven
	nsMade []string

	inner      *proc // `sleep infinity` in the private mount namespace
	dispatcher *proc // networkd-dispatcher
	daemon     *proc // netevd
	busctl     *proc // busctl monitor (-busctl), nil if not running

	bus     *sdbus.Conn
	stopSub context.CancelFunc
	signals chan propSignal // veth0's PropertiesChanged, as they reach the harness
	subDone chan struct{}

	setter  *rtnl.LinkSetter
	scripts *scriptReader

	netevdScripts, dispatcherScripts, floorScript string
}

// newLab builds the lab up to two running dispatchers. On error the
// returned lab (if not nil) still needs close.
func newLab(ctx context.Context, o options) (*lab, error) {
	netevd, err := filepath.Abs(o.netevd)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(netevd); err != nil || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("netevd binary %s: not an executable file (run make build first)", netevd)
	}
	// /tmp stays shared with the private mount namespace, so the scripts,
	// the FIFO and the config are visible to the daemons.
	tmp, err := os.MkdirTemp("", "netevd-nbench-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // networkd-dispatcher walks into it
		return nil, err
	}
	l := &lab{o: o, netevd: netevd, tmp: tmp, nsD: o.prefix + "-d", nsP: o.prefix + "-p"}
	if l.scripts, err = openScriptReader(filepath.Join(tmp, "scripts.fifo")); err != nil {
		return l, err
	}
	if err := l.writeScripts(); err != nil {
		return l, err
	}
	for _, ns := range []string{l.nsD, l.nsP} {
		if err := runCmd("ip", "netns", "add", ns); err != nil {
			return l, err
		}
		l.nsMade = append(l.nsMade, ns)
		if err := runCmd("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return l, err
		}
	}
	if err := l.startInner(ctx); err != nil {
		return l, err
	}
	if err := l.dialBus(ctx); err != nil {
		return l, err
	}
	// veth0 appears after networkd started, as hotplugged links do, and is
	// up; it has carrier only while vp0 is up, which the harness controls.
	if err := host.IPBatch(l.nsD,
		fmt.Sprintf("link add %s index %d type veth peer name %s index %d netns %s", linkName, linkIdx, peerName, peerIdx, l.nsP),
		"link set "+linkName+" up",
	); err != nil {
		return l, err
	}
	if err := runCmd("ip", "-n", l.nsP, "addr", "add", peerAddr+"/24", "dev", peerName); err != nil {
		return l, err
	}
	if err := l.waitLinkState(ctx, "OperationalState", "no-carrier"); err != nil {
		return l, err
	}
	if l.setter, err = rtnl.OpenLinkSetter(rtnl.NetNS{Path: "/run/netns/" + l.nsP}); err != nil {
		return l, err
	}
	if err := l.subscribe(ctx); err != nil {
		return l, err
	}
	if o.busctl {
		if err := l.startBusctl(ctx); err != nil {
			return l, err
		}
	}

	// networkd-dispatcher must know veth0 when it starts (an unknown index
	// makes it rescan), as on a booted machine.
	l.dispatcher, err = l.startProc(ctx, "networkd-dispatcher", "Startup complete",
		l.nsenter(l.o.dispatcher, "-S", l.dispatcherScripts, "-v"), nil)
	if err != nil {
		return l, err
	}
	cfg, err := l.writeConfig()
	if err != nil {
		return l, err
	}
	l.daemon, err = l.startProc(ctx, "netevd", " msg=ready ", l.nsenter(l.netevd, "--config", cfg),
		func(line string) bool { return strings.Contains(strings.ToLower(line), "backend") }, l.o.env...)
	if err != nil {
		return l, err
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", l.daemon.pid)); err != nil || exe != l.netevd {
		return l, fmt.Errorf("PID %d runs %q, not %s", l.daemon.pid, exe, l.netevd)
	}
	return l, nil
}

// scriptBody is the routable.d script of dispatcher name. Its first
// command records the time; everything it writes comes from bash
// variables and builtins, so it forks nothing. $BACKEND is set by netevd
// only: it shows which of netevd's sources ran the script.
func scriptBody(name, fifo string) string {
	return "#!/bin/bash\n" +
		`echo "$EPOCHREALTIME ` + name + ` $$ $PPID ${BACKEND:--} ${STATE:--} ${IFACE:--}" >> ` + fifo + "\n"
}

// writeScripts writes the two dispatchers' routable.d scripts and the
// floor's copy. Directories and scripts are root:root 0755, as
// networkd-dispatcher insists (and netevd accepts).
func (l *lab) writeScripts() error {
	l.netevdScripts = filepath.Join(l.tmp, "netevd-scripts")
	l.dispatcherScripts = filepath.Join(l.tmp, "networkd-dispatcher-scripts")
	l.floorScript = filepath.Join(l.tmp, "floor", "50-ts")
	for _, s := range []struct{ path, name string }{
		{filepath.Join(l.netevdScripts, "routable.d", "50-ts"), nameNetevd},
		{filepath.Join(l.dispatcherScripts, "routable.d", "50-ts"), nameDispatcher},
		{l.floorScript, nameFloor},
	} {
		dir := filepath.Dir(s.path)
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(d, 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(s.path, []byte(scriptBody(s.name, l.scripts.path)), 0o755); err != nil {
			return err
		}
		if err := os.Chmod(s.path, 0o755); err != nil { // whatever the umask
			return err
		}
	}
	return nil
}

// writeConfig writes netevd's config.
func (l *lab) writeConfig() (string, error) {
	path := filepath.Join(l.tmp, "netevd.yaml")
	cfg := fmt.Sprintf(`system:
  backend: systemd-networkd
  log_level: %s
  scripts_dir: %s
backends:
  systemd_networkd:
    emit_json: %t
api:
  enabled: false
`, l.o.logLevel, l.netevdScripts, l.o.emitJSON)
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// startInner starts the private mount namespace with the bus and networkd
// and waits until it says it is ready.
func (l *lab) startInner(ctx context.Context) error {
	if err := os.WriteFile(filepath.Join(l.tmp, "10-veth0.network"), []byte(networkFile), 0o644); err != nil {
		return err
	}
	script := filepath.Join(l.tmp, "inner.sh")
	if err := os.WriteFile(script, []byte(innerScript), 0o644); err != nil {
		return err
	}
	// ip netns exec and unshare (without --fork) exec in place, so the PID
	// is bash's, and then sleep's.
	args := []string{"ip", "netns", "exec", l.nsD, "unshare", "-m", "-u", "--propagation", "private", "/bin/bash", script}
	var err error
	l.inner, err = l.startProc(ctx, "inner", "ready", args, nil, "W="+l.tmp, "NETWORKD="+l.o.networkd)
	return err
}

// nsenter returns the command line that runs argv in the daemons' mount,
// network and UTS namespaces. nsenter execs in place (no PID namespace
// is entered), so the PID is the program's.
func (l *lab) nsenter(argv ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(l.inner.pid), "-m", "-n", "-u", "--"}, argv...)
}

// dialBus connects to the private system bus through the inner process's
// root and waits until networkd owns its name.
func (l *lab) dialBus(ctx context.Context) error {
	addr := fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", l.inner.pid)
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for {
		if l.bus == nil {
			l.bus, err = sdbus.Dial(ctx, addr)
		}
		if l.bus != nil {
			var ok bool
			if ok, err = l.bus.NameHasOwner(ctx, networkdBus); err == nil && ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not on the private bus within 10s (last error: %v); see %s", networkdBus, err, filepath.Join(l.tmp, "networkd.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// linkPath is the object path of the link with ifindex idx: networkd
// escapes the first character of the index ("10" → "_310").
func linkPath(idx int) string {
	s := strconv.Itoa(idx)
	return fmt.Sprintf("/org/freedesktop/network1/link/_%x%s", s[0], s[1:])
}

// waitLinkState polls networkd until veth0's property prop is want.
func (l *lab) waitLinkState(ctx context.Context, prop, want string) error {
	deadline := time.Now().Add(waitLimit)
	var got any
	var err error
	for time.Now().Before(deadline) {
		got, err = l.bus.Get(ctx, networkdBus, linkPath(linkIdx), "org.freedesktop.network1.Link", prop)
		if err == nil && got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("networkd: %s %s is %v (error %v), want %s after %s", linkName, prop, got, err, want, waitLimit)
}

// proc is one process the harness started.
type proc struct {
	name  string
	cmd   *exec.Cmd
	pid   int
	log   *os.File
	ready chan struct{}
	done  chan struct{} // closed when its output ends

	mu   sync.Mutex // guards the field below
	kept []string   // output lines the keep function selected
}

// startProc starts argv with its output copied to NAME.log in the
// temporary directory and waits until a line contains readyMark. keep
// selects output lines to remember.
func (l *lab) startProc(ctx context.Context, name, readyMark string, argv []string, keep func(string) bool, env ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(l.tmp, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, pid: cmd.Process.Pid, log: logf, ready: make(chan struct{}), done: make(chan struct{})}
	go p.readOutput(pr, readyMark, keep)
	if readyMark == "" {
		return p, nil
	}
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-p.ready:
		return p, nil
	case <-p.done:
		p.stop()
		return nil, fmt.Errorf("%s exited before it was ready; see %s", name, logf.Name())
	case <-timer.C:
		p.stop()
		return nil, fmt.Errorf("%s printed no %q within 15s; see %s", name, readyMark, logf.Name())
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

func (p *proc) readOutput(r io.ReadCloser, readyMark string, keep func(string) bool) {
	defer close(p.done)
	defer r.Close()
	readyOnce := sync.OnceFunc(func() { close(p.ready) })
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(p.log, line)
		if strings.Contains(line, readyMark) {
			readyOnce()
		}
		if keep != nil && keep(line) {
			p.mu.Lock()
			p.kept = append(p.kept, line)
			p.mu.Unlock()
		}
	}
	_, _ = io.Copy(p.log, r)
}

// stop sends SIGTERM to the process (by PID), waits up to 5s, then
// SIGKILLs it.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-exited
	}
	select {
	case <-p.done:
	case <-time.After(time.Second): // a child still holds the pipe; it dies with the namespace
	}
	p.log.Close()
}

// netevdBackendLine returns netevd's log lines about its backend.
func (l *lab) netevdBackendLine() []string {
	if l.daemon == nil {
		return nil
	}
	l.daemon.mu.Lock()
	defer l.daemon.mu.Unlock()
	return append([]string(nil), l.daemon.kept...)
}

// close stops the dispatchers, closes the sockets, kills (by PID)
// whatever still runs in the namespaces, deletes them and the temporary
// directory.
func (l *lab) close() {
	for _, p := range []**proc{&l.daemon, &l.dispatcher, &l.busctl} {
		if *p != nil {
			(*p).stop()
			*p = nil
		}
	}
	if l.stopSub != nil {
		l.stopSub()
		<-l.subDone
	}
	if l.bus != nil {
		_ = l.bus.Close()
	}
	if l.setter != nil {
		_ = l.setter.Close()
	}
	// networkd, dbus-daemon and the inner sleep: SIGTERM first, so networkd
	// can let go of its links, then SIGKILL what is left.
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		n := 0
		for _, ns := range l.nsMade {
			for _, pid := range nsPIDs(ns) {
				if syscall.Kill(pid, sig) == nil {
					n++
				}
			}
		}
		if n == 0 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if l.inner != nil {
		l.inner.stop()
		l.inner = nil
	}
	for _, ns := range l.nsMade {
		if err := runCmd("ip", "netns", "del", ns); err != nil {
			fmt.Fprintln(os.Stderr, "networkd:", err)
		}
	}
	if l.scripts != nil {
		l.scripts.close()
	}
	if l.o.keep {
		fmt.Fprintln(os.Stderr, "networkd: kept", l.tmp)
		return
	}
	_ = os.RemoveAll(l.tmp)
}

// nsPIDs lists the processes in network namespace ns, never the harness.
func nsPIDs(ns string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func runCmd(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// environment describes the machine and the versions for the report.
func (l *lab) environment() envInfo {
	e := envInfo{
		goVersion: runtime.Version(),
		cpus:      runtime.NumCPU(),
		loadStart: host.LoadAvg(),
		driver:    l.o.driver,
		emitJSON:  l.o.emitJSON,
		gap:       l.o.gap,
		daemonEnv: l.o.env.String(),
	}
	e.kernel = host.KernelRelease()
	out := func(argv ...string) string {
		b, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			return "?"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return line
	}
	e.netevd = out(l.netevd, "version")
	e.systemd = out("dpkg-query", "-W", "-f=${Version}", "systemd")
	e.dispatcher = out("dpkg-query", "-W", "-f=${Version}", "networkd-dispatcher")
	e.python = out("/usr/bin/python3", "--version")
	e.bash = out("/bin/bash", "-c", "echo $BASH_VERSION")
	return e
}
