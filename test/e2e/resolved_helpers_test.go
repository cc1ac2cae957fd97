package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/action/resolved/resolvedtest"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/sdbus"
)

// The resolved lab: the real systemd-networkd manages veth0 (ifindex 10)
// with a static address, gateway, an IPv4 and an IPv6 DNS server and a
// search domain; the real systemd-resolved and systemd-hostnamed run
// beside it on the same private bus; the peer vp0 (ifindex 20) starts down.
const (
	rsAddr    = "10.86.0.1"
	rsGateway = "10.86.0.2"
	rsDNS4    = "192.0.2.53"
	rsDNS6    = "2001:db8::53"
	rsDomain  = "lab.test"

	rsNetworkFile = "10-veth0.network"
	// IPv6AcceptRA=no: otherwise networkd waits for a router
	// advertisement and veth0 stays "configuring".
	rsNetwork = `[Match]
Name=veth0
[Network]
Address=` + rsAddr + `/24
Gateway=` + rsGateway + `
DNS=` + rsDNS4 + `
DNS=` + rsDNS6 + `
Domains=` + rsDomain + `
IPv6AcceptRA=no
`
)

// rsWant is what resolved must hold for veth0 with rsNetwork.
var rsWant = resolvedtest.Link{
	DNS:     []netip.Addr{netip.MustParseAddr(rsDNS4), netip.MustParseAddr(rsDNS6)},
	Domains: []string{rsDomain},
}

// rsLab is a lab whose daemon namespace is the one networkd, resolved and
// hostnamed run in, with their private system bus (resolvedtest).
type rsLab struct {
	*lab
	rs *resolvedtest.Daemons
}

// newRSLab starts the daemons (skipping the test when something is
// missing), after arranging for the test to fail if the host's hostname,
// /etc/hostname, /etc/resolv.conf or /etc/passwd changed. It adds veth0
// with its peer down, waits until networkd manages it, and writes the
// daemon's config: backend systemd-networkd, use_dns, use_domain and
// use_hostname on.
func newRSLab(t *testing.T, hideNetworkdState bool) *rsLab {
	t.Helper()
	resolvedtest.GuardHost(t)
	rs := resolvedtest.Start(t, resolvedtest.Options{
		Networkd:          true,
		NetworkFiles:      map[string]string{rsNetworkFile: rsNetwork},
		HideNetworkdState: hideNetworkdState,
	})
	l := &lab{tb: t, ns: rs.NS, peer: nettest.NewNetNS(t), consumed: map[string]bool{}}
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
		"system": map[string]any{"backend": "systemd-networkd", "scripts_dir": l.root, "log_format": "json", "log_level": "debug"},
		"backends": map[string]any{
			"dhclient": map[string]any{"use_dns": true, "use_domain": true, "use_hostname": true},
		},
		"api":     map[string]any{"enabled": false},
		"metrics": map[string]any{"enabled": false},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	l.writeRawConfig(string(b) + "\n")

	nettest.VethPair(t, rs.NS, l.peer, "veth0", 10, "vp0", 20)
	l.peer.Run("address", "add", rsGateway+"/24", "dev", "vp0")
	rsl := &rsLab{lab: l, rs: rs}
	rsl.waitNetworkd(10, "no-carrier", "configuring")
	return rsl
}

// startDaemon runs the daemon inside the daemons' mount, UTS and network
// namespaces, where the private bus is the system bus. nsenter execs it in
// place, so the child's PID is the daemon's. It waits until the daemon is
// ready, kills it in cleanup and prints its log if the test failed.
func (l *rsLab) startDaemon() *daemon {
	l.tb.Helper()
	cmd := l.rs.Command(netevdBin, "--config", l.cfgPath, "--log-format", "json")
	cmd.Env = daemonEnv(insideBus)
	d := runDaemonCmd(l.tb, cmd, "nsenter")
	d.waitLog("the systemd-networkd backend", func(r logRec) bool {
		return r.msg() == "backend" && r.str("backend") == "systemd-networkd"
	})
	return d
}

// waitNetworkd waits until networkd reports the link with ifindex idx in
// the operational state oper and the administrative state admin.
func (l *rsLab) waitNetworkd(idx int, oper, admin string) {
	l.tb.Helper()
	var last string
	poll(l.tb, 20*time.Millisecond, fmt.Sprintf("link %d %s/%s in networkd", idx, oper, admin), func() (struct{}, bool) {
		ctx, cancel := context.WithTimeout(l.tb.Context(), 2*time.Second)
		defer cancel()
		c, err := sdbus.Dial(ctx, l.rs.BusAddress())
		if err != nil {
			last = err.Error()
			return struct{}{}, false
		}
		defer c.Close()
		props, err := c.GetAll(ctx, resolvedtest.NetworkName, fmt.Sprintf("/org/freedesktop/network1/link/_3%d", idx),
			"org.freedesktop.network1.Link")
		o, _ := props["OperationalState"].(string)
		a, _ := props["AdministrativeState"].(string)
		last = fmt.Sprintf("%s/%s (%v)", o, a, err)
		return struct{}{}, err == nil && o == oper && a == admin
	}, func() string { return "last seen: " + last + "\n" + l.rs.Logs() })
}

// resolvedLink reads what resolved holds for the link with ifindex idx;
// ok is false while resolved does not know the link.
func (l *rsLab) resolvedLink(idx int) (link resolvedtest.Link, ok bool, err error) {
	ctx, cancel := context.WithTimeout(l.tb.Context(), 5*time.Second)
	defer cancel()
	link, err = l.rs.ResolvedLink(ctx, idx)
	var reply *sdbus.ErrorReply
	if errors.As(err, &reply) && reply.Name == "org.freedesktop.resolve1.NoSuchLink" {
		return link, false, nil
	}
	return link, err == nil, err
}

// waitResolved waits until resolved knows the link with ifindex idx and
// holds exactly want for it.
func (l *rsLab) waitResolved(what string, idx int, want resolvedtest.Link) {
	l.tb.Helper()
	var last string
	poll(l.tb, 20*time.Millisecond, what, func() (struct{}, bool) {
		got, ok, err := l.resolvedLink(idx)
		last = fmt.Sprintf("known %v, DNS %v, Domains %q (%v)", ok, got.DNS, got.Domains, err)
		return struct{}{}, ok && equalLink(got, want)
	}, func() string {
		return fmt.Sprintf("want DNS %v, Domains %q; last seen: %s", want.DNS, want.Domains, last)
	})
}

// checkResolved checks that resolved holds exactly want for the link with
// ifindex idx now.
func (l *rsLab) checkResolved(step string, idx int, want resolvedtest.Link) {
	l.tb.Helper()
	got, ok, err := l.resolvedLink(idx)
	if !ok || err != nil || !equalLink(got, want) {
		l.tb.Errorf("%s: resolved's link %d: known %v, DNS %v, Domains %q (%v); want DNS %v, Domains %q",
			step, idx, ok, got.DNS, got.Domains, err, want.DNS, want.Domains)
	}
}

func equalLink(a, b resolvedtest.Link) bool {
	return slices.Equal(a.DNS, b.DNS) && slices.Equal(a.Domains, b.Domains)
}

// nsHostname is the hostname of the daemons' UTS namespace and their
// /etc/hostname (in the overlay), as one string.
func (l *rsLab) nsHostname() string {
	l.tb.Helper()
	etc, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/hostname", l.rs.Inner()))
	if err != nil {
		etc = []byte(err.Error())
	}
	return fmt.Sprintf("hostname %q, /etc/hostname %q", l.rs.Run("hostname"), strings.TrimSpace(string(etc)))
}

// resolvedFailures returns the errors of the daemon's failed runs of the
// resolved action.
func (d *daemon) resolvedFailures() []string {
	var out []string
	for _, r := range d.records() {
		if r.msg() == "action failed" && r.str("action") == "resolved" {
			out = append(out, r.str("error"))
		}
	}
	return out
}

// logsWith returns the daemon's log records with message msg whose
// attribute key is val.
func (d *daemon) logsWith(msg, key, val string) []logRec {
	var out []logRec
	for _, r := range d.records() {
		if r.msg() == msg && r.str(key) == val {
			out = append(out, r)
		}
	}
	return out
}
