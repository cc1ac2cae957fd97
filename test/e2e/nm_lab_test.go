package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/nettest"
)

// The keyfile connection the NetworkManager lab activates on veth0.
const (
	nmConnID   = "netevd-veth0"
	nmConnUUID = "5f0c2a8e-4e1b-4c3a-9a57-0d6e3b1c2a10"
	nmConnFile = "/etc/NetworkManager/system-connections/netevd-veth0.nmconnection"
	nmAddr     = "10.83.0.1/24"
	nmPeerAddr = "10.83.0.2/24"
	nmGateway  = "10.83.0.2"
	nmDNS      = "10.83.0.53"
	nmSearch   = "nm.netevd.test"
	nmHostname = "netevd-nm-lab"
)

// nmConfig is NetworkManager.conf for the lab (testbed README §2): keyfile
// profiles only, no automatic connections, hands off /etc/resolv.conf and
// the hostname, only veth0 managed, debug logging to stderr.
const nmConfig = `[main]
plugins=keyfile
no-auto-default=*
dns=none
rc-manager=unmanaged
hostname-mode=none
auth-polkit=false
[keyfile]
unmanaged-devices=except:interface-name:veth0
[logging]
level=DEBUG
domains=CORE,DEVICE,PLATFORM,ETHER,DISPATCH,IP4,SETTINGS
audit=false
[connectivity]
enabled=false
`

var nmConnection = `[connection]
id=` + nmConnID + `
uuid=` + nmConnUUID + `
type=ethernet
interface-name=veth0
autoconnect=true
[ethernet]
[ipv4]
method=manual
address1=` + nmAddr + `,` + nmGateway + `
dns=` + nmDNS + `;
dns-search=` + nmSearch + `;
[ipv6]
method=disabled
`

// nmHolderScript runs as the first process of the lab's private mount and
// UTS namespace (inside the daemon's network namespace). It hides the
// host's /run, /etc/NetworkManager and /var/lib/NetworkManager behind
// tmpfs, so NetworkManager, its bus and its state touch nothing of the
// host, writes the config, starts a system bus, signals readiness through
// the file $1/ready and then holds the namespaces open.
var nmHolderScript = `set -e
hostname ` + nmHostname + `
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/NetworkManager
mount -t tmpfs tmpfs /etc/NetworkManager
mount -t tmpfs tmpfs /var/lib/NetworkManager
umount -l /sys
mount -t sysfs -o ro sysfs /sys
mkdir -p /etc/NetworkManager/conf.d /etc/NetworkManager/system-connections
cat > /etc/NetworkManager/NetworkManager.conf <<'EOF'
` + nmConfig + `EOF
cat > ` + nmConnFile + ` <<'EOF'
` + nmConnection + `EOF
chmod 600 ` + nmConnFile + `
dbus-daemon --system --fork --nopidfile
touch "$1/ready"
exec sleep infinity
`

// nmLab is a lab whose daemon namespace also runs a private system bus
// and the real NetworkManager in a private mount and UTS namespace. veth0
// (ifindex 10) in the daemon's namespace is NetworkManager's; its peer vp0
// (ifindex 20, 10.83.0.2/24) starts down.
type nmLab struct {
	*lab
	t      *testing.T
	nmBin  string
	work   string    // the ready marker and NetworkManager's log
	holder *exec.Cmd // the holder process; nsenter's target
	nm     *exec.Cmd // the running NetworkManager, nil when stopped
	nmDone chan struct{}
}

// lookSbin finds a program in PATH or in /usr/sbin and /sbin, where
// NetworkManager lives.
func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, /usr/sbin or /sbin", name)
}

// newNMLab skips the test unless NetworkManager and the tools around it
// are installed and the test runs as root; then it builds the lab, starts
// NetworkManager and waits until it manages veth0.
func newNMLab(t *testing.T) *nmLab {
	t.Helper()
	nmBin, err := lookSbin("NetworkManager")
	if err != nil {
		t.Skipf("needs NetworkManager (Debian package network-manager; scripts/install-test-deps.sh installs it where apt cannot start it): %v", err)
	}
	for _, need := range []struct{ bin, pkg string }{
		{"nmcli", "network-manager"}, {"dbus-daemon", "dbus-daemon"}, {"nsenter", "util-linux"}, {"unshare", "util-linux"},
	} {
		if _, err := lookSbin(need.bin); err != nil {
			t.Skipf("needs %s (Debian package %s)", need.bin, need.pkg)
		}
	}
	for _, dir := range []string{"/etc/NetworkManager", "/var/lib/NetworkManager"} {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Skipf("needs %s (it is hidden behind a tmpfs in the test; the network-manager package creates it)", dir)
		}
	}
	nettest.RequirePrivileged(t)
	checkHostUntouched(t)

	l := &nmLab{lab: newLab(t, labOptions{}), t: t, nmBin: nmBin, work: t.TempDir()}
	if strings.ContainsAny(l.work, " '\n") {
		t.Fatalf("temp dir %q cannot be passed to the holder script", l.work)
	}
	cfg := l.config(labOptions{})
	cfg["system"].(map[string]any)["backend"] = "NetworkManager"
	cfg["system"].(map[string]any)["log_level"] = "debug"
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	l.writeRawConfig(string(b) + "\n")

	l.holder = exec.Command("ip", "netns", "exec", l.ns.Name,
		"unshare", "-m", "-u", "--propagation", "private", "sh", "-c", nmHolderScript, "sh", l.work)
	var holderOut bytes.Buffer
	l.holder.Stdout, l.holder.Stderr = &holderOut, &holderOut
	if err := l.holder.Start(); err != nil {
		t.Fatalf("start the namespace holder: %v", err)
	}
	holderDone := make(chan struct{})
	go func() { _ = l.holder.Wait(); close(holderDone) }()
	t.Cleanup(func() {
		_ = l.holder.Process.Kill()
		<-holderDone
	})
	waitFor(t, "the lab's system bus", func() (struct{}, bool) {
		select {
		case <-holderDone:
			t.Fatalf("the namespace holder exited: %s", holderOut.String())
		default:
		}
		_, err := os.Stat(filepath.Join(l.work, "ready"))
		return struct{}{}, err == nil
	})

	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, _ := os.ReadFile(filepath.Join(l.work, "NetworkManager.log"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		t.Logf("NetworkManager's log, the last %d of %d lines:\n%s",
			min(len(lines), 80), len(lines), strings.Join(lines[max(0, len(lines)-80):], "\n"))
	})

	nettest.VethPair(t, l.ns, l.peer, "veth0", 10, "vp0", 20)
	l.peer.Run("link", "set", "lo", "up")
	l.peer.Run("addr", "add", nmPeerAddr, "dev", "vp0")
	l.startNM()
	l.waitDevice("unavailable")
	return l
}

// checkHostUntouched records the host's /etc/resolv.conf and hostname and
// checks at the end of the test that they did not change.
func checkHostUntouched(t *testing.T) {
	t.Helper()
	resolv := func() string {
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil {
			return "unreadable: " + err.Error()
		}
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:])
	}
	host, _ := os.Hostname()
	before := resolv()
	t.Cleanup(func() {
		if after := resolv(); after != before {
			t.Errorf("the host's /etc/resolv.conf changed: sha256 %s, was %s", after, before)
		}
		if h, _ := os.Hostname(); h != host {
			t.Errorf("the host's hostname changed to %q, was %q", h, host)
		}
	})
}

// inside returns a command that runs in the lab's network, mount and UTS
// namespaces, where the private system bus is.
func (l *nmLab) inside(args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(l.holder.Process.Pid), "-m", "-n", "-u", "--"}, args...)
	cmd := exec.Command("nsenter", full...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket")
	return cmd
}

// nmcli runs nmcli inside and returns its output, failing the test if it
// fails.
func (l *nmLab) nmcli(args ...string) string {
	l.t.Helper()
	out, err := l.inside(append([]string{"nmcli"}, args...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("nmcli %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out)
}

// startNM starts NetworkManager inside and waits until it runs.
func (l *nmLab) startNM() {
	l.t.Helper()
	logf, err := os.OpenFile(filepath.Join(l.work, "NetworkManager.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	// nsenter execs NetworkManager in place: the PID is NetworkManager's.
	cmd := l.inside(l.nmBin, "--debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start NetworkManager: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	l.nm, l.nmDone = cmd, done
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	waitFor(l.t, "NetworkManager to run", func() (struct{}, bool) {
		select {
		case <-done:
			l.t.Fatal("NetworkManager exited")
		default:
		}
		out, _ := l.inside("nmcli", "-t", "-f", "RUNNING", "general").Output()
		return struct{}{}, strings.TrimSpace(string(out)) == "running"
	})
}

// stopNM stops NetworkManager with SIGTERM and waits for it to exit.
func (l *nmLab) stopNM() {
	l.t.Helper()
	if err := l.nm.Process.Signal(syscall.SIGTERM); err != nil {
		l.t.Fatalf("stop NetworkManager: %v", err)
	}
	select {
	case <-l.nmDone:
	case <-time.After(waitTimeout):
		l.t.Fatalf("NetworkManager did not exit within %s of SIGTERM", waitTimeout)
	}
	l.nm, l.nmDone = nil, nil
}

// deviceState is veth0's state as nmcli prints it ("connected",
// "unavailable", ...).
func (l *nmLab) deviceState() string {
	out, _ := l.inside("nmcli", "-t", "-f", "DEVICE,STATE", "device").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if dev, st, ok := strings.Cut(line, ":"); ok && dev == "veth0" {
			return st
		}
	}
	return ""
}

// waitDevice waits until nmcli shows veth0 in state.
func (l *nmLab) waitDevice(state string) {
	l.t.Helper()
	poll(l.t, 50*time.Millisecond, "NetworkManager to show veth0 "+state, func() (struct{}, bool) {
		return struct{}{}, l.deviceState() == state
	}, func() string { return "veth0 is " + strconv.Quote(l.deviceState()) })
}

// startDaemon runs the daemon inside (nsenter execs it in place, so the
// child's PID is the daemon's) and waits until it is ready. Like
// startDaemon it kills the daemon in cleanup and prints its log if the
// test failed.
func (l *nmLab) startDaemon() *daemon {
	l.t.Helper()
	cmd := l.inside(netevdBin, "--config", l.cfgPath, "--log-format", "json")
	cmd.Env = daemonEnv(insideBus)
	d := runDaemonCmd(l.t, cmd, "nsenter")
	return d
}
