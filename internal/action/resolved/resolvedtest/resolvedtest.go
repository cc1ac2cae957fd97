// Package resolvedtest runs the real systemd-resolved and
// systemd-hostnamed for tests, and systemd-networkd beside them when asked,
// following testbed/tb-resolved-hostnamed.sh: in a throw-away network
// namespace (nettest), inside a private mount and UTS namespace with a
// tmpfs on /run, an overlay over /etc (the systemd-resolve user, resolved's
// D-Bus policy and the /etc/hostname that hostnamed writes all land in the
// overlay and vanish with it), a tmpfs on /etc/systemd/network, a read-only
// sysfs (so networkd does not wait for udev) and a private system bus.
//
// systemd-resolved is never installed: its package rewires the host's
// /etc/resolv.conf. Its .deb is fetched with `apt-get download` (cached in
// DebCache) and unpacked into the test's temporary directory; the binary
// links against the installed systemd's shared library and runs as is.
//
// Processes that must see the private bus run inside with Command
// (nsenter); a process outside reaches it at BusAddress. The test holds
// every process by PID and can stop and restart resolved. Everything is
// killed, by PID, and the namespace removed in tb.Cleanup. Nothing here
// touches the host's network, hostname or files: Start checks the
// namespaces and mounts before it starts a daemon, and GuardHost checks the
// host afterwards.
//
// Only tests import it.
package resolvedtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
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
	"github.com/netevd/netevd/internal/sdbus"
)

// DebCache is where the tests keep systemd-resolved's .deb between runs.
const DebCache = "/var/cache/netevd-test"

// Daemon binaries from the installed systemd package.
const (
	HostnamedBinary = "/lib/systemd/systemd-hostnamed"
	NetworkdBinary  = "/lib/systemd/systemd-networkd"
)

// Bus names of the daemons.
const (
	ResolveName  = "org.freedesktop.resolve1"
	HostnameName = "org.freedesktop.hostname1"
	NetworkName  = "org.freedesktop.network1"
)

// resolvedPath is where the .deb has the daemon, below the unpacked root.
const resolvedPath = "lib/systemd/systemd-resolved"

// waitTimeout bounds every wait for a process or the bus.
const waitTimeout = 20 * time.Second

// Options say what runs besides resolved and hostnamed.
type Options struct {
	// Networkd runs systemd-networkd too, with NetworkFiles.
	Networkd bool
	// NetworkFiles are .network files (name → content) for
	// /etc/systemd/network.
	NetworkFiles map[string]string
	// HideNetworkdState gives resolved a /run/systemd/netif of its own,
	// empty, so it does not read networkd's state files. resolved then
	// neither takes a link's DNS servers and domains from networkd nor
	// counts the link as managed by networkd (it refuses SetLinkDNS and
	// SetLinkDomains for managed links with LinkBusy).
	HideNetworkdState bool
}

// Daemons are the running daemons and the namespaces that hold them.
type Daemons struct {
	tb   testing.TB
	NS   *nettest.NetNS // the network namespace the daemons run in
	Dir  string         // the unpacked .deb, the overlay's layers, the logs
	opts Options

	inner *exec.Cmd // holds the private mount and UTS namespaces (sleep infinity)

	mu     sync.Mutex       // guards the fields below
	procs  map[string]*proc // running or last started, by daemon name
	starts map[string]int   // starts per daemon, numbering the log files
}

// proc is one started process and its end.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid once done is closed
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// innerScript prepares the private mount namespace and holds it. The
// overlay goes over /etc before anything writes there.
const innerScript = `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/systemd/resolve /run/systemd/netif "$W/etc-up" "$W/etc-wk"
mount -t overlay overlay -o lowerdir=/etc,upperdir="$W/etc-up",workdir="$W/etc-wk" /etc
getent passwd systemd-resolve >/dev/null || useradd -r -M -l -s /usr/sbin/nologin systemd-resolve
chown systemd-resolve: /run/systemd/resolve
if getent passwd systemd-network >/dev/null; then chown systemd-network: /run/systemd/netif; fi
cp "$W/root/usr/share/dbus-1/system.d/org.freedesktop.resolve1.conf" /etc/dbus-1/system.d/
mkdir -p /etc/systemd/network
mount -t tmpfs tmpfs /etc/systemd/network
if [ -n "$(ls "$W/network")" ]; then cp "$W"/network/* /etc/systemd/network/; fi
umount -l /sys
mount -t sysfs -o ro sysfs /sys
touch "$W/inner.ready"
exec sleep infinity
`

// Start creates the namespaces, starts the bus, systemd-networkd (when
// opts.Networkd), systemd-resolved and systemd-hostnamed, and waits until
// each owns its bus name. It calls Require first. Links are added to NS by
// the test (with `ip -n`), before or after Start. As under systemd,
// hostnamed exits by itself after 30 s without requests, and nothing here
// starts it again.
func Start(tb testing.TB, opts Options) *Daemons {
	tb.Helper()
	debPath := Require(tb, opts.Networkd)
	d := &Daemons{tb: tb, Dir: tb.TempDir(), opts: opts, procs: map[string]*proc{}, starts: map[string]int{}}
	if strings.HasPrefix(d.Dir, "/run/") || strings.HasPrefix(d.Dir, "/etc/") || strings.HasPrefix(d.Dir, "/sys/") {
		tb.Skipf("skipping: temporary directory %s is hidden inside the namespace; set TMPDIR elsewhere", d.Dir)
	}
	if out, err := exec.Command("dpkg-deb", "-x", debPath, filepath.Join(d.Dir, "root")).CombinedOutput(); err != nil {
		tb.Fatalf("dpkg-deb -x %s: %v: %s", debPath, err, bytes.TrimSpace(out))
	}
	netDir := filepath.Join(d.Dir, "network")
	if err := os.Mkdir(netDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, text := range opts.NetworkFiles {
		if strings.ContainsAny(name, "/") || !strings.HasSuffix(name, ".network") {
			tb.Fatalf("bad .network file name %q", name)
		}
		if err := os.WriteFile(filepath.Join(netDir, name), []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}

	d.NS = nettest.NewNetNS(tb)
	d.NS.Run("link", "set", "lo", "up")
	ready := filepath.Join(d.Dir, "inner.ready")
	d.inner = exec.Command("ip", "netns", "exec", d.NS.Name, "unshare", "-m", "-u", "--propagation", "private", "sh", "-c", innerScript)
	d.inner.Env = append(os.Environ(), "W="+d.Dir)
	var innerOut bytes.Buffer
	d.inner.Stdout, d.inner.Stderr = &innerOut, &innerOut
	d.inner.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.inner.Start(); err != nil {
		tb.Fatalf("start the private namespaces: %v", err)
	}
	innerDone := make(chan struct{})
	go func() { _ = d.inner.Wait(); close(innerDone) }()
	// Runs before the namespace's own cleanup, which kills what is left.
	tb.Cleanup(func() {
		d.mu.Lock()
		procs := make([]*proc, 0, len(d.procs))
		for _, p := range d.procs {
			procs = append(procs, p)
		}
		d.mu.Unlock()
		for _, p := range procs {
			if p.running() {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-p.done:
				case <-time.After(5 * time.Second):
					_ = p.cmd.Process.Kill()
					<-p.done
				}
			}
		}
		_ = d.inner.Process.Kill()
		<-innerDone
		if tb.Failed() {
			tb.Logf("daemon logs in %s:\n%s", d.Dir, d.Logs())
		}
	})
	d.wait("the private namespaces", func() bool {
		if _, err := os.Stat(ready); err == nil {
			return true
		}
		select {
		case <-innerDone:
			tb.Fatalf("setting up the private namespaces failed: %s", innerOut.String())
		default:
		}
		return false
	})
	d.checkIsolation()

	d.startBus()
	if opts.Networkd {
		d.start("systemd-networkd", NetworkName, []string{"SYSTEMD_LOG_LEVEL=debug"}, NetworkdBinary)
	}
	d.StartResolved()
	d.start("systemd-hostnamed", HostnameName, nil, HostnamedBinary)
	return d
}

// checkIsolation fails the test before any daemon starts unless the inner
// process has its own mount, UTS and network namespaces, with a tmpfs on
// /run and an overlay on /etc: then nothing the daemons write reaches the
// host.
func (d *Daemons) checkIsolation() {
	d.tb.Helper()
	pid := d.Inner()
	for _, ns := range []string{"mnt", "uts", "net"} {
		mine, err1 := os.Readlink("/proc/self/ns/" + ns)
		theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err1 != nil || err2 != nil || mine == theirs {
			d.tb.Fatalf("the daemons do not have their own %s namespace (%s, %s; %v, %v)", ns, mine, theirs, err1, err2)
		}
	}
	for mp, want := range map[string]string{"/etc": "overlay", "/run": "tmpfs", "/etc/systemd/network": "tmpfs"} {
		if got := mountType(d.tb, pid, mp); got != want {
			d.tb.Fatalf("in the daemons' mount namespace %s is %q, want %q", mp, got, want)
		}
	}
}

// mountType returns the file system type of what is mounted on mp (the
// topmost mount) in pid's mount namespace, or "".
func mountType(tb testing.TB, pid int, mp string) string {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	typ := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		pre, post, ok := strings.Cut(s.Text(), " - ")
		fields, after := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(after) >= 1 && fields[4] == mp {
			typ = after[0]
		}
	}
	return typ
}

// Inner is the PID of the process that holds the private namespaces
// (for nsenter -t).
func (d *Daemons) Inner() int { return d.inner.Process.Pid }

// BusAddress is the private system bus as seen from outside the mount
// namespace.
func (d *Daemons) BusAddress() string {
	return fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", d.Inner())
}

// Command returns a command that runs name inside the private mount, UTS
// and network namespaces, where /run/dbus/system_bus_socket is the
// private bus. nsenter execs it in place: the command's PID is its own.
func (d *Daemons) Command(name string, args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(d.Inner()), "-m", "-n", "-u", "--", name}, args...)
	return exec.Command("nsenter", full...)
}

// Run runs name inside (see Command) and returns its combined output,
// trimmed; it fails the test if the command fails.
func (d *Daemons) Run(name string, args ...string) string {
	d.tb.Helper()
	out, err := d.Command(name, args...).CombinedOutput()
	if err != nil {
		d.tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(bytes.TrimSpace(out))
}

// launch starts cmd with its output in a log file named after the daemon
// and its start count, and registers it under name.
func (d *Daemons) launch(name string, env []string, cmd *exec.Cmd) *proc {
	d.tb.Helper()
	d.mu.Lock()
	d.starts[name]++
	logName := fmt.Sprintf("%s-%d.log", name, d.starts[name])
	d.mu.Unlock()
	log, err := os.Create(filepath.Join(d.Dir, logName))
	if err != nil {
		d.tb.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.tb.Fatalf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	d.mu.Lock()
	d.procs[name] = p
	d.mu.Unlock()
	return p
}

// start starts a daemon inside and waits until it owns busName.
func (d *Daemons) start(name, busName string, env []string, bin string, args ...string) {
	d.tb.Helper()
	d.startCmd(name, busName, env, d.Command(bin, args...))
}

func (d *Daemons) startCmd(name, busName string, env []string, cmd *exec.Cmd) {
	d.tb.Helper()
	p := d.launch(name, env, cmd)
	d.wait(name+" on the private bus", func() bool {
		if !p.running() {
			d.tb.Fatalf("%s exited: %v\n%s", name, p.err, d.Logs())
		}
		owned, err := d.hasOwner(busName)
		return err == nil && owned
	})
}

// startBus starts dbus-daemon --system inside and waits for its socket.
func (d *Daemons) startBus() {
	d.tb.Helper()
	p := d.launch("dbus-daemon", nil, d.Command("dbus-daemon", "--system", "--nofork", "--nopidfile"))
	d.wait("the private system bus", func() bool {
		if !p.running() {
			d.tb.Fatalf("dbus-daemon exited: %v", p.err)
		}
		c, err := sdbus.Dial(context.Background(), d.BusAddress())
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// StartResolved starts systemd-resolved inside (log in
// systemd-resolved-N.log) and waits until it owns its bus name. With
// Options.HideNetworkdState it runs in a mount namespace of its own with an
// empty tmpfs on /run/systemd/netif.
func (d *Daemons) StartResolved() {
	d.tb.Helper()
	bin := filepath.Join(d.Dir, "root", resolvedPath)
	cmd := d.Command(bin)
	if d.opts.HideNetworkdState {
		// unshare and sh exec in place: the PID stays resolved's.
		cmd = d.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs -o mode=0755 tmpfs /run/systemd/netif && exec "$0"`, bin)
	}
	d.startCmd("systemd-resolved", ResolveName, nil, cmd)
}

// StopResolved stops systemd-resolved (SIGTERM, by PID) and waits until it
// exited and its name is off the bus.
func (d *Daemons) StopResolved() {
	d.tb.Helper()
	d.mu.Lock()
	p := d.procs["systemd-resolved"]
	d.mu.Unlock()
	if p == nil || !p.running() {
		d.tb.Fatal("systemd-resolved is not running")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		d.tb.Fatalf("stop systemd-resolved: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		d.tb.Fatalf("systemd-resolved did not exit within %s of SIGTERM", waitTimeout)
	}
	d.WaitName(ResolveName, false)
}

// WaitName waits until name is on the private bus or, with owned false,
// off it.
func (d *Daemons) WaitName(name string, owned bool) {
	d.tb.Helper()
	d.wait(fmt.Sprintf("%s owned %v", name, owned), func() bool {
		ok, err := d.hasOwner(name)
		return err == nil && ok == owned
	})
}

func (d *Daemons) hasOwner(name string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := sdbus.Dial(ctx, d.BusAddress())
	if err != nil {
		return false, err
	}
	defer c.Close()
	return c.NameHasOwner(ctx, name)
}

// Link is what systemd-resolved holds for one link.
type Link struct {
	DNS []netip.Addr
	// Domains are the search domains; a routing-only domain has a "~"
	// prefix, as networkd and resolvectl write it.
	Domains []string
}

// ResolvedLink reads resolved's DNS servers and domains of the link with
// ifindex idx. It returns an error when resolved does not know the link.
func (d *Daemons) ResolvedLink(ctx context.Context, idx int) (Link, error) {
	c, err := sdbus.Dial(ctx, d.BusAddress())
	if err != nil {
		return Link{}, err
	}
	defer c.Close()
	out, err := c.Call(ctx, ResolveName, "/org/freedesktop/resolve1", "org.freedesktop.resolve1.Manager.GetLink", int32(idx))
	if err != nil {
		return Link{}, err
	}
	path, _ := out[0].(string)
	props, err := c.GetAll(ctx, ResolveName, path, "org.freedesktop.resolve1.Link")
	if err != nil {
		return Link{}, err
	}
	var l Link
	servers, _ := props["DNS"].([]any)
	for _, s := range servers {
		f, _ := s.([]any)
		if len(f) != 2 {
			return Link{}, fmt.Errorf("link %d: DNS entry %v: want (family, address)", idx, s)
		}
		b, _ := f[1].([]byte)
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return Link{}, fmt.Errorf("link %d: DNS entry %v: bad address", idx, s)
		}
		l.DNS = append(l.DNS, a)
	}
	domains, _ := props["Domains"].([]any)
	for _, e := range domains {
		f, _ := e.([]any)
		if len(f) != 2 {
			return Link{}, fmt.Errorf("link %d: Domains entry %v: want (domain, routing-only)", idx, e)
		}
		name, _ := f[0].(string)
		if routing, _ := f[1].(bool); routing {
			name = "~" + name
		}
		l.Domains = append(l.Domains, name)
	}
	return l, nil
}

// Hostnames reads hostnamed's static and current hostname.
func (d *Daemons) Hostnames(ctx context.Context) (static, current string, err error) {
	c, err := sdbus.Dial(ctx, d.BusAddress())
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	props, err := c.GetAll(ctx, HostnameName, "/org/freedesktop/hostname1", HostnameName)
	if err != nil {
		return "", "", err
	}
	static, _ = props["StaticHostname"].(string)
	current, _ = props["Hostname"].(string)
	return static, current, nil
}

// Logs returns the tails of the daemons' logs.
func (d *Daemons) Logs() string {
	files, _ := filepath.Glob(filepath.Join(d.Dir, "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "--- %s (last %d of %d lines)\n%s\n", filepath.Base(f), min(len(lines), 60), len(lines),
			strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	return b.String()
}

func (d *Daemons) wait(what string, ok func() bool) {
	d.tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !ok() {
		if time.Now().After(deadline) {
			d.tb.Fatalf("gave up after %s waiting for %s\n%s", waitTimeout, what, d.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
