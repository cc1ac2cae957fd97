package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseEpoch(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1795656695.799986", 1795656695799986000, false},
		{"1795656695,799986", 1795656695799986000, false}, // a locale with a decimal comma
		{"0.000001", 1000, false},
		{"1795656695", 0, true},
		{"1795656695.79998", 0, true}, // bash always prints six digits
		{"17956x6695.799986", 0, true},
		{"-1.000000", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseEpoch(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseEpoch(%q) error = %v, want error %t", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseEpoch(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseScriptLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    scriptRun
		wantErr bool
	}{
		{
			name: "netevd",
			in:   "1795656695.799986 netevd 4242 4000 systemd-networkd routable veth0",
			want: scriptRun{at: 1795656695799986000, name: "netevd", pid: 4242, ppid: 4000, backend: "systemd-networkd", state: "routable", iface: "veth0"},
		},
		{
			name: "networkd-dispatcher leaves BACKEND unset",
			in:   "1795656695.800986 networkd-dispatcher 4243 3000 - routable veth0",
			want: scriptRun{at: 1795656695800986000, name: "networkd-dispatcher", pid: 4243, ppid: 3000, backend: "-", state: "routable", iface: "veth0"},
		},
		{name: "too few fields", in: "1795656695.800986 floor 1 2 - -", wantErr: true},
		{name: "bad time", in: "now floor 1 2 - - -", wantErr: true},
		{name: "bad pid", in: "1795656695.800986 floor x 2 - - -", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseScriptLine(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %t", err, tt.wantErr)
			}
			if diff := cmp.Diff(got, tt.want, cmp.AllowUnexported(scriptRun{})); diff != "" {
				t.Errorf("parseScriptLine (-got +want):\n%s", diff)
			}
		})
	}
}

// TestScriptBody runs the script the dispatchers get with bash and parses
// what it writes, as the harness does.
func TestScriptBody(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := filepath.Join(dir, "50-ts")
	if err := os.WriteFile(script, []byte(scriptBody(nameNetevd, out)), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, env := range [][]string{
		{"BACKEND=systemd-networkd", "STATE=routable", "IFACE=veth0"},
		nil, // networkd-dispatcher and the floor: no BACKEND
	} {
		cmd := exec.Command(script)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}, env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v: %s", bash, script, err, b)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("the script wrote %q, want two lines", b)
	}
	var got []scriptRun
	for _, line := range lines {
		r, err := parseScriptLine(line)
		if err != nil {
			t.Fatal(err)
		}
		if r.at <= 0 || r.pid <= 0 || r.ppid != os.Getpid() {
			t.Errorf("run %+v: want a time, a PID and this test as its parent (%d)", r, os.Getpid())
		}
		r.at, r.pid, r.ppid = 0, 0, 0
		got = append(got, r)
	}
	want := []scriptRun{
		{name: nameNetevd, backend: "systemd-networkd", state: "routable", iface: "veth0"},
		{name: nameNetevd, backend: "-", state: "-", iface: "-"},
	}
	if diff := cmp.Diff(got, want, cmp.AllowUnexported(scriptRun{})); diff != "" {
		t.Errorf("runs (-got +want):\n%s", diff)
	}
	if first := strings.Split(scriptBody("x", "/f"), "\n")[1]; !strings.HasPrefix(first, `echo "$EPOCHREALTIME `) {
		t.Errorf("the script's first command is %q, want it to record $EPOCHREALTIME first", first)
	}
}

func TestLinkPath(t *testing.T) {
	tests := []struct {
		idx  int
		want string
	}{
		{10, "/org/freedesktop/network1/link/_310"},
		{2, "/org/freedesktop/network1/link/_32"},
		{123, "/org/freedesktop/network1/link/_3123"},
	}
	for _, tt := range tests {
		if got := linkPath(tt.idx); got != tt.want {
			t.Errorf("linkPath(%d) = %q, want %q", tt.idx, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	hundred := make(series, 100)
	for i := range hundred {
		hundred[i] = int64(100 - i)
	}
	tests := []struct {
		name string
		in   series
		want summary
	}{
		{"empty", nil, summary{}},
		{"one", series{7}, summary{n: 1, min: 7, p50: 7, p95: 7, max: 7}},
		{"two", series{9, 1}, summary{n: 2, min: 1, p50: 1, p95: 9, max: 9}},
		{"1..100", hundred, summary{n: 100, min: 1, p50: 50, p95: 95, max: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := append(series(nil), tt.in...)
			if diff := cmp.Diff(summarize(tt.in), tt.want, cmp.AllowUnexported(summary{})); diff != "" {
				t.Errorf("summarize (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(tt.in, before); diff != "" {
				t.Errorf("summarize modified its input (-got +want):\n%s", diff)
			}
		})
	}
}

// testdata/busctl-monitor.jsonl holds lines of the testbed's
// `busctl --json=short monitor` capture: veth0 routable (twice), the
// Manager routable, veth0 no-carrier and a method call.
func TestBusctlRoutable(t *testing.T) {
	got, err := busctlRoutable(filepath.Join("testdata", "busctl-monitor.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{1795656695799986000, 1795656697982475000}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("busctlRoutable (-got +want):\n%s", diff)
	}
}

func TestMatchBusctl(t *testing.T) {
	flaps := []flapResult{{up: 100}, {up: 1000}, {up: 5000}}
	matchBusctl(flaps, []int64{90, 150, 1200, 1300})
	got := []int64{flaps[0].busctl, flaps[1].busctl, flaps[2].busctl}
	if diff := cmp.Diff(got, []int64{150, 1200, 0}); diff != "" {
		t.Errorf("busctl stamps (-got +want):\n%s", diff)
	}
}

func TestLinkPropsApply(t *testing.T) {
	p := &linkProps{value: map[string]string{"OperationalState": "no-carrier"}, since: map[string]int64{"OperationalState": 1}}
	p.apply(propSignal{at: 10, changed: map[string]string{"OperationalState": "degraded", "CarrierState": "carrier"}})
	p.apply(propSignal{at: 20, changed: map[string]string{"OperationalState": "routable"}})
	p.apply(propSignal{at: 30, changed: map[string]string{"OperationalState": "routable", "AdministrativeState": "configured"}})
	want := &linkProps{
		value: map[string]string{"OperationalState": "routable", "CarrierState": "carrier", "AdministrativeState": "configured"},
		since: map[string]int64{"OperationalState": 20, "CarrierState": 10, "AdministrativeState": 30}, // a repeated value keeps its first time
	}
	if diff := cmp.Diff(p, want, cmp.AllowUnexported(linkProps{})); diff != "" {
		t.Errorf("linkProps (-got +want):\n%s", diff)
	}
}

func TestAnalyze(t *testing.T) {
	run := func(name string, at int64, ppid int, backend string) scriptRun {
		return scriptRun{at: at, name: name, ppid: ppid, backend: backend}
	}
	r := &report{
		netevdPID: 1, dispatchPID: 2,
		flaps: []flapResult{
			{n: 1, up: 0, ack: 1, signal: 10, floor: 3, runs: map[string]scriptRun{
				nameNetevd: run(nameNetevd, 14, 1, "systemd-networkd"), nameDispatcher: run(nameDispatcher, 20, 2, "-")}},
			{n: 2, up: 100, ack: 102, signal: 110, floor: 4, runs: map[string]scriptRun{ // netevd after networkd-dispatcher
				nameNetevd: run(nameNetevd, 125, 1, "systemd-networkd"), nameDispatcher: run(nameDispatcher, 121, 2, "-")}},
			{n: 3, up: 200, ack: 201, signal: 212, floor: 5, runs: map[string]scriptRun{ // networkd-dispatcher missing, wrong parent
				nameNetevd: run(nameNetevd, 215, 9, "none")}},
		},
	}
	got := r.analyze()
	want := analysis{
		sigToScript: map[string]series{nameNetevd: {4, 15, 3}, nameDispatcher: {10, 11}},
		upToScript:  map[string]series{nameNetevd: {14, 25, 15}, nameDispatcher: {20, 21}},
		upToSignal:  series{10, 10, 12},
		ack:         series{1, 2, 1},
		floor:       series{3, 4, 5},
		lead:        series{6, -4},
		slower:      []int{2},
		missing:     map[string]int{nameDispatcher: 1},
		backends:    map[string]int{"systemd-networkd": 2, "none": 1},
		wrongParent: map[string]int{nameNetevd: 1},
	}
	if diff := cmp.Diff(got, want, cmp.AllowUnexported(analysis{})); diff != "" {
		t.Errorf("analyze (-got +want):\n%s", diff)
	}

	var out bytes.Buffer
	r.write(&out)
	for _, s := range []string{
		"netevd's script ran after networkd-dispatcher's on 1 of 2 flaps (flaps 2)",
		"**NOT met**",
		"BACKEND=none (1 runs), systemd-networkd (2 runs)",
		"**netevd did not run routable.d from its systemd-networkd source on every flap",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
}

func TestWriteRaw(t *testing.T) {
	r := &report{flaps: []flapResult{
		{n: 1, up: 1_000_000_000, ack: 1_000_150_000, signal: 1_007_500_000, floor: 1_010_000, runs: map[string]scriptRun{
			nameNetevd:     {at: 1_009_750_000, backend: "systemd-networkd"},
			nameDispatcher: {at: 1_012_500_000, backend: "-"},
		}},
		{n: 2, up: 2_000_000_000, ack: 2_000_200_000, signal: 2_008_000_000, floor: 990_000, runs: map[string]scriptRun{
			nameNetevd: {at: 2_009_000_000, backend: "systemd-networkd"},
		}},
	}}
	path := filepath.Join(t.TempDir(), "raw.tsv")
	if err := r.writeRaw(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "flap\tup_unix_ns\tack_ms\tsignal_ms\tnetevd_ms\tnetworkd_dispatcher_ms\tfloor_ms\tnetevd_backend\n" +
		"1\t1000000000\t0.150\t7.500\t9.750\t12.500\t1.010\tsystemd-networkd\n" +
		"2\t2000000000\t0.200\t8.000\t9.000\tNA\t0.990\tsystemd-networkd\n"
	if diff := cmp.Diff(string(got), want); diff != "" {
		t.Errorf("raw file (-got +want):\n%s", diff)
	}
}
