package e2e

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/netevd/netevd/internal/action/script"
	"github.com/netevd/netevd/internal/nettest"
)

// TestRecreatedLink deletes a link and at once creates another with the
// same name: the daemon must tell them apart by ifindex.
func TestRecreatedLink(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	l.addRecorder("link-added.d", "50-record")
	l.addRecorder("link-removed.d", "50-record")
	d := l.start(nil)

	nettest.VethPair(t, l.ns, l.peer, "re0", 10, "rp0", 20)
	first := l.take("link-added.d", map[string]string{"LINK": "re0", "LINKINDEX": "10"})
	l.ns.Run("link", "del", "dev", "re0")
	nettest.VethPair(t, l.ns, l.peer, "re0", 11, "rp0", 21)

	removed := l.take("link-removed.d", map[string]string{"LINK": "re0", "LINKINDEX": "10"})
	second := l.take("link-added.d", map[string]string{"LINK": "re0", "LINKINDEX": "11"})
	for _, r := range []record{first, removed, second} {
		checkContract(t, r, false)
	}
	if !(first.ID < removed.ID && removed.ID < second.ID) {
		t.Errorf("event ids: added %d, removed %d, added again %d; want them increasing", first.ID, removed.ID, second.ID)
	}
	if i, r := d.find(0, func(r logRec) bool { return r.msg() == "link renamed; no scripts run for renames" }); i >= 0 {
		t.Errorf("a re-created link was taken for a rename: %v", r)
	}
	d.stop()
	recs := l.records()
	checkUniqueRuns(t, recs)
	for _, r := range recs {
		if r.Env["LINK"] == "re0" && r.Dir == "link-removed.d" && r.Env["LINKINDEX"] != "10" {
			t.Errorf("unexpected removal: %v", r)
		}
	}
}

// TestRename renames a down link and brings it up: the rename is logged
// with both names, and later events carry the new name and the same index.
func TestRename(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	l.addRecorder("link-added.d", "50-record")
	l.addRecorder("carrier.d", "50-record")
	d := l.start(nil)

	nettest.VethPair(t, l.ns, l.peer, "old0", 10, "op0", 20)
	checkContract(t, l.take("link-added.d", map[string]string{"LINK": "old0", "LINKINDEX": "10"}), false)
	l.ns.Run("link", "set", "dev", "old0", "name", "new0")
	d.waitLog("the rename old0 → new0 in the log", func(r logRec) bool {
		return r.msg() == "link renamed; no scripts run for renames" &&
			r.str("old_name") == strconv.Quote("old0") && r.str("name") == strconv.Quote("new0") && r.num("ifindex") == 10
	})

	l.ns.Run("link", "set", "dev", "new0", "up")
	l.peer.Run("link", "set", "dev", "op0", "up")
	r := l.take("carrier.d", map[string]string{"LINKINDEX": "10"})
	checkContract(t, r, false)
	if r.Env["LINK"] != "new0" {
		t.Errorf("%v: LINK=%q after the rename, want new0", r, r.Env["LINK"])
	}
	d.stop()
	for _, r := range l.records() {
		if r.Dir == "link-added.d" && r.Env["LINKINDEX"] == "10" && r.Env["LINK"] != "old0" {
			t.Errorf("the rename ran link-added.d: %v", r)
		}
	}
}

// hostileNames are names the kernel accepts that a shell would interpret.
var hostileNames = []struct {
	name      string
	index     int
	peer      string
	peerIndex int
}{
	{"x;$(id)", 30, "hp0", 31},
	{"y`z`", 40, "hq0", 41},
}

// TestHostileNameRunsNothing creates links with hostile names: no script
// runs for them and the refusal is logged with the quoted name, while a
// plain link still runs its scripts.
func TestHostileNameRunsNothing(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	l.addRecorder("link-added.d", "50-record")
	l.addRecorder("carrier.d", "50-record")
	d := l.start(nil)

	for _, h := range hostileNames {
		// exec with arguments, no shell: the name reaches the kernel as is.
		nettest.VethPair(t, l.ns, l.peer, h.name, h.index, h.peer, h.peerIndex)
		l.ns.Run("link", "set", "dev", h.name, "up")
		l.peer.Run("link", "set", "dev", h.peer, "up")
	}
	for _, h := range hostileNames {
		for _, ev := range []string{"link-added", "carrier"} {
			d.waitLog("the refusal of "+ev+" for "+strconv.Quote(h.name), func(r logRec) bool {
				return r.msg() == "refusing event for interface with unsafe name" &&
					r.str("event") == ev && r.num("ifindex") == int64(h.index) && r.str("name") == strconv.Quote(h.name)
			})
		}
	}
	// The scripts work: a plain link gets its record.
	nettest.VethPair(t, l.ns, l.peer, "ok0", 10, "okp0", 20)
	checkContract(t, l.take("link-added.d", map[string]string{"LINK": "ok0", "LINKINDEX": "10"}), false)
	d.stop()

	for _, r := range l.records() {
		for _, h := range hostileNames {
			if r.Env["LINKINDEX"] == strconv.Itoa(h.index) || r.Env["LINK"] == h.name {
				t.Errorf("a script ran for the hostile name %q: %v", h.name, r)
			}
		}
	}
}

// TestHostileNameAllowed checks system.allow_unsafe_names: the scripts run
// and get the exact name.
func TestHostileNameAllowed(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{AllowUnsafeNames: true})
	l.addRecorder("link-added.d", "50-record")
	l.addRecorder("carrier.d", "50-record")
	d := l.start(nil)

	for _, h := range hostileNames {
		nettest.VethPair(t, l.ns, l.peer, h.name, h.index, h.peer, h.peerIndex)
		l.ns.Run("link", "set", "dev", h.name, "up")
		l.peer.Run("link", "set", "dev", h.peer, "up")
	}
	for _, h := range hostileNames {
		idx := strconv.Itoa(h.index)
		for _, dir := range []string{"link-added.d", "carrier.d"} {
			r := l.take(dir, map[string]string{"LINKINDEX": idx})
			checkContract(t, r, false)
			if r.Env["LINK"] != h.name || r.Env["IFACE"] != h.name {
				t.Errorf("%v: LINK=%q IFACE=%q, want %q", r, r.Env["LINK"], r.Env["IFACE"], h.name)
			}
			var p script.Payload
			if err := json.Unmarshal(r.Stdin, &p); err == nil && p.Link.Name != h.name {
				t.Errorf("%v: stdin link.name=%q, want %q", r, p.Link.Name, h.name)
			}
		}
	}
	if i, r := d.find(0, func(r logRec) bool { return r.msg() == "refusing event for interface with unsafe name" }); i >= 0 {
		t.Errorf("refused with allow_unsafe_names: %v", r)
	}
	d.stop()
}
