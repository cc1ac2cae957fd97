package pipeline

import (
	"net/netip"
	"testing"

	"github.com/netevd/netevd/internal/event"
)

func TestQueueCoalescing(t *testing.T) {
	addr := &event.Addr{Index: 10, Prefix: netip.MustParsePrefix("192.0.2.1/24")}
	mgr := func(v, old string) event.Change {
		return event.Change{Type: event.ManagerStateChanged, Property: "AdministrativeState", Value: v, OldValue: old}
	}
	tests := []struct {
		name     string
		changes  []event.Change
		wantJobs int
		wantNoop bool // of the last job
	}{
		{"carrier down and up cancel out",
			[]event.Change{{Type: event.CarrierDown}, {Type: event.CarrierUp}}, 1, true},
		{"an address added and removed cancels out",
			[]event.Change{{Type: event.AddressAdded, Addr: addr}, {Type: event.AddressRemoved, Addr: addr}}, 1, true},
		{"different topics are kept in order",
			[]event.Change{{Type: event.CarrierDown}, {Type: event.AddressAdded, Addr: addr}}, 2, false},
		{"a manager's states never cancel out",
			[]event.Change{mgr("configuring", "configured"), mgr("configured", "configuring")}, 1, false},
		{"a refresh is never folded",
			[]event.Change{mgr("configured", "configured"), mgr("configured", "configured")}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q linkQueue
			for i, c := range tt.changes {
				c.ID = uint64(i + 1)
				q.push(c)
			}
			if got := len(q.jobs); got != tt.wantJobs {
				t.Fatalf("queued jobs: got %d, want %d", got, tt.wantJobs)
			}
			last := q.jobs[len(q.jobs)-1]
			if got := last.noop(); got != tt.wantNoop {
				t.Errorf("last job noop: got %v, want %v", got, tt.wantNoop)
			}
		})
	}
}
