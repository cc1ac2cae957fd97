package rtnl

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/nettest"
)

// adminUp reports whether `ip -n NS link show DEV` lists the UP flag.
func adminUp(t *testing.T, ns *nettest.NetNS, dev string) bool {
	t.Helper()
	out := ns.Run("-o", "link", "show", "dev", dev)
	_, rest, ok := strings.Cut(out, "<")
	flags, _, ok2 := strings.Cut(rest, ">")
	if !ok || !ok2 {
		t.Fatalf("cannot find the flags in %q", out)
	}
	for f := range strings.SplitSeq(flags, ",") {
		if f == "UP" {
			return true
		}
	}
	return false
}

func TestLinkSetter(t *testing.T) {
	nettest.CheckGoroutines(t)
	ns := nettest.NewNetNS(t)
	peer := nettest.NewNetNS(t)
	nettest.VethPair(t, ns, peer, "veth0", 10, "vp0", 20)

	s, err := OpenLinkSetter(NetNS{Path: ns.Path})
	if err != nil {
		t.Fatalf("OpenLinkSetter: %v", err)
	}
	defer s.Close()

	tests := []struct {
		name  string
		index int
		up    bool
		want  bool  // veth0 administratively up afterwards
		err   error // matched with errors.Is
	}{
		{name: "up", index: 10, up: true, want: true},
		{name: "up again", index: 10, up: true, want: true},
		{name: "down", index: 10, up: false, want: false},
		{name: "up after down", index: 10, up: true, want: true},
		{name: "peer index is not in this namespace", index: 20, up: false, want: true, err: unix.ENODEV},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.SetUp(tt.index, tt.up)
			if !errors.Is(err, tt.err) {
				t.Fatalf("SetUp(%d, %v): got error %v, want %v", tt.index, tt.up, err, tt.err)
			}
			if got := adminUp(t, ns, "veth0"); got != tt.want {
				t.Errorf("veth0 up: got %v, want %v", got, tt.want)
			}
		})
	}
	if got := adminUp(t, peer, "vp0"); got {
		t.Errorf("vp0 in the peer namespace: got up, want untouched (down)")
	}
}

func TestLinkSetterBadNamespace(t *testing.T) {
	_, err := OpenLinkSetter(NetNS{Path: "/nonexistent/netns"})
	if err == nil {
		t.Fatal("OpenLinkSetter on a missing namespace file: got nil error")
	}
}
