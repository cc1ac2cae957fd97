package sdbus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/netevd/netevd/internal/nettest"
)

func TestPlain(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"string", "routable", "routable"},
		{"variant", dbus.MakeVariant("carrier"), "carrier"},
		{"nested variant", dbus.MakeVariant(dbus.MakeVariant(uint32(100))), uint32(100)},
		{"object path", dbus.ObjectPath("/org/freedesktop/network1/link/_310"), "/org/freedesktop/network1/link/_310"},
		{"object paths", []dbus.ObjectPath{"/a", "/b"}, []string{"/a", "/b"}},
		{"properties", map[string]dbus.Variant{"OperationalState": dbus.MakeVariant("routable"), "Index": dbus.MakeVariant(int32(10))},
			map[string]any{"OperationalState": "routable", "Index": int32(10)}},
		{"array of structs", [][]any{{int32(2), []byte{10, 0, 0, 1}}}, []any{[]any{int32(2), []byte{10, 0, 0, 1}}}},
		{"signature", dbus.SignatureOf("s"), "s"},
		{"int map", map[uint32]string{1: "a"}, map[any]any{uint32(1): "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Plain(tt.in)); diff != "" {
				t.Errorf("Plain mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBus(t *testing.T) {
	addr := nettest.PrivateBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()

	if ok, err := c.NameHasOwner(ctx, "org.freedesktop.DBus"); err != nil || !ok {
		t.Errorf("NameHasOwner(org.freedesktop.DBus) = %v, %v; want true, nil", ok, err)
	}
	if ok, err := c.NameHasOwner(ctx, "org.freedesktop.network1"); err != nil || ok {
		t.Errorf("NameHasOwner(org.freedesktop.network1) = %v, %v; want false, nil", ok, err)
	}
	props, err := c.GetAll(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
	if err != nil {
		t.Fatalf("GetAll: %v", err)
	}
	if _, ok := props["Interfaces"]; !ok {
		t.Errorf("GetAll: no Interfaces property in %v", props)
	}
	_, err = c.Call(ctx, "org.freedesktop.network1", "/org/freedesktop/network1", "org.freedesktop.network1.Manager.ListLinks")
	var reply *ErrorReply
	if !errors.As(err, &reply) || reply.Name != "org.freedesktop.DBus.Error.ServiceUnknown" {
		t.Errorf("Call to a missing service: got %v, want a ServiceUnknown ErrorReply", err)
	}

	sigs, err := c.Subscribe(ctx, 16, Match{Interface: "org.freedesktop.DBus", Member: "NameOwnerChanged"})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	other, err := Dial(ctx, addr)
	if err != nil {
		t.Fatalf("second Dial: %v", err)
	}
	if _, err := other.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName", "org.netevd.Test", uint32(0)); err != nil {
		t.Fatalf("RequestName: %v", err)
	}
	for {
		select {
		case s := <-sigs:
			if len(s.Body) == 3 && s.Body[0] == "org.netevd.Test" {
				if s.Path != "/org/freedesktop/DBus" || s.Member != "NameOwnerChanged" || s.Body[2] == "" {
					t.Errorf("signal: got %+v", s)
				}
				other.Close()
				c.Close()
				select {
				case <-c.Done():
				case <-ctx.Done():
					t.Fatal("Done not closed after Close")
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no NameOwnerChanged signal for org.netevd.Test")
		}
	}
}
