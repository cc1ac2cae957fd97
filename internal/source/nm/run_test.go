package nm

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/sdbus"
)

const (
	devLo   = "/org/freedesktop/NetworkManager/Devices/1"
	devVeth = "/org/freedesktop/NetworkManager/Devices/2"
	devNew  = "/org/freedesktop/NetworkManager/Devices/3"
)

// start runs src in the bubble and returns its output and a stop function
// that cancels Run and checks that it returned nil.
func start(t *testing.T, src *Source) (chan event.Event, func()) {
	t.Helper()
	out := make(chan event.Event, 1000)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	synctest.Wait()
	return out, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	}
}

// standard is a NetworkManager with loopback unmanaged and veth0
// activated.
func standard() *world {
	w := newWorld()
	w.addDevice(devLo, "lo", 1, 10)
	w.addDevice(devVeth, "veth0", 10, 100)
	w.activate(devVeth, "tb-veth0", "10.79.0.1/24")
	w.set(objManager, ifaceManager, map[string]any{"State": uint32(50), "Connectivity": uint32(3)})
	return w
}

func check(t *testing.T, what string, got []event.Event, want []string) {
	t.Helper()
	if diff := cmp.Diff(describeAll(got), want); diff != "" {
		t.Errorf("%s: events (-got +want):\n%s", what, diff)
	}
}

func TestRunStartupAndSignals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := standard()
		w.addDevice("/org/freedesktop/NetworkManager/Devices/9", "ttyUSB0", 0, 30) // a modem: no kernel link
		log, logs := newLogRecorder()
		out, stop := start(t, w.source(log))
		defer stop()

		got := collect(out)
		check(t, "startup", got, []string{
			"initial 1 lo DeviceState=unmanaged",
			"initial 10 veth0 DeviceState=activated",
			"initial 0 NMState=connected-local",
			"initial sync",
		})
		if len(got) == 4 {
			env := got[1].Manager.Env
			for k, want := range map[string]string{
				"CONNECTION_ID": "tb-veth0", "DEVICE_IFACE": "veth0", "IP4_ADDRESS_0": "10.79.0.1/24 0.0.0.0",
				"DEVICE_STATE_REASON": "0", "DEVICE_STATE_REASON_NAME": "none",
			} {
				if env[k] != want {
					t.Errorf("initial veth0 report: %s=%q, want %q", k, env[k], want)
				}
			}
			if got, want := got[2].Manager.Env["CONNECTIVITY_STATE"], "LIMITED"; got != want {
				t.Errorf("initial NetworkManager report: CONNECTIVITY_STATE=%q, want %q", got, want)
			}
		}

		// Carrier lost: the state and the reason come from the signal; the
		// report still names the connection that went down.
		w.set(devVeth, ifaceDevice, map[string]any{"ActiveConnection": "/"})
		w.emitDeviceState(devVeth, 20, 100, 40)
		w.emit(sdbus.Signal{Path: objManager, Interface: ifaceManager, Member: "StateChanged", Body: []any{uint32(20)}})
		synctest.Wait()
		got = collect(out)
		check(t, "carrier lost", got, []string{"10 veth0 DeviceState=unavailable", "0 NMState=disconnected"})
		if len(got) == 2 {
			env := got[0].Manager.Env
			if env["DEVICE_STATE_REASON"] != "40" || env["DEVICE_STATE_REASON_NAME"] != "carrier" {
				t.Errorf("reason: DEVICE_STATE_REASON=%q DEVICE_STATE_REASON_NAME=%q, want 40 carrier",
					env["DEVICE_STATE_REASON"], env["DEVICE_STATE_REASON_NAME"])
			}
			if env["CONNECTION_ID"] != "tb-veth0" || env["CONNECTION_UUID"] != "uuid-tb-veth0" {
				t.Errorf("report after the connection went down: CONNECTION_ID=%q CONNECTION_UUID=%q, want those of tb-veth0",
					env["CONNECTION_ID"], env["CONNECTION_UUID"])
			}
		}
		// Only the first report after it went down names it.
		w.emitDeviceState(devVeth, 30, 20, 40)
		synctest.Wait()
		got = collect(out)
		check(t, "carrier back", got, []string{"10 veth0 DeviceState=disconnected"})
		if len(got) == 1 {
			if id, ok := got[0].Manager.Env["CONNECTION_ID"]; ok {
				t.Errorf("second report after the connection went down: CONNECTION_ID=%q, want it unset", id)
			}
		}

		// A signal with the wrong body is ignored; one for a device that
		// went away meanwhile is skipped.
		w.emit(sdbus.Signal{Path: devVeth, Interface: ifaceDevice, Member: "StateChanged", Body: []any{uint32(30)}})
		w.emit(sdbus.Signal{Path: "/org/freedesktop/NetworkManager/Devices/77", Interface: ifaceDevice,
			Member: "StateChanged", Body: []any{uint32(30), uint32(20), uint32(0)}})
		synctest.Wait()
		check(t, "bad signals", collect(out), nil)
		if msgs := logs(); countLogs(msgs, "WARN", "") > 0 {
			t.Errorf("a signal for a device that went away logged a warning:\n%q", msgs)
		}

		// A device comes and goes.
		w.addDevice(devNew, "veth1", 11, 10)
		w.emit(sdbus.Signal{Path: objManager, Interface: ifaceManager, Member: "DeviceAdded", Body: []any{devNew}})
		synctest.Wait()
		w.emitDeviceState(devNew, 20, 10, 2)
		synctest.Wait()
		w.remove(devNew)
		w.emit(sdbus.Signal{Path: objManager, Interface: ifaceManager, Member: "DeviceRemoved", Body: []any{devNew}})
		synctest.Wait()
		check(t, "device added and removed", collect(out), []string{
			"11 veth1 DeviceState=unmanaged",
			"11 veth1 DeviceState=unavailable",
			"gone 11",
		})
	})
}

func TestRunWaitsForNetworkManager(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := standard()
		w.setOwner(false)
		log, logs := newLogRecorder()
		out, stop := start(t, w.source(log))
		defer stop()
		check(t, "startup without NetworkManager", collect(out), []string{"initial sync"})

		w.emitOwner(":1.7")
		synctest.Wait()
		check(t, "NetworkManager appears", collect(out), []string{
			"1 lo DeviceState=unmanaged",
			"10 veth0 DeviceState=activated",
			"0 NMState=connected-local",
		})

		// It restarts: nothing is reported while it is away; then its new
		// objects (new paths, same links) are read.
		w.emitOwner("")
		synctest.Wait()
		check(t, "NetworkManager leaves", collect(out), nil)
		w.remove(devVeth)
		w.addDevice("/org/freedesktop/NetworkManager/Devices/5", "veth0", 10, 30)
		w.emitOwner(":1.9")
		synctest.Wait()
		check(t, "NetworkManager is back", collect(out), []string{
			"1 lo DeviceState=unmanaged",
			"10 veth0 DeviceState=disconnected",
			"0 NMState=connected-local",
		})
		msgs := logs()
		if n := countLogs(msgs, "WARN", "not on the bus"); n != 2 {
			t.Errorf("logged %d warnings that NetworkManager is away, want 2 (one per absence):\n%q", n, msgs)
		}
		if n := countLogs(msgs, "INFO", "back on the bus"); n != 2 {
			t.Errorf("logged %d notes that NetworkManager is back, want 2:\n%q", n, msgs)
		}
		if w.dialCount() != 1 {
			t.Errorf("dialled %d times, want 1: a NetworkManager restart keeps the bus connection", w.dialCount())
		}
	})
}

// NetworkManager owns its bus name a moment before it exports its
// objects: reads fail, and are retried quietly unless that lasts.
func TestRunRetriesReadsAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int
		warnings int
	}{
		{"objects appear soon", 2, 0},
		{"objects appear late", 8, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := standard()
				log, logs := newLogRecorder()
				out, stop := start(t, w.source(log))
				defer stop()
				collect(out)

				w.emitOwner("")
				synctest.Wait()
				w.mu.Lock()
				w.failGet = tc.failures
				w.mu.Unlock()
				w.emitOwner(":1.9")
				time.Sleep(time.Minute)
				check(t, "after the restart", collect(out), []string{
					"1 lo DeviceState=unmanaged",
					"10 veth0 DeviceState=activated",
					"0 NMState=connected-local",
				})
				msgs := logs()
				if n := countLogs(msgs, "WARN", "cannot read NetworkManager's devices"); n != tc.warnings {
					t.Errorf("logged %d warnings about failed reads, want %d:\n%q", n, tc.warnings, msgs)
				}
			})
		})
	}
}

func TestRunRetriesWithoutBus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := standard()
		w.setDialErr(errors.New("dial unix /run/dbus/system_bus_socket: connect: no such file or directory"))
		log, logs := newLogRecorder()
		out, stop := start(t, w.source(log))
		defer stop()
		check(t, "startup without a bus", collect(out), []string{"initial sync"})

		// A minute without a bus: retries back off to one every 5 s.
		time.Sleep(time.Minute)
		if n := w.dialCount(); n < 10 || n > 20 {
			t.Errorf("dialled %d times in a minute, want 10 to 20 (backoff doubling from 100ms to 5s)", n)
		}
		w.setDialErr(nil)
		time.Sleep(maxBackoff)
		synctest.Wait()
		check(t, "bus appears", collect(out), []string{
			"1 lo DeviceState=unmanaged",
			"10 veth0 DeviceState=activated",
			"0 NMState=connected-local",
		})
		msgs := logs()
		if n := countLogs(msgs, "WARN", ""); n != 1 {
			t.Errorf("logged %d warnings, want 1 for the whole outage:\n%q", n, msgs)
		}
		if n := countLogs(msgs, "INFO", "reconnected"); n != 1 {
			t.Errorf("logged %d reconnections, want 1:\n%q", n, msgs)
		}
	})
}

func TestRunReconnectsAfterBusLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := standard()
		log, logs := newLogRecorder()
		out, stop := start(t, w.source(log))
		defer stop()
		collect(out)

		// The bus restarts; meanwhile veth0 went and veth1 came.
		w.loseBus()
		w.remove(devVeth)
		w.addDevice(devNew, "veth1", 11, 20)
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		check(t, "after reconnecting", collect(out), []string{
			"1 lo DeviceState=unmanaged",
			"11 veth1 DeviceState=unavailable",
			"gone 10",
			"0 NMState=connected-local",
		})
		// The new subscription works.
		w.emitDeviceState(devNew, 30, 20, 40)
		synctest.Wait()
		check(t, "signal on the new connection", collect(out), []string{"11 veth1 DeviceState=disconnected"})
		if n := w.dialCount(); n != 2 {
			t.Errorf("dialled %d times, want 2", n)
		}
		msgs := logs()
		if countLogs(msgs, "WARN", "lost the system bus") != 1 || countLogs(msgs, "INFO", "reconnected") != 1 {
			t.Errorf("want one warning about the lost bus and one note about reconnecting, got:\n%q", msgs)
		}
	})
}

// Signals that queue up while the startup replay reads may be older than
// what it read: they must not replay the states the device went through
// before the read.
func TestRunSettlesSignalsQueuedDuringReplay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := standard()
		w.set(devVeth, ifaceDevice, map[string]any{"State": uint32(30)})
		first := true
		w.onRead = func(path string) {
			if path != devVeth || !first {
				return
			}
			first = false
			// NetworkManager activates veth0 just before it answers.
			for _, s := range []uint32{40, 50, 70, 80, 90, 100} {
				w.emitDeviceState(devVeth, s, s-10, 0)
			}
		}
		out, stop := start(t, w.source(nil))
		defer stop()
		check(t, "startup during an activation", collect(out), []string{
			"initial 1 lo DeviceState=unmanaged",
			"initial 10 veth0 DeviceState=activated",
			"initial 0 NMState=connected-local",
			"initial 10 veth0 DeviceState=activated",
			"initial sync",
		})
	})
}

func TestRunEndsWhileBlockedSending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := standard()
		out := make(chan event.Event) // nobody reads
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- w.source(nil).Run(ctx, out) }()
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	})
}

func TestNew(t *testing.T) {
	s, err := New(Options{BusAddress: "unix:path=/nonexistent"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Name(); got != "nm" {
		t.Errorf("Name() = %q, want nm", got)
	}
}

func TestIfindexByName(t *testing.T) {
	if got, err := ifindexByName("lo"); err != nil || got != 1 {
		t.Errorf(`ifindexByName("lo") = %d, %v; want 1 (loopback is the first link of every namespace)`, got, err)
	}
	for _, name := range []string{"netevd-none0", "a-name-longer-than-ifnamsiz"} {
		if got, err := ifindexByName(name); err == nil {
			t.Errorf("ifindexByName(%q) = %d, want an error", name, got)
		}
	}
}
