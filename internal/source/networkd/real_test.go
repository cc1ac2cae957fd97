package networkd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/sdbus"
	"github.com/netevd/netevd/internal/source/networkd/networkdtest"
	"github.com/netevd/netevd/internal/state"
)

// staticNetwork configures veth0 with a static address and gateway.
// IPv6AcceptRA=no: otherwise the link stays "configuring", waiting for a
// router advertisement.
const staticNetwork = `[Match]
Name=veth0
[Network]
Address=10.77.0.1/24
Gateway=10.77.0.2
IPv6AcceptRA=no
DNS=10.77.0.53
Domains=example.test
`

// realRun runs a Source against a real networkd and feeds its events to a
// state model, recording the transitions.
type realRun struct {
	t    *testing.T
	src  *Source
	logs *logBuffer
	done chan error

	mu      sync.Mutex // guards the fields below
	trans   []string
	changed []*event.Manager // the report that made each transition in trans
	last    map[int]*event.Manager
	synced  bool
}

func runReal(t *testing.T, nd *networkdtest.Networkd) *realRun {
	t.Helper()
	logs := &logBuffer{}
	src, err := New(Options{BusAddress: nd.BusAddress(), EmitJSON: true},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	// The source runs outside networkd's mount namespace: its state
	// files are under the namespace holder's root.
	src.netifDir = fmt.Sprintf("/proc/%d/root/run/systemd/netif", nd.Inner())
	r := &realRun{t: t, src: src, logs: logs, done: make(chan error, 1), last: map[int]*event.Manager{}}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan event.Event, 1024)
	model := state.New(Backend)
	go func() { r.done <- src.Run(ctx, events) }()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for ev := range events {
			tr := transitions(model, []event.Event{ev})
			r.mu.Lock()
			r.trans = append(r.trans, tr...)
			for range tr {
				r.changed = append(r.changed, ev.Manager)
			}
			if ev.Kind == event.KindSync {
				r.synced = true
			} else {
				r.last[ev.Manager.Index] = ev.Manager
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		close(events)
		<-consumed
		if t.Failed() {
			t.Logf("source log:\n%s", logs)
		}
	})
	return r
}

// waitFor waits until the transition want has been seen n times in all. A
// "*" in want matches any old value.
func (r *realRun) waitFor(want string, n int) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		count := 0
		for _, tr := range r.trans {
			if pre, post, ok := strings.Cut(want, "*"); tr == want || ok && strings.HasPrefix(tr, pre) && strings.HasSuffix(tr, post) {
				count++
			}
		}
		all := slices.Clone(r.trans)
		r.mu.Unlock()
		if count >= n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("gave up waiting for %d× %q; transitions so far:\n%s", n, want, strings.Join(all, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reportsOf returns the reports that made the transitions matching want
// (as in waitFor), in order.
func (r *realRun) reportsOf(want string) []*event.Manager {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*event.Manager
	pre, post, wild := strings.Cut(want, "*")
	for i, tr := range r.trans {
		if tr == want || wild && strings.HasPrefix(tr, pre) && strings.HasSuffix(tr, post) {
			out = append(out, r.changed[i])
		}
	}
	return out
}

func (r *realRun) report(idx int) *event.Manager {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[idx]
}

// TestRealNetworkd runs the source against the real systemd-networkd: the
// startup replay, a carrier flap driven from the peer namespace, a restart
// of networkd and a restart of the bus daemon.
func TestRealNetworkd(t *testing.T) {
	networkdtest.Require(t)
	nettest.CheckGoroutines(t)
	nd := networkdtest.Start(t, map[string]string{"10-veth0.network": staticNetwork})
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, nd.NS, peer, "veth0", 10, "vp0", 20)
	peer.Run("address", "add", "10.77.0.2/24", "dev", "vp0")
	nd.WaitLinkState(10, "no-carrier", "configuring")

	r := runReal(t, nd)
	r.waitFor("10 OperationalState →no-carrier", 1)
	r.waitFor("10 AdministrativeState →configuring", 1)

	peer.Run("link", "set", "vp0", "up")
	r.waitFor("10 OperationalState *→routable", 1)
	r.waitFor("10 AdministrativeState configuring→configured", 1)
	r.waitFor("0 OperationalState *→routable", 1)
	m := r.report(10)
	if m.Describe == nil {
		t.Fatalf("report on veth0 has no Describe function")
	}
	js, err := m.Describe(t.Context())
	var d struct {
		Index int
		Name  string
		MTU   int
	}
	if err == nil {
		err = json.Unmarshal([]byte(js), &d)
	}
	if err != nil || d.Index != 10 || d.Name != "veth0" || d.MTU != 1500 || strings.Contains(js, "\n") {
		t.Errorf("Describe = %q, %v: %+v; want one line with Index 10, Name veth0, MTU 1500", js, err, d)
	}
	if m.Name != "veth0" || fmt.Sprint(m.DNS) != "[10.77.0.53]" || fmt.Sprint(m.Domains) != "[example.test]" {
		t.Errorf("report: name %q, DNS %v, domains %v; want veth0, [10.77.0.53], [example.test]", m.Name, m.DNS, m.Domains)
	}

	peer.Run("link", "set", "vp0", "down")
	r.waitFor("10 OperationalState *→no-carrier", 2)

	// networkd restarts: the source notices, logs once and reads again.
	nd.StopNetworkd()
	nd.StartNetworkd()
	peer.Run("link", "set", "vp0", "up")
	r.waitFor("10 OperationalState *→routable", 2)

	// The bus daemon restarts. The source redials and waits for networkd,
	// which (in systemd 252) does not reconnect by itself: restart it too.
	nd.StopBus()
	nd.StartBus()
	nd.StopNetworkd()
	nd.StartNetworkd()
	nd.WaitLinkState(10, "routable", "")
	deadline := time.Now().Add(20 * time.Second)
	for r.src.Stats().Snapshots < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot after the bus restart: %+v", r.src.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	peer.Run("link", "set", "vp0", "down")
	r.waitFor("10 OperationalState *→no-carrier", 3)
	nd.WaitCarrierLost(10) // see WaitCarrierLost: networkd 252 fails the link on a faster flap
	peer.Run("link", "set", "vp0", "up")
	r.waitFor("10 OperationalState *→routable", 3)

	if n := r.logs.count("level=WARN"); n != 2 {
		t.Errorf("%d warnings, want 2 (one per outage):\n%s", n, r.logs)
	}
	st := r.src.Stats()
	t.Logf("stats: %+v; Describe %v per call", st, st.DescribeTime/time.Duration(max(st.Describes, 1)))
	if st.Outages != 2 || st.Malformed != 0 {
		t.Errorf("Stats: %d outages, %d malformed; want 2 and 0", st.Outages, st.Malformed)
	}
}

// dhcpNetwork has networkd configure veth1 by DHCP, taking DNS servers
// and search domains from the lease.
const dhcpNetwork = `[Match]
Name=veth1
[Network]
DHCP=ipv4
IPv6AcceptRA=no
LinkLocalAddressing=no
[DHCPv4]
UseDNS=yes
UseDomains=yes
UseHostname=no
`

// TestRealNetworkdDHCPStateFile checks, against the real networkd and a
// DHCP server (dnsmasq), when the DNS servers and search domains of a
// lease are in networkd's state file, which the source reads as soon as a
// signal arrives: every routable report over several flaps carries them
// (networkd wrote them when the lease came, iterations of its event loop
// before the address made the link routable), and no carrier report does
// (the lease was dropped with the carrier before).
func TestRealNetworkdDHCPStateFile(t *testing.T) {
	networkdtest.Require(t)
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		if dnsmasq, err = exec.LookPath("/usr/sbin/dnsmasq"); err != nil {
			t.Skip("skipping: needs dnsmasq (Debian package dnsmasq-base)")
		}
	}
	const (
		server = "10.78.0.1"
		dns    = "10.78.0.53"
		domain = "dhcp.test"
		flaps  = 10
	)
	nd := networkdtest.Start(t, map[string]string{"20-veth1.network": dhcpNetwork})
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, nd.NS, peer, "veth1", 11, "vp1", 21)
	peer.Run("address", "add", server+"/24", "dev", "vp1")

	// dnsmasq must have bound its socket before the link has carrier,
	// or networkd's first DISCOVER is lost (testbed README §1).
	work := t.TempDir()
	logFile := filepath.Join(work, "dnsmasq.log")
	cmd := exec.Command("ip", "netns", "exec", peer.Name, "unshare", "-m", "--propagation", "private",
		dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=vp1", "--bind-interfaces", "--except-interface=lo", "--user=root", "--group=root",
		"--dhcp-range=10.78.0.100,10.78.0.150,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(work, "dnsmasq.leases"), "--pid-file="+filepath.Join(work, "dnsmasq.pid"),
		"--dhcp-option=option:dns-server,"+dns, "--dhcp-option=option:domain-name,"+domain,
		"--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility="+logFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("dnsmasq output:\n%s\n%s", out.String(), b)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(logFile); bytes.Contains(b, []byte("sockets bound")) {
			break
		}
		select {
		case <-exited:
			t.Fatalf("dnsmasq exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not bind its socket")
		}
	}
	nd.WaitLinkState(11, "no-carrier", "configuring")

	r := runReal(t, nd)
	r.waitFor("11 OperationalState →no-carrier", 1)
	var lost []string
	for i := 1; i <= flaps; i++ {
		peer.Run("link", "set", "vp1", "up")
		r.waitFor("11 OperationalState *→routable", i)
		peer.Run("link", "set", "vp1", "down")
		r.waitFor("11 OperationalState *→no-carrier", i+1)
		nd.WaitCarrierLost(11)
	}
	for i, m := range r.reportsOf("11 OperationalState *→routable") {
		if fmt.Sprint(m.DNS) != "["+dns+"]" || fmt.Sprint(m.Domains) != "["+domain+"]" {
			t.Errorf("routable report %d: DNS %v, domains %v; want [%s], [%s]", i+1, m.DNS, m.Domains, dns, domain)
		}
	}
	// networkd drops the lease in the iteration of its event loop that
	// sends the carrier-loss signals, and rewrites the file at the end of
	// that iteration: the reports of that burst (no-carrier, and
	// IPv4AddressState off) may still have the lost lease's servers. By
	// the next carrier, a later iteration, the file has none.
	for _, m := range r.reportsOf("11 OperationalState *→no-carrier")[1:] {
		lost = append(lost, fmt.Sprint(m.DNS, m.Domains))
	}
	t.Logf("DNS and domains in the no-carrier reports: %q", lost)
	carrier := r.reportsOf("11 OperationalState no-carrier→carrier")
	if len(carrier) < flaps {
		t.Errorf("%d reports no-carrier→carrier, want %d", len(carrier), flaps)
	}
	for i, m := range carrier {
		if len(m.DNS) != 0 || len(m.Domains) != 0 {
			t.Errorf("carrier report %d, before a lease: DNS %v, domains %v; want none", i+1, m.DNS, m.Domains)
		}
	}
	if n := r.src.Stats().Describes; n != 0 {
		t.Errorf("%d Link.Describe calls, want none: no report's Describe function was called", n)
	}
}

// BenchmarkDescribe measures one Link.Describe round trip to the real
// networkd (what a report's Describe function costs when networkd is
// idle), next to a GetAll of the same link.
func BenchmarkDescribe(b *testing.B) {
	nd := networkdtest.Start(b, map[string]string{"10-veth0.network": staticNetwork})
	peer := nettest.NewNetNS(b)
	nettest.VethPair(b, nd.NS, peer, "veth0", 10, "vp0", 20)
	peer.Run("link", "set", "vp0", "up")
	nd.WaitLinkState(10, "routable", "configured")
	ctx := context.Background()
	c, err := sdbus.Dial(ctx, nd.BusAddress())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, m := range []struct{ name, method string }{
		{"Describe", ifaceLink + ".Describe"},
		{"GetAll", ifaceProps + ".GetAll"},
	} {
		b.Run(m.name, func(b *testing.B) {
			var args []any
			if m.name == "GetAll" {
				args = []any{ifaceLink}
			}
			for b.Loop() {
				if _, _, err := c.CallSeq(ctx, busName, linkPath(10), m.method, args...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
