package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed probe/tsprobe.c
var probeSource []byte

// probe is the compiled timestamp program and the FIFO it reports to.
type probe struct {
	path  string // the compiled program
	kind  string // how it was linked: "static" or "dynamic"
	fifo  *os.File
	lines chan probeLine
	done  chan struct{}
}

// probeLine is what one run of the probe reported.
type probeLine struct {
	at    int64  // CLOCK_MONOTONIC ns, read as the program's first action
	ppid  int    // its parent: the daemon, or the harness for the floor
	argv0 string // the path it was run as
}

// buildProbe compiles probe/tsprobe.c with cc, statically if the C
// library allows it, to report to a FIFO in dir, and starts reading that
// FIFO.
func buildProbe(ctx context.Context, cc, dir string) (*probe, error) {
	src := filepath.Join(dir, "tsprobe.c")
	if err := os.WriteFile(src, probeSource, 0o644); err != nil {
		return nil, err
	}
	fifoPath := filepath.Join(dir, "probe.fifo")
	if err := unix.Mkfifo(fifoPath, 0o600); err != nil {
		return nil, fmt.Errorf("mkfifo %s: %w", fifoPath, err)
	}
	if strings.ContainsAny(fifoPath, "\"\\\n") {
		return nil, fmt.Errorf("temporary path %q cannot be a C string literal", fifoPath)
	}
	p := &probe{path: filepath.Join(dir, "tsprobe")}
	var errs []error
	for _, kind := range []string{"static", "dynamic"} {
		args := []string{"-O2", "-Wall", "-DOUT=\"" + fifoPath + "\"", "-o", p.path, src}
		if kind == "static" {
			args = append([]string{"-static"}, args...)
		}
		out, err := exec.CommandContext(ctx, cc, args...).CombinedOutput()
		if err == nil {
			p.kind = kind
			break
		}
		errs = append(errs, fmt.Errorf("%s %s: %w: %s", cc, strings.Join(args, " "), err, strings.TrimSpace(string(out))))
	}
	if p.kind == "" {
		return nil, fmt.Errorf("compile the probe (is gcc installed?): %w", errors.Join(errs...))
	}
	// Read and write: open(2) never blocks and reads never see EOF, however
	// many probes come and go.
	f, err := os.OpenFile(fifoPath, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	p.fifo = f
	p.lines = make(chan probeLine, 1<<12)
	p.done = make(chan struct{})
	go p.read()
	return p, nil
}

func (p *probe) read() {
	defer close(p.done)
	sc := bufio.NewScanner(p.fifo)
	for sc.Scan() {
		l, err := parseProbeLine(sc.Text())
		if err != nil {
			fmt.Fprintln(os.Stderr, "latency:", err)
			continue
		}
		select {
		case p.lines <- l:
		default:
			fmt.Fprintln(os.Stderr, "latency: nobody reads the probe; dropped", sc.Text())
		}
	}
}

// parseProbeLine parses "<ns> <ppid> <argv0>".
func parseProbeLine(s string) (probeLine, error) {
	f := strings.SplitN(s, " ", 3)
	if len(f) != 3 {
		return probeLine{}, fmt.Errorf("probe line %q: want 3 fields", s)
	}
	at, err1 := strconv.ParseInt(f[0], 10, 64)
	ppid, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return probeLine{}, fmt.Errorf("probe line %q: %w", s, err)
	}
	return probeLine{at: at, ppid: ppid, argv0: f[2]}, nil
}

// wait returns the next line of a probe run as a path ending in suffix.
// Lines of other runs are dropped.
func (p *probe) wait(ctx context.Context, suffix string) (probeLine, error) {
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		select {
		case l := <-p.lines:
			if strings.HasSuffix(l.argv0, suffix) {
				return l, nil
			}
		case <-timer.C:
			return probeLine{}, fmt.Errorf("no run of %s reported within %s", suffix, waitLimit)
		case <-ctx.Done():
			return probeLine{}, ctx.Err()
		}
	}
}

// drain discards lines already reported.
func (p *probe) drain() {
	for {
		select {
		case <-p.lines:
		default:
			return
		}
	}
}

// install copies the probe to path, owned by root with mode 0755, as
// netevd requires of a script.
func (p *probe) install(path string) error {
	b, err := os.ReadFile(p.path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		return err
	}
	return os.Chmod(path, 0o755) // whatever the umask
}

func (p *probe) close() {
	if p.fifo != nil {
		_ = p.fifo.Close()
		<-p.done
	}
}
