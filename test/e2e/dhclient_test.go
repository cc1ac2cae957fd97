package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netevd/netevd/internal/source/dhclient"
)

// TestDhclientBackend runs the daemon with backend dhclient watching the
// lease file of a real ISC dhclient that gets a lease from dnsmasq: the
// routable.d script must see the lease, as dhclient wrote it, in DHCP_*.
// The host's /etc/resolv.conf and hostname must not change although the
// stock dhclient-script runs.
func TestDhclientBackend(t *testing.T) {
	l := newDhcLab(t)
	l.addRecorder("routable.d", "50-record")
	l.startDnsmasq()
	d := l.start(nil)
	if _, r := d.find(0, func(r logRec) bool { return r.msg() == "backend" && r.str("backend") != "dhclient" }); r != nil {
		t.Fatalf("the daemon runs backend %q (%s), not dhclient", r.str("backend"), r.str("why"))
	}
	dhc := l.startDhclient()

	isLease := func(r record) bool {
		return r.Dir == "routable.d" && r.Env["LINK"] == "veth0" && r.Env["DHCP_ADDRESS"] != ""
	}
	r := waitFor(t, "a routable.d record with the lease of veth0", func() (record, bool) {
		if dhc.exited() {
			t.Fatalf("dhclient exited:\n%s", dhc.output())
		}
		for _, r := range l.records() {
			if isLease(r) {
				return r, true
			}
		}
		return record{}, false
	}, l.describeRecords, func() string {
		b, err := os.ReadFile(l.leaseFile)
		return fmt.Sprintf("lease file %s (%v):\n%s", l.leaseFile, err, b)
	})

	// What dhclient wrote, read with the package's own parser.
	f, err := os.Open(l.leaseFile)
	if err != nil {
		t.Fatal(err)
	}
	leases, errs := dhclient.ParseLeases(f, l.leaseFile)
	f.Close()
	if len(leases) == 0 || len(errs) > 0 {
		t.Fatalf("lease file: %d leases, errors %v", len(leases), errs)
	}
	lease := leases[len(leases)-1]
	addr := lease.FixedAddress
	if lo, hi := netip.MustParseAddr("10.81.0.100"), netip.MustParseAddr("10.81.0.150"); addr.Less(lo) || hi.Less(addr) {
		t.Errorf("dhclient leased %s, outside dnsmasq's range", addr)
	}

	want := map[string]string{
		"LINK":             "veth0",
		"BACKEND":          "dhclient",
		"DHCP_ADDRESS":     addr.String(),
		"DHCP_SUBNET_MASK": "255.255.255.0",
		"DHCP_GATEWAY":     dhcServer,
		"DHCP_DNS":         dhcServer,
		"DHCP_DOMAIN":      dhcDomain,
	}
	for k, v := range want {
		if got, ok := r.Env[k]; !ok || got != v {
			t.Errorf("routable.d: %s=%q (set: %v), want %q", k, got, ok, v)
		}
	}
	if _, ok := r.Env["NETEVD_INITIAL"]; ok {
		t.Errorf("routable.d: NETEVD_INITIAL set for a lease that came after the start")
	}
	var lj struct {
		Interface    string            `json:"interface"`
		FixedAddress string            `json:"fixed_address"`
		Options      map[string]string `json:"options"`
		Expire       string            `json:"expire"`
	}
	if err := json.Unmarshal([]byte(r.Env["DHCP_LEASE"]), &lj); err != nil {
		t.Errorf("DHCP_LEASE is not JSON: %v: %q", err, r.Env["DHCP_LEASE"])
	} else if lj.Interface != "veth0" || lj.FixedAddress != addr.String() || lj.Options["routers"] != dhcServer || lj.Expire == "" {
		t.Errorf("DHCP_LEASE = %s", r.Env["DHCP_LEASE"])
	}
	if got := r.Env["DHCP_DOMAIN_NAME_SERVERS"]; got != dhcServer {
		t.Errorf("DHCP_DOMAIN_NAME_SERVERS=%q, want %q", got, dhcServer)
	}
	t.Logf("routable.d saw DHCP_ADDRESS=%s DHCP_GATEWAY=%s DHCP_DNS=%s DHCP_DOMAIN=%s DHCP_HOSTNAME=%s",
		r.Env["DHCP_ADDRESS"], r.Env["DHCP_GATEWAY"], r.Env["DHCP_DNS"], r.Env["DHCP_DOMAIN"], r.Env["DHCP_HOSTNAME"])

	// dhclient-script configured the same address, in the namespace.
	if out := l.ns.Run("-4", "-o", "addr", "show", "dev", "veth0"); !strings.Contains(out, " "+addr.String()+"/24 ") {
		t.Errorf("veth0 does not have %s/24:\n%s", addr, out)
	}
	// The stock dhclient-script wrote /etc/resolv.conf, into the overlay.
	if b, err := os.ReadFile(filepath.Join(l.work, "etc-up", "resolv.conf")); err != nil || !strings.Contains(string(b), "nameserver "+dhcServer) {
		t.Errorf("dhclient-script's resolv.conf in the overlay: %v\n%s", err, b)
	}
	d.stop()

	// A daemon started while the lease holds replays it at startup.
	d = l.start(nil)
	ri := waitFor(t, "a routable.d record with the lease of veth0 and NETEVD_INITIAL=1", func() (record, bool) {
		for _, r := range l.records() {
			if isLease(r) && r.Env["NETEVD_INITIAL"] == "1" {
				return r, true
			}
		}
		return record{}, false
	}, l.describeRecords)
	for _, k := range []string{"DHCP_ADDRESS", "DHCP_GATEWAY", "DHCP_DNS", "DHCP_DOMAIN", "BACKEND"} {
		if ri.Env[k] != r.Env[k] {
			t.Errorf("startup replay: %s=%q, want %q as before", k, ri.Env[k], r.Env[k])
		}
	}
	d.stop()
}
