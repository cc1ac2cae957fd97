package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// scriptRun is what one run of a script reported.
type scriptRun struct {
	at      int64  // CLOCK_REALTIME ns: $EPOCHREALTIME, read by the script's first command
	name    string // netevd, networkd-dispatcher or floor
	pid     int
	ppid    int    // the dispatcher that started it
	backend string // $BACKEND ("-" when unset: networkd-dispatcher, floor)
	state   string // $STATE
	iface   string // $IFACE
}

// scriptReader reads the lines the scripts append to a FIFO.
type scriptReader struct {
	path  string
	fifo  *os.File
	runs  chan scriptRun
	done  chan struct{}
	wrong chan string // lines that did not parse
}

// openScriptReader makes the FIFO at path and starts reading it. It is
// opened for reading and writing, so that open(2) in a script never blocks
// and the harness never reads EOF between scripts.
func openScriptReader(path string) (*scriptReader, error) {
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("mkfifo %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	r := &scriptReader{path: path, fifo: f, runs: make(chan scriptRun, 1024), done: make(chan struct{}), wrong: make(chan string, 16)}
	go r.read()
	return r, nil
}

func (r *scriptReader) read() {
	defer close(r.done)
	sc := bufio.NewScanner(r.fifo)
	for sc.Scan() {
		run, err := parseScriptLine(sc.Text())
		if err != nil {
			select {
			case r.wrong <- err.Error():
			default:
			}
			continue
		}
		select {
		case r.runs <- run:
		default:
			fmt.Fprintln(os.Stderr, "networkd: nobody reads the scripts' lines; dropped", sc.Text())
		}
	}
}

func (r *scriptReader) close() {
	_ = r.fifo.Close()
	<-r.done
}

// parseScriptLine parses
// "<$EPOCHREALTIME> <name> <pid> <ppid> <backend> <state> <iface>".
func parseScriptLine(s string) (scriptRun, error) {
	f := strings.Fields(s)
	if len(f) != 7 {
		return scriptRun{}, fmt.Errorf("script line %q: want 7 fields", s)
	}
	at, err := parseEpoch(f[0])
	if err != nil {
		return scriptRun{}, fmt.Errorf("script line %q: %w", s, err)
	}
	pid, err1 := strconv.Atoi(f[2])
	ppid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		return scriptRun{}, fmt.Errorf("script line %q: pid or ppid is not a number", s)
	}
	return scriptRun{at: at, name: f[1], pid: pid, ppid: ppid, backend: f[4], state: f[5], iface: f[6]}, nil
}

// parseEpoch parses bash's $EPOCHREALTIME ("seconds.microseconds"; the
// separator is the locale's decimal point) into nanoseconds.
func parseEpoch(s string) (int64, error) {
	sec, frac, ok := strings.Cut(s, ".")
	if !ok {
		sec, frac, ok = strings.Cut(s, ",")
	}
	if !ok || len(frac) != 6 {
		return 0, fmt.Errorf("EPOCHREALTIME %q: want seconds.microseconds", s)
	}
	secs, err1 := strconv.ParseInt(sec, 10, 64)
	us, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil || secs < 0 || us < 0 {
		return 0, fmt.Errorf("EPOCHREALTIME %q: not a number", s)
	}
	return secs*1e9 + us*1e3, nil
}

// drain returns the runs already reported.
func (r *scriptReader) drain() []scriptRun {
	var out []scriptRun
	for {
		select {
		case run := <-r.runs:
			out = append(out, run)
		default:
			return out
		}
	}
}

// waitRuns waits up to waitLimit until each of names reported a run and
// returns the first run of each; further runs of the same names while it
// waits are returned as extra. Names missing at the deadline are simply
// absent from the map.
func (r *scriptReader) waitRuns(ctx context.Context, names ...string) (first map[string]scriptRun, extra []scriptRun, err error) {
	first = make(map[string]scriptRun, len(names))
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for len(first) < len(names) {
		select {
		case run := <-r.runs:
			if _, seen := first[run.name]; want[run.name] && !seen {
				first[run.name] = run
			} else {
				extra = append(extra, run)
			}
		case line := <-r.wrong:
			return first, extra, fmt.Errorf("a script wrote an unexpected line: %s", line)
		case <-timer.C:
			return first, extra, nil
		case <-ctx.Done():
			return first, extra, ctx.Err()
		}
	}
	return first, extra, nil
}
