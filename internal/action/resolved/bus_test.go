package resolved

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/sdbus"
)

// lazyBus dials at the first call, reuses the connection, dials again when
// it was lost, and fails after close.
func TestLazyBus(t *testing.T) {
	nettest.CheckGoroutines(t)
	addr := nettest.PrivateBus(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	b := &lazyBus{addr: addr}
	if b.conn != nil {
		t.Fatal("connected before the first call")
	}
	if err := b.call(ctx, busName, busPath, "org.freedesktop.DBus.GetId"); err != nil {
		t.Fatalf("first call: %v", err)
	}
	first := b.conn
	if err := b.call(ctx, busName, busPath, "org.freedesktop.DBus.GetId"); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if b.conn != first {
		t.Error("second call dialled again; want the connection reused")
	}

	_ = first.Close() // as if the bus daemon had gone
	if err := b.call(ctx, busName, busPath, "org.freedesktop.DBus.GetId"); err != nil {
		t.Fatalf("call after the connection was lost: %v", err)
	}
	if b.conn == first || lost(b.conn) {
		t.Error("no new live connection after the old one was lost")
	}

	err := b.call(ctx, "org.freedesktop.resolve1", resolvePath, resolveManager+".SetLinkDNS", int32(1), []dnsServer{})
	var reply *sdbus.ErrorReply
	if !errors.As(err, &reply) || reply.Name != "org.freedesktop.DBus.Error.ServiceUnknown" {
		t.Errorf("call to a missing service: error %v, want a ServiceUnknown reply", err)
	}

	if err := b.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := b.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := b.call(ctx, busName, busPath, "org.freedesktop.DBus.GetId"); !errors.Is(err, errClosed) {
		t.Errorf("call after close: error %v, want errClosed", err)
	}
}

func TestLazyBusNoBus(t *testing.T) {
	nettest.CheckGoroutines(t)
	b := &lazyBus{addr: "unix:path=" + filepath.Join(t.TempDir(), "nobus")}
	if err := b.call(t.Context(), busName, busPath, "org.freedesktop.DBus.GetId"); err == nil {
		t.Fatal("call without a bus: no error")
	}
	if b.conn != nil {
		t.Error("a failed dial left a connection")
	}
}

// Through Action: a push to a bus where resolved is missing is an error
// that names the link and the values, and counts as a failure.
func TestActionNoResolved(t *testing.T) {
	nettest.CheckGoroutines(t)
	a, err := New(Options{BusAddress: nettest.PrivateBus(t), UseDNS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	err = a.Handle(t.Context(), managerChange(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}}))
	want := "link veth0 (index 10): set DNS servers [10.1.2.3]: org.freedesktop.resolve1 /org/freedesktop/resolve1 " +
		"org.freedesktop.resolve1.Manager.SetLinkDNS: org.freedesktop.DBus.Error.ServiceUnknown"
	if got := errString(err); len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("Handle: error %q, want it to start with %q", got, want)
	}
	if got := a.Stats(); got != (Stats{Failures: 1}) {
		t.Errorf("stats %+v, want 1 failure", got)
	}
}
