package resolvedtest

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/netevd/netevd/internal/nettest"
)

// Require skips tb unless the daemons can run here: root with
// CAP_NET_ADMIN, the tools the setup uses, hostnamed, networkd when
// networkd is wanted, and systemd-resolved's .deb (cached, or fetched with
// apt-get download), whose path it returns.
func Require(tb testing.TB, withNetworkd bool) string {
	tb.Helper()
	nettest.RequirePrivileged(tb)
	for _, c := range []struct{ cmd, pkg string }{
		{"unshare", "util-linux"}, {"nsenter", "util-linux"}, {"dbus-daemon", "dbus-daemon"},
		{"dpkg-deb", "dpkg"}, {"useradd", "passwd"}, {"getent", "libc-bin"},
	} {
		if _, err := exec.LookPath(c.cmd); err != nil {
			tb.Skipf("skipping: needs %s (Debian package %s)", c.cmd, c.pkg)
		}
	}
	bins := []string{HostnamedBinary}
	if withNetworkd {
		bins = append(bins, NetworkdBinary)
	}
	for _, b := range bins {
		if _, err := os.Stat(b); err != nil {
			tb.Skipf("skipping: needs %s (Debian package systemd): %v", b, err)
		}
	}
	return deb(tb)
}

// deb returns systemd-resolved's .deb: the cached copy, or one fetched
// with `apt-get download` and then cached. It skips tb when neither works.
func deb(tb testing.TB) string {
	tb.Helper()
	if m, _ := filepath.Glob(filepath.Join(DebCache, "systemd-resolved_*.deb")); len(m) > 0 {
		return m[len(m)-1]
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		tb.Skipf("skipping: needs systemd-resolved's .deb in %s, or apt-get to download it", DebCache)
	}
	tmp := tb.TempDir()
	cmd := exec.Command("apt-get", "download", "-q", "systemd-resolved")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Skipf("skipping: needs systemd-resolved's .deb: `apt-get download systemd-resolved` failed (%v: %s); "+
			"put the .deb in %s to run this test offline", err, bytes.TrimSpace(out), DebCache)
	}
	m, _ := filepath.Glob(filepath.Join(tmp, "systemd-resolved_*.deb"))
	if len(m) != 1 {
		tb.Skipf("skipping: `apt-get download systemd-resolved` left %d .deb files", len(m))
	}
	if err := cacheFile(m[0], DebCache); err != nil {
		tb.Logf("not caching %s: %v", filepath.Base(m[0]), err)
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
