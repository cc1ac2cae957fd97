package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/netevd/netevd/internal/sdbus"
)

// propSignal is one PropertiesChanged signal of veth0's Link object.
type propSignal struct {
	at      int64             // CLOCK_REALTIME ns when the harness's reader got it
	changed map[string]string // the string-valued properties it carried
}

// linkProps is veth0's state as the signals told it: the value of every
// string property and the time of the signal that set it to that value.
type linkProps struct {
	value map[string]string
	since map[string]int64
}

func (p *linkProps) apply(s propSignal) {
	for k, v := range s.changed {
		if p.value[k] != v {
			p.value[k] = v
			p.since[k] = s.at
		}
	}
}

// subscribe starts forwarding veth0's PropertiesChanged signals to
// l.signals, each stamped with the time the harness read it.
//
// The stamp is taken in a goroutine that does nothing else, right after
// the signal comes out of sdbus (the D-Bus library's reader goroutine,
// then sdbus's, hand it over through two channels: a few µs). It is when
// the signal reached a client of the bus, as it reaches netevd and
// networkd-dispatcher, and an upper bound of when dbus-daemon sent it.
func (l *lab) subscribe(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	sigs, err := l.bus.Subscribe(sctx, 1024, sdbus.Match{
		Sender:        networkdBus,
		Interface:     "org.freedesktop.DBus.Properties",
		Member:        "PropertiesChanged",
		PathNamespace: "/org/freedesktop/network1",
	})
	if err != nil {
		cancel()
		return err
	}
	l.stopSub = cancel
	l.signals = make(chan propSignal, 1024)
	l.subDone = make(chan struct{})
	path := linkPath(linkIdx)
	go func() {
		defer close(l.subDone)
		for s := range sigs {
			at := time.Now().UnixNano()
			if s.Path != path || len(s.Body) < 2 {
				continue
			}
			changed, _ := s.Body[1].(map[string]any)
			ps := propSignal{at: at, changed: make(map[string]string, len(changed))}
			for k, v := range changed {
				if str, ok := v.(string); ok {
					ps.changed[k] = str
				}
			}
			select {
			case l.signals <- ps:
			default:
				fmt.Fprintln(os.Stderr, "networkd: nobody reads the signals; dropped one")
			}
		}
	}()
	return nil
}

// seedProps reads veth0's current properties.
func (l *lab) seedProps(ctx context.Context) (*linkProps, error) {
	all, err := l.bus.GetAll(ctx, networkdBus, linkPath(linkIdx), "org.freedesktop.network1.Link")
	if err != nil {
		return nil, err
	}
	p := &linkProps{value: make(map[string]string), since: make(map[string]int64)}
	now := time.Now().UnixNano()
	for k, v := range all {
		if s, ok := v.(string); ok {
			p.value[k], p.since[k] = s, now
		}
	}
	return p, nil
}

// waitProp applies the signals as they come until veth0's property key is
// want, and returns the time of the signal that made it so.
func (l *lab) waitProp(ctx context.Context, p *linkProps, key, want string) (int64, error) {
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for p.value[key] != want {
		select {
		case s := <-l.signals:
			p.apply(s)
		case <-timer.C:
			return 0, fmt.Errorf("networkd: no signal set %s %s to %s within %s (it is %q)", linkName, key, want, waitLimit, p.value[key])
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return p.since[key], nil
}

// drainSignals applies the signals already received.
func (l *lab) drainSignals(p *linkProps) {
	for {
		select {
		case s := <-l.signals:
			p.apply(s)
		default:
			return
		}
	}
}
