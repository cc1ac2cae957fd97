package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/netevd/netevd/internal/action/script"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/source/networkd/networkdtest"
)

// The networkd lab: the real systemd-networkd manages veth0 (ifindex 10)
// in the daemon's namespace with a static address, gateway, DNS server and
// search domain; its peer vp0 (ifindex 20) starts down.
const (
	ndAddr    = "10.84.0.1"
	ndGateway = "10.84.0.2"
	ndDNS     = "10.84.0.53"
	ndDomain  = "networkd.test"

	// IPv6AcceptRA=no: otherwise networkd waits for a router
	// advertisement and veth0 stays "configuring".
	ndNetwork = `[Match]
Name=veth0
[Network]
Address=` + ndAddr + `/24
Gateway=` + ndGateway + `
DNS=` + ndDNS + `
Domains=` + ndDomain + `
IPv6AcceptRA=no
`
)

// ndLab is a lab whose daemon namespace is the one systemd-networkd runs
// in, with its private system bus (networkdtest).
type ndLab struct {
	*lab
	nd *networkdtest.Networkd
}

// newNDLab starts networkd (skipping the test without root or networkd),
// adds veth0 with its peer down, waits until networkd manages it, and
// writes the daemon's config: backend systemd-networkd, emit_json as given.
func newNDLab(t *testing.T, emitJSON bool) *ndLab {
	t.Helper()
	nd := networkdtest.Start(t, map[string]string{"10-veth0.network": ndNetwork})
	l := &lab{tb: t, ns: nd.NS, peer: nettest.NewNetNS(t), consumed: map[string]bool{}}
	dir := t.TempDir()
	if strings.ContainsAny(dir, "'\n") {
		t.Fatalf("temp dir %q cannot be quoted in a script", dir)
	}
	l.root = filepath.Join(dir, "scripts")
	l.out = filepath.Join(dir, "out")
	l.cfgPath = filepath.Join(dir, "netevd.yaml")
	for _, d := range []string{l.root, l.out} {
		mkdir0755(t, d)
	}
	cfg := map[string]any{
		"system":   map[string]any{"backend": "systemd-networkd", "scripts_dir": l.root, "log_format": "json", "log_level": "debug"},
		"backends": map[string]any{"systemd_networkd": map[string]any{"emit_json": emitJSON}},
		"api":      map[string]any{"enabled": false},
		"metrics":  map[string]any{"enabled": false},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	l.writeRawConfig(string(b) + "\n")

	nettest.VethPair(t, nd.NS, l.peer, "veth0", 10, "vp0", 20)
	l.peer.Run("address", "add", ndGateway+"/24", "dev", "vp0")
	nd.WaitLinkState(10, "no-carrier", "configuring")
	return &ndLab{lab: l, nd: nd}
}

// startDaemon runs the daemon inside networkd's mount and network
// namespaces, where the private bus is the system bus. nsenter execs it in
// place, so the child's PID is the daemon's. It waits until the daemon is
// ready, kills it in cleanup and prints its log if the test failed.
func (l *ndLab) startDaemon() *daemon {
	l.tb.Helper()
	cmd := l.nd.Command(netevdBin, "--config", l.cfgPath, "--log-format", "json")
	cmd.Env = daemonEnv(insideBus)
	d := runDaemonCmd(l.tb, cmd, "nsenter")
	d.waitLog("the systemd-networkd backend", func(r logRec) bool {
		return r.msg() == "backend" && r.str("backend") == "systemd-networkd"
	})
	return d
}

// countLogs counts the daemon's log records with message msg.
func (d *daemon) countLogs(msg string) int {
	n := 0
	for _, r := range d.records() {
		if r.msg() == msg {
			n++
		}
	}
	return n
}

// checkNetworkdRecord checks what every script run under the networkd
// backend must satisfy: BACKEND, the aliases, STATE and OLD_STATE from
// the manager's property, networkd's other state variables, JSON (when
// withJSON) as networkd's one-line description of the link, and a stdin
// document that agrees.
func checkNetworkdRecord(tb testing.TB, r record, withJSON bool) {
	tb.Helper()
	e := r.Env
	for k, want := range map[string]string{"BACKEND": "systemd-networkd", "PATH": scriptPATH, "EVENT": "manager-state", "IFACE": e["LINK"]} {
		if e[k] != want {
			tb.Errorf("%v: %s=%q, want %q", r, k, e[k], want)
		}
	}
	manager := e["LINKINDEX"] == "0"
	prop := "OperationalState"
	if r.Dir == "configured.d" || r.Dir == "configuring.d" {
		prop = "AdministrativeState"
	}
	if manager != (r.Dir == "manager.d") {
		tb.Errorf("%v: LINKINDEX=%s in %s", r, e["LINKINDEX"], r.Dir)
	}
	if e[prop] != e["STATE"] || (!manager && r.Dir != e["STATE"]+".d") {
		tb.Errorf("%v: %s=%q, STATE=%q in %s", r, prop, e[prop], e["STATE"], r.Dir)
	}
	for _, k := range []string{"OperationalState", "CarrierState", "AddressState", "IPv4AddressState", "IPv6AddressState", "OLD_STATE"} {
		if _, ok := e[k]; !ok {
			tb.Errorf("%v: no %s", r, k)
		}
	}
	if _, ok := e["AdministrativeState"]; ok == manager {
		tb.Errorf("%v: AdministrativeState set: %v, want it for links only", r, ok)
	}
	if _, ok := e["JSON"]; ok != (withJSON && !manager) {
		tb.Errorf("%v: JSON set: %v, want %v", r, ok, withJSON && !manager)
	}
	if withJSON && !manager {
		var d struct {
			Index            int
			Name             string
			OperationalState string
			Addresses        []any
		}
		if err := json.Unmarshal([]byte(e["JSON"]), &d); err != nil {
			tb.Errorf("%v: JSON is not JSON: %v\n%s", r, err, e["JSON"])
		} else if strconv.Itoa(d.Index) != e["LINKINDEX"] || d.Name != e["LINK"] || d.OperationalState == "" {
			tb.Errorf("%v: JSON Index %d, Name %q, OperationalState %q; want LINKINDEX, LINK and a state", r, d.Index, d.Name, d.OperationalState)
		}
	}
	var p script.Payload
	if err := json.Unmarshal(r.Stdin, &p); err != nil {
		tb.Errorf("%v: stdin is not the JSON document: %v", r, err)
		return
	}
	if p.Backend != "systemd-networkd" || p.Property != prop || p.Value != e["STATE"] || p.OldValue != e["OLD_STATE"] ||
		p.Manager == nil || p.Manager.States[prop] != e["STATE"] || (withJSON && !manager && p.Manager.Env["JSON"] != e["JSON"]) {
		tb.Errorf("%v: stdin backend %q, property %q %q→%q, manager %+v; want the environment's", r, p.Backend, p.Property,
			p.OldValue, p.Value, p.Manager)
	}
	if v, ok := e["NETEVD_INITIAL"]; ok != p.Initial || ok && v != "1" {
		tb.Errorf("%v: NETEVD_INITIAL=%q (%v), stdin initial %v", r, v, ok, p.Initial)
	}
}
