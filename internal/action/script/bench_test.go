package script

import (
	"context"
	"testing"

	"github.com/netevd/netevd/internal/event"
)

// BenchmarkHandleNoScripts measures a change whose script directory exists
// and is empty: no process is started and allocations stay constant.
func BenchmarkHandleNoScripts(b *testing.B) {
	r, err := New(Config{Dir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.EnsureDirs(); err != nil {
		b.Fatal(err)
	}
	c := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Handle(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	if s := r.Stats(); s.Runs != 0 {
		b.Fatalf("%d scripts ran", s.Runs)
	}
}
