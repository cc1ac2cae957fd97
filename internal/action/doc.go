// Package action is the home of netevd's actions: the components that act
// on the Changes the state model computes. Each action lives in its own
// subpackage (script, routing, resolved, ...) and implements
// pipeline.Action:
//
//	type Action interface {
//		Name() string
//		Handle(ctx context.Context, c event.Change) error
//	}
//
// The contract every action keeps:
//
//   - Handle is called for one link at a time, in order, and for different
//     links in parallel, so an action's shared state must be safe for
//     concurrent use.
//   - Everything Handle needs is in the Change (the link's state after the
//     change); an action never asks the state model or another action.
//   - Handle returns promptly when ctx ends (daemon shutdown), cleaning up
//     whatever it started (child processes, half-applied kernel state).
//     Cancellation is reported by returning an error that matches ctx.Err().
//   - The returned error is logged and counted by the pipeline and does not
//     stop later actions; an action does not also log the error it returns.
//   - Constructors start nothing; an action that needs a long-lived
//     goroutine exposes Run(ctx) error.
//
// Actions are wired explicitly in cmd/netevd. This package holds no code.
package action
