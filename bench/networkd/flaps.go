package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"time"
)

// flapResult is what one flap measured. Times are CLOCK_REALTIME ns.
type flapResult struct {
	n      int                  // 1-based; warm-up flaps are not kept
	up     int64                // just before vp0 was set up
	ack    int64                // the request returned (netlink: acknowledged; ip: exited)
	signal int64                // PropertiesChanged(OperationalState=routable) reached the harness
	busctl int64                // busctl monitor's stamp of that signal (-busctl), 0 if none
	runs   map[string]scriptRun // the first routable.d run of each dispatcher
	floor  int64                // duration of this flap's floor run (ns)
}

// runFlaps runs the warm-up and timed flaps. Each flap: vp0 up, wait for
// both routable.d scripts and for networkd's routable and configured
// signals, pause; vp0 down, wait until networkd reports no-carrier and has
// dropped the address, pause; then one floor run, pause.
func (l *lab) runFlaps(ctx context.Context, rep *report) error {
	props, err := l.seedProps(ctx)
	if err != nil {
		return err
	}
	l.drainSignals(props)
	if v := props.value["OperationalState"]; v != "no-carrier" {
		return fmt.Errorf("networkd: %s OperationalState is %q before the first flap, want no-carrier", linkName, v)
	}
	rep.warmup = l.o.warmup
	for i := -l.o.warmup; i < l.o.flaps; i++ {
		stray := l.scripts.drain()
		if i >= 0 {
			rep.stray = append(rep.stray, stray...)
		}
		f, extra, err := l.flap(ctx, props)
		if err != nil {
			return fmt.Errorf("flap %d: %w", i+1, err)
		}
		if i < 0 {
			continue
		}
		f.n = i + 1
		rep.stray = append(rep.stray, extra...)
		rep.flaps = append(rep.flaps, f)
	}
	time.Sleep(l.o.gap)
	rep.stray = append(rep.stray, l.scripts.drain()...)
	return nil
}

func (l *lab) flap(ctx context.Context, props *linkProps) (flapResult, []scriptRun, error) {
	var f flapResult
	f.up = time.Now().UnixNano()
	if err := l.setPeer(true); err != nil {
		return f, nil, err
	}
	f.ack = time.Now().UnixNano()
	runs, extra, err := l.scripts.waitRuns(ctx, nameNetevd, nameDispatcher)
	if err != nil {
		return f, extra, err
	}
	f.runs = runs
	if f.signal, err = l.waitProp(ctx, props, "OperationalState", "routable"); err != nil {
		return f, extra, err
	}
	if _, err := l.waitProp(ctx, props, "AdministrativeState", "configured"); err != nil {
		return f, extra, err
	}
	l.pause()

	if err := l.setPeer(false); err != nil {
		return f, extra, err
	}
	if _, err := l.waitProp(ctx, props, "OperationalState", "no-carrier"); err != nil {
		return f, extra, err
	}
	// networkd drops the static address on carrier loss (and re-adds it on
	// carrier, which is why routable comes back on every flap).
	if _, err := l.waitProp(ctx, props, "IPv4AddressState", "off"); err != nil {
		return f, extra, err
	}
	l.pause()

	if f.floor, err = l.floorRun(ctx); err != nil {
		return f, extra, err
	}
	l.pause()
	return f, extra, nil
}

// pause sleeps o.gap plus up to a quarter more: the jitter keeps the flaps
// from locking onto a period of the daemons or the machine.
func (l *lab) pause() { time.Sleep(l.o.gap + rand.N(l.o.gap/4+1)) }

// setPeer sets vp0 up or down in the peer namespace.
func (l *lab) setPeer(up bool) error {
	if l.o.driver == "netlink" {
		return l.setter.SetUp(peerIdx, up)
	}
	state := "down"
	if up {
		state = "up"
	}
	return runCmd("ip", "-n", l.nsP, "link", "set", peerName, state)
}

// floorRun fork+execs the floor's copy of the script directly and returns
// the time from just before exec.Cmd.Start to its $EPOCHREALTIME.
func (l *lab) floorRun(ctx context.Context) (int64, error) {
	cmd := &exec.Cmd{
		Path: l.floorScript,
		Args: []string{l.floorScript},
		Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
	}
	t0 := time.Now().UnixNano()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("floor: %w", err)
	}
	runs, extra, err := l.scripts.waitRuns(ctx, nameFloor)
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("floor script: %w", werr)
	}
	if err != nil {
		return 0, err
	}
	for _, e := range extra {
		fmt.Fprintf(os.Stderr, "networkd: %s's script ran during a floor run\n", e.name)
	}
	r, ok := runs[nameFloor]
	if !ok {
		return 0, fmt.Errorf("floor script reported nothing within %s", waitLimit)
	}
	return r.at - t0, nil
}
