package e2e

import (
	"slices"
	"testing"

	"github.com/netevd/netevd/internal/nettest"
)

// TestStartupReplay checks that what exists before the daemon starts is
// replayed to the scripts with NETEVD_INITIAL=1, that later changes are not
// flagged, and that systemd hears READY=1 once the replay is queued and
// STOPPING=1 at SIGTERM.
func TestStartupReplay(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	l.addRecorder("link-added.d", "50-record")
	l.addRecorder("address-added.d", "50-record")
	nettest.VethPair(t, l.ns, l.peer, "veth0", 10, "vp0", 20)
	l.ns.Run("address", "add", "192.0.2.1/24", "dev", "veth0")
	l.ns.Run("address", "add", "2001:db8::1/64", "dev", "veth0", "nodad")

	notify := listenNotify(t)
	d := l.start([]string{notify.env()}, "--log-level", "debug")
	notify.waitMessage(t, "READY=1", 1)

	initial := []record{
		l.take("link-added.d", map[string]string{"LINK": "lo", "LINKINDEX": "1"}),
		l.take("link-added.d", map[string]string{"LINK": "veth0", "LINKINDEX": "10"}),
		l.take("address-added.d", map[string]string{"LINK": "veth0", "ADDRESS": "192.0.2.1/24"}),
		l.take("address-added.d", map[string]string{"LINK": "veth0", "ADDRESS": "2001:db8::1/64"}),
	}
	for _, r := range initial {
		checkContract(t, r, true)
	}

	// READY=1 comes after the replay was queued: the pipeline logs every
	// change it queues (at debug level) before the daemon logs "ready" and
	// notifies, so each initial change must be logged before "ready".
	readyAt, _ := d.find(0, func(r logRec) bool { return r.msg() == "ready" })
	for _, r := range initial {
		at, _ := d.find(0, func(lr logRec) bool { return lr.msg() == "change" && uint64(lr.num("id")) == r.ID })
		if at < 0 || at > readyAt {
			t.Errorf("%v: its change was logged at line %d, want before \"ready\" at line %d", r, at, readyAt)
		}
	}
	for i, r := range d.records() {
		if r.msg() != "change" {
			continue
		}
		if init, _ := r["initial"].(bool); init != (i < readyAt) {
			t.Errorf("log line %d (\"ready\" is line %d): change %d of %s has initial=%v",
				i, readyAt, r.num("id"), r.str("link"), init)
		}
	}

	// Changes after startup are not flagged.
	l.ns.Run("address", "add", "192.0.2.2/24", "dev", "veth0")
	checkContract(t, l.take("address-added.d", map[string]string{"LINK": "veth0", "ADDRESS": "192.0.2.2/24"}), false)
	nettest.VethPair(t, l.ns, l.peer, "veth1", 11, "vp1", 21)
	checkContract(t, l.take("link-added.d", map[string]string{"LINK": "veth1", "LINKINDEX": "11"}), false)

	d.stop()
	notify.sync(t)
	msgs := notify.messages()
	ready, stopping := slices.Index(msgs, "READY=1"), slices.Index(msgs, "STOPPING=1")
	if ready < 0 || stopping < ready {
		t.Errorf("sd_notify messages %q: want READY=1 before STOPPING=1", msgs)
	}
	if n := count(msgs, "READY=1"); n != 1 {
		t.Errorf("sd_notify messages %q: READY=1 sent %d times, want once", msgs, n)
	}
	checkUniqueRuns(t, l.records())
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// TestStoppingNotify starts and stops the daemon repeatedly: every run
// must send READY=1 and, at SIGTERM, STOPPING=1 before it exits. An idle
// daemon stops within microseconds, which is what makes a STOPPING=1 sent
// from a goroutine the process does not wait for go missing.
func TestStoppingNotify(t *testing.T) {
	t.Parallel()
	const runs = 40
	l := newLab(t, labOptions{})
	for i := range runs {
		notify := listenNotify(t)
		d := l.start([]string{notify.env()})
		notify.waitMessage(t, "READY=1", 1)
		d.stop()
		notify.sync(t) // everything the daemon sent has been read
		if msgs := notify.messages(); !slices.Contains(msgs, "STOPPING=1") {
			t.Fatalf("run %d of %d: the daemon exited 0 without sending STOPPING=1 (received %q)", i+1, runs, msgs)
		}
	}
}
