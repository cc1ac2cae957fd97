package resolvedtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// hostFingerprint is what the tests must leave as it was: the host's
// hostname, /etc/hostname, /etc/resolv.conf and /etc/passwd.
func hostFingerprint(tb testing.TB) string {
	tb.Helper()
	h, err := os.Hostname()
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("hostname " + h + "\n")
	for _, f := range []string{"/etc/hostname", "/etc/resolv.conf", "/etc/passwd"} {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", f, err)
			continue
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s %s\n", f, hex.EncodeToString(sum[:]))
	}
	return b.String()
}

// GuardHost fails tb if the host's hostname, /etc/hostname,
// /etc/resolv.conf or /etc/passwd changed by the time every other cleanup
// ran. Call it before Start.
func GuardHost(tb testing.TB) {
	tb.Helper()
	before := hostFingerprint(tb)
	tb.Cleanup(func() {
		if after := hostFingerprint(tb); after != before {
			tb.Errorf("THE HOST CHANGED:\nbefore:\n%safter:\n%s", before, after)
		}
	})
}
