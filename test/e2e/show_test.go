package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/nettest"
)

// TestShowRulesPlan checks that `netevd show rules --plan` prints exactly
// the ip commands the routing action would run for the namespace's links,
// changes nothing, and that `show rules` marks the owned range.
func TestShowRulesPlan(t *testing.T) {
	t.Parallel()
	nettest.RequirePrivileged(t)
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, ns, peer, "up1", 11, "r1", 21)
	peer.Run("link", "set", "r1", "up")
	ns.Run("link", "set", "up1", "up")
	ns.Run("addr", "add", "192.0.2.10/24", "dev", "up1")
	ns.Run("route", "add", "default", "via", "192.0.2.1", "dev", "up1")
	cfg := filepath.Join(t.TempDir(), "netevd.yaml")
	if err := os.WriteFile(cfg, []byte("routing:\n  policy_rules: [\"up*\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	show := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, netevdBin, "show", "rules", "-c", cfg}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("netevd show rules %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	rulesBefore := ns.Run("rule", "show")

	got := strings.Split(strings.TrimSpace(show("--plan")), "\n")
	want := []string{
		"ip route replace default via 192.0.2.1 dev up1 table 211 proto static",
		"ip rule add from 192.0.2.10 lookup 211 priority 10000",
		"ip rule add from all to 192.0.2.10 lookup 211 priority 10001",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("show rules --plan (-want +got):\n%s", diff)
	}
	if after := ns.Run("rule", "show"); after != rulesBefore {
		t.Errorf("show rules --plan changed the rules:\nbefore:\n%s\nafter:\n%s", rulesBefore, after)
	}

	// Apply the plan by hand: show rules marks the owned ones.
	for _, line := range want {
		ns.Run(strings.Fields(strings.TrimPrefix(line, "ip "))...)
	}
	table := show()
	for _, l := range strings.Split(table, "\n") {
		owned := strings.HasPrefix(l, "10000 ") || strings.HasPrefix(l, "10001 ")
		if owned && !strings.Contains(l, " yes ") || !owned && strings.Contains(l, " yes ") {
			t.Errorf("ownership wrong in line %q:\n%s", l, table)
		}
	}
	if !strings.Contains(table, "from 192.0.2.10 lookup 211 priority 10000") {
		t.Errorf("show rules lacks the from-rule:\n%s", table)
	}
}
