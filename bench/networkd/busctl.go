package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// startBusctl runs `busctl --json=short monitor org.freedesktop.network1`
// inside, as a second clock for the signals: a cross-check of the
// harness's own receipt times (option -busctl).
func (l *lab) startBusctl(ctx context.Context) error {
	var err error
	l.busctl, err = l.startProc(ctx, "busctl", "", l.nsenter("busctl", "--system", "--json=short", "monitor", networkdBus), nil)
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // it prints nothing until the first message
	return nil
}

// busctlMessage is the part of a message of busctl's JSON output the
// harness reads.
type busctlMessage struct {
	Type      string `json:"type"`
	Timestamp int64  `json:"timestamp-realtime"` // µs
	Path      string `json:"path"`
	Member    string `json:"member"`
	Payload   struct {
		Data []json.RawMessage `json:"data"`
	} `json:"payload"`
}

// busctlRoutable returns the times (ns) at which busctl stamped a
// PropertiesChanged of veth0 that carried OperationalState=routable,
// sorted.
func busctlRoutable(path string) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if at, ok := routableAt(sc.Bytes()); ok {
			out = append(out, at)
		}
	}
	slices.Sort(out)
	return out, sc.Err()
}

// routableAt reports whether line is a PropertiesChanged signal of veth0
// that sets OperationalState to routable, and busctl's time stamp of it.
func routableAt(line []byte) (int64, bool) {
	var m busctlMessage
	if json.Unmarshal(line, &m) != nil || m.Type != "signal" || m.Member != "PropertiesChanged" ||
		m.Path != linkPath(linkIdx) || len(m.Payload.Data) < 2 {
		return 0, false
	}
	var changed map[string]struct {
		Data any `json:"data"`
	}
	if json.Unmarshal(m.Payload.Data[1], &changed) != nil {
		return 0, false
	}
	if v, ok := changed["OperationalState"]; !ok || v.Data != "routable" {
		return 0, false
	}
	return m.Timestamp * 1000, true
}

// matchBusctl sets f.busctl of every flap to the first of busctl's
// routable stamps at or after the flap's up.
func matchBusctl(flaps []flapResult, stamps []int64) {
	for i := range flaps {
		f := &flaps[i]
		j, _ := slices.BinarySearch(stamps, f.up)
		if j < len(stamps) && stamps[j]-f.up < int64(waitLimit) {
			f.busctl = stamps[j]
		}
	}
}

func (l *lab) busctlLog() string { return filepath.Join(l.tmp, "busctl.log") }
