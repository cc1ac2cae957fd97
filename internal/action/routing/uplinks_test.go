package routing

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/rtnl"
)

// TestTwoUplinks is the multi-homed host of issue 4: host has up1 (to
// router r1) and up2 (to router r2), both with default routes, up1's
// preferred. A client behind r2 pings host's up2 address. r1 could forward
// a reply to the client (it has a route through r2) but, like an upstream
// with source filtering, drops packets from up1's side whose source is not
// up1's subnet: without policy routing the reply leaves through up1 and is
// dropped, with it the reply leaves through up2.
func TestTwoUplinks(t *testing.T) {
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("ping is not installed (iputils-ping; scripts/install-test-deps.sh)")
	}
	nettest.CheckGoroutines(t)
	host, r1, r2, client := nettest.NewNetNS(t), nettest.NewNetNS(t), nettest.NewNetNS(t), nettest.NewNetNS(t)
	nettest.VethPair(t, host, r1, "up1", 11, "h1", 21)
	nettest.VethPair(t, host, r2, "up2", 12, "h2", 22)
	nettest.VethPair(t, r2, client, "c", 23, "eth0", 33)
	nettest.VethPair(t, r1, r2, "x1", 24, "x2", 25)
	host.Batch([]string{
		"link set up1 up", "link set up2 up",
		"addr add 10.1.0.2/24 dev up1", "addr add 2001:db8:1::2/64 dev up1 nodad",
		"addr add 10.2.0.2/24 dev up2", "addr add 2001:db8:2::2/64 dev up2 nodad",
		"route add default via 10.1.0.1 dev up1 metric 100",
		"route add default via 10.2.0.1 dev up2 metric 200",
		"route add ::/0 via fe80::1 dev up1 metric 100",
		"route add ::/0 via fe80::2 dev up2 metric 200",
	})
	r1.Batch([]string{
		"link set h1 up", "link set x1 up",
		"addr add 10.1.0.1/24 dev h1", "addr add 2001:db8:1::1/64 dev h1 nodad", "addr add fe80::1/64 dev h1 nodad",
		"addr add 10.12.0.1/30 dev x1", "addr add 2001:db8:12::1/64 dev x1 nodad",
		"route add 10.20.0.0/24 via 10.12.0.2", "route add 2001:db8:20::/64 via 2001:db8:12::2",
		// Source filtering: from up1's side only up1's subnet may pass.
		"rule add iif h1 from 10.2.0.0/24 prohibit",
	})
	r1.Run("-6", "rule", "add", "iif", "h1", "from", "2001:db8:2::/64", "prohibit")
	r2.Batch([]string{
		"link set h2 up", "link set c up", "link set x2 up",
		"addr add 10.12.0.2/30 dev x2", "addr add 2001:db8:12::2/64 dev x2 nodad",
		"addr add 10.2.0.1/24 dev h2", "addr add 2001:db8:2::1/64 dev h2 nodad", "addr add fe80::2/64 dev h2 nodad",
		"addr add 10.20.0.1/24 dev c", "addr add 2001:db8:20::1/64 dev c nodad",
	})
	client.Batch([]string{
		"link set eth0 up",
		"addr add 10.20.0.2/24 dev eth0", "addr add 2001:db8:20::2/64 dev eth0 nodad",
		"route add default via 10.20.0.1", "route add ::/0 via 2001:db8:20::1",
	})
	for _, ns := range []*nettest.NetNS{r1, r2} {
		sysctl(t, ns, "net.ipv4.ip_forward=1")
		sysctl(t, ns, "net.ipv6.conf.all.forwarding=1")
	}
	ping := func(addr, wait string) error {
		out, err := exec.Command("ip", "netns", "exec", client.Name, "ping", "-c", "1", "-W", wait, addr).CombinedOutput()
		if err != nil {
			return &pingError{addr: addr, out: string(out)}
		}
		return nil
	}

	// Without policy routing the replies leave through up1 and are lost.
	for _, addr := range []string{"10.2.0.2", "2001:db8:2::2"} {
		if err := ping(addr, "1"); err == nil {
			t.Fatalf("ping %s succeeded without policy routing: the test cannot tell", addr)
		}
	}

	a, err := New(Options{Interfaces: []string{"up*"}, TableBase: 200, PriorityMin: 10000, PriorityMax: 10999,
		NetNS: rtnl.NetNS{Path: host.Path}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer a.Close(context.Background())
	d, err := rtnl.Dump(context.Background(), rtnl.NetNS{Path: host.Path})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	var links []event.LinkState
	for _, l := range d.Links {
		ls := event.LinkState{Link: l}
		for _, ad := range d.Addrs {
			if ad.Index == l.Index {
				ls.Addrs = append(ls.Addrs, ad)
			}
		}
		for _, r := range d.Routes {
			if r.OutIndex == l.Index {
				ls.Routes = append(ls.Routes, r)
			}
		}
		links = append(links, ls)
	}
	if err := a.Sync(context.Background(), links); err != nil {
		t.Fatalf("Sync: %v", err)
	}

	for _, tt := range []struct{ fam, client, from, want string }{
		{"-4", "10.20.0.2", "10.2.0.2", "via 10.2.0.1 dev up2 table 212"},
		{"-6", "2001:db8:20::2", "2001:db8:2::2", "via fe80::2 dev up2 table 212"},
		{"-4", "10.20.0.2", "10.1.0.2", "via 10.1.0.1 dev up1 table 211"},
	} {
		got := host.Run(tt.fam, "route", "get", tt.client, "from", tt.from)
		if !strings.Contains(got, tt.want) {
			t.Errorf("ip route get %s from %s = %q, want %q in it", tt.client, tt.from, got, tt.want)
		}
	}
	for _, addr := range []string{"10.2.0.2", "2001:db8:2::2"} {
		if err := ping(addr, "5"); err != nil {
			t.Errorf("with policy routing: %v", err)
		}
	}
}

type pingError struct{ addr, out string }

func (e *pingError) Error() string { return "ping " + e.addr + " failed: " + strings.TrimSpace(e.out) }

func sysctl(t *testing.T, ns *nettest.NetNS, kv string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-q", "-w", kv).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s in %s: %v: %s", kv, ns.Name, err, out)
	}
}
