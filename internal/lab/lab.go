// Package lab is "netevd lab", the sandbox behind "make demo": it creates two
// throw-away network namespaces joined by a veth pair, writes a config and the
// example scripts (package examples) to a temporary directory, runs the netevd
// binary inside one namespace, and then drives a short scenario of carrier,
// address and route changes from outside so the user can watch the daemon and
// its scripts react.
//
// It never touches the host's network: every ip command is bound to a
// namespace the lab created (ip -n NS, ip netns exec NS), and cleanup stops
// only processes the lab started or that live in those namespaces, by PID.
//
// Only cmd/netevd imports it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DefaultDelay is the pause between scenario steps when Options.Delay is 0.
const DefaultDelay = 1500 * time.Millisecond

// Options configure Run.
type Options struct {
	// Binary is the netevd binary run inside the daemon namespace,
	// normally os.Executable().
	Binary string
	// Keep leaves the namespaces and the temporary directory in place for
	// inspection (the daemon is still stopped).
	Keep bool
	// Steps is the number of carrier flap cycles (peer down, peer up) in
	// the middle of the scenario; 0 means 1.
	Steps int
	// Loop flaps the carrier until ctx ends, instead of Steps times.
	Loop bool
	// Delay is the pause before each step; 0 means DefaultDelay.
	Delay time.Duration
	// Backend is the daemon's network manager backend: BackendNone (or
	// "", kernel events only) or BackendNetworkd, which runs the real
	// systemd-networkd with a private system bus in the daemon namespace
	// to manage lab0 (see networkd.go).
	Backend string
}

// Backends the lab can run.
const (
	BackendNone     = "none"
	BackendNetworkd = "networkd"
)

// Names of the lab's links and addresses, inside its namespaces only.
const (
	linkName  = "lab0"  // daemon side, ifindex 10
	peerName  = "lab0p" // peer side, ifindex 20; the "gateway"
	gateway4  = "192.0.2.1"
	gateway6  = "2001:db8:1::1"
	address4  = "192.0.2.10/24"
	address6  = "2001:db8:1::10/64"
	killGrace = 3 * time.Second // SIGTERM to SIGKILL during cleanup
)

// lab is one run. Only the goroutine running Run touches it, except
// daemon.go's wait goroutine, which owns exitErr until exited closes.
type lab struct {
	opts   Options
	out    *syncWriter // stdout, shared with the daemon's output
	stderr *syncWriter

	ns, peer string   // namespace names
	made     []string // namespaces this run created, in order
	dir      string   // temporary directory, "" until created

	daemon  *exec.Cmd
	exited  chan struct{} // closed when daemon has been waited for
	exitErr error         // cmd.Wait's result, valid once exited is closed

	nd *networkdEnv // with BackendNetworkd, once started
}

// Run runs the lab: it sets up the namespaces and files, starts opts.Binary
// in the daemon namespace, plays the scenario, stops the daemon and reports
// its exit status. Progress goes to stdout as "lab | ..." lines and the
// daemon's output as "daemon | ..." lines; warnings go to stderr.
//
// Cleanup (stop the daemon, kill what is left in the namespaces, delete them,
// remove the temporary directory) runs on every return, also when ctx ends
// first; with opts.Keep the namespaces and directory stay. Run needs root and
// the ip command. When ctx ends before the scenario does, Run returns ctx's
// error (errors.Is(err, context.Canceled)). A daemon that exits early or with
// a non-zero status is an error.
func Run(ctx context.Context, opts Options, stdout, stderr io.Writer) (err error) {
	if err := check(&opts); err != nil {
		return err
	}
	if opts.Delay == 0 {
		opts.Delay = DefaultDelay
	}
	pid := os.Getpid()
	l := &lab{
		opts:   opts,
		out:    &syncWriter{w: stdout},
		stderr: &syncWriter{w: stderr},
		ns:     fmt.Sprintf("netevd-lab-%d", pid),
		peer:   fmt.Sprintf("netevd-lab-%d-peer", pid),
	}
	defer func() { err = errors.Join(err, l.cleanup()) }()

	if err := l.setupNetwork(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	config, err := l.writeSandbox()
	if err != nil {
		return err
	}
	if l.opts.Backend == BackendNetworkd {
		if err := l.startNetworkd(ctx); err != nil {
			return err
		}
	}
	if err := l.startDaemon(ctx, config); err != nil {
		return err
	}
	if err := l.play(ctx); err != nil {
		return err
	}
	return l.finish(ctx)
}

// check validates the environment and opts, making opts.Binary absolute.
func check(opts *Options) error {
	if os.Geteuid() != 0 {
		return errors.New("netevd lab must run as root: it creates network namespaces (try sudo)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("netevd lab needs the ip command (iproute2): %w", err)
	}
	if err := checkOptions(opts); err != nil {
		return err
	}
	if opts.Backend == BackendNetworkd {
		return checkNetworkd(opts)
	}
	return nil
}

func checkOptions(opts *Options) error {
	if opts.Binary == "" {
		return errors.New("netevd lab: no netevd binary given")
	}
	abs, err := filepath.Abs(opts.Binary)
	if err != nil {
		return fmt.Errorf("netevd binary: %w", err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("netevd binary: %w", err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("netevd binary %s is not an executable file", abs)
	}
	if opts.Steps < 0 || opts.Delay < 0 {
		return fmt.Errorf("netevd lab: steps (%d) and delay (%s) must not be negative", opts.Steps, opts.Delay)
	}
	switch opts.Backend {
	case "", BackendNone:
		opts.Backend = BackendNone
	case BackendNetworkd, "systemd-networkd":
		opts.Backend = BackendNetworkd
	default:
		return fmt.Errorf("netevd lab: unknown backend %q (want %s or %s)", opts.Backend, BackendNone, BackendNetworkd)
	}
	opts.Binary = abs
	return nil
}

// cleanup undoes what the run did; it works with a canceled context.
func (l *lab) cleanup() error {
	var errs []error
	if l.running() {
		l.say("stopping the daemon (PID %d)", l.daemon.Process.Pid)
		if err := l.stopDaemon(killGrace); err != nil {
			l.warn("%v", err)
		}
		l.say("daemon exited: %s", l.exitStatus())
	}
	l.stopNetworkd()
	for _, ns := range l.made {
		if err := l.killAll(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if l.opts.Keep {
		if len(l.made) > 0 || l.dir != "" {
			l.say("kept namespaces %s and directory %s; remove them with: ip netns del NAME; rm -r DIR",
				strings.Join(l.made, " "), l.dir)
		}
		return errors.Join(errs...)
	}
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := ip("netns", "del", l.made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if l.dir != "" {
		if err := os.RemoveAll(l.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove lab directory: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab cleanup incomplete: %w", err)
	}
	l.say("cleaned up")
	return nil
}
