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
	"strings"
	"sync"
	"testing"

	"github.com/netevd/netevd/internal/nettest"
)

// The DHCP lab: dnsmasq serves 10.81.0.0/24 on vs0 in the peer namespace;
// ISC dhclient runs on veth0 in the daemon's namespace (testbed README §3).
const (
	dhcServerAddr = "10.81.0.1/24"
	dhcServer     = "10.81.0.1"
	dhcDomain     = "dhcp.netevd.test"
	dhcHostname   = "netevd-dhcp-lab"
)

// dhcLab is a lab with a DHCP server and a place for dhclient's files.
type dhcLab struct {
	*lab
	t         *testing.T
	work      string // the lease file, dnsmasq's files, the /etc overlay
	leaseFile string
	dhclient  string // the dhclient binary
	dnsmasq   string // the dnsmasq binary
	script    string // dhclient-script
}

// dhcLookSbin finds a program in PATH or in /usr/sbin and /sbin, where
// dhclient and dnsmasq live.
func dhcLookSbin(name string) (string, error) {
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

// newDhcLab skips the test unless dhclient, dnsmasq and what the recipe
// needs are there and the test runs as root; then it guards the host's
// resolver config and hostname, builds the lab and writes the daemon's
// config: backend dhclient, watching only the test's lease file and
// directory.
func newDhcLab(t *testing.T) *dhcLab {
	t.Helper()
	l := &dhcLab{t: t}
	for _, need := range []struct {
		bin, pkg string
		dst      *string
	}{
		{"dhclient", "isc-dhcp-client", &l.dhclient}, {"dhclient-script", "isc-dhcp-client", &l.script},
		{"dnsmasq", "dnsmasq-base", &l.dnsmasq}, {"unshare", "util-linux", nil},
	} {
		p, err := dhcLookSbin(need.bin)
		if err != nil {
			t.Skipf("needs %s (Debian package %s; scripts/install-test-deps.sh installs it): %v", need.bin, need.pkg, err)
		}
		if need.dst != nil {
			*need.dst = p
		}
	}
	if b, err := os.ReadFile("/proc/filesystems"); err != nil || !bytes.Contains(b, []byte("\toverlay\n")) {
		t.Skip("needs overlayfs: dhclient-script writes /etc/resolv.conf, which the test hides behind an overlay")
	}
	nettest.RequirePrivileged(t)
	dhcHostGuard(t)

	l.lab = newLab(t, labOptions{})
	l.work = t.TempDir()
	if strings.ContainsAny(l.work, " ,:'\"\n") {
		t.Fatalf("temp dir %q cannot be an overlay option or a script argument", l.work)
	}
	l.leaseFile = filepath.Join(l.work, "dhclient.leases")
	cfg := l.config(labOptions{})
	cfg["system"].(map[string]any)["backend"] = "dhclient"
	cfg["backends"] = map[string]any{"dhclient": map[string]any{
		"lease_file": l.leaseFile,
		"lease_dirs": []string{l.work},
	}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	l.writeRawConfig(string(b) + "\n")

	nettest.VethPair(t, l.ns, l.peer, "veth0", 10, "vs0", 20)
	l.ns.Run("link", "set", "lo", "up")
	l.peer.Run("link", "set", "lo", "up")
	l.peer.Run("addr", "add", dhcServerAddr, "dev", "vs0")
	l.peer.Run("link", "set", "vs0", "up")
	return l
}

// dhcHostGuard records the host's /etc/resolv.conf and hostname and checks
// at the end of the test, after everything the test started is gone, that
// neither changed and that dhclient-script left no temporary file in the
// host's /etc.
func dhcHostGuard(t *testing.T) {
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
		if m, _ := filepath.Glob("/etc/resolv.conf.dhclient-new*"); len(m) > 0 {
			t.Errorf("dhclient-script left %q in the host's /etc", m)
		}
	})
}

// dhcProc is a process the lab started; it is killed (by PID) and reaped in
// t.Cleanup.
type dhcProc struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex // guards out
	out bytes.Buffer
}

func (p *dhcProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *dhcProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *dhcProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (l *dhcLab) startProc(what string, args ...string) *dhcProc {
	l.t.Helper()
	p := &dhcProc{cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", what, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	l.t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if l.t.Failed() {
			l.t.Logf("%s (PID %d) output:\n%s", what, p.cmd.Process.Pid, p.output())
		}
	})
	return p
}

// startDnsmasq runs dnsmasq as DHCP server only (no DNS) on vs0 in the peer
// namespace and waits until it has bound its sockets: a DISCOVER sent
// before would be lost.
func (l *dhcLab) startDnsmasq() {
	l.t.Helper()
	log := filepath.Join(l.work, "dnsmasq.log")
	p := l.startProc("dnsmasq", "ip", "netns", "exec", l.peer.Name, "unshare", "-m", "--propagation", "private",
		l.dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=vs0", "--bind-interfaces", "--except-interface=lo", "--user=root", "--group=root",
		"--dhcp-range=10.81.0.100,10.81.0.150,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(l.work, "dnsmasq.leases"),
		"--pid-file="+filepath.Join(l.work, "dnsmasq.pid"),
		"--dhcp-option=option:dns-server,"+dhcServer, "--domain="+dhcDomain,
		"--dhcp-option=option:domain-name,"+dhcDomain,
		"--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility="+log)
	waitFor(l.t, "dnsmasq to bind its DHCP socket", func() (struct{}, bool) {
		if p.exited() {
			l.t.Fatalf("dnsmasq exited: %s", p.output())
		}
		b, _ := os.ReadFile(log)
		return struct{}{}, bytes.Contains(b, []byte("sockets bound"))
	})
}

// dhclientInner runs as the first process of a private mount and UTS
// namespace inside the daemon's network namespace (testbed README §3):
// a tmpfs on /run and an overlay on /etc catch what dhclient-script writes
// (/etc/resolv.conf, its temporary file, /run files), the hostname is the
// namespace's own, and then it becomes dhclient, in the foreground, once.
const dhclientInner = `set -e
W=$1 DHCLIENT=$2 SCRIPT=$3
mount -t tmpfs tmpfs /run
mkdir -p "$W/etc-up" "$W/etc-wk"
mount -t overlay overlay -o lowerdir=/etc,upperdir="$W/etc-up",workdir="$W/etc-wk" /etc
hostname ` + dhcHostname + `
ip link set veth0 up
exec "$DHCLIENT" -d -v -1 -lf "$W/dhclient.leases" -pf "$W/dhclient.pid" -sf "$SCRIPT" veth0
`

// startDhclient runs dhclient on veth0.
func (l *dhcLab) startDhclient() *dhcProc {
	l.t.Helper()
	return l.startProc("dhclient", "ip", "netns", "exec", l.ns.Name, "unshare", "-m", "-u", "--propagation", "private",
		"sh", "-c", dhclientInner, "sh", l.work, l.dhclient, l.script)
}
