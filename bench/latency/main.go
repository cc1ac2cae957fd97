// Command latency is netevd's end-to-end benchmark. It runs the real
// daemon (bin/netevd) in a throw-away network namespace, drives the
// carrier of a veth from a second namespace over rtnetlink, and prints a
// markdown report of:
//
//   - latency: the time from the carrier change (a timestamp taken just
//     before the harness sends its netlink request) to the first
//     instruction of a carrier.d script, next to the cost of fork+exec of
//     the same program done directly (the floor), and split at the moment
//     a monitor socket in the harness sees the kernel's RTM_NEWLINK;
//   - no-script cost: with empty script directories, the processes the
//     daemon forks (counted by the kernel's process-events connector), its
//     CPU time and its memory over hundreds and then thousands of flaps;
//   - idle memory: VmRSS of the daemon two seconds after it is ready.
//
// Every timestamp is CLOCK_MONOTONIC, read by the harness with
// clock_gettime(2) and by the probe script (probe/tsprobe.c, compiled
// with gcc at run time) as its first action.
//
// It needs root. Run it through scripts/bench-latency.sh, or:
//
//	make build && sudo go run ./bench/latency -netevd bin/netevd
//
// Nothing outside the two namespaces it creates (named PREFIX-d and
// PREFIX-p) is changed; they, the daemon and the temporary directory are
// removed when it exits, also on error or Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/netevd/netevd/bench/host"
)

type options struct {
	netevd    string          // the daemon binary
	cc        string          // C compiler for the probe
	prefix    string          // namespace name prefix
	flaps     int             // timed flaps with scripts
	floor     int             // direct fork+exec samples
	idleFlaps int             // flaps with empty script directories (fork check)
	longFlaps int             // flaps for the memory check
	gap       time.Duration   // pause after each carrier edge in the timed run
	floorGap  time.Duration   // pause before each direct fork+exec
	idleWait  time.Duration   // wait after "ready" before reading idle memory
	monitor   bool            // run the harness's own monitor socket in the timed run
	keep      bool            // keep the temporary directory (daemon logs)
	phases    map[string]bool // which of latency, floor, none to run
	env       envFlag         // extra environment of the daemon (GOGC=..., GOMEMLIMIT=...)
}

// envFlag collects repeated -env KEY=VALUE flags.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }

func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func main() {
	var o options
	flag.StringVar(&o.netevd, "netevd", "bin/netevd", "the netevd binary to run")
	flag.StringVar(&o.cc, "cc", "gcc", "C compiler for the probe script")
	flag.StringVar(&o.prefix, "prefix", "netevd-b-"+strconv.Itoa(os.Getpid()), "prefix of the namespace names (PREFIX-d, PREFIX-p)")
	flag.IntVar(&o.flaps, "flaps", 200, "timed link flaps with a carrier.d script (at least 100)")
	flag.IntVar(&o.floor, "floor", 200, "direct fork+exec samples of the probe (the floor)")
	flag.IntVar(&o.idleFlaps, "idle-flaps", 200, "flaps with empty script directories, for the fork check")
	flag.IntVar(&o.longFlaps, "long-flaps", 10000, "flaps with empty script directories, for the memory check")
	flag.DurationVar(&o.gap, "gap", 20*time.Millisecond, "pause after each carrier edge of the timed run")
	flag.DurationVar(&o.floorGap, "floor-gap", 0, "pause before each direct fork+exec (default: -gap, so both start from an equally idle machine)")
	flag.DurationVar(&o.idleWait, "idle-wait", 2*time.Second, "wait after the daemon is ready before reading its idle memory")
	flag.BoolVar(&o.monitor, "monitor", true, "also time the kernel's RTM_NEWLINK on a monitor socket of the harness")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory with the daemon logs")
	phases := flag.String("phases", "latency,floor,none", "phases to run: latency (timed flaps with scripts), floor (direct fork+exec), none (no scripts: forks, CPU, memory)")
	flag.Var(&o.env, "env", "KEY=VALUE added to the daemon's environment, e.g. GOMEMLIMIT=8MiB (repeatable)")
	flag.Parse()
	floorGapSet := false
	flag.Visit(func(f *flag.Flag) { floorGapSet = floorGapSet || f.Name == "floor-gap" })
	if !floorGapSet {
		o.floorGap = o.gap
	}
	o.phases = make(map[string]bool)
	for _, ph := range strings.Split(*phases, ",") {
		switch ph = strings.TrimSpace(ph); ph {
		case "latency", "floor", "none":
			o.phases[ph] = true
		default:
			fmt.Fprintf(os.Stderr, "latency: unknown phase %q (want latency, floor, none)\n", ph)
			os.Exit(2)
		}
	}
	if o.flaps < 100 || o.floor < 1 || o.idleFlaps < 1 || o.longFlaps < 1 {
		fmt.Fprintln(os.Stderr, "latency: -flaps must be at least 100; -floor, -idle-flaps and -long-flaps at least 1")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "latency: needs root (network namespaces, root-owned scripts)")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	b, err := newBench(ctx, o)
	if b != nil {
		defer b.close()
	}
	if err != nil {
		return err
	}
	rep := &report{}
	rep.env = b.environment()
	for _, ph := range []struct {
		name string
		run  func(context.Context, *report) error
	}{
		{"latency", b.latencyPhase},
		{"floor", b.floorPhase},
		{"none", b.noScriptPhase},
	} {
		if !o.phases[ph.name] {
			continue
		}
		if err := ph.run(ctx, rep); err != nil {
			return fmt.Errorf("%s phase: %w", ph.name, err)
		}
	}
	rep.env.loadEnd = host.LoadAvg()
	rep.write(os.Stdout)
	return nil
}
