package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/netevd/netevd/internal/action/resolved/resolvedtest"
)

// How systemd-networkd 252 and systemd-resolved 252 interact, as seen on
// this testbed (and what the tests below are built on):
//
//   - networkd does not send DNS servers or domains to resolved over the
//     bus (its debug log shows no call to resolve1, and with its state
//     files hidden resolved gets nothing). resolved reads them from
//     networkd's state files (/run/systemd/netif/links/<ifindex>: DNS=,
//     DOMAINS=, ROUTE_DOMAINS=), through sd-network, which watches them.
//   - resolved counts a link as managed by networkd when that file says
//     networkd configures it, and then refuses SetLinkDNS and
//     SetLinkDomains for it: org.freedesktop.resolve1.LinkBusy "Link veth0
//     is managed.".
//
// So on a host where networkd and resolved share /run, resolved already
// has every networkd link's DNS servers and domains, and netevd cannot
// (and need not) push them: TestResolvedBesideNetworkd. To prove that
// netevd's push works end to end — networkd configures the link, the
// daemon's networkd backend reports its DNS servers and domains, the
// resolved action pushes them — TestResolvedFromNetworkd hides networkd's
// state files from resolved only (resolved gets an empty
// /run/systemd/netif of its own; networkd and netevd share the real one):
// then the only way veth0's DNS servers and domains reach resolved is
// netevd, and the test checks that resolved has none before the daemon
// starts.
//
// use_hostname: the networkd backend reports no hostname (and for a
// static configuration there is none to learn), so with use_hostname on
// the hostname must stay as it was; pushing a learned hostname through
// hostnamed is covered by the resolved action's own tests against the
// real hostnamed.

// TestResolvedFromNetworkd runs the daemon with system.backend
// systemd-networkd and backends.dhclient.use_dns, use_domain and
// use_hostname against the real networkd, resolved and hostnamed on one
// private bus, with networkd's state files hidden from resolved. The
// daemon pushes veth0's IPv4 and IPv6 DNS servers and its search domain
// at startup, each once; routable.d sees them in DNS and DOMAINS when the
// peer brings carrier; a new .network file (networkctl reload) replaces
// them in resolved, exactly.
func TestResolvedFromNetworkd(t *testing.T) {
	l := newRSLab(t, true)
	l.addRecorder("routable.d", "50-record")
	l.addRecorder("configured.d", "50-record")

	// Without netevd resolved knows veth0 but nothing about its DNS,
	// although networkd is configuring it with rsNetwork.
	l.waitResolved("resolved to know veth0, with no DNS servers or domains", 10, resolvedtest.Link{})
	hostBefore := l.nsHostname()

	d := l.startDaemon()
	l.waitResolved("veth0's DNS servers and domains in resolved, pushed by netevd at startup", 10, rsWant)

	// Carrier: networkd adds the address and the gateway.
	l.peer.Run("link", "set", "vp0", "up")
	r := l.take("routable.d", map[string]string{"LINK": "veth0", "STATE": "routable"})
	ndWantEnv(t, r, map[string]string{"BACKEND": "systemd-networkd", "LINKINDEX": "10",
		"DNS": rsDNS4 + " " + rsDNS6, "DOMAINS": rsDomain})
	l.take("configured.d", map[string]string{"LINK": "veth0", "STATE": "configured"})
	l.checkResolved("routable", 10, rsWant)
	rsCheckPushes(t, d, 1, 1)

	// networkd reloads a new .network file: the daemon pushes the new
	// values and resolved holds exactly those.
	netFile := fmt.Sprintf("/proc/%d/root/etc/systemd/network/%s", l.rs.Inner(), rsNetworkFile)
	newNetwork := strings.Replace(strings.Replace(rsNetwork, "DNS="+rsDNS4+"\nDNS="+rsDNS6+"\n", "DNS=198.51.100.53\n", 1),
		"Domains="+rsDomain, "Domains=other.test", 1)
	if strings.Contains(newNetwork, rsDNS4) || strings.Contains(newNetwork, rsDomain) {
		t.Fatalf("the new .network file is not new:\n%s", newNetwork)
	}
	if err := os.WriteFile(netFile, []byte(newNetwork), 0o644); err != nil {
		t.Fatal(err)
	}
	l.rs.Run("networkctl", "reload")
	newWant := resolvedtest.Link{DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")}, Domains: []string{"other.test"}}
	l.waitResolved("the reloaded DNS server and domains in resolved", 10, newWant)
	r = l.take("configured.d", map[string]string{"LINK": "veth0", "STATE": "configured", "DNS": "198.51.100.53"})
	ndWantEnv(t, r, map[string]string{"DOMAINS": "other.test"})
	rsCheckPushes(t, d, 2, 2)

	if got := l.nsHostname(); got != hostBefore {
		t.Errorf("the namespace's hostname changed: %s, was %s (the networkd backend learns no hostname)", got, hostBefore)
	}
	if n := len(d.logsWith("hostname pushed to systemd-hostnamed", "component", "resolved")); n != 0 {
		t.Errorf("the daemon pushed a hostname %d times; the networkd backend reports none", n)
	}
	if f := d.resolvedFailures(); len(f) != 0 {
		t.Errorf("the resolved action failed %d times:\n%s", len(f), strings.Join(f, "\n"))
	}
	checkUniqueRuns(t, l.records())
	d.stop()
}

// TestResolvedBesideNetworkd is the usual host: resolved reads networkd's
// state files. resolved has veth0's DNS servers and domains from networkd
// before the daemon starts and refuses the daemon's pushes (LinkBusy: the
// link is managed). The daemon must leave resolved's values as they are,
// not count that as a failure, say so once, and still give routable.d DNS
// and DOMAINS.
func TestResolvedBesideNetworkd(t *testing.T) {
	l := newRSLab(t, false)
	l.addRecorder("routable.d", "50-record")
	l.waitResolved("veth0's DNS servers and domains in resolved, from networkd's state file", 10, rsWant)

	d := l.startDaemon()
	l.peer.Run("link", "set", "vp0", "up")
	r := l.take("routable.d", map[string]string{"LINK": "veth0", "STATE": "routable"})
	ndWantEnv(t, r, map[string]string{"BACKEND": "systemd-networkd", "DNS": rsDNS4 + " " + rsDNS6, "DOMAINS": rsDomain})
	l.waitNetworkd(10, "routable", "configured")
	l.checkResolved("routable", 10, rsWant)

	d.stop()
	// resolved refuses every push for a managed link (LinkBusy); the
	// action takes that as "resolved has the manager's values": no
	// failure, one line saying so.
	if failures := d.resolvedFailures(); len(failures) != 0 {
		t.Errorf("the resolved action failed %d times beside networkd, want 0: %q", len(failures), failures)
	}
	if n := len(d.logsWith("systemd-resolved takes this link's DNS settings from its network manager; not pushing them", "link", "veth0")); n != 1 {
		t.Errorf("the daemon said %d times that resolved takes veth0's settings from networkd, want once", n)
	}
	l.checkResolved("after the daemon stopped", 10, rsWant)
}

// rsCheckPushes checks how often the daemon logged that it pushed DNS
// servers and search domains for veth0: once per new value.
func rsCheckPushes(t *testing.T, d *daemon, dns, domains int) {
	t.Helper()
	if n := len(d.logsWith("DNS servers pushed to systemd-resolved", "link", "veth0")); n != dns {
		t.Errorf("DNS servers pushed for veth0 %d times, want %d", n, dns)
	}
	if n := len(d.logsWith("search domains pushed to systemd-resolved", "link", "veth0")); n != domains {
		t.Errorf("search domains pushed for veth0 %d times, want %d", n, domains)
	}
}
