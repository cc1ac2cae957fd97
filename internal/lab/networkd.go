package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/netevd/netevd/internal/sdbus"
)

// With BackendNetworkd the lab runs the real systemd-networkd in the
// daemon namespace, the way the testbed does: a holder process keeps a
// private mount and UTS namespace with tmpfs on /run and on
// /etc/systemd/network (so nothing of the host's /run or networkd config
// is seen or changed) and a read-only sysfs (so networkd does not wait for
// udev); a private dbus-daemon --system and networkd run inside it, and so
// does the daemon, which finds the private bus at the usual system bus
// path. networkd configures lab0 from labNetwork.

const (
	networkdBinary = "/lib/systemd/systemd-networkd"
	networkdName   = "org.freedesktop.network1"
	// networkdTimeout bounds each wait while starting networkd.
	networkdTimeout = 10 * time.Second
)

// labNetwork gives lab0 the lab's static addresses and its default route
// via the peer. IPv6AcceptRA=no: otherwise networkd waits for a router
// advertisement and lab0 never leaves "configuring"; no IPv6 link-local
// address, whose duplicate address detection would delay "configured" by
// about two seconds after every carrier change.
const labNetwork = `# Written by netevd lab.
[Match]
Name=` + linkName + `
[Network]
Address=` + address4 + `
Gateway=` + gateway4 + `
IPv6AcceptRA=no
LinkLocalAddressing=no
[Address]
Address=` + address6 + `
DuplicateAddressDetection=none
`

// holderScript prepares the private namespaces and then holds them; %[1]s
// is the lab directory, %[2]s the .network file in it.
const holderScript = `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
mount -t tmpfs tmpfs /etc/systemd/network
cp '%[2]s' /etc/systemd/network/
umount -l /sys
mount -t sysfs -o ro sysfs /sys
touch '%[1]s/holder.ready'
exec sleep infinity
`

// networkdScripts are hooks for the directories only a network manager
// selects, written next to the example scripts.
var networkdScripts = map[string]string{
	"configured.d/50-log": `#!/bin/sh
# Lab hook: systemd-networkd finished configuring a link.
printf '%s\n' "[configured.d] $LINK is configured by systemd-networkd (was ${OLD_STATE:-unknown}; operational state $OperationalState); networkd describes it in ${#JSON} bytes of JSON${NETEVD_INITIAL:+ (startup replay)}"
`,
	"configuring.d/50-log": `#!/bin/sh
# Lab hook: systemd-networkd is configuring a link.
printf '%s\n' "[configuring.d] systemd-networkd is configuring $LINK (was ${OLD_STATE:-unknown})${NETEVD_INITIAL:+ (startup replay)}"
`,
	"manager.d/50-log": `#!/bin/sh
# Lab hook: systemd-networkd's overall state changed.
printf '%s\n' "[manager.d] systemd-networkd overall: $STATE (was ${OLD_STATE:-unknown}); carrier ${CarrierState:-unknown}, online ${OnlineState:-unknown}${NETEVD_INITIAL:+ (startup replay)}"
`,
}

// writeNetworkdScripts writes networkdScripts under the scripts root.
func writeNetworkdScripts(scripts string) error {
	for name, text := range networkdScripts {
		p := filepath.Join(scripts, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write lab script: %w", err)
		}
		if err := os.Chmod(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write lab script: %w", err)
		}
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			return fmt.Errorf("write lab script: %w", err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return fmt.Errorf("write lab script: %w", err)
		}
	}
	return nil
}

// checkNetworkd checks what the networkd backend needs.
func checkNetworkd(opts *Options) error {
	if _, err := os.Stat(networkdBinary); err != nil {
		return fmt.Errorf("netevd lab --backend networkd needs systemd-networkd (Debian package systemd): %w", err)
	}
	for _, c := range []struct{ cmd, pkg string }{{"dbus-daemon", "dbus-daemon"}, {"nsenter", "util-linux"}, {"unshare", "util-linux"}} {
		if _, err := exec.LookPath(c.cmd); err != nil {
			return fmt.Errorf("netevd lab --backend networkd needs %s (Debian package %s): %w", c.cmd, c.pkg, err)
		}
	}
	if hiddenInside(opts.Binary) {
		return fmt.Errorf("netevd lab --backend networkd: the binary %s is under /run, which the lab's private mount namespace hides", opts.Binary)
	}
	return nil
}

// hiddenInside reports whether path is under a directory the private
// mount namespace replaces.
func hiddenInside(path string) bool {
	for _, d := range []string{"/run", "/etc/systemd/network", "/sys"} {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// networkdEnv is the private mount namespace with the bus and networkd.
type networkdEnv struct {
	holder, bus, networkd *helper // nil until started
}

// helper is a process the lab started for networkd.
type helper struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has been waited for
}

// command returns a command that runs name inside the private mount, UTS
// and network namespaces.
func (e *networkdEnv) command(name string, args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(e.holder.cmd.Process.Pid), "-m", "-n", "-u", "--", name}, args...)
	cmd := exec.Command("nsenter", full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// busAddress is the private bus as seen from outside.
func (e *networkdEnv) busAddress() string {
	return fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", e.holder.cmd.Process.Pid)
}

// startNetworkd starts the holder, the bus and networkd, and waits until
// networkd owns its bus name. Their output goes to files in the lab
// directory; Run's cleanup stops them.
func (l *lab) startNetworkd(ctx context.Context) error {
	if hiddenInside(l.dir) {
		return fmt.Errorf("netevd lab --backend networkd: the lab directory %s is under /run, which the private mount namespace hides; set TMPDIR", l.dir)
	}
	netFile := filepath.Join(l.dir, "10-"+linkName+".network")
	if err := os.WriteFile(netFile, []byte(labNetwork), 0o644); err != nil {
		return fmt.Errorf("write lab network file: %w", err)
	}
	e := &networkdEnv{}
	l.nd = e
	var err error
	holder := exec.Command("ip", "netns", "exec", l.ns, "unshare", "-m", "-u", "--propagation", "private",
		"sh", "-c", fmt.Sprintf(holderScript, l.dir, netFile))
	l.say("+ ip netns exec %s unshare -m -u --propagation private sh -c '<private /run, /etc/systemd/network, read-only /sys>'", l.ns)
	if e.holder, err = l.startHelper(holder, "holder.log"); err != nil {
		return err
	}
	if err := l.waitHelper(ctx, "the private mount namespace", e.holder, func() bool {
		_, err := os.Stat(filepath.Join(l.dir, "holder.ready"))
		return err == nil
	}); err != nil {
		return err
	}

	bus := e.command("dbus-daemon", "--system", "--nofork", "--nopidfile")
	l.say("+ %s", strings.Join(bus.Args, " "))
	if e.bus, err = l.startHelper(bus, "dbus-daemon.log"); err != nil {
		return err
	}
	if err := l.waitHelper(ctx, "the private system bus", e.bus, func() bool {
		c, err := sdbus.Dial(ctx, e.busAddress())
		if err != nil {
			return false
		}
		c.Close()
		return true
	}); err != nil {
		return err
	}

	nd := e.command(networkdBinary)
	l.say("+ %s (log: %s)", strings.Join(nd.Args, " "), filepath.Join(l.dir, "networkd.log"))
	if e.networkd, err = l.startHelper(nd, "networkd.log"); err != nil {
		return err
	}
	if err := l.waitHelper(ctx, "systemd-networkd on the private bus", e.networkd, func() bool {
		c, err := sdbus.Dial(ctx, e.busAddress())
		if err != nil {
			return false
		}
		defer c.Close()
		owned, err := c.NameHasOwner(ctx, networkdName)
		return err == nil && owned
	}); err != nil {
		return err
	}
	l.say("systemd-networkd (PID %d) manages %s as %s says", nd.Process.Pid, linkName, netFile)
	return nil
}

// startHelper starts cmd with its output in the lab directory and reaps it
// in the background.
func (l *lab) startHelper(cmd *exec.Cmd, logName string) (*helper, error) {
	f, err := os.Create(filepath.Join(l.dir, logName))
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", logName, err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Args[0], err)
	}
	h := &helper{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(h.done)
	}()
	return h, nil
}

// waitHelper polls ok until it holds, h exits, ctx ends or networkdTimeout
// passes.
func (l *lab) waitHelper(ctx context.Context, what string, h *helper, ok func() bool) error {
	deadline := time.Now().Add(networkdTimeout)
	for !ok() {
		select {
		case <-h.done:
			return fmt.Errorf("starting %s: %s exited (%s); see the logs in %s", what, h.cmd.Args[0], h.cmd.ProcessState, l.dir)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("starting %s: not ready after %s; see the logs in %s", what, networkdTimeout, l.dir)
		}
	}
	return nil
}

// stopNetworkd stops networkd, the bus and the holder (SIGTERM, then
// SIGKILL after killGrace) and waits for them. It does nothing without
// networkd.
func (l *lab) stopNetworkd() {
	if l.nd == nil {
		return
	}
	for _, h := range []*helper{l.nd.networkd, l.nd.bus, l.nd.holder} {
		if h == nil {
			continue
		}
		// os.Process signals through a pidfd: no risk of hitting a reused
		// PID.
		if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			l.warn("stop %s: %v", h.cmd.Args[0], err)
		}
		select {
		case <-h.done:
		case <-time.After(killGrace):
			_ = h.cmd.Process.Kill()
			<-h.done
		}
	}
	l.nd = nil
}
