// Package nettest holds helpers for tests that need the kernel: a guard that
// skips unprivileged runs, throw-away network namespaces driven with
// `ip -n`, veth pairs with explicit indexes, and a goroutine leak check.
//
// Only _test.go files may import it. Nothing here ever changes the calling
// thread's network namespace or the host's network: every kernel effect
// happens inside a namespace the test created, and each namespace is
// removed in t.Cleanup, also when the test fails.
package nettest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// NamePrefix starts the name of every namespace this package creates.
const NamePrefix = "netevd-t-"

// capNetAdmin is CAP_NET_ADMIN's bit in /proc/self/status CapEff.
const capNetAdmin = 12

// RequirePrivileged skips tb unless the test can create network
// namespaces: it runs as euid 0 with CAP_NET_ADMIN, the ip binary exists,
// and `ip netns add` works. The skip message says which condition failed.
func RequirePrivileged(tb testing.TB) {
	tb.Helper()
	if reason := privilegeProblem(); reason != "" {
		tb.Skipf("skipping privileged test: %s", reason)
	}
}

func privilegeProblem() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("needs root (euid is %d)", os.Geteuid())
	}
	ok, err := hasCapability(capNetAdmin)
	if err != nil {
		return fmt.Sprintf("cannot read capabilities: %v", err)
	}
	if !ok {
		return "needs CAP_NET_ADMIN"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs the ip binary (iproute2) in PATH"
	}
	name := NamePrefix + "probe-" + randomSuffix()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Sprintf("`ip netns add` does not work: %v: %s", err, bytes.TrimSpace(out))
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	return ""
}

// hasCapability reports whether the effective capability set holds bit.
func hasCapability(bit uint) (bool, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		v, ok := strings.CutPrefix(s.Text(), "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, fmt.Errorf("parse CapEff %q: %w", v, err)
		}
		return mask&(1<<bit) != 0, nil
	}
	if err := s.Err(); err != nil {
		return false, err
	}
	return false, errors.New("no CapEff line in /proc/self/status")
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NetNS is a named network namespace that lives as long as the test.
type NetNS struct {
	tb   testing.TB
	Name string // e.g. "netevd-t-1a2b3c4d"
	Path string // /run/netns/Name, usable as a namespace path for sockets
}

// NewNetNS creates a uniquely named namespace and registers its removal
// with tb.Cleanup: processes that `ip netns pids` lists are killed by PID
// first, then the namespace is deleted (its links go with it). It calls
// RequirePrivileged first.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	RequirePrivileged(tb)
	name := NamePrefix + randomSuffix()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	ns := &NetNS{tb: tb, Name: name, Path: "/run/netns/" + name}
	tb.Cleanup(ns.remove)
	return ns
}

func (ns *NetNS) remove() {
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err == nil {
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 1 || pid == os.Getpid() {
				continue
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		ns.tb.Errorf("ip netns del %s: %v: %s", ns.Name, err, bytes.TrimSpace(out))
	}
}

// Run runs `ip -n NAME args...` and returns its combined output. It fails
// the test, showing the command and its output, if ip exits non-zero.
func (ns *NetNS) Run(args ...string) string {
	ns.tb.Helper()
	out, err := ns.TryRun(args...)
	if err != nil {
		ns.tb.Fatal(err)
	}
	return out
}

// TryRun is Run for commands that may fail: it returns an error that
// carries the command and its output instead of failing the test.
func (ns *NetNS) TryRun(args ...string) (string, error) {
	full := append([]string{"-n", ns.Name}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Batch runs the ip commands in lines (one command each, without the
// leading "ip") in one `ip -n NAME -batch -` process, failing the test on
// error. It is the fast way to make hundreds of changes.
func (ns *NetNS) Batch(lines []string) {
	ns.tb.Helper()
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		ns.tb.Fatalf("ip -n %s -batch: %v: %s", ns.Name, err, bytes.TrimSpace(out))
	}
}

// Open opens the namespace file and returns it; the file is closed in
// tb.Cleanup. Its Fd() is a namespace handle for APIs that take one.
func (ns *NetNS) Open() *os.File {
	ns.tb.Helper()
	f, err := os.Open(ns.Path)
	if err != nil {
		ns.tb.Fatalf("open %s: %v", ns.Path, err)
	}
	ns.tb.Cleanup(func() { _ = f.Close() })
	return f
}

// VethPair creates a veth pair: nameA with ifindex idxA in a and nameB with
// ifindex idxB in b (a and b may be the same namespace). The indexes must
// differ: with equal indexes the kernel rate-limits carrier-down events to
// about one per second (linkwatch). The links are removed with their
// namespaces.
func VethPair(tb testing.TB, a, b *NetNS, nameA string, idxA int, nameB string, idxB int) {
	tb.Helper()
	if idxA == idxB {
		tb.Fatalf("VethPair %s/%s: indexes must differ, both are %d", nameA, nameB, idxA)
	}
	args := []string{"link", "add", nameA, "index", strconv.Itoa(idxA), "type", "veth",
		"peer", "name", nameB, "index", strconv.Itoa(idxB)}
	if b != a {
		args = append(args, "netns", b.Name)
	}
	a.Run(args...)
}
