package resolved

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

// busCall is one recorded call: the member name and its arguments.
type busCall struct {
	Member string
	Args   []any
}

// recorder is a caller that records calls and answers with the errors
// queued for a member (one per call), or success.
type recorder struct {
	t *testing.T

	mu    sync.Mutex // guards the fields below
	calls []busCall
	fail  map[string][]error
	block bool // wait for ctx to end instead of answering
}

func (r *recorder) call(ctx context.Context, dest, path, method string, args ...any) error {
	iface, member := method[:strings.LastIndexByte(method, '.')], method[strings.LastIndexByte(method, '.')+1:]
	wantDest, wantPath, wantIface := resolveDest, resolvePath, resolveManager
	if strings.Contains(member, "Hostname") {
		wantDest, wantPath, wantIface = hostnameDest, hostnamePath, hostnameIface
	}
	if dest != wantDest || path != wantPath || iface != wantIface {
		r.t.Errorf("call %s: got %s %s %s, want %s %s %s", member, dest, path, iface, wantDest, wantPath, wantIface)
	}
	r.mu.Lock()
	r.calls = append(r.calls, busCall{member, args})
	var err error
	if q := r.fail[member]; len(q) > 0 {
		err, r.fail[member] = q[0], q[1:]
	}
	block := r.block
	r.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (r *recorder) close() error { return nil }

// take returns the calls recorded since the last take.
func (r *recorder) take() []busCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func newRecorded(t *testing.T, opts Options) (*Action, *recorder) {
	t.Helper()
	a, err := New(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{t: t, fail: make(map[string][]error)}
	a.bus = rec
	return a, rec
}

// report is the change a manager report on link veth0 (index 10) yields.
type report struct {
	dns     []string
	domains []string
	host    string
}

func managerChange(typ event.ChangeType, idx int, r report) event.Change {
	c := event.Change{Type: typ, Link: event.LinkState{Link: event.Link{Index: idx, Name: "veth0"}}}
	c.Link.Manager = &event.Manager{Backend: "systemd-networkd", Index: idx, Name: "veth0",
		DNS: addrs(r.dns...), Domains: r.domains, Hostname: r.host}
	return c
}

func v4(a, b, c, d byte) dnsServer { return dnsServer{afInet, []byte{a, b, c, d}} }

var fd53 = dnsServer{afInet6, []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53}}

func TestHandle(t *testing.T) {
	all := Options{UseDNS: true, UseDomain: true, UseHostname: true}
	type step struct {
		change  event.Change
		fail    map[string][]error // errors the bus answers during this step
		want    []busCall
		wantErr string // substring of the error Handle returns; "" for none
	}
	mc := managerChange
	tests := []struct {
		name      string
		opts      Options
		steps     []step
		wantStats Stats
	}{
		{
			name: "pushed once, then only on a difference",
			opts: all,
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{[]string{"10.1.2.3", "fd00::53"}, []string{"tb.test"}, "tb-host"}),
					want: []busCall{
						{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3), fd53}}},
						{"SetLinkDomains", []any{int32(10), []linkDomain{{"tb.test", false}}}},
						{"SetStaticHostname", []any{"tb-host", false}},
					}},
				{change: mc(event.ManagerStateChanged, 10, report{[]string{"10.1.2.3", "fd00::53"}, []string{"tb.test"}, "tb-host"})},
				{change: mc(event.AddressAdded, 10, report{[]string{"10.1.2.3", "fd00::53"}, []string{"tb.test"}, "tb-host"})},
				{change: mc(event.ManagerStateChanged, 10, report{[]string{"10.1.2.4"}, []string{"tb.test"}, "tb-host"}),
					want: []busCall{{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 4)}}}}},
				{change: mc(event.ManagerStateChanged, 10, report{[]string{"10.1.2.4"}, []string{"tb.test"}, "other"}),
					want: []busCall{{"SetStaticHostname", []any{"other", false}}}},
			},
			wantStats: Stats{Pushes: 5},
		},
		{
			name: "an input that normalizes to what was pushed makes no call",
			opts: Options{UseDNS: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}}),
					want: []busCall{{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}}}},
				{change: mc(event.ManagerStateChanged, 10, report{dns: []string{"::ffff:10.1.2.3", "10.1.2.3"}})},
			},
			wantStats: Stats{Pushes: 1},
		},
		{
			name: "an empty list clears what was pushed, once",
			opts: Options{UseDNS: true, UseDomain: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{}),
					want: nil}, // nothing pushed yet: nothing to clear
				{change: mc(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}, domains: []string{"a.test"}}),
					want: []busCall{
						{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}},
						{"SetLinkDomains", []any{int32(10), []linkDomain{{"a.test", false}}}},
					}},
				{change: mc(event.ManagerStateChanged, 10, report{}),
					want: []busCall{
						{"SetLinkDNS", []any{int32(10), []dnsServer(nil)}},
						{"SetLinkDomains", []any{int32(10), []linkDomain(nil)}},
					}},
				{change: mc(event.ManagerStateChanged, 10, report{})},
			},
			wantStats: Stats{Pushes: 4},
		},
		{
			name: "links are independent",
			opts: Options{UseDNS: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}}),
					want: []busCall{{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}}}},
				{change: mc(event.ManagerStateChanged, 11, report{dns: []string{"10.1.2.3"}}),
					want: []busCall{{"SetLinkDNS", []any{int32(11), []dnsServer{v4(10, 1, 2, 3)}}}}},
			},
			wantStats: Stats{Pushes: 2},
		},
		{
			name: "disabled values are not pushed",
			opts: Options{UseDomain: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{[]string{"10.1.2.3"}, []string{"a.test"}, "h"}),
					want: []busCall{{"SetLinkDomains", []any{int32(10), []linkDomain{{"a.test", false}}}}}},
			},
			wantStats: Stats{Pushes: 1},
		},
		{
			name: "no manager report, or the manager itself: nothing",
			opts: all,
			steps: []step{
				{change: event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}},
				{change: mc(event.ManagerStateChanged, 0, report{[]string{"10.1.2.3"}, []string{"a.test"}, "h"})},
			},
		},
		{
			name: "a failed push is tried again at the next change",
			opts: Options{UseDNS: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}}),
					fail:    map[string][]error{"SetLinkDNS": {&sdbus.ErrorReply{Name: errNoSuchLink, Msg: "Link 10 not known"}}},
					want:    []busCall{{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}}},
					wantErr: "link veth0 (index 10): set DNS servers [10.1.2.3]: org.freedesktop.resolve1.NoSuchLink: Link 10 not known"},
				{change: mc(event.AddressAdded, 10, report{dns: []string{"10.1.2.3"}}),
					want: []busCall{{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}}}},
				{change: mc(event.AddressAdded, 10, report{dns: []string{"10.1.2.3"}})},
			},
			wantStats: Stats{Pushes: 1, Failures: 1},
		},
		{
			name: "a link resolved takes from its manager (LinkBusy) is no failure and is not retried",
			opts: Options{UseDNS: true, UseDomain: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}, domains: []string{"a.test"}}),
					fail: map[string][]error{
						"SetLinkDNS":     {&sdbus.ErrorReply{Name: errLinkBusy, Msg: "Link veth0 is managed."}},
						"SetLinkDomains": {&sdbus.ErrorReply{Name: errLinkBusy, Msg: "Link veth0 is managed."}},
					},
					want: []busCall{
						{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}},
						{"SetLinkDomains", []any{int32(10), []linkDomain{{"a.test", false}}}},
					}},
				{change: mc(event.AddressAdded, 10, report{dns: []string{"10.1.2.3"}, domains: []string{"a.test"}})},
				// New values are offered again.
				{change: mc(event.ManagerStateChanged, 10, report{dns: []string{"10.9.9.9"}, domains: []string{"a.test"}}),
					want: []busCall{{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 9, 9, 9)}}}}},
			},
			wantStats: Stats{Pushes: 1},
		},
		{
			name: "a failed hostname is tried again at the next change of any link",
			opts: Options{UseHostname: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{host: "h"}),
					fail:    map[string][]error{"SetStaticHostname": {errors.New("boom")}},
					want:    []busCall{{"SetStaticHostname", []any{"h", false}}},
					wantErr: `link veth0 (index 10): set static hostname "h": boom`},
				{change: mc(event.AddressAdded, 11, report{}),
					want: []busCall{{"SetStaticHostname", []any{"h", false}}}},
				{change: mc(event.AddressAdded, 10, report{host: "h"})},
			},
			wantStats: Stats{Pushes: 1, Failures: 1},
		},
		{
			name: "one failure does not stop the other pushes",
			opts: all,
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{[]string{"10.1.2.3"}, []string{"a.test"}, "h"}),
					fail: map[string][]error{"SetLinkDomains": {errors.New("boom")}},
					want: []busCall{
						{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}},
						{"SetLinkDomains", []any{int32(10), []linkDomain{{"a.test", false}}}},
						{"SetStaticHostname", []any{"h", false}},
					},
					wantErr: "set search domains [a.test]: boom"},
			},
			wantStats: Stats{Pushes: 2, Failures: 1},
		},
		{
			name: "link removed: revert, forget, push again when it comes back",
			opts: Options{UseDNS: true, UseHostname: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}, host: "h"}),
					want: []busCall{
						{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}},
						{"SetStaticHostname", []any{"h", false}},
					}},
				{change: mc(event.LinkRemoved, 10, report{dns: []string{"10.1.2.3"}, host: "h"}),
					fail: map[string][]error{"RevertLink": {&sdbus.ErrorReply{Name: errNoSuchLink}}},
					want: []busCall{{"RevertLink", []any{int32(10)}}}},
				{change: mc(event.LinkRemoved, 10, report{dns: []string{"10.1.2.3"}})},
				{change: mc(event.LinkAdded, 10, report{dns: []string{"10.1.2.3"}, host: "h"}),
					want: []busCall{{"SetLinkDNS", []any{int32(10), []dnsServer{v4(10, 1, 2, 3)}}}}}, // the hostname is still h
			},
			wantStats: Stats{Pushes: 4},
		},
		{
			name: "link removed after nothing was pushed: no call",
			opts: all,
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{})},
				{change: mc(event.LinkRemoved, 10, report{})},
			},
		},
		{
			name: "revert failure is an error",
			opts: Options{UseDomain: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{domains: []string{"a.test"}}),
					want: []busCall{{"SetLinkDomains", []any{int32(10), []linkDomain{{"a.test", false}}}}}},
				{change: mc(event.LinkRemoved, 10, report{domains: []string{"a.test"}}),
					fail:    map[string][]error{"RevertLink": {&sdbus.ErrorReply{Name: "org.freedesktop.DBus.Error.AccessDenied"}}},
					want:    []busCall{{"RevertLink", []any{int32(10)}}},
					wantErr: "link veth0 (index 10) removed: revert its resolved settings: org.freedesktop.DBus.Error.AccessDenied"},
			},
			wantStats: Stats{Pushes: 1, Failures: 1},
		},
		{
			name: "invalid domains refused, the rest pushed",
			opts: Options{UseDomain: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{domains: []string{"a.test $(reboot)", "~corp.test"}}),
					want: []busCall{{"SetLinkDomains", []any{int32(10), []linkDomain{{"a.test", false}, {"corp.test", true}}}}}},
				{change: mc(event.AddressAdded, 10, report{domains: []string{"a.test $(reboot)", "~corp.test"}})}, // refused once
			},
			wantStats: Stats{Pushes: 1, Refused: 1},
		},
		{
			name: "hostnames: invalid refused once, empty ignored, trailing dot dropped",
			opts: Options{UseHostname: true},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{host: "bad_host;reboot"})},
				{change: mc(event.AddressAdded, 10, report{host: "bad_host;reboot"})},
				{change: mc(event.ManagerStateChanged, 10, report{host: strings.Repeat("a", 65)})},
				{change: mc(event.ManagerStateChanged, 10, report{host: ""})},
				{change: mc(event.ManagerStateChanged, 10, report{host: "good.example."}),
					want: []busCall{{"SetStaticHostname", []any{"good.example", false}}}},
			},
			wantStats: Stats{Pushes: 1, Refused: 2},
		},
		{
			name: "transient hostname, and the same name from another link is not pushed again",
			opts: Options{UseHostname: true, HostnameMethod: HostnameTransient},
			steps: []step{
				{change: mc(event.ManagerStateChanged, 10, report{host: "h1"}),
					want: []busCall{{"SetHostname", []any{"h1", false}}}},
				{change: mc(event.ManagerStateChanged, 11, report{host: "h1"})},
				{change: mc(event.ManagerStateChanged, 11, report{host: "h2"}),
					want: []busCall{{"SetHostname", []any{"h2", false}}}},
				{change: mc(event.ManagerStateChanged, 10, report{host: "h1"})}, // link 10's name did not change
			},
			wantStats: Stats{Pushes: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, rec := newRecorded(t, tt.opts)
			for i, s := range tt.steps {
				rec.mu.Lock()
				for m, errs := range s.fail {
					rec.fail[m] = errs
				}
				rec.mu.Unlock()
				err := a.Handle(t.Context(), s.change)
				if got := errString(err); s.wantErr == "" && got != "" || !strings.Contains(got, s.wantErr) {
					t.Errorf("step %d (%s): error %q, want one containing %q", i, s.change.Type, got, s.wantErr)
				}
				if diff := cmp.Diff(rec.take(), s.want); diff != "" {
					t.Errorf("step %d (%s): calls (-got +want):\n%s", i, s.change.Type, diff)
				}
			}
			if diff := cmp.Diff(a.Stats(), tt.wantStats); diff != "" {
				t.Errorf("stats (-got +want):\n%s", diff)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{}, ""},
		{"transient", Options{HostnameMethod: HostnameTransient}, ""},
		{"unknown method", Options{HostnameMethod: "sethostname"}, `hostname method "sethostname": want "static" or "transient"`},
		{"negative timeout", Options{Timeout: -time.Second}, "call timeout -1s: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.opts, nil)
			if got := errString(err); got != tt.wantErr {
				t.Fatalf("New: error %q, want %q", got, tt.wantErr)
			}
			if err != nil {
				return
			}
			if a.Name() != "resolved" || a.opts.Timeout != DefaultTimeout || a.opts.HostnameMethod == "" {
				t.Errorf("New(%+v): name %q, timeout %v, method %q", tt.opts, a.Name(), a.opts.Timeout, a.opts.HostnameMethod)
			}
		})
	}
}

// A call that gets no reply fails at the timeout, is counted, and is tried
// again at the next change.
func TestHandleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, rec := newRecorded(t, Options{UseDNS: true, Timeout: 3 * time.Second})
		rec.block = true
		c := managerChange(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}})
		start := time.Now()
		err := a.Handle(t.Context(), c)
		if got, want := errString(err), "set DNS servers [10.1.2.3]: no reply within 3s: context deadline exceeded"; !strings.Contains(got, want) {
			t.Errorf("Handle: error %q, want one containing %q", got, want)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("Handle waited %v, want the 3s timeout", waited)
		}
		rec.block = false
		if err := a.Handle(t.Context(), c); err != nil {
			t.Errorf("second Handle: %v", err)
		}
		if got, want := len(rec.take()), 2; got != want {
			t.Errorf("%d calls, want %d", got, want)
		}
		if diff := cmp.Diff(a.Stats(), Stats{Pushes: 1, Failures: 1}); diff != "" {
			t.Errorf("stats (-got +want):\n%s", diff)
		}
	})
}

// Shutdown interrupting a call is reported as cancellation, not counted
// as a failure.
func TestHandleCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, rec := newRecorded(t, Options{UseDNS: true})
		rec.block = true
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		err := a.Handle(ctx, managerChange(event.ManagerStateChanged, 10, report{dns: []string{"10.1.2.3"}}))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Handle: error %v, want one matching context.Canceled", err)
		}
		if diff := cmp.Diff(a.Stats(), Stats{}); diff != "" {
			t.Errorf("stats (-got +want):\n%s", diff)
		}
	})
}

// Handle is called for different links in parallel; run with -race.
func TestHandleConcurrent(t *testing.T) {
	a, rec := newRecorded(t, Options{UseDNS: true, UseDomain: true, UseHostname: true})
	var wg sync.WaitGroup
	for idx := 1; idx <= 8; idx++ {
		wg.Go(func() {
			for i := range 20 {
				dns := []string{"10.0.0.1"}
				if i%2 == 1 {
					dns = append(dns, "10.0.0.2")
				}
				if err := a.Handle(t.Context(), managerChange(event.ManagerStateChanged, idx, report{dns, []string{"a.test"}, "h"})); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var dns, domains, hosts int
	for _, c := range rec.take() {
		switch c.Member {
		case "SetLinkDNS":
			dns++
		case "SetLinkDomains":
			domains++
		case "SetStaticHostname":
			hosts++
		}
	}
	if dns != 8*20 || domains != 8 || hosts != 1 {
		t.Errorf("calls: %d SetLinkDNS, %d SetLinkDomains, %d SetStaticHostname; want %d, 8, 1", dns, domains, hosts, 8*20)
	}
}
