package examples

import (
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// env is what netevd would pass for lab0 in the lab.
var env = []string{
	"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	"LINK=lab0", "LINKINDEX=10", "STATE=routable", "OLD_STATE=degraded",
	"ADDRESS=192.0.2.10/24", "ADDRESSES=192.0.2.10 2001:db8:1::10",
	"IPV4_ADDRESSES=192.0.2.10", "IPV6_ADDRESSES=2001:db8:1::10",
	"GATEWAY=192.0.2.1", "EVENT=route-added",
	"ROUTE_DST=0.0.0.0/0", "ROUTE_GATEWAY=192.0.2.1", "ROUTE_TABLE=254",
}

func TestScriptsOutput(t *testing.T) {
	tests := []struct {
		script  string
		initial bool
		want    string
	}{
		{"link-added.d/50-log", true, "[link-added.d] lab0 (index 10) appeared; state routable (startup replay)\n"},
		{"link-removed.d/50-log", false, "[link-removed.d] lab0 (index 10) is gone; it was degraded\n"},
		{"carrier.d/50-log", false, "[carrier.d] lab0 (index 10) has carrier; state degraded -> routable\n"},
		{"no-carrier.d/50-log", false, "[no-carrier.d] lab0 (index 10) lost carrier; state degraded -> routable\n"},
		{"address-added.d/50-log", true, "[address-added.d] lab0 (index 10) got 192.0.2.10/24; now has: 192.0.2.10 2001:db8:1::10 (startup replay)\n"},
		{"address-removed.d/50-log", false, "[address-removed.d] lab0 (index 10) lost 192.0.2.10/24; left: 192.0.2.10 2001:db8:1::10\n"},
		{"routable.d/50-log", false, "[routable.d] lab0 (index 10) is routable via 192.0.2.1; IPv4: 192.0.2.10; IPv6: 2001:db8:1::10\n"},
		{"routes.d/50-log", false, "[routes.d] lab0 (index 10) route-added: 0.0.0.0/0 via 192.0.2.1 (table 254)\n"},
		{"degraded.d/50-log", false, "[degraded.d] lab0 (index 10) is degraded; state degraded -> routable; addresses: 192.0.2.10 2001:db8:1::10\n"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.script] = true
		t.Run(tt.script, func(t *testing.T) {
			src, err := fs.ReadFile(Scripts, path.Join("scripts", tt.script))
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/bin/sh", "-s")
			cmd.Stdin = strings.NewReader(string(src))
			cmd.Env = env
			if tt.initial {
				cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], "NETEVD_INITIAL=1")
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", tt.script, err, out)
			}
			if diff := cmp.Diff(string(out), tt.want); diff != "" {
				t.Errorf("output mismatch (-got +want):\n%s", diff)
			}
		})
	}
	// Every embedded script is covered above.
	err := fs.WalkDir(Scripts, "scripts", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if name := strings.TrimPrefix(p, "scripts/"); !seen[name] {
			t.Errorf("script %s has no output test", name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestScriptsOnDisk checks what packaging installs: every script under
// scripts/ is a #!/bin/sh script, executable and writable by its owner only,
// in a directory named after an event ("*.d").
func TestScriptsOnDisk(t *testing.T) {
	err := fs.WalkDir(os.DirFS("."), "scripts", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if dir := path.Base(path.Dir(p)); !strings.HasSuffix(dir, ".d") {
			t.Errorf("%s: directory %s does not end in .d", p, dir)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if got, want := info.Mode().Perm(), fs.FileMode(0o755); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(src), "#!/bin/sh\n") {
			t.Errorf("%s: does not start with #!/bin/sh", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
