package lab

import (
	"context"
	"fmt"
	"time"
)

// stopGrace is how long the scenario's last step lets the daemon shut down
// (drain, stop its scripts) before it is killed.
const stopGrace = 10 * time.Second

// step is one scenario step: what it shows, and the ip command that does it.
type step struct {
	what string
	args []string
}

// steps returns the scenario: setup to routable, the carrier flap cycle
// (repeated by play), and the teardown of routes and addresses. Deleting
// an IPv4 address makes the kernel drop the routes through its subnet too,
// so the default route is deleted and restored before the address goes.
// With systemd-networkd the setup is the peer coming up (networkd
// configures lab0) and there is no teardown.
func (l *lab) steps() (before, flap, after []step) {
	dev := []string{"dev", linkName}
	in := func(ns string, args ...string) []string { return append([]string{"-n", ns}, args...) }
	route := func(verb string) []string {
		return in(l.ns, append([]string{"route", verb, "default", "via", gateway4}, dev...)...)
	}
	flap = []step{
		{"take the peer down: lab0 loses carrier", in(l.peer, "link", "set", peerName, "down")},
		{"bring the peer up again: carrier is back", in(l.peer, "link", "set", peerName, "up")},
	}
	if l.opts.Backend == BackendNetworkd {
		// systemd-networkd brings lab0 up and configures its address and
		// default route itself (and drops the address on carrier loss).
		before = []step{{"bring the peer up: lab0 gets carrier; systemd-networkd adds " + address4 +
			" and the default route via " + gateway4, in(l.peer, "link", "set", peerName, "up")}}
		return before, flap, nil
	}
	before = []step{
		{"set lab0 up: no carrier yet, the peer is down", in(l.ns, "link", "set", linkName, "up")},
		{"bring the peer up: lab0 gets carrier", in(l.peer, "link", "set", peerName, "up")},
		{"add an IPv4 address to lab0", in(l.ns, append([]string{"address", "add", address4}, dev...)...)},
		{"add an IPv6 address to lab0", in(l.ns, append([]string{"address", "add", address6}, append(dev, "nodad")...)...)},
		{"add a default route via the peer: lab0 is routable", route("add")},
	}
	after = []step{
		{"delete the default route: lab0 is no longer routable", route("del")},
		{"add the default route back", route("add")},
		{"remove the IPv4 address (the kernel drops the default route with it)", in(l.ns, append([]string{"address", "del", address4}, dev...)...)},
		{"add the IPv4 address back", in(l.ns, append([]string{"address", "add", address4}, dev...)...)},
	}
	return before, flap, after
}

// play runs the scenario, pausing opts.Delay before each step.
func (l *lab) play(ctx context.Context) error {
	before, flap, after := l.steps()
	if err := l.run(ctx, before); err != nil {
		return err
	}
	cycles := max(l.opts.Steps, 1)
	for i := 0; l.opts.Loop || i < cycles; i++ {
		if err := l.run(ctx, flap); err != nil {
			return err
		}
	}
	return l.run(ctx, after)
}

func (l *lab) run(ctx context.Context, steps []step) error {
	for _, s := range steps {
		if err := l.pause(ctx); err != nil {
			return err
		}
		l.say(">>> %s (%s)", s.what, cmdline(s.args))
		if err := ip(s.args...); err != nil {
			return fmt.Errorf("scenario step %q: %w", s.what, err)
		}
	}
	return nil
}

// pause waits opts.Delay; it fails early when ctx ends or the daemon exits.
func (l *lab) pause(ctx context.Context) error {
	timer := time.NewTimer(l.opts.Delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.exited:
		return fmt.Errorf("daemon exited during the scenario: %s", l.exitStatus())
	}
}

// finish is the last step: SIGTERM the daemon and report how it exited.
func (l *lab) finish(ctx context.Context) error {
	if err := l.pause(ctx); err != nil {
		return err
	}
	l.say(">>> stop the daemon (kill -TERM %d)", l.daemon.Process.Pid)
	if err := l.stopDaemon(stopGrace); err != nil {
		return err
	}
	l.say("daemon exited: %s", l.exitStatus())
	if !l.daemon.ProcessState.Success() {
		return fmt.Errorf("daemon %s after SIGTERM", l.exitStatus())
	}
	return nil
}
