package e2e

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/nettest"
)

// expect is one record a step must produce: the first new record in Dir
// whose environment holds Match, and what else its environment must hold.
type expect struct {
	Dir   string
	Match map[string]string
	Env   map[string]string
}

// TestEventDirectories walks a veth through every kernel event kind and
// checks that each reaches its directory with the environment and stdin
// the README promises.
func TestEventDirectories(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	for _, dir := range []string{"link-added.d", "link-removed.d", "carrier.d", "no-carrier.d",
		"address-added.d", "address-removed.d", "routes.d", "routable.d"} {
		l.addRecorder(dir, "50-record")
	}
	d := l.start(nil)

	const link, idx = "veth0", "10"
	id := map[string]string{"LINK": link, "LINKINDEX": idx}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"LINK": link, "LINKINDEX": idx}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	steps := []struct {
		name string
		do   func()
		want []expect
	}{
		{
			name: "link added",
			do: func() {
				nettest.VethPair(t, l.ns, l.peer, link, 10, "vp0", 20)
				// No automatic IPv6 link-local address: the states below
				// stay exactly what the test makes them.
				l.ns.Run("link", "set", "dev", link, "addrgenmode", "none")
				l.ns.Run("link", "set", "dev", link, "up")
			},
			want: []expect{{Dir: "link-added.d", Match: id,
				Env: with("EVENT", "link-added", "STATE", "off", "OLD_STATE", "", "ADDRESSES", "", "GATEWAY", "")}},
		},
		{
			name: "carrier",
			do:   func() { l.peer.Run("link", "set", "dev", "vp0", "up") },
			want: []expect{{Dir: "carrier.d", Match: id,
				Env: with("EVENT", "carrier", "STATE", "carrier", "OLD_STATE", "no-carrier")}},
		},
		{
			name: "no carrier",
			do:   func() { l.peer.Run("link", "set", "dev", "vp0", "down") },
			want: []expect{{Dir: "no-carrier.d", Match: id,
				Env: with("EVENT", "no-carrier", "STATE", "no-carrier", "OLD_STATE", "carrier")}},
		},
		{
			name: "carrier again",
			do:   func() { l.peer.Run("link", "set", "dev", "vp0", "up") },
			want: []expect{{Dir: "carrier.d", Match: id,
				Env: with("EVENT", "carrier", "STATE", "carrier", "OLD_STATE", "no-carrier")}},
		},
		{
			name: "IPv4 address added",
			do:   func() { l.ns.Run("address", "add", "192.0.2.10/24", "dev", link) },
			want: []expect{
				{Dir: "address-added.d", Match: with("ADDRESS", "192.0.2.10/24"), Env: with(
					"EVENT", "address-added", "STATE", "degraded", "OLD_STATE", "carrier",
					"IPV4_ADDRESSES", "192.0.2.10/24", "IPV6_ADDRESSES", "", "ADDRESSES", "192.0.2.10",
					"IP_ADDRS", "192.0.2.10", "IP6_ADDRS", "", "ADDR", "192.0.2.10")},
				{Dir: "routes.d", Match: with("ROUTE_DST", "192.0.2.0/24"), Env: with(
					"EVENT", "route-added", "ROUTE_GATEWAY", "", "ROUTE_TABLE", "254")},
			},
		},
		{
			name: "IPv6 address added",
			do:   func() { l.ns.Run("address", "add", "2001:db8::10/64", "dev", link, "nodad") },
			want: []expect{
				{Dir: "address-added.d", Match: with("ADDRESS", "2001:db8::10/64"), Env: with(
					"EVENT", "address-added", "STATE", "degraded",
					"IPV4_ADDRESSES", "192.0.2.10/24", "IPV6_ADDRESSES", "2001:db8::10/64",
					"ADDRESSES", "192.0.2.10 2001:db8::10", "IP_ADDRS", "192.0.2.10", "IP6_ADDRS", "2001:db8::10")},
				{Dir: "routes.d", Match: with("ROUTE_DST", "2001:db8::/64"), Env: with(
					"EVENT", "route-added", "ROUTE_GATEWAY", "", "ROUTE_TABLE", "254")},
			},
		},
		{
			name: "route added",
			do:   func() { l.ns.Run("route", "add", "198.51.100.0/24", "via", "192.0.2.1", "dev", link) },
			want: []expect{{Dir: "routes.d", Match: with("ROUTE_DST", "198.51.100.0/24"), Env: with(
				"EVENT", "route-added", "ROUTE_GATEWAY", "192.0.2.1", "ROUTE_TABLE", "254", "STATE", "degraded")}},
		},
		{
			name: "route removed",
			do:   func() { l.ns.Run("route", "del", "198.51.100.0/24", "via", "192.0.2.1", "dev", link) },
			want: []expect{{Dir: "routes.d", Match: with("ROUTE_DST", "198.51.100.0/24"), Env: with(
				"EVENT", "route-removed", "ROUTE_GATEWAY", "192.0.2.1", "ROUTE_TABLE", "254")}},
		},
		{
			name: "route in another table",
			do: func() {
				l.ns.Run("route", "add", "203.0.113.0/24", "via", "192.0.2.1", "dev", link, "table", "100")
			},
			want: []expect{{Dir: "routes.d", Match: with("ROUTE_DST", "203.0.113.0/24"), Env: with(
				"EVENT", "route-added", "ROUTE_GATEWAY", "192.0.2.1", "ROUTE_TABLE", "100", "GATEWAY", "")}},
		},
		{
			name: "default route makes it routable",
			do:   func() { l.ns.Run("route", "add", "default", "via", "192.0.2.1", "dev", link) },
			want: []expect{
				{Dir: "routable.d", Match: id, Env: with(
					"EVENT", "state", "STATE", "routable", "OLD_STATE", "degraded", "GATEWAY", "192.0.2.1", "GATEWAY6", "")},
				{Dir: "routes.d", Match: with("ROUTE_DST", "0.0.0.0/0"), Env: with(
					"EVENT", "route-added", "ROUTE_GATEWAY", "192.0.2.1", "ROUTE_TABLE", "254",
					"STATE", "routable", "GATEWAY", "192.0.2.1")},
			},
		},
		{
			name: "IPv6 address removed",
			do:   func() { l.ns.Run("address", "del", "2001:db8::10/64", "dev", link) },
			want: []expect{{Dir: "address-removed.d", Match: with("ADDRESS", "2001:db8::10/64"), Env: with(
				"EVENT", "address-removed", "STATE", "routable", "OLD_STATE", "routable",
				"IPV4_ADDRESSES", "192.0.2.10/24", "IPV6_ADDRESSES", "", "ADDRESSES", "192.0.2.10", "IP6_ADDRS", "")}},
		},
		{
			name: "IPv4 address removed",
			do:   func() { l.ns.Run("address", "del", "192.0.2.10/24", "dev", link) },
			want: []expect{{Dir: "address-removed.d", Match: with("ADDRESS", "192.0.2.10/24"), Env: with(
				"EVENT", "address-removed", "IPV4_ADDRESSES", "", "ADDRESSES", "", "IP_ADDRS", "", "ADDR", "")}},
		},
		{
			name: "link removed",
			do:   func() { l.ns.Run("link", "del", "dev", link) },
			want: []expect{{Dir: "link-removed.d", Match: id, Env: with("EVENT", "link-removed")}},
		},
	}

	var prevMax uint64
	var prevStep string
	for _, st := range steps {
		st.do()
		var stepMin, stepMax uint64
		for _, w := range st.want {
			r := l.take(w.Dir, w.Match)
			got := map[string]string{}
			for k := range w.Env {
				got[k] = r.Env[k]
			}
			if diff := cmp.Diff(got, w.Env); diff != "" {
				t.Errorf("%s: %s record %v: environment (-got +want):\n%s", st.name, w.Dir, r, diff)
			}
			if stepMin == 0 || r.ID < stepMin {
				stepMin = r.ID
			}
			stepMax = max(stepMax, r.ID)
		}
		if stepMin <= prevMax {
			t.Errorf("%s: NETEVD_EVENT_ID %d is not above %d of the step before (%s)", st.name, stepMin, prevMax, prevStep)
		}
		prevMax, prevStep = stepMax, st.name
	}

	recs := l.records()
	checkUniqueRuns(t, recs)
	for _, r := range recs {
		// lo is there at startup and changes no more; everything else is
		// what the steps did.
		checkContract(t, r, r.Env["LINK"] == "lo")
	}
	d.stop()
	if t.Failed() {
		t.Log(l.describeRecords())
	}
}
