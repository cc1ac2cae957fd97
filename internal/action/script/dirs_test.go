package script

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
)

func TestDirsFor(t *testing.T) {
	oper := func(state string) event.Change {
		return event.Change{Type: event.OperStateChanged, Link: event.LinkState{State: state}}
	}
	tests := []struct {
		name string
		c    event.Change
		want []string
	}{
		{"link added", event.Change{Type: event.LinkAdded}, []string{"link-added.d"}},
		{"link removed", event.Change{Type: event.LinkRemoved}, []string{"link-removed.d"}},
		{"carrier up", event.Change{Type: event.CarrierUp}, []string{"carrier.d"}},
		{"carrier down", event.Change{Type: event.CarrierDown}, []string{"no-carrier.d"}},
		{"address added", event.Change{Type: event.AddressAdded}, []string{"address-added.d"}},
		{"address removed", event.Change{Type: event.AddressRemoved}, []string{"address-removed.d"}},
		{"route added", event.Change{Type: event.RouteAdded}, []string{"routes.d"}},
		{"route removed", event.Change{Type: event.RouteRemoved}, []string{"routes.d"}},
		{"routable", oper("routable"), []string{"routable.d"}},
		{"degraded", oper("degraded"), []string{"degraded.d"}},
		{"off", oper("off"), []string{"off.d"}},
		{"dormant", oper("dormant"), []string{"dormant.d"}},
		{"configured", oper("configured"), []string{"configured.d"}},
		{"configuring", oper("configuring"), []string{"configuring.d"}},
		{"activated", oper("activated"), []string{"activated.d"}},
		{"disconnected", oper("disconnected"), []string{"disconnected.d"}},
		{"state carrier comes from CarrierUp", oper("carrier"), nil},
		{"state no-carrier comes from CarrierDown", oper("no-carrier"), nil},
		{"state without directory", oper("enslaved"), nil},
		{"degraded-carrier", oper("degraded-carrier"), nil},
		{"hostile state", oper("../../bin/sh"), nil},
		{"empty state", oper(""), nil},
		{"renamed", event.Change{Type: event.LinkRenamed}, nil},
		{"rule deleted", event.Change{Type: event.RuleDeleted}, nil},
		{"unknown type", event.Change{Type: 200}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DirsFor(tt.c)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("DirsFor() (-got +want):\n%s", diff)
			}
			for _, d := range got {
				if !slices.Contains(StandardDirs, d) {
					t.Errorf("DirsFor() returned %q, which is not in StandardDirs", d)
				}
			}
		})
	}
}

func TestEnsureDirs(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "netevd")
	r, err := New(Config{Dir: root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second call finds everything in place
		if err := r.EnsureDirs(); err != nil {
			t.Fatalf("EnsureDirs() = %v", err)
		}
	}
	var got []string
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("%s is not a directory", e.Name())
		}
		got = append(got, e.Name())
	}
	want := append([]string(nil), StandardDirs...)
	if diff := cmp.Diff(got, sortedCopy(want)); diff != "" {
		t.Errorf("directories (-got +want):\n%s", diff)
	}
}

func TestEnsureDirsFileInTheWay(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "routes.d"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Dir: root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.EnsureDirs(); err == nil {
		t.Error("EnsureDirs() = nil with a file named routes.d, want an error")
	}
	if fi, err := os.Stat(filepath.Join(root, "routable.d")); err != nil || !fi.IsDir() {
		t.Errorf("routable.d not created next to the broken entry: %v", err)
	}
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    Config
		wantErr bool
	}{
		{"defaults", Config{}, Config{Dir: "/etc/netevd", Timeout: DefaultTimeout, KillGrace: DefaultKillGrace, MaxOutput: DefaultMaxOutput}, false},
		{"kept", Config{Dir: "/x/y/", Timeout: 1, KillGrace: 2, MaxOutput: 3, DryRun: true, AllowUnsafeNames: true},
			Config{Dir: "/x/y", Timeout: 1, KillGrace: 2, MaxOutput: 3, DryRun: true, AllowUnsafeNames: true}, false},
		{"relative dir", Config{Dir: "etc/netevd"}, Config{}, true},
		{"negative timeout", Config{Timeout: -1}, Config{}, true},
		{"negative grace", Config{KillGrace: -1}, Config{}, true},
		{"negative output", Config{MaxOutput: -1}, Config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New() error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(r.cfg, tt.want); diff != "" {
				t.Errorf("config (-got +want):\n%s", diff)
			}
			if r.Name() != "script" {
				t.Errorf("Name() = %q, want script", r.Name())
			}
		})
	}
}

func TestDirsForBackends(t *testing.T) {
	mgr := func(idx int, value string) event.Change {
		return event.Change{Type: event.ManagerStateChanged, Backend: "systemd-networkd",
			Link: event.LinkState{Link: event.Link{Index: idx}}, Property: "OperationalState", Value: value}
	}
	with := func(backend string, t event.ChangeType, state string) event.Change {
		return event.Change{Type: t, Backend: backend, Link: event.LinkState{State: state}}
	}
	tests := []struct {
		name string
		c    event.Change
		want []string
	}{
		{"networkd state", mgr(10, "routable"), []string{"routable.d"}},
		{"networkd state without a standard directory", mgr(10, "degraded-carrier"), []string{"degraded-carrier.d"}},
		{"the manager itself", mgr(0, "routable"), []string{"manager.d"}},
		{"hostile value", mgr(10, "../../bin"), nil},
		{"upper case value", mgr(10, "Routable"), nil},
		{"empty value", mgr(10, ""), nil},
		{"networkd reports carrier itself", with("systemd-networkd", event.CarrierUp, ""), nil},
		{"NetworkManager reports carrier itself", with("NetworkManager", event.CarrierDown, ""), nil},
		{"dhclient keeps kernel carrier", with("dhclient", event.CarrierUp, ""), []string{"carrier.d"}},
		{"derived states only without a manager", with("dhclient", event.OperStateChanged, "routable"), nil},
		{"addresses follow the kernel", with("systemd-networkd", event.AddressAdded, ""), []string{"address-added.d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(DirsFor(tt.c), tt.want); diff != "" {
				t.Errorf("DirsFor() (-got +want):\n%s", diff)
			}
		})
	}
}
