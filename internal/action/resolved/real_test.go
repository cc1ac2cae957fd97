package resolved

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/action/resolved/resolvedtest"
	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

const resolveLink = "org.freedesktop.resolve1.Link"

// client is the test's own view of the private bus: it reads back what the
// action pushed.
type client struct {
	t    *testing.T
	conn *sdbus.Conn
}

func dialClient(t *testing.T, d *resolvedtest.Daemons) *client {
	t.Helper()
	conn, err := sdbus.Dial(t.Context(), d.BusAddress())
	if err != nil {
		t.Fatalf("dial the private bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn}
}

func (c *client) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.t.Context(), 10*time.Second)
}

// linkPath asks resolved for the object of ifindex idx.
func (c *client) linkPath(idx int) (string, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	out, err := c.conn.Call(ctx, resolveDest, resolvePath, resolveManager+".GetLink", int32(idx))
	if err != nil {
		return "", err
	}
	return out[0].(string), nil
}

// waitLink waits until resolved knows ifindex idx (or, with gone, no
// longer knows it).
func (c *client) waitLink(idx int, gone bool) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.linkPath(idx)
		if (err != nil) == gone {
			return
		}
		if time.Now().After(deadline) {
			want := "know"
			if gone {
				want = "forget"
			}
			c.t.Fatalf("resolved did not %s link %d within 10s (GetLink: %v)", want, idx, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// linkDNS reads back resolved's DNS servers of link idx.
func (c *client) linkDNS(idx int) []dnsServer {
	c.t.Helper()
	var out []dnsServer
	for _, e := range c.linkProp(idx, "DNS") {
		f := e.([]any)
		out = append(out, dnsServer{Family: f[0].(int32), Address: f[1].([]byte)})
	}
	return out
}

// linkDomains reads back resolved's domains of link idx.
func (c *client) linkDomains(idx int) []linkDomain {
	c.t.Helper()
	var out []linkDomain
	for _, e := range c.linkProp(idx, "Domains") {
		f := e.([]any)
		out = append(out, linkDomain{Domain: f[0].(string), RoutingOnly: f[1].(bool)})
	}
	return out
}

func (c *client) linkProp(idx int, prop string) []any {
	c.t.Helper()
	path, err := c.linkPath(idx)
	if err != nil {
		c.t.Fatalf("resolved GetLink(%d): %v", idx, err)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	v, err := c.conn.Get(ctx, resolveDest, path, resolveLink, prop)
	if err != nil {
		c.t.Fatalf("resolved link %d %s: %v", idx, prop, err)
	}
	return v.([]any)
}

// hostnames reads hostnamed's static and current hostname.
func (c *client) hostnames() (static, current string) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	props, err := c.conn.GetAll(ctx, hostnameDest, hostnamePath, hostnameIface)
	if err != nil {
		c.t.Fatalf("hostnamed properties: %v", err)
	}
	return props["StaticHostname"].(string), props["Hostname"].(string)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// The action against the real systemd-resolved and systemd-hostnamed:
// what it pushes reads back exactly, an unchanged report makes no call, an
// empty list clears, and a removed link is reverted. The host's hostname
// and resolver configuration stay as they were.
func TestRealDaemons(t *testing.T) {
	d := startDaemons(t)
	bus := dialClient(t, d)
	d.NS.Run("link", "add", "veth0", "index", "10", "type", "veth", "peer", "name", "vp0", "index", "20")
	d.NS.Run("link", "set", "veth0", "up")
	d.NS.Run("link", "set", "vp0", "up")
	bus.waitLink(10, false)

	a, err := New(Options{BusAddress: d.BusAddress(), UseDNS: true, UseDomain: true, UseHostname: true}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	handle := func(typ event.ChangeType, r report) {
		t.Helper()
		if err := a.Handle(t.Context(), managerChange(typ, 10, r)); err != nil {
			t.Fatalf("Handle %s %+v: %v", typ, r, err)
		}
	}
	checkLink := func(step string, wantDNS []dnsServer, wantDomains []linkDomain) {
		t.Helper()
		if diff := cmp.Diff(bus.linkDNS(10), wantDNS); diff != "" {
			t.Errorf("%s: resolved's Link.DNS (-got +want):\n%s", step, diff)
		}
		if diff := cmp.Diff(bus.linkDomains(10), wantDomains); diff != "" {
			t.Errorf("%s: resolved's Link.Domains (-got +want):\n%s", step, diff)
		}
	}
	checkPushes := func(step string, want uint64) {
		t.Helper()
		if got := a.Stats(); got != (Stats{Pushes: want}) {
			t.Errorf("%s: stats %+v, want %d pushes and nothing else", step, got, want)
		}
	}

	first := report{[]string{"10.1.2.3", "fd00::53"}, []string{"tb.test", "~corp.test"}, "tb-host"}
	handle(event.ManagerStateChanged, first)
	checkLink("first report", []dnsServer{v4(10, 1, 2, 3), fd53}, []linkDomain{{"tb.test", false}, {"corp.test", true}})
	static, current := bus.hostnames()
	if static != "tb-host" || current != "tb-host" {
		t.Errorf("hostnamed: static %q, hostname %q; want tb-host for both", static, current)
	}
	if got := d.Run("hostname"); got != "tb-host" {
		t.Errorf("hostname inside the namespace: %q, want tb-host", got)
	}
	checkPushes("first report", 3)

	handle(event.ManagerStateChanged, first)
	handle(event.AddressAdded, first)
	checkPushes("the same report twice more", 3)

	handle(event.ManagerStateChanged, report{[]string{"192.0.2.53"}, []string{"tb.test", "~corp.test"}, "tb-host"})
	checkLink("new DNS server", []dnsServer{v4(192, 0, 2, 53)}, []linkDomain{{"tb.test", false}, {"corp.test", true}})
	checkPushes("new DNS server", 4)

	handle(event.ManagerStateChanged, report{host: "tb-host"})
	checkLink("empty lists", nil, nil)
	checkPushes("empty lists", 6)

	// The link is still there: RevertLink really reverts it.
	handle(event.ManagerStateChanged, first)
	checkLink("pushed again", []dnsServer{v4(10, 1, 2, 3), fd53}, []linkDomain{{"tb.test", false}, {"corp.test", true}})
	handle(event.LinkRemoved, first)
	checkLink("after RevertLink", nil, nil)
	checkPushes("after RevertLink", 9)

	// The usual case: the link is gone and resolved has forgotten it.
	handle(event.LinkAdded, first)
	checkLink("pushed to the new link", []dnsServer{v4(10, 1, 2, 3), fd53}, []linkDomain{{"tb.test", false}, {"corp.test", true}})
	d.NS.Run("link", "del", "veth0")
	bus.waitLink(10, true)
	handle(event.LinkRemoved, first)
	checkPushes("link deleted", 12)
}

// hostname_method transient sets the kernel's hostname through SetHostname
// and leaves the static hostname alone.
func TestRealDaemonsTransientHostname(t *testing.T) {
	d := startDaemons(t)
	bus := dialClient(t, d)

	// hostnamed keeps a static hostname over a transient one: clear the
	// static one first (that removes /etc/hostname in the overlay).
	ctx, cancel := bus.ctx()
	defer cancel()
	if _, err := bus.conn.Call(ctx, hostnameDest, hostnamePath, hostnameIface+".SetStaticHostname", "", false); err != nil {
		t.Fatalf("clear the static hostname: %v", err)
	}

	a, err := New(Options{BusAddress: d.BusAddress(), UseHostname: true, HostnameMethod: HostnameTransient}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Handle(t.Context(), managerChange(event.ManagerStateChanged, 10, report{host: "tb-transient"})); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	static, current := bus.hostnames()
	if static != "" || current != "tb-transient" {
		t.Errorf("hostnamed: static %q, hostname %q; want \"\" and tb-transient", static, current)
	}
	if got := d.Run("hostname"); got != "tb-transient" {
		t.Errorf("hostname inside the namespace: %q, want tb-transient", got)
	}
	if got := a.Stats(); got != (Stats{Pushes: 1}) {
		t.Errorf("stats %+v, want 1 push", got)
	}
}

// A push that fails because systemd-resolved is not running (stopped, or
// not started yet at boot) is made by Run as soon as resolved comes onto
// the bus, without waiting for the link's next change.
func TestRealDaemonsResolvedComesBack(t *testing.T) {
	d := startDaemons(t)
	bus := dialClient(t, d)
	d.NS.Run("link", "add", "veth0", "index", "10", "type", "veth", "peer", "name", "vp0", "index", "20")
	d.NS.Run("link", "set", "veth0", "up")
	d.NS.Run("link", "set", "vp0", "up")
	bus.waitLink(10, false)

	a, err := New(Options{BusAddress: d.BusAddress(), UseDNS: true, UseDomain: true}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	if err := a.Handle(t.Context(), managerChange(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}, domains: []string{"old.test"}})); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	d.StopResolved()
	// resolved keeps what it was given under /run and reloads it when it
	// starts: the new values must replace those.
	err = a.Handle(t.Context(), managerChange(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3", "fd00::53"}, domains: []string{"tb.test"}}))
	if err == nil || !strings.Contains(err.Error(), "ServiceUnknown") {
		t.Fatalf("Handle with resolved stopped: error %v, want ServiceUnknown", err)
	}
	d.StartResolved()

	wantDNS, wantDomains := []dnsServer{v4(10, 1, 2, 3), fd53}, []linkDomain{{"tb.test", false}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := bus.linkPath(10); err == nil &&
			cmp.Equal(bus.linkDNS(10), wantDNS) && cmp.Equal(bus.linkDomains(10), wantDomains) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resolved came back with DNS %v, domains %v; want %v, %v pushed by Run",
				bus.linkDNS(10), bus.linkDomains(10), wantDNS, wantDomains)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := a.Stats(); got.Pushes != 4 || got.Failures != 2 {
		t.Errorf("stats %+v, want 4 pushes (2 before, 2 after resolved came back) and 2 failures", got)
	}
}
