// Package bench holds netevd's benchmarks that span packages. Its tests
// are Go benchmarks of the real pipeline with the real script runner,
// driven by a fake source (go test -bench . ./bench). The end-to-end
// harness that runs the daemon in network namespaces and times carrier
// changes up to a script's first instruction is the command in
// bench/latency (scripts/bench-latency.sh runs it; docs/performance.md
// explains the method and the numbers).
//
// Nothing outside _test.go files lives here, and nothing imports it.
package bench
