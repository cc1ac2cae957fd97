package resolved

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/nettest"
	"github.com/netevd/netevd/internal/sdbus"
)

// waitCalls waits until the recorder holds n calls and takes them.
func (r *recorder) waitCalls(n int) []busCall {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.calls)
		r.mu.Unlock()
		if got >= n {
			return r.take()
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d calls after 10s, want %d: %+v", got, n, r.take())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sortCalls(c []busCall) []busCall {
	slices.SortStableFunc(c, func(x, y busCall) int {
		if x.Member != y.Member {
			if x.Member < y.Member {
				return -1
			}
			return 1
		}
		xi, _ := x.Args[0].(int32)
		yi, _ := y.Args[0].(int32)
		return int(xi - yi)
	})
	return c
}

// Run retries failed pushes when it starts watching, pushes every link
// again when resolved gets a new owner, and retries a failed hostname when
// hostnamed appears. The services are played by a connection that takes
// their names on a private bus; the calls go to the recorder.
func TestRun(t *testing.T) {
	nettest.CheckGoroutines(t)
	addr := nettest.PrivateBus(t)
	a, rec := newRecorded(t, Options{BusAddress: addr, UseDNS: true, UseDomain: true, UseHostname: true})

	rec.fail["SetLinkDNS"] = []error{errors.New("boom")}
	rec.fail["SetStaticHostname"] = []error{errors.New("no hostnamed")}
	if err := a.Handle(t.Context(), managerChange(event.ManagerStateChanged, 11, report{dns: []string{"10.1.2.4"}})); err == nil {
		t.Fatal("Handle: no error, want SetLinkDNS's")
	}
	if err := a.Handle(t.Context(), managerChange(event.ManagerStateChanged, 10, report{[]string{"10.1.2.3"}, []string{"a.test"}, "h"})); err == nil {
		t.Fatal("Handle: no error, want the hostname's")
	}
	rec.take()

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Starting to watch retries what failed.
	got := sortCalls(rec.waitCalls(2))
	want := []busCall{
		{"SetLinkDNS", []any{int32(11), []dnsServer{v4(10, 1, 2, 4)}}},
		{"SetStaticHostname", []any{"h", false}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("retries (-got +want):\n%s", diff)
	}

	// resolved (re)starts: everything again; what fails then is retried.
	rec.mu.Lock()
	rec.fail["SetLinkDNS"] = []error{&sdbus.ErrorReply{Name: errNoSuchLink}}
	rec.mu.Unlock()
	svc, err := sdbus.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Call(t.Context(), busName, busPath, busIface+".RequestName", resolveDest, uint32(0)); err != nil {
		t.Fatalf("RequestName: %v", err)
	}
	got = sortCalls(rec.waitCalls(4))
	want = []busCall{
		{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}},
		{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}}, // the retry
		{"SetLinkDNS", []any{int32(11), []dnsServer{v4(10, 1, 2, 4)}}},
		{"SetLinkDomains", []any{int32(10), []linkDomain{{"a.test", false}}}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("after resolved restarted (-got +want):\n%s", diff)
	}

	// hostnamed appears with nothing pending: no call. A removed link is
	// not pushed again when resolved restarts once more.
	if err := a.Handle(t.Context(), managerChange(event.LinkRemoved, 11, report{})); err != nil {
		t.Fatal(err)
	}
	rec.take()
	if _, err := svc.Call(t.Context(), busName, busPath, busIface+".RequestName", hostnameDest, uint32(0)); err != nil {
		t.Fatalf("RequestName: %v", err)
	}
	if _, err := svc.Call(t.Context(), busName, busPath, busIface+".ReleaseName", resolveDest); err != nil {
		t.Fatalf("ReleaseName: %v", err)
	}
	other, err := sdbus.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Call(t.Context(), busName, busPath, busIface+".RequestName", resolveDest, uint32(0)); err != nil {
		t.Fatalf("RequestName: %v", err)
	}
	got = sortCalls(rec.waitCalls(2))
	want = []busCall{
		{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}},
		{"SetLinkDomains", []any{int32(10), []linkDomain{{"a.test", false}}}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("after resolved restarted again (-got +want):\n%s", diff)
	}
}

// Run returns nil when ctx ends, also while it cannot reach the bus.
func TestRunNoBus(t *testing.T) {
	nettest.CheckGoroutines(t)
	a, _ := newRecorded(t, Options{BusAddress: "unix:path=/nonexistent/bus", UseDNS: true})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(50 * time.Millisecond) // let it fail once and wait
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
