package e2e

import (
	"slices"
	"testing"
)

// TestNetworkdBackend runs the daemon with system.backend systemd-networkd
// against the real networkd on a private system bus and checks what its
// scripts see: the startup replay, the link becoming routable and
// configured when the peer brings carrier, carrier loss, and the Manager
// object's own state in manager.d.
func TestNetworkdBackend(t *testing.T) {
	l := newNDLab(t, true)
	for _, dir := range []string{"routable.d", "configured.d", "configuring.d", "no-carrier.d", "degraded.d", "manager.d"} {
		l.addRecorder(dir, "50-record")
	}
	d := l.startDaemon()

	// Startup: veth0 has no carrier; networkd is configuring it.
	r := l.take("no-carrier.d", map[string]string{"LINK": "veth0", "NETEVD_INITIAL": "1"})
	checkNetworkdRecord(t, r, true)
	ndWantEnv(t, r, map[string]string{"STATE": "no-carrier", "OLD_STATE": "", "LINKINDEX": "10",
		"OperationalState": "no-carrier", "AdministrativeState": "configuring", "CarrierState": "no-carrier",
		"DNS": ndDNS, "DOMAINS": ndDomain})
	r = l.take("configuring.d", map[string]string{"LINK": "veth0", "NETEVD_INITIAL": "1"})
	checkNetworkdRecord(t, r, true)
	r = l.take("manager.d", map[string]string{"NETEVD_INITIAL": "1"})
	checkNetworkdRecord(t, r, true)
	ndWantEnv(t, r, map[string]string{"LINK": "", "LINKINDEX": "0", "OLD_STATE": ""})

	// Carrier: networkd adds the address and the gateway.
	l.peer.Run("link", "set", "vp0", "up")
	r = l.take("routable.d", map[string]string{"LINK": "veth0"})
	checkNetworkdRecord(t, r, true)
	ndWantEnv(t, r, map[string]string{"STATE": "routable", "OperationalState": "routable", "CarrierState": "carrier",
		"IPv4AddressState": "routable", "DNS": ndDNS, "DOMAINS": ndDomain})
	if old := r.Env["OLD_STATE"]; !slices.Contains([]string{"no-carrier", "carrier", "degraded"}, old) {
		t.Errorf("%v: OLD_STATE=%q, want the state before routable", r, old)
	}
	r = l.take("configured.d", map[string]string{"LINK": "veth0"})
	checkNetworkdRecord(t, r, true)
	ndWantEnv(t, r, map[string]string{"STATE": "configured", "OLD_STATE": "configuring", "AdministrativeState": "configured"})
	r = l.take("manager.d", map[string]string{"STATE": "routable"})
	checkNetworkdRecord(t, r, true)
	if _, ok := r.Env["NETEVD_INITIAL"]; ok {
		t.Errorf("%v: NETEVD_INITIAL set for a live change", r)
	}

	// Carrier lost: networkd drops the address.
	l.peer.Run("link", "set", "vp0", "down")
	r = l.take("no-carrier.d", map[string]string{"LINK": "veth0", "OLD_STATE": "routable"})
	checkNetworkdRecord(t, r, true)
	r = l.take("manager.d", map[string]string{"STATE": "no-carrier", "OLD_STATE": "routable"})
	checkNetworkdRecord(t, r, true)

	// And back. (networkd goes configured→configuring→configured again,
	// but the two changes may cancel out in the daemon's queue.)
	l.nd.WaitCarrierLost(10)
	l.peer.Run("link", "set", "vp0", "up")
	checkNetworkdRecord(t, l.take("routable.d", map[string]string{"LINK": "veth0"}), true)

	checkUniqueRuns(t, l.records())
	for _, r := range l.records() {
		if r.Env["LINK"] == "lo" && r.Env["NETEVD_INITIAL"] == "" {
			t.Errorf("%v: a live change on lo", r)
		}
	}
	d.stop()
	if n := d.countLogs("systemd-networkd unavailable; waiting for it"); n != 0 {
		t.Errorf("%d outage warnings, want none", n)
	}
}

// TestNetworkdRestart stops networkd (by PID) and starts it again, then
// restarts the bus daemon (and networkd, which does not reconnect by
// itself): the daemon keeps running, logs each outage once, and later
// changes still run scripts. It also runs with emit_json off: no JSON.
func TestNetworkdRestart(t *testing.T) {
	l := newNDLab(t, false)
	l.addRecorder("routable.d", "50-record")
	l.addRecorder("no-carrier.d", "50-record")
	l.peer.Run("link", "set", "vp0", "up")
	l.nd.WaitLinkState(10, "routable", "configured")
	d := l.startDaemon()
	checkNetworkdRecord(t, l.take("routable.d", map[string]string{"LINK": "veth0", "NETEVD_INITIAL": "1"}), false)

	const outage, back = "systemd-networkd unavailable; waiting for it", "systemd-networkd available again"
	networkdPID := l.nd.NetworkdPID()
	l.nd.StopNetworkd()
	d.waitLog("the outage warning", func(r logRec) bool { return r.msg() == outage })
	l.nd.StartNetworkd()
	if l.nd.NetworkdPID() == networkdPID {
		t.Fatalf("networkd kept PID %d across the restart", networkdPID)
	}
	d.waitLog("the end of the outage", func(r logRec) bool { return r.msg() == back })
	l.peer.Run("link", "set", "vp0", "down")
	checkNetworkdRecord(t, l.take("no-carrier.d", map[string]string{"LINK": "veth0", "OLD_STATE": "routable"}), false)
	l.nd.WaitCarrierLost(10)
	l.peer.Run("link", "set", "vp0", "up")
	checkRoutableAgain(t, l.take("routable.d", map[string]string{"LINK": "veth0", "STATE": "routable"}))

	// The bus daemon restarts: the daemon loses its connection and redials
	// with backoff; networkd 252 stays off the new bus until restarted.
	from := len(d.records())
	l.nd.StopBus()
	l.nd.StartBus()
	l.nd.StopNetworkd()
	l.nd.StartNetworkd()
	d.waitLogFrom(from, "the end of the second outage", func(r logRec) bool { return r.msg() == back })
	l.peer.Run("link", "set", "vp0", "down")
	checkNetworkdRecord(t, l.take("no-carrier.d", map[string]string{"LINK": "veth0", "OLD_STATE": "routable"}), false)
	l.nd.WaitCarrierLost(10)
	l.peer.Run("link", "set", "vp0", "up")
	checkRoutableAgain(t, l.take("routable.d", map[string]string{"LINK": "veth0", "STATE": "routable"}))

	if d.exited() {
		t.Fatalf("the daemon exited: %v", d.err)
	}
	if n := d.countLogs(outage); n != 2 {
		t.Errorf("%d outage warnings, want 2 (one per outage)", n)
	}
	checkUniqueRuns(t, l.records())
	d.stop()
}

// ndWantEnv checks variables of a record.
func ndWantEnv(t *testing.T, r record, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := r.Env[k]; !ok || got != v {
			t.Errorf("%v: %s=%q (set: %v), want %q", r, k, got, ok, v)
		}
	}
}

// checkRoutableAgain checks a routable.d record after carrier came back.
func checkRoutableAgain(t *testing.T, r record) {
	t.Helper()
	checkNetworkdRecord(t, r, false)
	if old := r.Env["OLD_STATE"]; old == "" || old == "routable" {
		t.Errorf("%v: OLD_STATE=%q, want the state before routable", r, old)
	}
	if _, ok := r.Env["NETEVD_INITIAL"]; ok {
		t.Errorf("%v: NETEVD_INITIAL set for a live change", r)
	}
}
