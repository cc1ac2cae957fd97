package nm

import "testing"

func TestDeviceStateName(t *testing.T) {
	// NMDeviceState (nm-dbus-interface.h) → the script directory without ".d".
	for _, tc := range []struct {
		state uint32
		want  string
	}{
		{0, "unknown"},
		{10, "unmanaged"},
		{20, "unavailable"},
		{30, "disconnected"},
		{40, "prepare"},
		{50, "config"},
		{60, "need-auth"},
		{70, "ip-config"},
		{80, "ip-check"},
		{90, "secondaries"},
		{100, "activated"},
		{110, "deactivating"},
		{120, "failed"},
		{5, "unknown"},
		{130, "unknown"},
	} {
		if got := DeviceStateName(tc.state); got != tc.want {
			t.Errorf("DeviceStateName(%d) = %q, want %q", tc.state, got, tc.want)
		}
	}
}

func TestStateName(t *testing.T) {
	// NMState: NetworkManager's global state, reported for manager.d.
	for _, tc := range []struct {
		state uint32
		want  string
	}{
		{0, "unknown"},
		{10, "asleep"},
		{20, "disconnected"},
		{30, "disconnecting"},
		{40, "connecting"},
		{50, "connected-local"},
		{60, "connected-site"},
		{70, "connected-global"},
		{80, "unknown"},
	} {
		if got := StateName(tc.state); got != tc.want {
			t.Errorf("StateName(%d) = %q, want %q", tc.state, got, tc.want)
		}
	}
}

func TestReasonName(t *testing.T) {
	for _, tc := range []struct {
		reason uint32
		want   string
	}{
		{0, "none"},
		{1, "unknown"},
		{2, "now-managed"},
		{36, "removed"},
		{39, "user-requested"},
		{40, "carrier"},
		{41, "connection-assumed"},
		{60, "new-activation"},
		{67, "peer-not-found"},
		{68, "reason-68"},
		{1000, "reason-1000"},
	} {
		if got := ReasonName(tc.reason); got != tc.want {
			t.Errorf("ReasonName(%d) = %q, want %q", tc.reason, got, tc.want)
		}
	}
	for i, n := range reasonNames {
		if n == "" {
			t.Errorf("reason %d has no name", i)
		}
	}
}

func TestConnectivityName(t *testing.T) {
	for _, tc := range []struct {
		c    uint32
		want string
	}{
		{0, "UNKNOWN"}, {1, "NONE"}, {2, "PORTAL"}, {3, "LIMITED"}, {4, "FULL"}, {9, "UNKNOWN"},
	} {
		if got := ConnectivityName(tc.c); got != tc.want {
			t.Errorf("ConnectivityName(%d) = %q, want %q", tc.c, got, tc.want)
		}
	}
}
