package nm

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// busctlMessage is one line of `busctl --json=short monitor`.
type busctlMessage struct {
	Type      string `json:"type"`
	Time      int64  `json:"timestamp-realtime"` // µs
	Path      string `json:"path"`
	Interface string `json:"interface"`
	Member    string `json:"member"`
	Payload   struct {
		Type string `json:"type"`
		Data []any  `json:"data"`
	} `json:"payload"`
}

// captured is one message of a capture and when the bus saw it (µs).
type captured struct {
	time int64
	sig  sdbus.Signal
}

// readCapture reads a busctl monitor capture and returns each message with
// its body decoded into the plain values sdbus delivers.
func readCapture(t *testing.T, path string) []captured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []captured
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m busctlMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m.Type != "signal" {
			continue
		}
		var body []any
		sig := m.Payload.Type
		for _, d := range m.Payload.Data {
			var first string
			first, sig = splitType(sig)
			body = append(body, decodeBusctl(t, first, d))
		}
		out = append(out, captured{m.Time, sdbus.Signal{Sender: ":1.0", Path: m.Path, Interface: m.Interface, Member: m.Member, Body: body}})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// splitType splits a D-Bus signature into its first complete type and the
// rest.
func splitType(sig string) (first, rest string) {
	switch sig[0] {
	case 'a':
		f, r := splitType(sig[1:])
		return "a" + f, r
	case '(', '{':
		depth := 0
		for i := 0; i < len(sig); i++ {
			switch sig[i] {
			case '(', '{':
				depth++
			case ')', '}':
				depth--
				if depth == 0 {
					return sig[:i+1], sig[i+1:]
				}
			}
		}
		panic("unbalanced signature " + sig)
	}
	return sig[:1], sig[1:]
}

// decodeBusctl turns busctl's JSON for a value of type typ into what
// sdbus.Plain makes of the same value: variants unwrapped, object paths as
// strings, as and ao as []string, ay as []byte, other arrays and structs
// as []any, string-keyed dicts as map[string]any.
func decodeBusctl(t *testing.T, typ string, v any) any {
	t.Helper()
	num := func() float64 {
		f, ok := v.(float64)
		if !ok {
			t.Fatalf("value %v of type %s is not a number", v, typ)
		}
		return f
	}
	switch typ[0] {
	case 'y':
		return byte(num())
	case 'u':
		return uint32(num())
	case 'i':
		return int32(num())
	case 'q':
		return uint16(num())
	case 'n':
		return int16(num())
	case 't':
		return uint64(num())
	case 'x':
		return int64(num())
	case 'd':
		return num()
	case 'b', 's', 'o', 'g':
		return v
	case 'v':
		m := v.(map[string]any)
		return decodeBusctl(t, m["type"].(string), m["data"])
	case '(':
		inner, list := typ[1:len(typ)-1], v.([]any)
		out := make([]any, 0, len(list))
		for _, e := range list {
			var first string
			first, inner = splitType(inner)
			out = append(out, decodeBusctl(t, first, e))
		}
		return out
	case 'a':
		elem := typ[1:]
		if elem[0] == '{' {
			_, vt := splitType(elem[1 : len(elem)-1])
			out := map[string]any{}
			for k, e := range v.(map[string]any) {
				out[k] = decodeBusctl(t, vt, e)
			}
			return out
		}
		list := v.([]any)
		switch elem {
		case "s", "o", "g":
			out := make([]string, len(list))
			for i, e := range list {
				out[i] = e.(string)
			}
			return out
		case "y":
			out := make([]byte, len(list))
			for i, e := range list {
				out[i] = byte(e.(float64))
			}
			return out
		}
		out := make([]any, len(list))
		for i, e := range list {
			out[i] = decodeBusctl(t, elem, e)
		}
		return out
	}
	t.Fatalf("type %s not handled", typ)
	return nil
}

// apply changes the world as a captured message says: objects added and
// removed, properties changed. It reports whether the message is a signal
// to deliver after the change.
func (w *world) apply(sig sdbus.Signal) bool {
	switch {
	case sig.Member == "InterfacesAdded":
		path := sig.Body[0].(string)
		for iface, props := range sig.Body[1].(map[string]any) {
			w.set(path, iface, props.(map[string]any))
		}
		return false
	case sig.Member == "InterfacesRemoved":
		w.remove(sig.Body[0].(string), sig.Body[1].([]string)...)
		return false
	case sig.Member == "PropertiesChanged":
		w.set(sig.Path, sig.Body[0].(string), sig.Body[1].(map[string]any))
		return false
	}
	return true
}

// burstGap separates NetworkManager's bursts of messages in a capture.
// NetworkManager is single-threaded: it sends what one step of its main
// loop changed in one go and answers a method call only after that, so a
// read prompted by a signal sees the properties as they are at the end of
// the signal's burst.
const burstGap = 1000 // µs

// TestReplayCapture plays what the real NetworkManager 1.42 did on the
// testbed (samples/networkmanager: veth0 activated with a static address,
// the peer down, up again) against the source: every object and property
// change, in order, burst by burst, with the signals of a burst delivered
// once its changes are applied.
func TestReplayCapture(t *testing.T) {
	capture := readCapture(t, filepath.Join("testdata", "busctl-monitor-signals.jsonl"))
	var got []event.Event
	synctest.Test(t, func(t *testing.T) {
		// Before the capture starts NetworkManager has loopback
		// (unmanaged) and is disconnected; the profile is a keyfile.
		w := newWorld()
		w.set(objManager, ifaceManager, map[string]any{"State": uint32(20), "Connectivity": uint32(0)})
		w.addDevice(devLo, "lo", 1, 10)
		w.set("/org/freedesktop/NetworkManager/Settings/1", ifaceSettingConn,
			map[string]any{"Filename": "/etc/NetworkManager/system-connections/tb-veth0.nmconnection"})
		w.ifindex["veth0"] = 10
		out, stop := start(t, w.source(nil))
		defer stop()
		for i := 0; i < len(capture); {
			j := i + 1
			for j < len(capture) && capture[j].time-capture[j-1].time < burstGap {
				j++
			}
			var deliver []sdbus.Signal
			for _, c := range capture[i:j] {
				if w.apply(c.sig) {
					deliver = append(deliver, c.sig)
				}
			}
			for _, sig := range deliver {
				w.emit(sig)
				synctest.Wait()
			}
			i = j
		}
		got = collect(out)
	})

	rendered := render(got)
	golden := filepath.Join("testdata", "replay.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(rendered), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(rendered, string(want)); diff != "" {
		t.Errorf("reports (-got +want, go test -update rewrites the golden file):\n%s", diff)
	}

	// Every Device.StateChanged the capture holds became one report on
	// ifindex 10 with the state of its signal, after the one for
	// DeviceAdded (read from the properties at the end of its burst, when
	// the device was already unavailable).
	wantStates := []string{"unavailable"}
	for _, s := range readSummary(t) {
		wantStates = append(wantStates, DeviceStateName(s))
	}
	var gotStates []string
	for _, ev := range got {
		if ev.Kind == event.KindManager && ev.Manager.Index == 10 && !ev.Initial {
			gotStates = append(gotStates, ev.Manager.States["DeviceState"])
		}
	}
	if diff := cmp.Diff(gotStates, wantStates); diff != "" {
		t.Errorf("device states reported for veth0 (-got +want):\n%s", diff)
	}

	// The real nm-dispatcher ran its script for "up" twice during the
	// capture; it logged CONNECTION_ID as state= and IP4_ADDRESS_0 as
	// ip4=. netevd's activated reports must carry the same values.
	wantUp := dispatcherUps(t)
	var gotUp []string
	for _, ev := range got {
		if m := ev.Manager; m != nil && m.States["DeviceState"] == "activated" {
			gotUp = append(gotUp, fmt.Sprintf("state=%s ip4=%s", m.Env["CONNECTION_ID"], m.Env["IP4_ADDRESS_0"]))
		}
	}
	if diff := cmp.Diff(gotUp, wantUp); diff != "" {
		t.Errorf("activated reports against nm-dispatcher's up events (-got +want):\n%s", diff)
	}
}

// readSummary returns the new states of the Device.StateChanged signals in
// the capture's summary.
func readSummary(t *testing.T) []uint32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "Device-StateChanged-summary.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var s struct{ New uint32 }
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.New)
	}
	return out
}

// dispatcherUps returns "state=... ip4=..." of each "up" line the testbed's
// dispatcher.d script logged.
func dispatcherUps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "dispatcher-script.log"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`action=up (state=.* ip4=.*)$`)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		t.Fatal("dispatcher-script.log has no up lines")
	}
	return out
}

// render writes the reports one per paragraph: the summary line, then the
// variables, DNS servers and domains.
func render(evs []event.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		b.WriteString(describe(ev) + "\n")
		m := ev.Manager
		if m == nil {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(m.Env)) {
			fmt.Fprintf(&b, "    %s=%s\n", k, m.Env[k])
		}
		if len(m.DNS) > 0 {
			fmt.Fprintf(&b, "    (dns %v)\n", m.DNS)
		}
		if len(m.Domains) > 0 {
			fmt.Fprintf(&b, "    (domains %v)\n", m.Domains)
		}
	}
	return b.String()
}
