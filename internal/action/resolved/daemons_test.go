package resolved

import (
	"testing"

	"github.com/netevd/netevd/internal/action/resolved/resolvedtest"
)

// startDaemons starts the real systemd-resolved and systemd-hostnamed on
// a private bus in throw-away namespaces (resolvedtest), after arranging
// for the test to fail if the host's hostname, /etc/hostname,
// /etc/resolv.conf or /etc/passwd changed. It skips the test when
// something it needs is missing.
func startDaemons(t *testing.T) *resolvedtest.Daemons {
	t.Helper()
	resolvedtest.GuardHost(t)
	return resolvedtest.Start(t, resolvedtest.Options{})
}
