package script

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// result is how one script run ended.
type result struct {
	exitCode int    // -1 when killed by a signal or not started
	signal   string // "SIGTERM", ... when killed by a signal
	timedOut bool   // killed because it ran longer than Config.Timeout
	canceled bool   // killed because the Handle context ended
	startErr error  // the script could not be started
	leftover bool   // it exited but a process it started kept its output open
	duration time.Duration
}

func (res result) failed() bool {
	return !res.canceled && (res.startErr != nil || res.exitCode != 0 || res.timedOut)
}

func (res result) String() string {
	switch {
	case res.startErr != nil:
		return "did not start: " + res.startErr.Error()
	case res.timedOut:
		return "timed out"
	case res.canceled:
		return "interrupted"
	case res.signal != "":
		return "killed by " + res.signal
	}
	return fmt.Sprintf("exit status %d", res.exitCode)
}

// run executes one script and waits until it and its output are done.
//
// The script is exec'd directly (no shell, no arguments) in its own
// process group, in "/", with env as its whole environment and stdin as
// the read end of a pipe that receives stdin. When it outlives the timeout
// or ctx ends, the whole group gets SIGTERM, and SIGKILL once the script
// has exited and its output is closed or KillGrace has passed, whichever
// comes first. The script is not reaped before that, so its pid (the
// group's id) cannot be reused while the group is signalled.
//
// A script that exits normally may leave background processes running; they
// are not killed. If one of them still holds the script's stdout or stderr
// after KillGrace, run stops reading the output and returns.
func (r *Runner) run(ctx context.Context, path string, env []string, stdin []byte, log *slog.Logger) result {
	start := time.Now()
	res := result{exitCode: -1}

	var files []*os.File // every pipe end still open in the parent
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (rd, wr *os.File, err error) {
		rd, wr, err = os.Pipe()
		if err == nil {
			files = append(files, rd, wr)
		}
		return rd, wr, err
	}
	inR, inW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		closeAll()
		res.startErr = fmt.Errorf("create pipes: %w", err)
		res.duration = time.Since(start)
		return res
	}

	cmd := &exec.Cmd{
		Path:        path,
		Args:        []string{path},
		Env:         env,
		Dir:         "/",
		Stdin:       inR,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err := cmd.Start()
	// The child has its copies; the parent keeps only its own ends.
	inR.Close()
	outW.Close()
	errW.Close()
	files = []*os.File{inW, outR, errR}
	if err != nil {
		closeAll()
		res.startErr = err
		res.duration = time.Since(start)
		return res
	}
	pgid := cmd.Process.Pid

	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		// A script that does not read stdin closes it or exits: EPIPE, or
		// the deadline set below. Neither is the script's failure.
		if _, err := inW.Write(stdin); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, os.ErrDeadlineExceeded) {
			log.Debug("writing the event to the script's stdin", "error", err)
		}
		inW.Close()
	}()

	var outputs sync.WaitGroup
	outputs.Go(func() { readStream(outR, "stdout", int64(r.cfg.MaxOutput), log) })
	outputs.Go(func() { readStream(errR, "stderr", int64(r.cfg.MaxOutput), log) })
	outputDone := make(chan struct{})
	go func() { outputs.Wait(); close(outputDone) }()

	exited := make(chan struct{})
	go func() { defer close(exited); waitExited(pgid) }()

	timer := time.NewTimer(r.cfg.Timeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		res.timedOut = true
		r.terminate(pgid, exited, outputDone)
	case <-ctx.Done():
		res.canceled = true
		r.terminate(pgid, exited, outputDone)
	}

	// The script has exited (it is a zombie until Wait below). Whatever
	// still holds its output gets KillGrace to let go.
	select {
	case <-outputDone:
	default:
		grace := time.NewTimer(r.cfg.KillGrace)
		select {
		case <-outputDone:
		case <-grace.C:
			res.leftover = true
		case <-ctx.Done():
			res.leftover = true
		}
		grace.Stop()
		if res.leftover {
			now := time.Now()
			outR.SetReadDeadline(now)
			errR.SetReadDeadline(now)
			<-outputDone
		}
	}
	inW.SetWriteDeadline(time.Now()) // a grandchild may hold stdin unread
	<-stdinDone
	outR.Close()
	errR.Close()

	werr := cmd.Wait() // reaps; all pipes are ours and already done
	res.duration = time.Since(start)
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.signal = unix.SignalName(ws.Signal())
		} else {
			res.exitCode = ps.ExitCode()
		}
	} else if werr != nil {
		res.startErr = werr
	}
	if res.leftover {
		log.Warn("script left a process holding its output open; stopped reading it",
			"pgid", pgid, "hint", "redirect the output of background commands, or start them with systemd-run")
	}
	return res
}

// terminate stops the process group pgid whose leader has not been
// reaped: SIGTERM to the group, then, once the leader has exited and the
// output is closed or KillGrace has passed, SIGKILL to whatever is left.
// It returns when the leader has exited.
func (r *Runner) terminate(pgid int, exited, outputDone <-chan struct{}) {
	unix.Kill(-pgid, unix.SIGTERM)
	unix.Kill(pgid, unix.SIGTERM) // in case it left its group (setpgid, setsid)
	grace := time.NewTimer(r.cfg.KillGrace)
	defer grace.Stop()
	graceOver := false
	select {
	case <-exited:
	case <-grace.C:
		graceOver = true
	}
	if !graceOver {
		select {
		case <-outputDone:
		case <-grace.C:
		}
	}
	// The leader is at most a zombie, so the group id is still reserved and
	// this reaches exactly the script's group. The leader is also signalled
	// by its pid, which is just as reserved, in case it left its group.
	unix.Kill(-pgid, unix.SIGKILL)
	unix.Kill(pgid, unix.SIGKILL)
	<-exited
}

// waitExited blocks until the process pid has exited, without reaping it.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}
