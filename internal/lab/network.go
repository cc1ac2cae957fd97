package lab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// ip runs the ip command; an error carries the command line and what ip
// printed. It runs in its own process group, so a Ctrl-C on the terminal
// does not interrupt a step half-way: it reaches the lab, which stops
// between steps and cleans up.
func ip(args ...string) error {
	var buf bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %s: %w", cmdline(args), strings.TrimSpace(buf.String()), err)
	}
	return nil
}

func cmdline(args []string) string { return "ip " + strings.Join(args, " ") }

// setupNetwork creates both namespaces and the veth pair, with explicit
// different ifindexes so the kernel reports every carrier-down at once (with
// equal indexes linkwatch coalesces flaps shorter than a second). The peer
// holds the gateway addresses and stays down, so lab0 starts without carrier.
func (l *lab) setupNetwork() error {
	for _, ns := range []string{l.ns, l.peer} {
		args := []string{"netns", "add", ns}
		l.say("+ %s", cmdline(args))
		if err := ip(args...); err != nil {
			return fmt.Errorf("create namespace (a leftover of an earlier lab? see ip netns list): %w", err)
		}
		l.made = append(l.made, ns)
	}
	cmds := [][]string{
		{"-n", l.ns, "link", "set", "lo", "up"},
		{"-n", l.peer, "link", "set", "lo", "up"},
		{"-n", l.ns, "link", "add", linkName, "index", "10", "type", "veth", "peer", "name", peerName, "index", "20", "netns", l.peer},
		{"-n", l.peer, "address", "add", gateway4 + "/24", "dev", peerName},
		{"-n", l.peer, "address", "add", gateway6 + "/64", "dev", peerName, "nodad"},
	}
	for _, args := range cmds {
		l.say("+ %s", cmdline(args))
		if err := ip(args...); err != nil {
			return fmt.Errorf("set up lab network: %w", err)
		}
	}
	return nil
}

// killAll SIGKILLs every process left in namespace ns: only the lab's
// daemon and its scripts can live there.
func (l *lab) killAll(ns string) error {
	cmd := exec.Command("ip", "netns", "pids", ns)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("ip netns pids %s: %w", ns, err)
	}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid == os.Getpid() {
			continue
		}
		l.say("killing leftover process %d in %s", pid, ns)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			return fmt.Errorf("kill process %d in %s: %w", pid, ns, err)
		}
	}
	return nil
}
