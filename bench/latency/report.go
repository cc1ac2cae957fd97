package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/netevd/netevd/bench/sample"
)

// envInfo describes the machine and the build.
type envInfo struct {
	kernel, goVersion, netevd, probe string
	loadStart, loadEnd               string
	daemonEnv                        string // what -env added
	cpus                             int
	binSize                          int64
}

// noneResult is what the no-script phase measured.
type noneResult struct {
	links                    int
	idleWait                 time.Duration
	idle                     procInfo // idleWait after ready
	before, after, end       procInfo // around window 1, and after window 2
	flaps, longFlaps         int
	polls, pollsWithChildren int
	machineForks             int64      // /proc/stat processes, window 1
	forks, longForks         forkCounts // the daemon's, windows 1 and 2
	rssSamples               []int64    // VmRSS kB during window 2
	stats                    map[string]string
}

// report is everything the harness measured.
type report struct {
	env                    envInfo
	up, down               edgeSeries
	floorBare, floorRunner []int64 // after an idle gap
	floorHot               []int64 // right after another run
	latencyFlaps           int
	latencyForks           forkCounts
	latencyStats           map[string]string
	none                   noneResult
}

func (r *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	e := r.env
	p("## netevd benchmark (%s)", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	p("")
	p("- machine: %d CPUs, kernel %s, %s; %s (binary %.1f MiB)", e.cpus, e.kernel, e.goVersion, e.netevd, float64(e.binSize)/(1<<20))
	p("- probe script: C, %s (gcc -O2), CLOCK_MONOTONIC as its first action", e.probe)
	p("- load average at start: %s; at end: %s", e.loadStart, e.loadEnd)
	if e.daemonEnv != "" {
		p("- daemon environment: %s", e.daemonEnv)
	}
	p("")

	if r.latencyFlaps > 0 || len(r.floorBare) > 0 {
		r.writeLatency(p)
	}
	r.writeNone(p)
}

func (r *report) writeLatency(p func(string, ...any)) {
	p("### Carrier change → first instruction of the script (%d flaps, ms)", r.latencyFlaps)
	p("")
	p("| segment | n | min | p50 | p95 | p99 | max |")
	p("|---|---:|---:|---:|---:|---:|---:|")
	row := func(name string, ns []int64) {
		if len(ns) == 0 {
			return
		}
		s := summarize(ns)
		p("| %s | %d | %s | %s | %s | %s | %s |", name, s.n, sample.MS(s.min), sample.MS(s.p50), sample.MS(s.p95), sample.MS(s.p99), sample.MS(s.max))
	}
	row("**carrier on: change → carrier.d script**", r.up.total)
	row("carrier on: change → harness monitor reads RTM_NEWLINK", r.up.kernel)
	row("carrier on: monitor read → carrier.d script (netevd, fork+exec included)", r.up.netevd)
	row("carrier off: change → no-carrier.d script", r.down.total)
	row("carrier off: change → harness monitor reads RTM_NEWLINK", r.down.kernel)
	row("carrier off: monitor read → no-carrier.d script", r.down.netevd)
	row("netlink request acknowledged (up and down)", append(append([]int64{}, r.up.ack...), r.down.ack...))
	row("**floor: exec.Cmd Start → probe, bare, after an idle gap**", r.floorBare)
	row("floor: pipes + Start → probe, set up like the runner, after an idle gap", r.floorRunner)
	row("floor: exec.Cmd Start → probe, bare, right after another run", r.floorHot)
	p("")
	up, bare, like, hot := summarize(r.up.total), summarize(r.floorBare), summarize(r.floorRunner), summarize(r.floorHot)
	if up.n > 0 && bare.n > 0 {
		verdict := "met"
		if up.p50-bare.p50 > int64(time.Millisecond) {
			verdict = "NOT met"
		}
		p("- carrier.d p50 − floor p50 (bare, after an idle gap) = **%s ms** (target ≤ 1 ms: %s); against the runner-like floor %s ms, against the back-to-back floor %s ms.",
			sample.MS(up.p50-bare.p50), verdict, sample.MS(up.p50-like.p50), sample.MS(up.p50-hot.p50))
	}
	if n := summarize(r.up.netevd); n.n > 0 && like.n > 0 {
		p("- monitor read → carrier.d p50 minus the runner-like floor p50: %s ms (netevd's own work, plus waking its thread).", sample.MS(n.p50-like.p50))
	}
	if f := r.latencyForks; r.latencyFlaps > 0 {
		p("- the daemon forked %d processes (%d of them exec'd) and %d threads during the %d flaps; expected %d processes (one per edge). %s",
			f.Processes, f.Execs, f.Threads, r.latencyFlaps, 2*r.latencyFlaps, lostNote(f))
	}
	if r.latencyFlaps > 0 {
		p("- daemon counters at exit: %s", counters(r.latencyStats))
	}
	p("")
}

func (r *report) writeNone(p func(string, ...any)) {
	n := r.none
	if n.flaps == 0 {
		return
	}
	p("### No script matches (empty script directories)")
	p("")
	p("| | window 1: %d flaps, paced | window 2: %d flaps, unpaced |", n.flaps, n.longFlaps)
	p("|---|---|---|")
	p("| processes forked by the daemon (process-events connector) | **%d** (%d exec'd) | **%d** (%d exec'd) |",
		n.forks.Processes, n.forks.Execs, n.longForks.Processes, n.longForks.Execs)
	p("| threads started by the daemon | %d | %d |", n.forks.Threads, n.longForks.Threads)
	p("| connector events read (whole machine) / overruns | %d / %d | %d / %d |", n.forks.Events, n.forks.Lost, n.longForks.Events, n.longForks.Lost)
	p("| polls of /proc/PID/task/*/children that found a child | %d of %d | – |", n.pollsWithChildren, n.polls)
	p("| processes+threads created machine-wide (/proc/stat, other work included) | %d | – |", n.machineForks)
	p("| daemon CPU time (utime+stime) | %d ms (%s µs/flap) | %d ms (%s µs/flap) |",
		n.after.cpuMS()-n.before.cpuMS(), perFlap(n.after.cpuMS()-n.before.cpuMS(), n.flaps),
		n.end.cpuMS()-n.after.cpuMS(), perFlap(n.end.cpuMS()-n.after.cpuMS(), n.longFlaps))
	p("| VmRSS before → after (kB) | %d → %d | %d → %d |", n.before.rssKB, n.after.rssKB, n.after.rssKB, n.end.rssKB)
	p("| VmHWM before → after (kB) | %d → %d | %d → %d |", n.before.hwmKB, n.after.hwmKB, n.after.hwmKB, n.end.hwmKB)
	p("| threads before → after | %d → %d | %d → %d |", n.before.threads, n.after.threads, n.after.threads, n.end.threads)
	p("")
	p("- VmRSS (kB) every %d flaps of window 2: %s", max(n.longFlaps/10, 1), joinInts(n.rssSamples))
	p("- daemon counters at exit: %s", counters(n.stats))
	p("")
	p("### Idle memory (%s after ready, %d links)", n.idleWait, n.links)
	p("")
	p("| VmRSS | RssAnon | RssFile | VmHWM | threads |")
	p("|---:|---:|---:|---:|---:|")
	p("| **%.1f MiB** | %.1f MiB | %.1f MiB | %.1f MiB | %d |", mib(n.idle.rssKB), mib(n.idle.anonKB), mib(n.idle.fileKB), mib(n.idle.hwmKB), n.idle.threads)
	p("")
	verdict := "met"
	if n.idle.rssKB*1024 > 12e6 {
		verdict = "NOT met"
	}
	p("- target VmRSS ≤ 12 MB: %s.", verdict)
}

func lostNote(f forkCounts) string {
	if f.Lost > 0 {
		return fmt.Sprintf("The kernel dropped process events %d times: the counts are a lower bound.", f.Lost)
	}
	return "No process events were lost."
}

func counters(m map[string]string) string {
	var parts []string
	for _, k := range []string{"events", "changes", "coalesced", "action_runs", "action_errors", "dropped"} {
		if v, ok := m[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return "(no stopped line)"
	}
	return strings.Join(parts, " ")
}

func perFlap(msTotal int64, flaps int) string {
	if flaps == 0 {
		return "–"
	}
	return strconv.FormatFloat(float64(msTotal)*1000/float64(flaps), 'f', 1, 64)
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatInt(x, 10)
	}
	return strings.Join(s, " ")
}
