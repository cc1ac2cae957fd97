// Package e2e holds netevd's end-to-end tests. They build the daemon once,
// run it in throw-away network namespaces (nettest) with scripts that record
// their environment and stdin, drive the kernel with `ip -n`, and check what
// the scripts saw and what the daemon logged. The storm test also runs the
// pipeline in-process against a namespace and compares its model with the
// kernel's.
//
// The tests need root and skip without it; they never touch the host's
// network. The package has no code outside its tests.
package e2e
