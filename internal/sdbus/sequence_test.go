package sdbus

import (
	"context"
	"testing"
	"time"

	"github.com/netevd/netevd/internal/nettest"
)

// TestSequence checks that replies and signals are numbered in the order
// the connection received them: a reply received before a signal has the
// smaller number, a reply received after it the larger one.
func TestSequence(t *testing.T) {
	addr := nettest.PrivateBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	sigs, err := c.SubscribeSeq(ctx, 16, Match{Sender: "org.freedesktop.DBus", Interface: "org.freedesktop.DBus", Member: "NameOwnerChanged"})
	if err != nil {
		t.Fatalf("SubscribeSeq: %v", err)
	}
	out, before, err := c.CallSeq(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", "org.netevd.Seq")
	if err != nil || len(out) != 1 || out[0] != false {
		t.Fatalf("NameHasOwner = %v, %v; want [false], nil", out, err)
	}

	other, err := Dial(ctx, addr)
	if err != nil {
		t.Fatalf("second Dial: %v", err)
	}
	defer other.Close()
	if _, err := other.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName", "org.netevd.Seq", uint32(0)); err != nil {
		t.Fatalf("RequestName: %v", err)
	}
	var sig SeqSignal
	for sig.Seq == 0 {
		select {
		case s := <-sigs:
			if len(s.Body) == 3 && s.Body[0] == "org.netevd.Seq" {
				sig = s
			}
		case <-ctx.Done():
			t.Fatal("no NameOwnerChanged signal for org.netevd.Seq")
		}
	}
	if sig.Member != "NameOwnerChanged" || sig.Path != "/org/freedesktop/DBus" {
		t.Errorf("signal = %+v, want NameOwnerChanged on /org/freedesktop/DBus", sig)
	}
	out, after, err := c.CallSeq(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", "org.netevd.Seq")
	if err != nil || len(out) != 1 || out[0] != true {
		t.Fatalf("NameHasOwner = %v, %v; want [true], nil", out, err)
	}
	if !(before > 0 && before < sig.Seq && sig.Seq < after) {
		t.Errorf("sequence numbers: reply before %d, signal %d, reply after %d; want 0 < before < signal < after", before, sig.Seq, after)
	}

	_, seq, err := c.CallSeq(ctx, "org.netevd.Missing", "/", "org.netevd.Missing.Method")
	if err == nil {
		t.Fatal("call to a missing service succeeded")
	}
	if seq <= after {
		t.Errorf("sequence of the error reply = %d, want more than %d", seq, after)
	}

	c.Close()
	closed := make(chan struct{})
	go func() {
		for range sigs {
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("signal channel not closed after Close")
	}
}
