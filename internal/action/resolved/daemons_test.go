package resolved

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/sdbus"
)

// debCache is where the tests keep systemd-resolved's .deb between runs.
const debCache = "/var/cache/netevd-test"

const hostnamedBin = "/lib/systemd/systemd-hostnamed"

// daemons is a real systemd-resolved and systemd-hostnamed running in a
// throw-away network namespace, in a private mount namespace (tmpfs on
// /run, an overlay over /etc) and a private UTS namespace, on a private
// system bus (testbed/tb-resolved-hostnamed.sh).
type daemons struct {
	ns  *nettest.NetNS
	pid int    // the process holding the namespaces
	dir string // holds the unpacked .deb, the overlay's layers and the logs
	// bus is the private system bus as the test reaches it: its socket
	// through /proc/PID/root, in the daemons' mount namespace.
	bus string
}

// innerScript runs in the new namespaces. It mounts the overlay over /etc
// before anything writes there, so the user resolved needs, its D-Bus
// policy and the hostname hostnamed writes all land in $W/etc-up.
const innerScript = `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus "$W/etc-up" "$W/etc-wk"
mount -t overlay overlay -o lowerdir=/etc,upperdir="$W/etc-up",workdir="$W/etc-wk" /etc
getent passwd systemd-resolve >/dev/null || useradd -r -M -l -s /usr/sbin/nologin systemd-resolve
mkdir -p /run/systemd/resolve
chown systemd-resolve: /run/systemd/resolve
cp "$W"/root/usr/share/dbus-1/system.d/org.freedesktop.resolve1.conf /etc/dbus-1/system.d/
dbus-daemon --system --fork --nopidfile
"$W/root/lib/systemd/systemd-resolved" >"$W/resolved.log" 2>&1 &
` + hostnamedBin + ` >"$W/hostnamed.log" 2>&1 &
exec sleep infinity
`

// startDaemons starts the daemons and waits until both own their bus
// names. It skips the test when something it needs is missing.
func startDaemons(t *testing.T) *daemons {
	t.Helper()
	nettest.RequirePrivileged(t)
	for _, bin := range []string{"unshare", "nsenter", "dbus-daemon", "dpkg-deb", "useradd", "getent"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s in PATH", bin)
		}
	}
	if _, err := os.Stat(hostnamedBin); err != nil {
		t.Skipf("needs %s (Debian package systemd): %v", hostnamedBin, err)
	}
	deb := resolvedDeb(t)

	dir := t.TempDir()
	if strings.HasPrefix(dir, "/run/") || strings.HasPrefix(dir, "/etc/") {
		t.Skipf("temporary directory %s is hidden inside the namespace; set TMPDIR elsewhere", dir)
	}
	if out, err := exec.Command("dpkg-deb", "-x", deb, filepath.Join(dir, "root")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v: %s", deb, err, out)
	}
	script := filepath.Join(dir, "inner.sh")
	if err := os.WriteFile(script, []byte(innerScript), 0o600); err != nil {
		t.Fatal(err)
	}

	d := &daemons{ns: nettest.NewNetNS(t), dir: dir}
	d.ns.Run("link", "set", "lo", "up")
	cmd := exec.Command("ip", "netns", "exec", d.ns.Name, "unshare", "-m", "-u", "--propagation", "private", "bash", script)
	cmd.Env = append(os.Environ(), "W="+dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the namespace: %v", err)
	}
	// ip, unshare and bash exec each other, and bash execs sleep: the
	// process holds the namespaces for the whole test.
	d.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Runs before the namespace's own cleanup, which kills what is left.
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"resolved.log", "hostnamed.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
		d.killAll(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	d.bus = fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", d.pid)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var conn *sdbus.Conn
	for conn == nil {
		select {
		case err := <-exited:
			t.Fatalf("the namespace's setup script ended: %v", err)
		case <-ctx.Done():
			t.Fatal("the private system bus did not come up")
		case <-time.After(50 * time.Millisecond):
		}
		conn, _ = sdbus.Dial(ctx, d.bus)
	}
	defer conn.Close()
	d.checkIsolation(t)
	for _, name := range []string{resolveDest, hostnameDest} {
		for {
			if ok, _ := conn.NameHasOwner(ctx, name); ok {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s did not appear on the private bus", name)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return d
}

// checkIsolation fails the test before anything is pushed unless the
// daemons run in their own mount, UTS and network namespaces with a tmpfs
// on /run and an overlay on /etc: then nothing they write reaches the host.
func (d *daemons) checkIsolation(t *testing.T) {
	t.Helper()
	for _, ns := range []string{"mnt", "uts", "net"} {
		mine, err1 := os.Readlink("/proc/self/ns/" + ns)
		theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", d.pid, ns))
		if err1 != nil || err2 != nil || mine == theirs {
			t.Fatalf("the daemons do not have their own %s namespace (%s, %s; %v, %v)", ns, mine, theirs, err1, err2)
		}
	}
	for mp, want := range map[string]string{"/etc": "overlay", "/run": "tmpfs"} {
		if got := mountType(t, d.pid, mp); got != want {
			t.Fatalf("in the daemons' mount namespace %s is %q, want %q", mp, got, want)
		}
	}
}

// mountType returns the file system type of what is mounted on mp (the
// topmost mount) in pid's mount namespace, or "".
func mountType(t *testing.T, pid int, mp string) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
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

func (d *daemons) killAll(sig syscall.Signal) {
	out, err := exec.Command("ip", "netns", "pids", d.ns.Name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// inside runs a command in the daemons' namespaces and returns its
// trimmed output.
func (d *daemons) inside(t *testing.T, args ...string) string {
	t.Helper()
	full := append([]string{"-t", strconv.Itoa(d.pid), "-m", "-n", "-u", "--"}, args...)
	out, err := exec.Command("nsenter", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter %s: %v: %s", strings.Join(full, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// resolvedDeb returns systemd-resolved's .deb: the cached copy, or one
// fetched with `apt-get download` (the package is never installed: its
// maintainer scripts would rewire the host's /etc/resolv.conf) and then
// cached. It skips the test when neither works.
func resolvedDeb(t *testing.T) string {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(debCache, "systemd-resolved_*.deb")); len(m) > 0 {
		return m[len(m)-1]
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skipf("needs systemd-resolved's .deb in %s, or apt-get to download it", debCache)
	}
	tmp := t.TempDir()
	cmd := exec.Command("apt-get", "download", "-q", "systemd-resolved")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("needs systemd-resolved's .deb: `apt-get download systemd-resolved` failed (%v: %s); "+
			"put the .deb in %s to run this test offline", err, strings.TrimSpace(string(out)), debCache)
	}
	m, _ := filepath.Glob(filepath.Join(tmp, "systemd-resolved_*.deb"))
	if len(m) != 1 {
		t.Skipf("`apt-get download systemd-resolved` left %d .deb files", len(m))
	}
	if err := cacheFile(m[0], debCache); err != nil {
		t.Logf("not caching %s: %v", filepath.Base(m[0]), err)
	}
	return m[0]
}

// cacheFile copies src into dir under its own name, atomically.
func cacheFile(src, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, ".download-*")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(0o644); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(out.Name(), filepath.Join(dir, filepath.Base(src)))
}

// hostFingerprint is what the tests must leave as it was: the host's
// hostname, /etc/hostname, /etc/resolv.conf and /etc/passwd.
func hostFingerprint(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("hostname " + h + "\n")
	for _, f := range []string{"/etc/hostname", "/etc/resolv.conf", "/etc/passwd"} {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", f, err)
			continue
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s %s\n", f, hex.EncodeToString(sum[:]))
	}
	return b.String()
}

// guardHost fails the test if the host's hostname or files changed by the
// time every other cleanup ran. Call it first.
func guardHost(t *testing.T) {
	t.Helper()
	before := hostFingerprint(t)
	t.Cleanup(func() {
		if after := hostFingerprint(t); after != before {
			t.Errorf("THE HOST CHANGED:\nbefore:\n%safter:\n%s", before, after)
		}
	})
}

// stopResolved stops systemd-resolved and waits until its name is off
// the bus.
func (d *daemons) stopResolved(t *testing.T) {
	t.Helper()
	bin := filepath.Join(d.dir, "root/lib/systemd/systemd-resolved")
	out, err := exec.Command("ip", "netns", "pids", d.ns.Name).Output()
	if err != nil {
		t.Fatalf("ip netns pids: %v", err)
	}
	stopped := 0
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe == bin {
			if err := syscall.Kill(pid, syscall.SIGTERM); err == nil {
				stopped++
			}
		}
	}
	if stopped != 1 {
		t.Fatalf("stopped %d systemd-resolved processes, want 1", stopped)
	}
	d.waitName(t, resolveDest, false)
}

// startResolved starts systemd-resolved again in the same namespaces and
// waits until it owns its name.
func (d *daemons) startResolved(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(d.dir, "resolved.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(d.pid), "-m", "-n", "-u", "--",
		filepath.Join(d.dir, "root/lib/systemd/systemd-resolved"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start systemd-resolved again: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	d.waitName(t, resolveDest, true)
}

// waitName waits until name is on the private bus, or (owned false) off it.
func (d *daemons) waitName(t *testing.T, name string, owned bool) {
	t.Helper()
	conn, err := sdbus.Dial(t.Context(), d.bus)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, err := conn.NameHasOwner(t.Context(), name); err == nil && ok == owned {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: owned is not %v after 10s", name, owned)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
