package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/netevd/netevd/internal/action/script"
)

// TestNetworkManagerBackend runs the daemon with system.backend
// NetworkManager against the real NetworkManager on a private system bus
// and checks what its scripts see: the startup replay, activation when the
// peer brings carrier, a disconnect by the user, carrier loss (which
// NetworkManager acts on 6 s later) and a NetworkManager restart.
func TestNetworkManagerBackend(t *testing.T) {
	l := newNMLab(t)
	for _, dir := range []string{"activated.d", "disconnected.d", "unavailable.d", "manager.d"} {
		l.addRecorder(dir, "50-record")
	}
	d := l.startDaemon()

	// Startup: NetworkManager has veth0 without carrier.
	r := l.take("unavailable.d", map[string]string{"LINK": "veth0", "NETEVD_INITIAL": "1"})
	wantNMEnv(t, r, map[string]string{
		"STATE": "unavailable", "OLD_STATE": "", "DeviceState": "unavailable", "EVENT": "manager-state",
		"LINKINDEX": "10", "DEVICE_IFACE": "veth0",
	})
	r = l.take("manager.d", map[string]string{"NETEVD_INITIAL": "1"})
	wantNMEnv(t, r, map[string]string{"NMState": "disconnected", "STATE": "disconnected", "LINKINDEX": "0"})

	// Carrier: NetworkManager activates the keyfile profile.
	l.peer.Run("link", "set", "vp0", "up")
	r = l.take("activated.d", map[string]string{"LINK": "veth0"})
	wantNMEnv(t, r, map[string]string{
		"STATE": "activated", "DeviceState": "activated", "LINKINDEX": "10",
		"CONNECTION_ID": nmConnID, "CONNECTION_UUID": nmConnUUID, "CONNECTION_FILENAME": nmConnFile,
		"DEVICE_IFACE": "veth0", "DEVICE_IP_IFACE": "veth0",
		"DEVICE_STATE_REASON": "0", "DEVICE_STATE_REASON_NAME": "none",
		"IP4_ADDRESS_0": nmAddr + " " + nmGateway, "IP4_NUM_ADDRESSES": "1", "IP4_GATEWAY": nmGateway,
		"IP4_NAMESERVERS": nmDNS, "DNS": nmDNS, "DOMAINS": nmSearch,
	})
	if old := r.Env["OLD_STATE"]; old == "" || old == "activated" {
		t.Errorf("%v: OLD_STATE=%q, want the state before activated", r, old)
	}
	if _, ok := r.Env["NETEVD_INITIAL"]; ok {
		t.Errorf("%v: NETEVD_INITIAL is set for a live change", r)
	}
	var p script.Payload
	if err := json.Unmarshal(r.Stdin, &p); err != nil {
		t.Fatalf("%v: stdin: %v", r, err)
	}
	if p.Manager == nil || p.Manager.States["DeviceState"] != "activated" || p.Manager.Env["CONNECTION_ID"] != nmConnID ||
		!strings.Contains(strings.Join(p.Manager.DNS, " "), nmDNS) {
		t.Errorf("%v: stdin manager = %+v, want DeviceState activated, CONNECTION_ID %s and DNS %s", r, p.Manager, nmConnID, nmDNS)
	}
	l.take("manager.d", map[string]string{"NMState": "connected-global"})

	// The user disconnects the device, then connects it again. (The
	// activation went through disconnected too, with reason carrier.) The
	// report names the connection that went down.
	l.nmcli("device", "disconnect", "veth0")
	r = l.take("disconnected.d", map[string]string{"LINK": "veth0", "DEVICE_STATE_REASON_NAME": "user-requested"})
	wantNMEnv(t, r, map[string]string{
		"STATE": "disconnected", "DeviceState": "disconnected", "DEVICE_IFACE": "veth0", "DEVICE_STATE_REASON": "39",
		"CONNECTION_ID": nmConnID,
	})
	if _, ok := r.Env["IP4_ADDRESS_0"]; ok {
		t.Errorf("%v: IP4_ADDRESS_0=%q after the disconnect, want it unset", r, r.Env["IP4_ADDRESS_0"])
	}
	l.nmcli("device", "connect", "veth0")
	l.take("activated.d", map[string]string{"LINK": "veth0", "CONNECTION_ID": nmConnID})

	// Carrier lost: NetworkManager waits 6 s, then the device becomes
	// unavailable.
	l.peer.Run("link", "set", "vp0", "down")
	r = l.take("unavailable.d", map[string]string{"LINK": "veth0", "OLD_STATE": "activated"})
	wantNMEnv(t, r, map[string]string{
		"DEVICE_STATE_REASON": "40", "DEVICE_STATE_REASON_NAME": "carrier", "CONNECTION_ID": nmConnID,
	})

	// NetworkManager restarts: the daemon notices, keeps running, re-reads
	// and follows the new instance.
	l.stopNM()
	d.waitLog("the daemon noticing that NetworkManager left", func(r logRec) bool {
		return strings.HasPrefix(r.msg(), "NetworkManager is not on the bus")
	})
	l.startNM()
	d.waitLog("the daemon noticing that NetworkManager is back", func(r logRec) bool {
		return strings.HasPrefix(r.msg(), "NetworkManager is back on the bus")
	})
	l.waitDevice("unavailable")
	l.peer.Run("link", "set", "vp0", "up")
	l.take("activated.d", map[string]string{"LINK": "veth0", "CONNECTION_ID": nmConnID})

	d.stop()
	t.Log(l.describeRecords())
	recs := l.records()
	checkUniqueRuns(t, recs)
	for _, r := range recs {
		if r.Env["BACKEND"] != "NetworkManager" {
			t.Errorf("%v: BACKEND=%q, want NetworkManager", r, r.Env["BACKEND"])
		}
	}
}

// wantNMEnv checks that r's environment holds every pair in want.
func wantNMEnv(t *testing.T, r record, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := r.Env[k]; !ok || got != v {
			t.Errorf("%v: %s=%q (set: %v), want %q", r, k, got, ok, v)
		}
	}
}
