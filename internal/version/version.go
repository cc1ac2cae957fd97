// Package version holds netevd's build information. Version is set at link
// time (make build: -X github.com/netevd/netevd/internal/version.Version=...);
// otherwise the module version or VCS revision recorded by the Go toolchain
// is used. It imports nothing from netevd.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is overridden at link time.
var Version = ""

// String returns "netevd VERSION (REVISION, GOVERSION)".
func String() string {
	v, rev := Version, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if rev != "" {
		return fmt.Sprintf("netevd %s (%s, %s)", v, rev, runtime.Version())
	}
	return fmt.Sprintf("netevd %s (%s)", v, runtime.Version())
}
