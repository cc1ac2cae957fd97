package lab

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCheckOptionsBackend(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "netevd")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		backend, want, wantErr string
	}{
		{"", BackendNone, ""},
		{"none", BackendNone, ""},
		{"networkd", BackendNetworkd, ""},
		{"systemd-networkd", BackendNetworkd, ""},
		{"NetworkManager-ish", "", `unknown backend "NetworkManager-ish"`},
	}
	for _, tt := range tests {
		opts := Options{Binary: exe, Backend: tt.backend}
		err := checkOptions(&opts)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("backend %q: checkOptions() = %v, want an error with %q", tt.backend, err, tt.wantErr)
			}
		case err != nil || opts.Backend != tt.want:
			t.Errorf("backend %q: checkOptions() = %v, Backend %q; want nil, %q", tt.backend, err, opts.Backend, tt.want)
		}
	}
}

func TestWriteFilesNetworkd(t *testing.T) {
	dir := t.TempDir()
	config, err := writeFiles(dir, BackendNetworkd)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "\n  backend: systemd-networkd\n") {
		t.Errorf("config does not select systemd-networkd:\n%s", got)
	}
	for name := range networkdScripts {
		fi, err := os.Stat(filepath.Join(dir, "scripts", name))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("script %s: %v, %v; want mode 0755", name, fi, err)
		}
	}
	// The example scripts are there too.
	if _, err := os.Stat(filepath.Join(dir, "scripts", "routable.d", "50-log")); err != nil {
		t.Error(err)
	}
}

func TestHiddenInside(t *testing.T) {
	for path, want := range map[string]bool{
		"/run": true, "/run/user/0/netevd": true, "/etc/systemd/network/x": true, "/sys/x": true,
		"/tmp/netevd-lab-1": false, "/runner/x": false, "/usr/bin/netevd": false, "/etc/systemd/networkd.conf": false,
	} {
		if got := hiddenInside(path); got != want {
			t.Errorf("hiddenInside(%q) = %v, want %v", path, got, want)
		}
	}
}

// fakeNetworkdDaemon writes a stand-in for netevd that records, in dir,
// what it sees inside the lab's private namespaces: the PID of the
// process owning networkd's bus name on the private system bus and, on
// SIGTERM (once networkd configured lab0 again), lab0's addresses and
// default route.
func fakeNetworkdDaemon(t *testing.T, dir string) string {
	t.Helper()
	script := `#!/bin/sh
out=` + dir + `
echo $$ > "$out/pid"
echo "$2" > "$out/config-path"
echo "$DBUS_SYSTEM_BUS_ADDRESS" > "$out/bus-address"
busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetConnectionUnixProcessID s org.freedesktop.network1 > "$out/networkd-pid"
trap 'for i in $(seq 250); do ip -o address show dev lab0 | grep -q "192.0.2.10/24" && ip route show default | grep -q "via 192.0.2.1 dev lab0" && break; sleep 0.02; done
ip -o address show dev lab0 > "$out/addresses"; ip route show default > "$out/routes"; echo stopping; exit 0' TERM
echo "time=now level=INFO msg=ready"
while :; do sleep 0.02; done
`
	path := filepath.Join(t.TempDir(), "fake-netevd")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunNetworkd(t *testing.T) {
	requireRoot(t)
	if err := checkNetworkd(&Options{Binary: "/bin/true"}); err != nil {
		t.Skipf("skipping: %v", err)
	}
	removeLeftovers(t)
	hostBefore := hostLinks(t)
	rec := t.TempDir()
	var stdout, stderr lockedBuffer

	err := Run(t.Context(), Options{Binary: fakeNetworkdDaemon(t, rec), Backend: "networkd", Delay: 50 * time.Millisecond}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	_, peer := labNames()
	pid := strings.TrimSpace(readFile(t, filepath.Join(rec, "pid")))
	want := []string{
		"lab | >>> bring the peer up: lab0 gets carrier; systemd-networkd adds 192.0.2.10/24 and the default route via 192.0.2.1 (ip -n " + peer + " link set lab0p up)",
		"lab | >>> take the peer down: lab0 loses carrier (ip -n " + peer + " link set lab0p down)",
		"lab | >>> bring the peer up again: carrier is back (ip -n " + peer + " link set lab0p up)",
		"lab | >>> stop the daemon (kill -TERM " + pid + ")",
	}
	if diff := cmp.Diff(linesWith(out, ">>>"), want); diff != "" {
		t.Errorf("scenario steps (-got +want):\n%s", diff)
	}
	for _, line := range []string{"lab | daemon (PID " + pid + ") is ready", "daemon | stopping", "lab | daemon exited: exit status 0"} {
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

	// The daemon ran where networkd's private bus is the system bus, and
	// networkd configured lab0.
	if got := strings.TrimSpace(readFile(t, filepath.Join(rec, "bus-address"))); got != "unix:path=/run/dbus/system_bus_socket" {
		t.Errorf("daemon's DBUS_SYSTEM_BUS_ADDRESS = %q", got)
	}
	var networkdPID int
	if f := strings.Fields(readFile(t, filepath.Join(rec, "networkd-pid"))); len(f) == 2 && f[0] == "u" {
		networkdPID, _ = strconv.Atoi(f[1])
	}
	if networkdPID <= 0 {
		t.Fatalf("the daemon found no networkd on its system bus: %q", readFile(t, filepath.Join(rec, "networkd-pid")))
	}
	addrs := readFile(t, filepath.Join(rec, "addresses"))
	for _, a := range []string{"inet 192.0.2.10/24", "inet6 2001:db8:1::10/64"} {
		if !strings.Contains(addrs, a) {
			t.Errorf("lab0's addresses at the end lack %q:\n%s", a, addrs)
		}
	}
	if routes := readFile(t, filepath.Join(rec, "routes")); !strings.Contains(routes, "default via 192.0.2.1 dev lab0") {
		t.Errorf("no default route via the peer at the end:\n%s", routes)
	}

	// Everything is gone: networkd, the daemon, the namespaces, the files.
	if err := syscall.Kill(networkdPID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("networkd (PID %d) still exists after Run (kill 0: %v)", networkdPID, err)
	}
	checkCleaned(t, rec, hostBefore)
}
