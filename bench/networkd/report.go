package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/netevd/netevd/bench/sample"
)

// envInfo describes the machine, the versions and the settings.
type envInfo struct {
	kernel, goVersion, netevd         string
	systemd, dispatcher, python, bash string
	loadStart, loadEnd                string
	driver, daemonEnv                 string
	emitJSON                          bool
	gap                               time.Duration
	cpus                              int
}

// report is everything the harness measured.
type report struct {
	env                    envInfo
	warmup                 int
	flaps                  []flapResult
	stray                  []scriptRun // runs outside the one expected per dispatcher and flap
	netevdPID, dispatchPID int
	netevdBackend          []string // netevd's log lines about its backend
	busctl                 bool     // flaps carry busctl's stamps
}

// series is one measured quantity over the flaps, in ns.
type series []int64

// analysis holds the series the report prints.
type analysis struct {
	sigToScript, upToScript map[string]series // by dispatcher name
	upToSignal, ack, floor  series
	upToBusctl, busctlLag   series         // busctl's stamp; the harness's receipt minus busctl's stamp
	lead                    series         // networkd-dispatcher's run minus netevd's, per flap with both
	slower                  []int          // flaps on which netevd's script ran after networkd-dispatcher's
	missing                 map[string]int // flaps without a run of the dispatcher
	backends                map[string]int // $BACKEND of netevd's runs
	wrongParent             map[string]int // runs whose parent was not the expected dispatcher
}

func (r *report) analyze() analysis {
	a := analysis{
		sigToScript: map[string]series{}, upToScript: map[string]series{},
		missing: map[string]int{}, backends: map[string]int{}, wrongParent: map[string]int{},
	}
	parent := map[string]int{nameNetevd: r.netevdPID, nameDispatcher: r.dispatchPID}
	for _, f := range r.flaps {
		a.upToSignal = append(a.upToSignal, f.signal-f.up)
		a.ack = append(a.ack, f.ack-f.up)
		a.floor = append(a.floor, f.floor)
		if f.busctl != 0 {
			a.upToBusctl = append(a.upToBusctl, f.busctl-f.up)
			a.busctlLag = append(a.busctlLag, f.signal-f.busctl)
		}
		for _, name := range []string{nameNetevd, nameDispatcher} {
			run, ok := f.runs[name]
			if !ok {
				a.missing[name]++
				continue
			}
			a.sigToScript[name] = append(a.sigToScript[name], run.at-f.signal)
			a.upToScript[name] = append(a.upToScript[name], run.at-f.up)
			if parent[name] != 0 && run.ppid != parent[name] {
				a.wrongParent[name]++
			}
			if name == nameNetevd {
				a.backends[run.backend]++
			}
		}
		n, okN := f.runs[nameNetevd]
		d, okD := f.runs[nameDispatcher]
		if okN && okD {
			a.lead = append(a.lead, d.at-n.at)
			if n.at > d.at {
				a.slower = append(a.slower, f.n)
			}
		}
	}
	return a
}

func (r *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	a := r.analyze()
	e := r.env
	p("## netevd and networkd-dispatcher on one systemd-networkd (%s)", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	p("")
	p("- machine: %d CPUs, kernel %s, %s, bash %s", e.cpus, e.kernel, e.goVersion, e.bash)
	p("- %s; systemd %s; networkd-dispatcher %s (%s)", e.netevd, e.systemd, e.dispatcher, e.python)
	p("- %d timed flaps after %d warm-up flaps; vp0 set up/down by %s; pauses %s (+ up to 25%%); netevd emit_json: %t",
		len(r.flaps), r.warmup, driverText(e.driver), e.gap, e.emitJSON)
	p("- load average at start: %s; at end: %s", e.loadStart, e.loadEnd)
	if e.daemonEnv != "" {
		p("- netevd's environment: %s", e.daemonEnv)
	}
	p("- netevd's scripts saw BACKEND=%s", countsText(a.backends))
	for _, line := range r.netevdBackend {
		p("  - netevd log: `%s`", line)
	}
	if a.backends["systemd-networkd"] != len(a.upToScript[nameNetevd]) {
		p("- **netevd did not run routable.d from its systemd-networkd source on every flap: these are not the numbers of that backend.**")
	}
	p("")

	p("### routable.d, first command of the script (ms)")
	p("")
	p("| segment | n | min | p50 | p95 | max |")
	p("|---|---:|---:|---:|---:|---:|")
	row := func(name string, s series) {
		if len(s) == 0 {
			p("| %s | 0 | – | – | – | – |", name)
			return
		}
		st := summarize(s)
		p("| %s | %d | %s | %s | %s | %s |", name, st.n, sample.MS(st.min), sample.MS(st.p50), sample.MS(st.p95), sample.MS(st.max))
	}
	row("**netevd: signal → script**", a.sigToScript[nameNetevd])
	row("networkd-dispatcher: signal → script", a.sigToScript[nameDispatcher])
	row("**netevd: `ip link set up` → script**", a.upToScript[nameNetevd])
	row("networkd-dispatcher: `ip link set up` → script", a.upToScript[nameDispatcher])
	row("networkd: `ip link set up` → PropertiesChanged(routable) at the harness", a.upToSignal)
	if r.busctl {
		row("networkd: `ip link set up` → the same signal, busctl monitor's timestamp-realtime", a.upToBusctl)
		row("signal at the harness minus busctl's stamp", a.busctlLag)
	}
	row("floor: harness fork+execs the same script → its first command", a.floor)
	row(ackText(e.driver), a.ack)
	row("networkd-dispatcher's script minus netevd's, per flap", a.lead)
	p("")

	fl := summarize(a.floor)
	p("| | netevd | networkd-dispatcher |")
	p("|---|---:|---:|")
	share := map[string]string{}
	for _, name := range []string{nameNetevd, nameDispatcher} {
		if s := a.sigToScript[name]; len(s) > 0 && fl.n > 0 {
			share[name] = sample.MS(summarize(s).p50-fl.p50) + " ms"
		} else {
			share[name] = "–"
		}
	}
	p("| **above the floor: signal → script p50 − floor p50** | **%s** | %s |", share[nameNetevd], share[nameDispatcher])
	p("| runs missing (no run within %s of the flap) | %d | %d |", waitLimit, a.missing[nameNetevd], a.missing[nameDispatcher])
	p("| runs whose parent was not the dispatcher | %d | %d |", a.wrongParent[nameNetevd], a.wrongParent[nameDispatcher])
	p("")
	if s := a.sigToScript[nameNetevd]; len(s) > 0 && fl.n > 0 {
		verdict := "met"
		if summarize(s).p50-fl.p50 > int64(time.Millisecond) {
			verdict = "NOT met"
		}
		p("- target: netevd's share above the floor p50 ≤ 1 ms: **%s**.", verdict)
	}
	verdict := "met"
	if len(a.slower) > 0 || a.missing[nameNetevd] > 0 {
		verdict = "NOT met"
	}
	p("- target: netevd never slower than networkd-dispatcher: **%s** — netevd's script ran after networkd-dispatcher's on %d of %d flaps%s.",
		verdict, len(a.slower), len(a.lead), flapList(a.slower))
	if len(r.stray) > 0 {
		p("- %d script runs outside the one expected per dispatcher and flap: %s", len(r.stray), strayText(r.stray))
	} else {
		p("- every dispatcher ran routable.d exactly once per flap (no other run of any script).")
	}
	p("")
}

// writeRaw writes one line per flap: the time of `ip link set up`
// (CLOCK_REALTIME ns, to line the flap up with other captures such as
// busctl's), the timings in ms from it, and netevd's $BACKEND.
func (r *report) writeRaw(path string) error {
	var sb strings.Builder
	sb.WriteString("flap\tup_unix_ns\tack_ms\tsignal_ms\tnetevd_ms\tnetworkd_dispatcher_ms\tfloor_ms\tnetevd_backend\n")
	rel := func(f flapResult, name string) string {
		if run, ok := f.runs[name]; ok {
			return sample.MS(run.at - f.up)
		}
		return "NA"
	}
	for _, f := range r.flaps {
		fmt.Fprintf(&sb, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", f.n, f.up, sample.MS(f.ack-f.up), sample.MS(f.signal-f.up),
			rel(f, nameNetevd), rel(f, nameDispatcher), sample.MS(f.floor), f.runs[nameNetevd].backend)
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

func driverText(d string) string {
	if d == "ip" {
		return "fork+exec of `ip -n PEER link set vp0 up|down`"
	}
	return "a netlink request on a socket the harness keeps open (no process forked)"
}

func ackText(d string) string {
	if d == "ip" {
		return "`ip link set` exited"
	}
	return "netlink request acknowledged"
}

func countsText(m map[string]int) string {
	if len(m) == 0 {
		return "(no run)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s (%d runs)", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func flapList(ns []int) string {
	if len(ns) == 0 {
		return ""
	}
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return " (flaps " + strings.Join(s, ", ") + ")"
}

func strayText(runs []scriptRun) string {
	s := make([]string, len(runs))
	for i, r := range runs {
		s[i] = fmt.Sprintf("%s STATE=%s", r.name, r.state)
	}
	return strings.Join(s, "; ")
}

// summary holds order statistics of a sample of durations in ns.
type summary struct {
	n                  int
	min, p50, p95, max int64
}

// summarize computes nearest-rank percentiles of s. It does not modify s.
func summarize(s series) summary {
	if len(s) == 0 {
		return summary{}
	}
	v := slices.Clone(s)
	slices.Sort(v)
	return summary{n: len(v), min: v[0], p50: sample.Rank(v, 50), p95: sample.Rank(v, 95), max: v[len(v)-1]}
}
