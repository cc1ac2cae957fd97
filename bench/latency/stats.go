package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/netevd/netevd/bench/sample"
)

// summary holds order statistics of a sample of durations in nanoseconds.
type summary struct {
	n                            int
	min, p50, p95, p99, max, avg int64
}

// summarize computes the nearest-rank percentiles of ns. It does not
// modify ns.
func summarize(ns []int64) summary {
	if len(ns) == 0 {
		return summary{}
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	var sum int64
	for _, v := range s {
		sum += v
	}
	return summary{
		n:   len(s),
		min: s[0],
		p50: sample.Rank(s, 50),
		p95: sample.Rank(s, 95),
		p99: sample.Rank(s, 99),
		max: s[len(s)-1],
		avg: sum / int64(len(s)),
	}
}

// procInfo is what /proc says about a process's memory and CPU time.
type procInfo struct {
	rssKB, hwmKB, anonKB, fileKB, threads int64
	utime, stime                          int64 // clock ticks (USER_HZ, 100 on Linux)
}

// userHZ is USER_HZ, the unit of utime and stime in /proc/PID/stat. The
// kernel fixes it at 100 on every architecture Go runs on.
const userHZ = 100

func (p procInfo) cpuMS() int64 { return (p.utime + p.stime) * 1000 / userHZ }

// readProc reads /proc/PID/status and /proc/PID/stat.
func readProc(pid int) (procInfo, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procInfo{}, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procInfo{}, err
	}
	return parseProc(string(status), string(stat))
}

func parseProc(status, stat string) (procInfo, error) {
	var p procInfo
	fields := map[string]*int64{"VmRSS": &p.rssKB, "VmHWM": &p.hwmKB, "RssAnon": &p.anonKB, "RssFile": &p.fileKB, "Threads": &p.threads}
	for line := range strings.Lines(status) {
		key, val, ok := strings.Cut(line, ":")
		dst, want := fields[key]
		if !ok || !want {
			continue
		}
		f := strings.Fields(val) // "1234 kB" or "5"
		if len(f) == 0 {
			return p, fmt.Errorf("status field %s: no value", key)
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return p, fmt.Errorf("status field %s: %w", key, err)
		}
		*dst = v
		delete(fields, key)
	}
	if len(fields) > 0 {
		return p, fmt.Errorf("status lacks %d of the fields VmRSS, VmHWM, RssAnon, RssFile, Threads", len(fields))
	}
	// The command name may hold spaces and parentheses; fields start after
	// the last ')'. utime and stime are fields 14 and 15 of the line.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return p, fmt.Errorf("stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return p, fmt.Errorf("stat: %d fields after the name, want at least 13", len(f))
	}
	var err1, err2 error
	p.utime, err1 = strconv.ParseInt(f[11], 10, 64)
	p.stime, err2 = strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return p, fmt.Errorf("stat utime %q stime %q: not numbers", f[11], f[12])
	}
	return p, nil
}

// forksSinceBoot returns the "processes" counter of /proc/stat: every
// process and thread created on the machine since boot.
func forksSinceBoot() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "processes "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/stat has no processes line")
}
