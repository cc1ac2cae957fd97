package nettest

import (
	"os"
	"strings"
	"testing"
)

func TestNewNetNS(t *testing.T) {
	CheckGoroutines(t)
	a := NewNetNS(t)
	b := NewNetNS(t)
	if a.Name == b.Name {
		t.Fatalf("two namespaces share the name %q", a.Name)
	}
	if !strings.HasPrefix(a.Name, NamePrefix) {
		t.Errorf("name %q lacks prefix %q", a.Name, NamePrefix)
	}
	if _, err := os.Stat(a.Path); err != nil {
		t.Fatalf("namespace path: %v", err)
	}
	VethPair(t, a, b, "veth0", 10, "vp0", 20)

	got := a.Run("-o", "link", "show", "veth0")
	if !strings.HasPrefix(got, "10: veth0@") {
		t.Errorf("veth0 in %s: got %q, want index 10", a.Name, got)
	}
	got = b.Run("-o", "link", "show", "vp0")
	if !strings.HasPrefix(got, "20: vp0@") {
		t.Errorf("vp0 in %s: got %q, want index 20", b.Name, got)
	}
	if _, err := a.TryRun("link", "show", "vp0"); err == nil {
		t.Errorf("vp0 is visible in %s, want it only in %s", a.Name, b.Name)
	}

	a.Batch([]string{"addr add 192.0.2.1/24 dev veth0", "addr add 192.0.2.2/24 dev veth0"})
	got = a.Run("-4", "-o", "addr", "show", "dev", "veth0")
	for _, want := range []string{"192.0.2.1/24", "192.0.2.2/24"} {
		if !strings.Contains(got, want) {
			t.Errorf("addresses of veth0: got %q, want %s in it", got, want)
		}
	}
	if f := a.Open(); f.Fd() == 0 {
		t.Errorf("Open returned fd 0")
	}
}

func TestNetNSRemoved(t *testing.T) {
	var path string
	t.Run("inner", func(t *testing.T) {
		ns := NewNetNS(t)
		path = ns.Path
	})
	if path == "" {
		t.Skip("inner test was skipped")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s still exists after cleanup (stat err %v)", path, err)
	}
}
