package nm

import "strconv"

// DeviceStateName returns the name of an NMDeviceState, which is also the
// script directory it selects without ".d": 100 is "activated",
// 70 "ip-config". A value NetworkManager has not defined is "unknown".
func DeviceStateName(s uint32) string {
	switch s {
	case 0:
		return "unknown"
	case 10:
		return "unmanaged"
	case 20:
		return "unavailable"
	case 30:
		return "disconnected"
	case 40:
		return "prepare"
	case 50:
		return "config"
	case 60:
		return "need-auth"
	case 70:
		return "ip-config"
	case 80:
		return "ip-check"
	case 90:
		return "secondaries"
	case 100:
		return "activated"
	case 110:
		return "deactivating"
	case 120:
		return "failed"
	}
	return "unknown"
}

// StateName returns the name of NetworkManager's global NMState: 70 is
// "connected-global". A value NetworkManager has not defined is "unknown".
func StateName(s uint32) string {
	switch s {
	case 10:
		return "asleep"
	case 20:
		return "disconnected"
	case 30:
		return "disconnecting"
	case 40:
		return "connecting"
	case 50:
		return "connected-local"
	case 60:
		return "connected-site"
	case 70:
		return "connected-global"
	}
	return "unknown"
}

// ConnectivityName returns NMConnectivityState as nm-dispatcher passes it
// in CONNECTIVITY_STATE: "NONE", "PORTAL", "LIMITED", "FULL" or "UNKNOWN".
func ConnectivityName(c uint32) string {
	switch c {
	case 1:
		return "NONE"
	case 2:
		return "PORTAL"
	case 3:
		return "LIMITED"
	case 4:
		return "FULL"
	}
	return "UNKNOWN"
}

// reasonNames are the NMDeviceStateReason values, indexed by number, named
// as NetworkManager's NM_DEVICE_STATE_REASON_* constants in lower case with
// '-' for '_'.
var reasonNames = [...]string{
	0: "none", 1: "unknown", 2: "now-managed", 3: "now-unmanaged", 4: "config-failed",
	5: "ip-config-unavailable", 6: "ip-config-expired", 7: "no-secrets", 8: "supplicant-disconnect",
	9: "supplicant-config-failed", 10: "supplicant-failed", 11: "supplicant-timeout",
	12: "ppp-start-failed", 13: "ppp-disconnect", 14: "ppp-failed", 15: "dhcp-start-failed",
	16: "dhcp-error", 17: "dhcp-failed", 18: "shared-start-failed", 19: "shared-failed",
	20: "autoip-start-failed", 21: "autoip-error", 22: "autoip-failed", 23: "modem-busy",
	24: "modem-no-dial-tone", 25: "modem-no-carrier", 26: "modem-dial-timeout",
	27: "modem-dial-failed", 28: "modem-init-failed", 29: "gsm-apn-failed",
	30: "gsm-registration-not-searching", 31: "gsm-registration-denied",
	32: "gsm-registration-timeout", 33: "gsm-registration-failed", 34: "gsm-pin-check-failed",
	35: "firmware-missing", 36: "removed", 37: "sleeping", 38: "connection-removed",
	39: "user-requested", 40: "carrier", 41: "connection-assumed", 42: "supplicant-available",
	43: "modem-not-found", 44: "bt-failed", 45: "gsm-sim-not-inserted", 46: "gsm-sim-pin-required",
	47: "gsm-sim-puk-required", 48: "gsm-sim-wrong", 49: "infiniband-mode", 50: "dependency-failed",
	51: "br2684-failed", 52: "modem-manager-unavailable", 53: "ssid-not-found",
	54: "secondary-connection-failed", 55: "dcb-fcoe-failed", 56: "teamd-control-failed",
	57: "modem-failed", 58: "modem-available", 59: "sim-pin-incorrect", 60: "new-activation",
	61: "parent-changed", 62: "parent-managed-changed", 63: "ovsdb-failed",
	64: "ip-address-duplicate", 65: "ip-method-unsupported", 66: "sriov-configuration-failed",
	67: "peer-not-found",
}

// ReasonName returns the name of an NMDeviceStateReason: 40 is "carrier",
// 39 "user-requested". A value this table does not know (NetworkManager
// adds reasons over time) is "reason-N".
func ReasonName(r uint32) string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason-" + strconv.FormatUint(uint64(r), 10)
}
