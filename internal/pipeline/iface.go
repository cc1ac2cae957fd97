package pipeline

import (
	"context"

	"github.com/netevd/netevd/internal/event"
)

// Source observes the world and sends Events to out until ctx ends.
//
// Contract: subscribe first, then read the complete current state and send it
// as one event.KindSync Event with Initial set, then stream changes. When the
// source may have lost messages (a netlink socket overrun, ENOBUFS) it reads
// the complete state again and sends another KindSync (Initial unset); the
// state model's diff produces whatever was missed. Run returns nil when ctx
// ends and an error when the source can no longer work.
type Source interface {
	Name() string
	Run(ctx context.Context, out chan<- event.Event) error
}

// Action acts on one Change. The pipeline calls it for one link at a time, in
// order, and for different links in parallel. An action must return when ctx
// ends; its error is logged and counted and does not stop later actions.
type Action interface {
	Name() string
	Handle(ctx context.Context, c event.Change) error
}
