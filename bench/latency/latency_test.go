package main

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestSummarize(t *testing.T) {
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(100 - i) // 100..1, unsorted
	}
	tests := []struct {
		name string
		in   []int64
		want summary
	}{
		{"empty", nil, summary{}},
		{"one", []int64{7}, summary{n: 1, min: 7, p50: 7, p95: 7, p99: 7, max: 7, avg: 7}},
		{"two", []int64{9, 1}, summary{n: 2, min: 1, p50: 1, p95: 9, p99: 9, max: 9, avg: 5}},
		{"1..100", hundred, summary{n: 100, min: 1, p50: 50, p95: 95, p99: 99, max: 100, avg: 50}},
		{"five", []int64{5, 3, 1, 4, 2}, summary{n: 5, min: 1, p50: 3, p95: 5, p99: 5, max: 5, avg: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := append([]int64(nil), tt.in...)
			got := summarize(tt.in)
			if diff := cmp.Diff(got, tt.want, cmp.AllowUnexported(summary{})); diff != "" {
				t.Errorf("summarize (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(tt.in, before); diff != "" {
				t.Errorf("summarize modified its input (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	status := "Name:\tnetevd\nVmHWM:\t    8076 kB\nVmRSS:\t    7952 kB\nRssAnon:\t    1540 kB\nRssFile:\t    6412 kB\nThreads:\t7\n"
	// Field 2 holds a space and a parenthesis; utime=12, stime=34.
	stat := "4242 (net evd) S 1 4242 4242 0 -1 4194560 500 0 0 0 12 34 0 0 20 0 7 0 100 1000 1988 18446744073709551615"
	got, err := parseProc(status, stat)
	if err != nil {
		t.Fatal(err)
	}
	want := procInfo{rssKB: 7952, hwmKB: 8076, anonKB: 1540, fileKB: 6412, threads: 7, utime: 12, stime: 34}
	if diff := cmp.Diff(got, want, cmp.AllowUnexported(procInfo{})); diff != "" {
		t.Errorf("parseProc (-got +want):\n%s", diff)
	}
	if got.cpuMS() != 460 {
		t.Errorf("cpuMS: got %d, want 460", got.cpuMS())
	}

	bad := []struct{ name, status, stat string }{
		{"no VmRSS", "VmHWM: 1 kB\nRssAnon: 1 kB\nRssFile: 1 kB\nThreads: 1\n", stat},
		{"bad number", "VmRSS: x kB\nVmHWM: 1 kB\nRssAnon: 1 kB\nRssFile: 1 kB\nThreads: 1\n", stat},
		{"short stat", status, "1 (a) S 1 2 3"},
		{"no name", status, "1 a S"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseProc(tt.status, tt.stat); err == nil {
				t.Error("parseProc: got nil error")
			}
		})
	}
}

func TestLogFields(t *testing.T) {
	tests := []struct {
		line string
		want map[string]string
	}{
		{
			`time=2026-11-26T02:33:01.401Z level=INFO msg=stopped events=3 changes=11 coalesced=0 action_runs=11`,
			map[string]string{"time": "2026-11-26T02:33:01.401Z", "level": "INFO", "msg": "stopped", "events": "3",
				"changes": "11", "coalesced": "0", "action_runs": "11"},
		},
		{
			`level=INFO msg="script finished" script=/tmp/x/carrier.d/50-ts duration_ms=0.4`,
			map[string]string{"level": "INFO", "msg": "script finished", "script": "/tmp/x/carrier.d/50-ts", "duration_ms": "0.4"},
		},
		{"", map[string]string{}},
		{"not a log line", map[string]string{}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(logFields(tt.line), tt.want); diff != "" {
			t.Errorf("logFields(%q) (-got +want):\n%s", tt.line, diff)
		}
	}
}

func TestParseProbeLine(t *testing.T) {
	got, err := parseProbeLine("815182186136 25885 /tmp/x/carrier.d/50-ts")
	if err != nil {
		t.Fatal(err)
	}
	if want := (probeLine{at: 815182186136, ppid: 25885, argv0: "/tmp/x/carrier.d/50-ts"}); got != want {
		t.Errorf("parseProbeLine: got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "1 2", "x 2 /a", "1 y /a"} {
		if _, err := parseProbeLine(bad); err == nil {
			t.Errorf("parseProbeLine(%q): got nil error", bad)
		}
	}
}

// connectorMsg builds one netlink message carrying a proc_event.
func connectorMsg(what uint32, data ...uint32) []byte {
	payload := make([]byte, sizeofCnMsg+16+4*len(data))
	binary.NativeEndian.PutUint32(payload[0:], cnIdxProc)
	binary.NativeEndian.PutUint32(payload[4:], cnValProc)
	binary.NativeEndian.PutUint16(payload[16:], uint16(len(payload)-sizeofCnMsg))
	ev := payload[sizeofCnMsg:]
	binary.NativeEndian.PutUint32(ev[0:], what)
	for i, v := range data {
		binary.NativeEndian.PutUint32(ev[16+4*i:], v)
	}
	msg := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NLMSG_DONE)
	copy(msg[unix.NLMSG_HDRLEN:], payload)
	return msg
}

func TestForkCounter(t *testing.T) {
	const daemon, harness, other = 100, 50, 900
	datagram := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(b, m...) // every message here is a multiple of 4 bytes
		}
		return b
	}
	tests := []struct {
		name string
		msgs [][]byte
		want forkCounts
	}{
		{
			name: "script: fork by the daemon, then exec",
			msgs: [][]byte{
				connectorMsg(procEventFork, 101, daemon, 200, 200),
				connectorMsg(procEventExec, 200, 200),
			},
			want: forkCounts{Processes: 1, Execs: 1, Events: 2},
		},
		{
			name: "fork without exec (Go's one-time pidfd probe)",
			msgs: [][]byte{connectorMsg(procEventFork, 102, daemon, 201, 201)},
			want: forkCounts{Processes: 1, Events: 1},
		},
		{
			name: "new thread of the daemon is reported with the daemon's parent",
			msgs: [][]byte{connectorMsg(procEventFork, harness, harness, 105, daemon)},
			want: forkCounts{Threads: 1, Events: 1},
		},
		{
			name: "other processes do not count",
			msgs: [][]byte{
				connectorMsg(procEventFork, other, other, 901, 901),
				connectorMsg(procEventFork, harness, harness, daemon+1, daemon+1),
				connectorMsg(procEventExec, 901, 901),
				connectorMsg(procEventFork, 1, 1, 950, other),
			},
			want: forkCounts{Events: 4},
		},
		{
			name: "exec of a process the daemon did not create",
			msgs: [][]byte{connectorMsg(procEventExec, 300, 300)},
			want: forkCounts{Events: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := forkCounter{tgid: daemon}
			for _, m := range netlinkPayloads(datagram(tt.msgs...)) {
				pe, err := decodeProcEvent(m)
				if err != nil {
					t.Fatal(err)
				}
				fc.add(pe)
			}
			if diff := cmp.Diff(fc.counts, tt.want); diff != "" {
				t.Errorf("counts (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDecodeProcEventErrors(t *testing.T) {
	notProc := connectorMsg(procEventFork, 1, 1, 2, 2)[unix.NLMSG_HDRLEN:]
	binary.NativeEndian.PutUint32(notProc[0:], 7) // another connector index
	for name, b := range map[string][]byte{"short": make([]byte, 10), "other connector": notProc} {
		if _, err := decodeProcEvent(b); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}

func TestNetlinkPayloads(t *testing.T) {
	a := connectorMsg(procEventExec, 1, 1)
	tests := []struct {
		name string
		in   []byte
		want int
	}{
		{"empty", nil, 0},
		{"one", a, 1},
		{"two", append(append([]byte{}, a...), a...), 2},
		{"truncated second", append(append([]byte{}, a...), a[:20]...), 1},
		{"length beyond the datagram", a[:len(a)-4], 0},
	}
	for _, tt := range tests {
		if got := len(netlinkPayloads(tt.in)); got != tt.want {
			t.Errorf("%s: got %d payloads, want %d", tt.name, got, tt.want)
		}
	}
}
