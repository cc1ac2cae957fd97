package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// requireRoot skips unless the test can create network namespaces.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates network namespaces")
	}
	if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		t.Skipf("needs a working ip netns: %v", err)
	}
}

// labNames are the namespaces Run creates in this process.
func labNames() (ns, peer string) {
	return fmt.Sprintf("netevd-lab-%d", os.Getpid()), fmt.Sprintf("netevd-lab-%d-peer", os.Getpid())
}

// removeLeftovers deletes this process's lab namespaces after a failed
// test (Run should already have) and kills what is left in them.
func removeLeftovers(t *testing.T) {
	ns, peer := labNames()
	for _, n := range []string{ns, peer} {
		if _, err := os.Stat("/run/netns/" + n); err == nil {
			t.Fatalf("namespace %s exists before the test", n)
		}
	}
	t.Cleanup(func() {
		for _, n := range []string{ns, peer} {
			if _, err := os.Stat("/run/netns/" + n); err != nil {
				continue
			}
			out, _ := exec.Command("ip", "netns", "pids", n).Output()
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
}

// fakeDaemon writes a stand-in for netevd that records, in dir, where it
// runs and, on SIGTERM, the state of lab0; it logs "msg=ready" and waits.
func fakeDaemon(t *testing.T, dir string) string {
	t.Helper()
	script := `#!/bin/sh
out=` + dir + `
echo $$ > "$out/pid"
ip netns identify $$ > "$out/netns"
ls /run/netns > "$out/namespaces"
echo "$2" > "$out/config-path"
trap 'ip -o address show dev lab0 > "$out/addresses"; ip route show dev lab0 > "$out/routes"; ip -o link show lab0 > "$out/link"; echo stopping; exit 0' TERM
echo "time=now level=INFO msg=ready"
echo "hello on stderr" >&2
while :; do sleep 0.02; done
`
	path := filepath.Join(t.TempDir(), "fake-netevd")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// lockedBuffer is a bytes.Buffer that may call hook on every write.
type lockedBuffer struct {
	mu   sync.Mutex // guards the fields below
	buf  bytes.Buffer
	hook func(p []byte)
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hook != nil {
		b.hook(p)
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hostLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, fmt.Sprintf("%d:%s:%v", i.Index, i.Name, i.Flags))
	}
	return names
}

// checkCleaned asserts that nothing of the run is left: namespaces,
// temporary directory, daemon process, and that the host's links are as
// they were.
func checkCleaned(t *testing.T, rec string, hostBefore []string) {
	t.Helper()
	ns, peer := labNames()
	for _, n := range []string{ns, peer} {
		if _, err := os.Stat("/run/netns/" + n); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still exists after Run (stat: %v)", n, err)
		}
	}
	dir := filepath.Dir(strings.TrimSpace(readFile(t, filepath.Join(rec, "config-path"))))
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab directory %s still exists after Run (stat: %v)", dir, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(rec, "pid"))))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("daemon PID %d still exists after Run (kill 0: %v)", pid, err)
	}
	if diff := cmp.Diff(hostLinks(t), hostBefore); diff != "" {
		t.Errorf("host links changed (-after +before):\n%s", diff)
	}
}

// linesWith returns the lines of s that contain sub.
func linesWith(s, sub string) []string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
	}
	return out
}

func TestRun(t *testing.T) {
	requireRoot(t)
	removeLeftovers(t)
	hostBefore := hostLinks(t)
	rec := t.TempDir()
	var stdout, stderr lockedBuffer

	err := Run(t.Context(), Options{Binary: fakeDaemon(t, rec), Delay: 50 * time.Millisecond}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	ns, peer := labNames()
	pid := strings.TrimSpace(readFile(t, filepath.Join(rec, "pid")))

	want := []string{
		"lab | >>> set lab0 up: no carrier yet, the peer is down (ip -n " + ns + " link set lab0 up)",
		"lab | >>> bring the peer up: lab0 gets carrier (ip -n " + peer + " link set lab0p up)",
		"lab | >>> add an IPv4 address to lab0 (ip -n " + ns + " address add 192.0.2.10/24 dev lab0)",
		"lab | >>> add an IPv6 address to lab0 (ip -n " + ns + " address add 2001:db8:1::10/64 dev lab0 nodad)",
		"lab | >>> add a default route via the peer: lab0 is routable (ip -n " + ns + " route add default via 192.0.2.1 dev lab0)",
		"lab | >>> take the peer down: lab0 loses carrier (ip -n " + peer + " link set lab0p down)",
		"lab | >>> bring the peer up again: carrier is back (ip -n " + peer + " link set lab0p up)",
		"lab | >>> delete the default route: lab0 is no longer routable (ip -n " + ns + " route del default via 192.0.2.1 dev lab0)",
		"lab | >>> add the default route back (ip -n " + ns + " route add default via 192.0.2.1 dev lab0)",
		"lab | >>> remove the IPv4 address (the kernel drops the default route with it) (ip -n " + ns + " address del 192.0.2.10/24 dev lab0)",
		"lab | >>> add the IPv4 address back (ip -n " + ns + " address add 192.0.2.10/24 dev lab0)",
		"lab | >>> stop the daemon (kill -TERM " + pid + ")",
	}
	if diff := cmp.Diff(linesWith(out, ">>>"), want); diff != "" {
		t.Errorf("scenario steps (-got +want):\n%s", diff)
	}
	for _, line := range []string{
		"daemon | time=now level=INFO msg=ready",
		"daemon | hello on stderr",
		"lab | daemon (PID " + pid + ") is ready",
		"daemon | stopping",
		"lab | daemon exited: exit status 0",
	} {
		if !slices.Contains(strings.Split(out, "\n"), line) {
			t.Errorf("stdout lacks line %q", line)
		}
	}
	if !strings.HasSuffix(out, "lab | cleaned up\n") {
		t.Errorf("stdout does not end with %q", "lab | cleaned up")
	}
	if s := stderr.String(); s != "" {
		t.Errorf("stderr = %q, want empty", s)
	}

	// The daemon ran in the lab's namespace while both existed.
	if diff := cmp.Diff(strings.TrimSpace(readFile(t, filepath.Join(rec, "netns"))), ns); diff != "" {
		t.Errorf("daemon's namespace (-got +want):\n%s", diff)
	}
	all := strings.Fields(readFile(t, filepath.Join(rec, "namespaces")))
	if !slices.Contains(all, ns) || !slices.Contains(all, peer) {
		t.Errorf("namespaces during the run = %v, want %s and %s among them", all, ns, peer)
	}
	// The scenario changed lab0 inside the namespace: at the end it has
	// carrier and both addresses, and no default route.
	if link := readFile(t, filepath.Join(rec, "link")); !strings.Contains(link, "10: lab0@if20:") || !strings.Contains(link, "LOWER_UP") {
		t.Errorf("lab0 at the end = %q, want index 10, peer 20, LOWER_UP", link)
	}
	addrs := readFile(t, filepath.Join(rec, "addresses"))
	for _, a := range []string{"inet 192.0.2.10/24", "inet6 2001:db8:1::10/64"} {
		if !strings.Contains(addrs, a) {
			t.Errorf("lab0's addresses at the end lack %q:\n%s", a, addrs)
		}
	}
	if routes := readFile(t, filepath.Join(rec, "routes")); strings.Contains(routes, "default") {
		t.Errorf("lab0 still has a default route at the end:\n%s", routes)
	}
	checkCleaned(t, rec, hostBefore)
}

func TestRunCanceled(t *testing.T) {
	requireRoot(t)
	removeLeftovers(t)
	hostBefore := hostLinks(t)
	rec := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	flaps := 0
	stdout := &lockedBuffer{hook: func(p []byte) {
		if bytes.Contains(p, []byte("lab0 loses carrier")) {
			if flaps++; flaps == 3 {
				cancel()
			}
		}
	}}
	var stderr lockedBuffer

	err := Run(ctx, Options{Binary: fakeDaemon(t, rec), Loop: true, Delay: 50 * time.Millisecond}, stdout, &stderr)
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if got := len(linesWith(out, "lab0 loses carrier")); got != 3 {
		t.Errorf("%d carrier flaps, want 3 (then canceled)", got)
	}
	if got := linesWith(out, "stop the daemon"); len(got) != 0 {
		t.Errorf("canceled run played the last step: %q", got)
	}
	for _, line := range []string{"daemon | stopping", "lab | daemon exited: exit status 0"} {
		if !slices.Contains(strings.Split(out, "\n"), line) {
			t.Errorf("stdout lacks line %q", line)
		}
	}
	if !strings.HasSuffix(out, "lab | cleaned up\n") {
		t.Errorf("stdout does not end with %q", "lab | cleaned up")
	}
	checkCleaned(t, rec, hostBefore)
}

func TestRunKeep(t *testing.T) {
	requireRoot(t)
	removeLeftovers(t)
	rec := t.TempDir()
	var stdout, stderr lockedBuffer

	err := Run(t.Context(), Options{Binary: fakeDaemon(t, rec), Keep: true, Delay: time.Millisecond}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Run: %v\nstdout:\n%s", err, stdout.String())
	}
	dir := filepath.Dir(strings.TrimSpace(readFile(t, filepath.Join(rec, "config-path"))))
	t.Cleanup(func() { os.RemoveAll(dir) })
	ns, peer := labNames()
	for _, n := range []string{ns, peer} {
		if _, err := os.Stat("/run/netns/" + n); err != nil {
			t.Errorf("Keep: namespace %s is gone: %v", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "netevd.yaml")); err != nil {
		t.Errorf("Keep: config is gone: %v", err)
	}
	if got := linesWith(stdout.String(), "lab | kept namespaces"); len(got) != 1 {
		t.Errorf("no 'kept' line in stdout:\n%s", stdout.String())
	}
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("Keep: processes left in %s: %q (%v)", ns, out, err)
	}
}

func TestRunDaemonExitsEarly(t *testing.T) {
	requireRoot(t)
	removeLeftovers(t)
	hostBefore := hostLinks(t)
	rec := t.TempDir()
	script := "#!/bin/sh\necho $$ > " + rec + "/pid\necho \"$2\" > " + rec + "/config-path\necho 'level=ERROR msg=\"bad config\"' >&2\nexit 3\n"
	bin := filepath.Join(t.TempDir(), "failing-netevd")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr lockedBuffer

	err := Run(t.Context(), Options{Binary: bin, Delay: time.Millisecond}, &stdout, &stderr)
	out := stdout.String()
	if err == nil || !strings.Contains(err.Error(), "daemon exited before it was ready: exit status 3") {
		t.Fatalf("Run = %v, want the daemon's early exit\nstdout:\n%s", err, out)
	}
	if !slices.Contains(strings.Split(out, "\n"), `daemon | level=ERROR msg="bad config"`) {
		t.Errorf("stdout lacks the daemon's error line:\n%s", out)
	}
	if got := linesWith(out, ">>>"); len(got) != 0 {
		t.Errorf("scenario ran without a daemon: %q", got)
	}
	if !strings.HasSuffix(out, "lab | cleaned up\n") {
		t.Errorf("stdout does not end with %q", "lab | cleaned up")
	}
	checkCleaned(t, rec, hostBefore)
}
