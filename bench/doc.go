// Package bench holds netevd's benchmarks that span packages. Its tests
// are Go benchmarks of the real pipeline with the real script runner,
// driven by a fake source (go test -bench . ./bench). The end-to-end
// harness that runs the daemon in network namespaces and times carrier
// changes up to a script's first instruction is the command in
// bench/latency (scripts/bench-latency.sh runs it); the one that runs
// netevd next to networkd-dispatcher on one real systemd-networkd and
// times networkd's routable signal up to each one's routable.d script is
// the command in bench/networkd (scripts/bench-networkd.sh).
// docs/performance.md explains the methods and the numbers.
//
// Nothing outside _test.go files lives here, and nothing imports it.
package bench
