package pipeline

import (
	"github.com/netevd/netevd/internal/event"
)

// A job is one queued Change. Changes of one link that concern the same
// thing (its carrier, one address, one route, its operational state) share
// a topic; a newer change replaces a queued one of the same topic, so the
// newest state runs and the superseded change is counted as coalesced.
type job struct {
	topic string
	value string // what the change makes true, e.g. "up" for the carrier
	base  string // what was true before the first change of this topic that is still queued
	c     event.Change
}

// topicOf returns the topic of c, the state c establishes, and the state
// that was true before c.
func topicOf(c event.Change) (topic, value, base string) {
	switch c.Type {
	case event.LinkAdded:
		return "link", "present", "absent"
	case event.LinkRemoved:
		return "link", "absent", "present"
	case event.LinkRenamed:
		return "name", c.Link.Name, c.OldName
	case event.CarrierUp:
		return "carrier", "up", "down"
	case event.CarrierDown:
		return "carrier", "down", "up"
	case event.AddressAdded:
		return "addr " + c.Addr.Prefix.String(), "present", "absent"
	case event.AddressRemoved:
		return "addr " + c.Addr.Prefix.String(), "absent", "present"
	case event.RouteAdded:
		return "route " + routeKey(c.Route), "present", "absent"
	case event.RouteRemoved:
		return "route " + routeKey(c.Route), "absent", "present"
	case event.OperStateChanged:
		return "state", c.Link.State, c.OldState
	case event.ManagerStateChanged:
		if c.Value != c.OldValue { // a refresh (same value, new data) always runs
			return "manager " + c.Property, c.Value, c.OldValue
		}
	}
	// Anything else (rule deletions) is never coalesced: its topic is unique.
	return "id " + itoa(c.ID), "", "-"
}

func routeKey(r *event.Route) string {
	if r == nil {
		return ""
	}
	return itoa(uint64(r.Table)) + " " + r.Dst.String() + " " + r.Gateway.String() + " " + itoa(uint64(r.Priority))
}

func itoa(v uint64) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(buf[i:])
		}
	}
}

// linkQueue holds the changes waiting for one link, oldest first. At most
// one job per topic is queued, so its length is bounded by the number of
// things a link has. It is guarded by Pipeline.mu.
type linkQueue struct {
	jobs    []*job
	running bool // a worker goroutine owns this queue
}

// push queues c. If a change of the same topic is waiting it is replaced,
// and the new one moves to the back so the order of topics stays causal.
// It reports whether a queued change was superseded.
func (q *linkQueue) push(c event.Change) (superseded bool) {
	topic, value, base := topicOf(c)
	j := &job{topic: topic, value: value, base: base, c: c}
	for i, old := range q.jobs {
		if old.topic != topic {
			continue
		}
		j.base = old.base
		j.c.Coalesced = old.c.Coalesced + 1
		q.jobs = append(q.jobs[:i], q.jobs[i+1:]...)
		superseded = true
		break
	}
	q.jobs = append(q.jobs, j)
	return superseded
}

// pop removes and returns the oldest job, or nil.
func (q *linkQueue) pop() *job {
	if len(q.jobs) == 0 {
		return nil
	}
	j := q.jobs[0]
	q.jobs[0] = nil
	q.jobs = q.jobs[1:]
	return j
}

// noop reports whether running j would be pointless: the kernel changes it
// folded together cancel out (carrier down then up, address added then
// removed). A manager's states never cancel out: configured, configuring,
// configured again means networkd configured the link anew, and scripts
// (and resolved) must see the newest configuration.
func (j *job) noop() bool {
	return j.c.Coalesced > 0 && j.value == j.base && j.c.Type != event.ManagerStateChanged
}
