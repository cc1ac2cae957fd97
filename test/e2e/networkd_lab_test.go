package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/source/networkd/networkdtest"
)

// ndRunLab runs `netevd lab args...` and returns its stdout; it fails
// the test unless the lab exits 0 with nothing on stderr and removes its
// namespaces.
func ndRunLab(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, netevdBin, append([]string{"lab"}, args...)...)
	cmd.Env = daemonEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("netevd lab %s: %v\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), err, stderr.String(), out)
	}
	for _, ns := range []string{fmt.Sprintf("netevd-lab-%d", cmd.Process.Pid), fmt.Sprintf("netevd-lab-%d-peer", cmd.Process.Pid)} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
	}
	if !strings.HasSuffix(out, "lab | cleaned up\n") {
		t.Errorf("the lab's output does not end with %q:\n%s", "lab | cleaned up", out)
	}
	return out
}

// ndWantLines checks that out has a line containing each of want.
func ndWantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for _, w := range want {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, w) }) {
			t.Errorf("no line with %q in the lab's output:\n%s", w, out)
		}
	}
}

// TestLabNetworkd runs `netevd lab --backend networkd`: the real
// systemd-networkd configures lab0, and the daemon, following networkd,
// runs the example scripts for its states, including the lab's own
// configured.d and manager.d hooks.
func TestLabNetworkd(t *testing.T) {
	networkdtest.Require(t)
	out := ndRunLab(t, "--backend", "networkd", "--delay", "700ms", "--flaps", "2")
	ndWantLines(t, out,
		"msg=backend backend=systemd-networkd why=configured",
		`msg="watching systemd-networkd"`,
		"systemd-networkd (PID ",
		"[configuring.d] systemd-networkd is configuring lab0 (was unknown) (startup replay)",
		"[no-carrier.d] lab0 (index 10) lost carrier; state none -> no-carrier (startup replay)",
		"[routes.d] lab0 (index 10) route-added: 0.0.0.0/0 via 192.0.2.1 (table 254)",
		"[configured.d] lab0 is configured by systemd-networkd (was configuring; operational state routable); networkd describes it in ",
		"[no-carrier.d] lab0 (index 10) lost carrier; state routable -> no-carrier",
		"[manager.d] systemd-networkd overall: routable",
		"lab | daemon exited: exit status 0",
	)
	// networkd reports routable as soon as lab0 has its global address;
	// the default route it adds next can reach the daemon after that, so
	// $GATEWAY may still be empty in routable.d (routes.d shows the route).
	routable := regexp.MustCompile(`\[routable\.d\] lab0 \(index 10\) is routable via (192\.0\.2\.1|none); IPv4: 192\.0\.2\.10/24; IPv6: 2001:db8:1::10/64`)
	if n := len(ndLinesWith(out, "[routable.d] lab0")); n != 3 || !routable.MatchString(out) {
		t.Errorf("%d routable.d runs for lab0, want 3 (setup and two flaps) matching %s:\n%s", n, routable, out)
	}
	if got := ndLinesWith(out, "level=WARN"); len(got) != 0 {
		t.Errorf("warnings: %q", got)
	}
}

// TestLabDefaultBackend checks that plain `netevd lab` (make demo) still
// runs on kernel events alone.
func TestLabDefaultBackend(t *testing.T) {
	nettest.RequirePrivileged(t)
	out := ndRunLab(t, "--delay", "200ms")
	ndWantLines(t, out,
		"msg=backend backend=none why=configured",
		"lab | >>> set lab0 up: no carrier yet, the peer is down",
		"[routable.d] lab0 (index 10) is routable via 192.0.2.1",
		"lab | daemon exited: exit status 0",
	)
	if got := ndLinesWith(out, "systemd-networkd"); len(got) != 0 {
		t.Errorf("networkd lines in the default lab: %q", got)
	}
}

// ndLinesWith returns the lines of s that contain sub.
func ndLinesWith(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
