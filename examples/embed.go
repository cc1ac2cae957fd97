// Package examples holds the example hook scripts shipped with netevd, one
// small POSIX sh script per event directory under scripts/. They are the
// canonical copies: packaging installs them from this folder and
// "netevd lab" (internal/lab) runs them from the embedded Scripts.
//
// Every script prints one line built from the environment netevd passes
// (see the script contract in the README) and notes NETEVD_INITIAL.
package examples

import "embed"

// Scripts holds scripts/<dir>.d/<name>, e.g. "scripts/carrier.d/50-log".
// Embedding drops the file modes; whoever installs a script sets 0755.
//
//go:embed scripts
var Scripts embed.FS
