package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netevd/netevd/internal/nettest"
)

// TestPolicyRoutingDaemon runs the daemon with routing.policy_rules and
// checks, through the kernel: leftovers of a previous run are removed and
// what is present is configured at startup; a script in address-added.d
// already finds the new address's rules; a rule deleted by hand comes
// back; SIGTERM removes everything owned.
func TestPolicyRoutingDaemon(t *testing.T) {
	t.Parallel()
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("ip is not installed")
	}
	l := newLab(t, labOptions{})
	cfg := l.config(labOptions{})
	cfg["routing"] = map[string]any{"policy_rules": []string{"veth*"}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	l.writeRawConfig(string(b) + "\n")
	seen := filepath.Join(l.out, "rules-seen")
	l.addScript("address-added.d", "50-rules", fmt.Sprintf("'%s' -4 rule show >> '%s'\n", ipBin, seen))

	nettest.VethPair(t, l.ns, l.peer, "veth0", 10, "vp0", 20)
	l.ns.Batch([]string{
		"link set veth0 up",
		"addr add 192.0.2.10/24 dev veth0",
		"route add default via 192.0.2.1 dev veth0",
		"rule add from 198.51.100.9 lookup 250 priority 10000", // a previous run's
	})
	l.peer.Run("link", "set", "vp0", "up")

	rules := func() string { return l.ns.Run("rule", "show") }
	table := func() string {
		out, _ := l.ns.TryRun("route", "show", "table", "210")
		return out
	}
	d := l.start(nil)
	want := []string{"10000:\tfrom 192.0.2.10 lookup 210", "10001:\tfrom all to 192.0.2.10 lookup 210"}
	waitFor(t, "the startup rules, without the leftover", func() (string, bool) {
		r := rules()
		return r, strings.Contains(r, want[0]) && strings.Contains(r, want[1]) && !strings.Contains(r, "198.51.100.9")
	}, rules)
	waitFor(t, "the default route in table 210", func() (string, bool) {
		tb := table()
		return tb, strings.Contains(tb, "default via 192.0.2.1 dev veth0 proto static")
	}, table)

	// The routing action runs before the scripts.
	l.ns.Run("addr", "add", "192.0.2.20/24", "dev", "veth0")
	waitFor(t, "the address-added.d script", func() (string, bool) {
		b, _ := os.ReadFile(seen)
		return string(b), strings.Contains(string(b), "from 192.0.2.20 lookup 210")
	}, func() string { b, _ := os.ReadFile(seen); return "the script saw:\n" + string(b) })

	// Someone deletes an owned rule: it comes back.
	l.ns.Run("rule", "del", "from", "192.0.2.10", "lookup", "210", "priority", "10000")
	waitFor(t, "the deleted rule restored", func() (string, bool) {
		r := rules()
		return r, strings.Contains(r, want[0])
	}, rules)
	d.waitLog("the restoration's warning", func(r logRec) bool {
		return strings.Contains(r.msg(), "ManageForeignRoutingPolicyRules=yes")
	})

	d.stop()
	if r := rules(); strings.Contains(r, "lookup 210") {
		t.Errorf("rules left after SIGTERM:\n%s", r)
	}
	if tb := table(); strings.TrimSpace(tb) != "" {
		t.Errorf("table 210 after SIGTERM: %q", tb)
	}
}
