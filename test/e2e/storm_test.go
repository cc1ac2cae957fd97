package e2e

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/nettest"
)

const (
	stormLinks = 50
	stormOps   = 10000
	stormSlots = 40 // IPv4 and IPv6 addresses each link may hold
)

// stormSetupLines creates the storm's links: bridges (cheap, no peer),
// set up so that their addresses get prefix routes.
func stormSetupLines() []string {
	var lines []string
	for i := range stormLinks {
		lines = append(lines, fmt.Sprintf("link add br%d type bridge", i))
	}
	for i := range stormLinks {
		lines = append(lines, fmt.Sprintf("link set dev br%d up", i))
	}
	return lines
}

// stormLines returns ops `ip address add/del` commands on random
// links, always valid for the state the earlier ones leave (ip -batch
// stops at the first error). Each IPv4 address is in a subnet of its own,
// so none is a secondary that goes away with its primary.
func stormLines(seed uint64, ops int) []string {
	rng := rand.New(rand.NewPCG(seed, 0x6e65746576))
	present := make(map[string]bool)
	lines := make([]string, 0, ops)
	for range ops {
		link := rng.IntN(stormLinks)
		slot := rng.IntN(2 * stormSlots)
		var addr, extra string
		if slot < stormSlots {
			addr = fmt.Sprintf("10.%d.%d.1/24", link, slot)
		} else {
			addr, extra = fmt.Sprintf("2001:db8:%x:%x::1/64", link, slot), " nodad"
		}
		if present[addr] {
			lines = append(lines, fmt.Sprintf("address del %s dev br%d", addr, link))
			delete(present, addr)
		} else {
			lines = append(lines, fmt.Sprintf("address add %s dev br%d%s", addr, link, extra))
			present[addr] = true
		}
	}
	return lines
}

// TestStormInProcess runs address storms on 50 links against the pipeline
// in this process and checks that its model ends equal to the kernel's,
// that actions kept per-link order, and that the counters add up.
//
// With the default socket buffer, 10,000 changes overrun it and the resync
// path repairs the model. With a large buffer every message is decoded and
// applied on its own, and the source re-reads the routes whenever the
// socket falls quiet after an IPv4 address deletion (the kernel flushes
// routes silently), a few hundred times in this storm.
func TestStormInProcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		readBuffer int
		ops        int
	}{
		{"default buffer", 0, stormOps},
		{"large buffer", 256 << 20, stormOps},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := nettest.NewNetNS(t)
			ip := startPipeline(t, ns, tc.readBuffer)
			start := time.Now()
			ns.Batch(stormSetupLines())
			ns.Batch(stormLines(uint64(i+1), tc.ops))
			applied := time.Now()
			ip.waitModelMatchesKernel("the model to equal the kernel after the storm")
			t.Logf("%d changes applied by ip in %s; the model matched the kernel %s later",
				tc.ops, applied.Sub(start).Round(time.Millisecond), time.Since(applied).Round(time.Millisecond))
			st := ip.checkAccounting()
			src := ip.src.Stats()
			t.Logf("pipeline: %+v", st)
			t.Logf("netlink source: %+v", src)
			if src.Malformed != 0 {
				t.Errorf("the source dropped %d malformed messages", src.Malformed)
			}
			if src.Messages == 0 {
				t.Errorf("source stats %+v: no messages", src)
			}
		})
	}
}

// TestStormDaemon runs the same storm against the daemon binary: it must
// stay alive, still run scripts afterwards, and exit 0 on SIGTERM.
func TestStormDaemon(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	l.addRecorder("link-added.d", "50-record")
	d := l.start(nil)
	l.ns.Batch(stormSetupLines())
	l.ns.Batch(stormLines(3, stormOps))
	l.ns.Run("link", "add", "sentinel0", "type", "bridge")
	checkContract(t, l.take("link-added.d", map[string]string{"LINK": "sentinel0"}), false)
	if d.exited() {
		t.Fatalf("the daemon exited during the storm: %v", d.err)
	}
	d.stop()
	overruns := 0
	for _, r := range d.records() {
		if r.msg() == "netlink socket overrun, messages were lost; resyncing" {
			overruns++
		}
	}
	_, stopped := d.find(0, func(r logRec) bool { return r.msg() == "stopped" })
	t.Logf("daemon: %d overrun log lines; stopped with %v", overruns, stopped)
	if n := len(l.records()); n < stormLinks+1 {
		t.Errorf("%d link-added records, want at least %d (every bridge and the sentinel)", n, stormLinks+1)
	}
}
