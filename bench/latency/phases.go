package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/netevd/netevd/bench/host"
	"github.com/netevd/netevd/internal/rtnl"
)

// The probe's name in each script directory.
const (
	carrierScript   = "/carrier.d/50-ts"
	noCarrierScript = "/no-carrier.d/50-ts"
)

// edgeSeries collects the timings of one kind of carrier edge, in ns.
type edgeSeries struct {
	total  []int64 // change (before the request) → probe's first instruction
	ack    []int64 // change → the kernel acknowledged the request
	kernel []int64 // change → the harness's monitor socket read RTM_NEWLINK
	netevd []int64 // monitor read → probe's first instruction
}

// startMonitor opens the harness's monitor socket in the daemon's
// namespace and forwards veth0's carrier edges.
func (b *bench) startMonitor() error {
	if b.mon != nil {
		return nil
	}
	mon, err := rtnl.OpenMonitor(rtnl.MonitorConfig{NetNS: rtnl.NetNS{Path: "/run/netns/" + b.nsD}}, nil)
	if err != nil {
		return err
	}
	b.mon = mon
	b.carrier = make(chan carrierEdge, 1<<16)
	b.monDone = make(chan struct{})
	go b.watchCarrier()
	return nil
}

func (b *bench) stopMonitor() {
	if b.mon == nil {
		return
	}
	_ = b.mon.Close()
	<-b.monDone
	b.mon = nil
}

// latencyPhase runs the daemon with the probe in carrier.d and
// no-carrier.d and times o.flaps flaps.
func (b *bench) latencyPhase(ctx context.Context, rep *report) error {
	scripts := filepath.Join(b.tmp, "scripts-latency")
	for _, s := range []string{carrierScript, noCarrierScript} {
		if err := b.probe.install(scripts + s); err != nil {
			return err
		}
	}
	cfg, err := b.writeConfig("latency.yaml", scripts)
	if err != nil {
		return err
	}
	if b.o.monitor {
		if err := b.startMonitor(); err != nil {
			return err
		}
		defer b.stopMonitor()
	}
	d, err := b.startDaemon(ctx, cfg, "daemon-latency.log")
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // startup replay; nothing should run
	b.probe.drain()
	if b.mon != nil {
		b.drainCarrier()
	}
	pw, err := watchForks(d.pid)
	if err != nil {
		return err
	}

	for i := range b.o.flaps {
		for _, up := range []bool{true, false} {
			if err := b.timedEdge(ctx, d, up, rep); err != nil {
				pw.close()
				return fmt.Errorf("flap %d: %w", i+1, err)
			}
			// A little jitter keeps the flaps from locking onto a period
			// of the daemon or the machine.
			time.Sleep(b.o.gap + rand.N(b.o.gap/4+1))
		}
	}
	time.Sleep(200 * time.Millisecond)
	rep.latencyForks = pw.close()
	rep.latencyFlaps = b.o.flaps
	rep.latencyStats, err = b.stopDaemon()
	return err
}

// timedEdge sets vp0 up or down and waits until the probe in carrier.d or
// no-carrier.d has run and the daemon has logged that it finished.
func (b *bench) timedEdge(ctx context.Context, d *daemon, up bool, rep *report) error {
	script, series := noCarrierScript, &rep.down
	if up {
		script, series = carrierScript, &rep.up
	}
	t0 := monotonic()
	if err := b.setter.SetUp(peerIdx, up); err != nil {
		return err
	}
	ack := monotonic()
	var seen carrierEdge
	if b.mon != nil {
		var err error
		if seen, err = b.waitCarrier(ctx, up); err != nil {
			return err
		}
	}
	l, err := b.probe.wait(ctx, script)
	if err != nil {
		return err
	}
	if l.ppid != d.pid {
		return fmt.Errorf("%s ran with parent %d, not the daemon (%d)", script, l.ppid, d.pid)
	}
	if _, err := d.waitFinished(ctx, script); err != nil {
		return err
	}
	series.total = append(series.total, l.at-t0)
	series.ack = append(series.ack, ack-t0)
	if b.mon != nil {
		series.kernel = append(series.kernel, seen.at-t0)
		series.netevd = append(series.netevd, l.at-seen.at)
	}
	return nil
}

// floorPhase times fork+exec of the probe done directly by the harness,
// with no daemon running. Each round sleeps o.floorGap first, as the timed
// flaps do (an idle machine wakes up slower than a busy one), then runs
// the probe bare (exec.Cmd with nothing attached) and at once a second
// time (a machine already awake), sleeps again, and runs it set up as
// netevd's runner does (three pipes, a new process group, a fixed
// environment, working directory /).
func (b *bench) floorPhase(ctx context.Context, rep *report) error {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
		"LINK=veth0", "LINKINDEX=10", "STATE=carrier", "BACKEND=none", "ADDRESSES=", "EVENT=carrier",
		"OLD_STATE=no-carrier", "IPV4_ADDRESSES=", "IPV6_ADDRESSES=", "NETEVD_EVENT_ID=42",
		"IFACE=veth0", "ADDR=", "IP_ADDRS=", "IP6_ADDRS=", "OperationalState=carrier", "AdministrativeState=",
	}
	pause := func() { time.Sleep(b.o.floorGap + rand.N(b.o.floorGap/4+1)) }
	for i := range b.o.floor {
		pause()
		for _, dst := range []*[]int64{&rep.floorBare, &rep.floorHot} {
			ns, err := b.floorRun(ctx, &exec.Cmd{Path: b.probe.path, Args: []string{"floor-bare"}}, false)
			if err != nil {
				return fmt.Errorf("floor run %d: %w", i+1, err)
			}
			*dst = append(*dst, ns)
		}
		pause()
		runnerLike := &exec.Cmd{
			Path: b.probe.path, Args: []string{"floor-runner"}, Env: env, Dir: "/",
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		}
		ns, err := b.floorRun(ctx, runnerLike, true)
		if err != nil {
			return fmt.Errorf("floor run %d: %w", i+1, err)
		}
		rep.floorRunner = append(rep.floorRunner, ns)
	}
	return nil
}

// floorRun starts cmd and returns the time from just before Start (and,
// when withPipes is set, before creating the three pipes) to the probe's
// first instruction.
func (b *bench) floorRun(ctx context.Context, cmd *exec.Cmd, withPipes bool) (int64, error) {
	t0 := monotonic()
	var files []*os.File
	if withPipes {
		for range 3 {
			r, w, err := os.Pipe()
			if err != nil {
				return 0, err
			}
			files = append(files, r, w)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[3], files[5]
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	l, err := b.probe.wait(ctx, cmd.Args[0])
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("probe: %w", werr)
	}
	if err != nil {
		return 0, err
	}
	return l.at - t0, nil
}

// noScriptPhase runs the daemon with empty script directories in a
// namespace with a few links: it reads the idle memory, then flaps veth0
// and counts what the daemon forks and how its CPU time and memory move.
func (b *bench) noScriptPhase(ctx context.Context, rep *report) error {
	// A few more links: lo, and two veth pairs inside the namespace.
	if err := host.IPBatch(b.nsD,
		"link set lo up",
		"link add a1 index 11 type veth peer name b1 index 12",
		"link add a2 index 13 type veth peer name b2 index 14",
		"link set a1 up", "link set b1 up", "link set a2 up", "link set b2 up",
	); err != nil {
		return err
	}
	cfg, err := b.writeConfig("none.yaml", filepath.Join(b.tmp, "scripts-none"))
	if err != nil {
		return err
	}
	if err := b.startMonitor(); err != nil {
		return err
	}
	defer b.stopMonitor()
	d, err := b.startDaemon(ctx, cfg, "daemon-none.log")
	if err != nil {
		return err
	}
	n := &rep.none
	n.links = 6 // lo, veth0, a1, b1, a2, b2
	n.idleWait = b.o.idleWait
	time.Sleep(b.o.idleWait)
	if n.idle, err = readProc(d.pid); err != nil {
		return err
	}
	b.drainCarrier()
	pw, err := watchForks(d.pid)
	if err != nil {
		return err
	}
	defer pw.close()

	// Window 1: o.idleFlaps flaps, paced so that the daemon handles every
	// change; its children are listed after every edge.
	n.flaps = b.o.idleFlaps
	if n.before, err = readProc(d.pid); err != nil {
		return err
	}
	procsBefore, err := forksSinceBoot()
	if err != nil {
		return err
	}
	for i := range b.o.idleFlaps {
		for _, up := range []bool{true, false} {
			if err := b.edge(ctx, up); err != nil {
				return fmt.Errorf("flap %d: %w", i+1, err)
			}
			kids, err := children(d.pid)
			if err != nil {
				return err
			}
			n.polls++
			if len(kids) > 0 {
				n.pollsWithChildren++
			}
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n.after, err = readProc(d.pid); err != nil {
		return err
	}
	procsAfter, err := forksSinceBoot()
	if err != nil {
		return err
	}
	n.machineForks = procsAfter - procsBefore
	n.forks = pw.counts()

	// Window 2: o.longFlaps flaps as fast as the kernel reports them, with
	// the memory sampled ten times.
	n.longFlaps = b.o.longFlaps
	step := max(b.o.longFlaps/10, 1)
	for i := range b.o.longFlaps {
		if i%step == 0 {
			p, err := readProc(d.pid)
			if err != nil {
				return err
			}
			n.rssSamples = append(n.rssSamples, p.rssKB)
		}
		for _, up := range []bool{true, false} {
			if err := b.edge(ctx, up); err != nil {
				return fmt.Errorf("long flap %d: %w", i+1, err)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n.end, err = readProc(d.pid); err != nil {
		return err
	}
	n.rssSamples = append(n.rssSamples, n.end.rssKB)
	n.longForks = pw.close().sub(n.forks)
	n.stats, err = b.stopDaemon()
	return err
}

// edge sets vp0 up or down and waits until the monitor sees veth0's
// carrier follow.
func (b *bench) edge(ctx context.Context, up bool) error {
	if err := b.setter.SetUp(peerIdx, up); err != nil {
		return err
	}
	_, err := b.waitCarrier(ctx, up)
	return err
}
