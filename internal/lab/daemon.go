package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// readyTimeout bounds the wait for the daemon's "ready" line; after it the
// lab warns and goes on.
const readyTimeout = 10 * time.Second

// startDaemon runs the binary in the daemon namespace and waits until it
// logs that it is ready. ip netns exec (or, with systemd-networkd, nsenter)
// execs the binary in place, so the child's PID is the daemon's. It gets its own process group: a Ctrl-C on
// the terminal reaches the lab only, and the lab stops the daemon in order.
func (l *lab) startDaemon(ctx context.Context, config string) error {
	var cmd *exec.Cmd
	if l.nd != nil {
		// Inside networkd's private mount namespace, where the private
		// bus is the system bus; nsenter execs the binary in place.
		cmd = l.nd.command(l.opts.Binary, "--config", config)
		cmd.Env = append(daemonEnv(os.Environ()), "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket")
		l.say("+ %s", strings.Join(cmd.Args, " "))
	} else {
		args := []string{"netns", "exec", l.ns, l.opts.Binary, "--config", config}
		l.say("+ %s", cmdline(args))
		cmd = exec.Command("ip", args...)
		cmd.Env = daemonEnv(os.Environ())
	}
	w := &lineWriter{out: l.out, prefix: "daemon | ", ready: make(chan struct{})}
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second // a script that outlives the daemon keeps the pipe open
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	l.daemon = cmd
	l.exited = make(chan struct{})
	go func() {
		l.exitErr = cmd.Wait()
		w.flush()
		close(l.exited)
	}()

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-w.ready:
		l.say("daemon (PID %d) is ready", cmd.Process.Pid)
	case <-l.exited:
		return fmt.Errorf("daemon exited before it was ready: %s", l.exitStatus())
	case <-timer.C:
		l.warn("the daemon logged no \"ready\" line within %s; going on", readyTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// daemonEnv drops what would make the daemon talk to the lab's own service
// manager (sd_notify, socket activation).
func daemonEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// running reports whether the daemon was started and has not exited.
func (l *lab) running() bool {
	if l.daemon == nil {
		return false
	}
	select {
	case <-l.exited:
		return false
	default:
		return true
	}
}

// stopDaemon sends SIGTERM, waits up to grace, then SIGKILLs and waits for
// the exit. It does nothing unless the daemon is running. The error says
// that the daemon had to be killed.
func (l *lab) stopDaemon(grace time.Duration) error {
	if !l.running() {
		return nil
	}
	// os.Process signals through a pidfd: no risk of hitting a reused PID.
	if err := l.daemon.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop daemon: %w", err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-l.exited:
		return nil
	case <-timer.C:
	}
	if err := l.daemon.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill daemon: %w", err)
	}
	<-l.exited
	return fmt.Errorf("daemon (PID %d) did not stop within %s of SIGTERM and was killed", l.daemon.Process.Pid, grace)
}

// exitStatus describes how the daemon ended; call it after exited closed.
func (l *lab) exitStatus() string {
	if ps := l.daemon.ProcessState; ps != nil {
		return ps.String() // "exit status 0", "signal: killed"
	}
	return l.exitErr.Error()
}
