// Package networkdtest runs the real systemd-networkd for tests, following
// the testbed recipe: in a throw-away network namespace (nettest), inside a
// private mount and UTS namespace with tmpfs on /run and on
// /etc/systemd/network, a read-only sysfs (so networkd does not wait for
// udev) and a private system bus (dbus-daemon --system). Processes that
// must see that bus run inside with Command (nsenter); a process outside
// can reach it at BusAddress.
//
// The test holds every process by PID: it can stop and restart networkd
// and the bus daemon. Everything is killed, by PID, and the namespace
// removed in tb.Cleanup. Nothing here touches the host's network or files.
//
// Only tests import it.
package networkdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// Binary is systemd-networkd's path on Debian.
const Binary = "/lib/systemd/systemd-networkd"

// BusName is networkd's bus name.
const BusName = "org.freedesktop.network1"

// waitTimeout bounds every wait for a process or the bus.
const waitTimeout = 20 * time.Second

// Require skips tb unless networkd can run here: root with CAP_NET_ADMIN,
// the networkd binary, dbus-daemon, nsenter and unshare.
func Require(tb testing.TB) {
	tb.Helper()
	nettest.RequirePrivileged(tb)
	if _, err := os.Stat(Binary); err != nil {
		tb.Skipf("skipping: needs systemd-networkd at %s (Debian package systemd): %v", Binary, err)
	}
	for _, c := range []struct{ cmd, pkg string }{{"dbus-daemon", "dbus-daemon"}, {"nsenter", "util-linux"}, {"unshare", "util-linux"}} {
		if _, err := exec.LookPath(c.cmd); err != nil {
			tb.Skipf("skipping: needs %s (Debian package %s)", c.cmd, c.pkg)
		}
	}
}

// Networkd is systemd-networkd running in NS with a private system bus.
type Networkd struct {
	tb  testing.TB
	NS  *nettest.NetNS // the namespace networkd manages
	Dir string         // temporary directory with the logs

	inner *exec.Cmd // holds the private mount namespace (sleep infinity)

	mu       sync.Mutex // guards the fields below
	bus      *proc
	networkd *proc
	starts   int // networkd starts, numbering its log files
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

// Start creates a namespace, starts the bus and networkd with the given
// .network files (name → content, written to /etc/systemd/network), and
// waits until networkd owns its bus name. It calls Require first. Links are
// added to NS by the test (with `ip -n`), before or after Start.
func Start(tb testing.TB, network map[string]string) *Networkd {
	tb.Helper()
	Require(tb)
	n := &Networkd{tb: tb, NS: nettest.NewNetNS(tb), Dir: tb.TempDir()}
	n.NS.Run("link", "set", "lo", "up")
	netDir := filepath.Join(n.Dir, "network")
	if err := os.Mkdir(netDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, text := range network {
		if strings.ContainsAny(name, "/'") || !strings.HasSuffix(name, ".network") {
			tb.Fatalf("bad .network file name %q", name)
		}
		if err := os.WriteFile(filepath.Join(netDir, name), []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if strings.ContainsAny(n.Dir, "'\n ") {
		tb.Fatalf("temporary directory %q cannot be quoted", n.Dir)
	}
	ready := filepath.Join(n.Dir, "inner.ready")
	script := fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
mount -t tmpfs tmpfs /etc/systemd/network
if [ -n "$(ls '%[1]s')" ]; then cp '%[1]s'/* /etc/systemd/network/; fi
umount -l /sys
mount -t sysfs -o ro sysfs /sys
touch '%[2]s'
exec sleep infinity
`, netDir, ready)
	n.inner = exec.Command("ip", "netns", "exec", n.NS.Name, "unshare", "-m", "-u", "--propagation", "private", "sh", "-c", script)
	var innerOut bytes.Buffer
	n.inner.Stdout, n.inner.Stderr = &innerOut, &innerOut
	n.inner.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.inner.Start(); err != nil {
		tb.Fatalf("start the private mount namespace: %v", err)
	}
	innerDone := make(chan struct{})
	go func() { _ = n.inner.Wait(); close(innerDone) }()
	tb.Cleanup(func() {
		n.mu.Lock()
		procs := []*proc{n.networkd, n.bus}
		n.mu.Unlock()
		for _, p := range procs {
			if p != nil && p.running() {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		_ = n.inner.Process.Kill()
		<-innerDone
		if tb.Failed() {
			tb.Logf("systemd-networkd logs in %s:\n%s", n.Dir, n.Logs())
		}
	})
	n.wait("the private mount namespace", func() bool {
		if _, err := os.Stat(ready); err == nil {
			return true
		}
		select {
		case <-innerDone:
			tb.Fatalf("the private mount namespace failed: %s", innerOut.String())
		default:
		}
		return false
	})
	n.StartBus()
	n.StartNetworkd()
	return n
}

// Inner is the PID of the process that holds the private namespaces
// (for nsenter -t).
func (n *Networkd) Inner() int { return n.inner.Process.Pid }

// BusAddress is the private system bus as seen from outside the mount
// namespace.
func (n *Networkd) BusAddress() string {
	return fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", n.Inner())
}

// Command returns a command that runs name inside the private mount, UTS
// and network namespaces, where /run/dbus/system_bus_socket is the
// private bus. nsenter execs it in place: the command's PID is its own.
func (n *Networkd) Command(name string, args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(n.Inner()), "-m", "-n", "-u", "--", name}, args...)
	return exec.Command("nsenter", full...)
}

// Run runs name inside (see Command) and returns its combined output; it
// fails the test if the command fails.
func (n *Networkd) Run(name string, args ...string) string {
	n.tb.Helper()
	out, err := n.Command(name, args...).CombinedOutput()
	if err != nil {
		n.tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out)
}

// start starts name inside with its output in logName.
func (n *Networkd) start(logName string, env []string, name string, args ...string) *proc {
	n.tb.Helper()
	log, err := os.Create(filepath.Join(n.Dir, logName))
	if err != nil {
		n.tb.Fatal(err)
	}
	defer log.Close()
	cmd := n.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.tb.Fatalf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p
}

// StartBus starts dbus-daemon --system inside and waits for its socket.
func (n *Networkd) StartBus() {
	n.tb.Helper()
	sock := fmt.Sprintf("/proc/%d/root/run/dbus/system_bus_socket", n.Inner())
	_ = os.Remove(sock) // a stale socket of a bus the test stopped
	p := n.start("dbus-daemon.log", nil, "dbus-daemon", "--system", "--nofork", "--nopidfile")
	n.mu.Lock()
	n.bus = p
	n.mu.Unlock()
	n.wait("the private system bus", func() bool {
		if !p.running() {
			n.tb.Fatalf("dbus-daemon exited: %v", p.err)
		}
		c, err := sdbus.Dial(context.Background(), n.BusAddress())
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// StopBus stops dbus-daemon (SIGTERM, by PID) and waits for it to exit.
func (n *Networkd) StopBus() {
	n.tb.Helper()
	n.mu.Lock()
	p := n.bus
	n.mu.Unlock()
	n.stop("dbus-daemon", p)
}

// StartNetworkd starts systemd-networkd (debug log in networkd-N.log)
// and waits until it owns its bus name.
func (n *Networkd) StartNetworkd() {
	n.tb.Helper()
	n.mu.Lock()
	n.starts++
	logName := fmt.Sprintf("networkd-%d.log", n.starts)
	n.mu.Unlock()
	p := n.start(logName, []string{"SYSTEMD_LOG_LEVEL=debug"}, Binary)
	n.mu.Lock()
	n.networkd = p
	n.mu.Unlock()
	n.wait("systemd-networkd on the private bus", func() bool {
		if !p.running() {
			n.tb.Fatalf("systemd-networkd exited: %v\n%s", p.err, n.Logs())
		}
		owned, err := n.hasOwner()
		return err == nil && owned
	})
}

// NetworkdPID is the PID of the running networkd.
func (n *Networkd) NetworkdPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.networkd.cmd.Process.Pid
}

// StopNetworkd stops networkd (SIGTERM, by PID) and waits for it to exit
// and to leave the bus.
func (n *Networkd) StopNetworkd() {
	n.tb.Helper()
	n.mu.Lock()
	p := n.networkd
	n.mu.Unlock()
	n.stop("systemd-networkd", p)
}

func (n *Networkd) stop(what string, p *proc) {
	n.tb.Helper()
	if p == nil || !p.running() {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		n.tb.Fatalf("stop %s: %v", what, err)
	}
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		n.tb.Fatalf("%s did not exit within %s of SIGTERM", what, waitTimeout)
	}
}

func (n *Networkd) hasOwner() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := sdbus.Dial(ctx, n.BusAddress())
	if err != nil {
		return false, err
	}
	defer c.Close()
	return c.NameHasOwner(ctx, BusName)
}

// LinkState returns networkd's OperationalState and AdministrativeState of
// the link with ifindex idx ("" and an error if networkd does not know it).
func (n *Networkd) LinkState(idx int) (oper, admin string, err error) {
	props, err := n.linkProps(idx)
	if err != nil {
		return "", "", err
	}
	oper, _ = props["OperationalState"].(string)
	admin, _ = props["AdministrativeState"].(string)
	return oper, admin, nil
}

// linkProps reads the Link properties of the link with ifindex idx.
func (n *Networkd) linkProps(idx int) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := sdbus.Dial(ctx, n.BusAddress())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// CallSeq: no bus activation when networkd is not running.
	out, _, err := c.CallSeq(ctx, BusName, "/org/freedesktop/network1/link/_3"+strconv.Itoa(idx),
		"org.freedesktop.DBus.Properties.GetAll", "org.freedesktop.network1.Link")
	if err != nil {
		return nil, err
	}
	props, _ := out[0].(map[string]any)
	return props, nil
}

// WaitLinkState waits until networkd reports the link with ifindex idx in
// the operational state oper and, unless admin is "", the administrative
// state admin.
func (n *Networkd) WaitLinkState(idx int, oper, admin string) {
	n.tb.Helper()
	var last string
	n.wait(fmt.Sprintf("link %d %s/%s in networkd", idx, oper, admin), func() bool {
		o, a, err := n.LinkState(idx)
		last = fmt.Sprintf("%s/%s (%v)", o, a, err)
		return err == nil && o == oper && (admin == "" || a == admin)
	}, func() string { return "last seen: " + last })
}

// WaitCarrierLost waits until networkd is done with the carrier loss of
// the link with ifindex idx: no-carrier, with no IPv4 address left
// (IPv4AddressState off). A test that brings the carrier back sooner races
// networkd 252: it re-requests its static address while the removal of
// that address is still in flight, the gateway route then fails ("Nexthop
// has invalid gateway") and the link ends up failed.
func (n *Networkd) WaitCarrierLost(idx int) {
	n.tb.Helper()
	var last string
	n.wait(fmt.Sprintf("link %d to lose its carrier and IPv4 addresses in networkd", idx), func() bool {
		props, err := n.linkProps(idx)
		last = fmt.Sprintf("%v (%v)", props, err)
		return err == nil && props["OperationalState"] == "no-carrier" && props["IPv4AddressState"] == "off"
	}, func() string { return "last seen: " + last })
}

// Logs returns the tails of the logs of networkd and the bus daemon.
func (n *Networkd) Logs() string {
	files, _ := filepath.Glob(filepath.Join(n.Dir, "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "--- %s (last %d of %d lines)\n%s\n", filepath.Base(f), min(len(lines), 60), len(lines),
			strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	return b.String()
}

func (n *Networkd) wait(what string, ok func() bool, detail ...func() string) {
	n.tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !ok() {
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("gave up after %s waiting for %s", waitTimeout, what)
			for _, d := range detail {
				msg += "\n" + d()
			}
			n.tb.Fatalf("%s\n%s", msg, n.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
