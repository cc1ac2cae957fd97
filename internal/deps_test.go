package internal_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The import rules of DESIGN.md §2: the pipeline never imports a concrete
// source, action or observer; only rtnl imports a netlink library; event
// imports nothing from netevd.
func TestImportRules(t *testing.T) {
	const mod = "github.com/netevd/netevd/"
	netlinkLibs := []string{"github.com/mdlayher/netlink", "github.com/jsimonetti/rtnetlink", "github.com/vishvananda/netlink"}
	tests := []struct {
		pkg       string
		forbidden []string // prefixes no (transitive) dependency may have
	}{
		{"internal/event", []string{mod}},
		{"internal/state", append([]string{mod + "internal/source", mod + "internal/action", mod + "internal/pipeline", mod + "internal/config"}, netlinkLibs...)},
		{"internal/pipeline", append([]string{mod + "internal/source", mod + "internal/action", mod + "internal/observe", mod + "internal/config", mod + "internal/rtnl"}, netlinkLibs...)},
		{"internal/action/script", append([]string{mod + "internal/source", mod + "internal/pipeline", mod + "internal/rtnl"}, netlinkLibs...)},
		{"internal/action/resolved", append([]string{mod + "internal/source", mod + "internal/pipeline", mod + "internal/rtnl", mod + "internal/action/script"}, netlinkLibs...)},
		{"internal/action/routing", []string{mod + "internal/source", mod + "internal/pipeline", mod + "internal/action/script", mod + "internal/sdbus", mod + "internal/state"}},
		{"internal/config", []string{mod + "internal/"}},
		{"internal/source/dhclient", append([]string{mod + "internal/action", mod + "internal/pipeline", mod + "internal/state", mod + "internal/sdbus", "github.com/godbus"}, netlinkLibs...)},
		{"internal/source/networkd", append([]string{mod + "internal/action", mod + "internal/pipeline", mod + "internal/state", mod + "internal/rtnl"}, netlinkLibs...)},
		{"internal/source/nm", append([]string{mod + "internal/action", mod + "internal/pipeline", mod + "internal/state"}, netlinkLibs...)},
		{"internal/source/netlink", []string{mod + "internal/action", mod + "internal/pipeline", mod + "internal/state"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			deps := goListDeps(t, mod+tt.pkg, false)
			for _, d := range deps {
				for _, f := range tt.forbidden {
					if strings.HasPrefix(d, f) && d != mod+tt.pkg {
						t.Errorf("%s imports %s (forbidden: %s)", tt.pkg, d, f)
					}
				}
			}
		})
	}
}

// TestOnlyRtnlImportsNetlink checks every package of the module: none but
// internal/rtnl may import a netlink library directly.
func TestOnlyRtnlImportsNetlink(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}:{{join .Imports " "}}`, "github.com/netevd/netevd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ":")
		checked++
		if pkg == "github.com/netevd/netevd/internal/rtnl" {
			continue
		}
		for _, imp := range strings.Fields(imports) {
			if strings.HasPrefix(imp, "github.com/mdlayher/netlink") || strings.HasPrefix(imp, "github.com/jsimonetti/rtnetlink") ||
				strings.HasPrefix(imp, "github.com/vishvananda/netlink") {
				t.Errorf("%s imports %s; only internal/rtnl may", pkg, imp)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("go list returned only %d packages", checked)
	}
}

func goListDeps(t *testing.T, pkg string, test bool) []string {
	t.Helper()
	args := []string{"list", "-deps"}
	if test {
		args = append(args, "-test")
	}
	out, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}
