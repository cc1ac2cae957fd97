#!/usr/bin/env bash
# Installs, on Debian, what the test suite needs and the machine lacks; does
# nothing when all of it is there. apt-get update runs only when an install
# fails first (a fresh machine may have stale package lists).
#
# To add a dependency, add "command:package" to NEEDS (a path for files).
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

NEEDS=(
	ip:iproute2                    # network namespaces, veths, routes, rules
	ps:procps                      # process checks in tests
	unshare:util-linux             # private mount/UTS namespaces for e2e tests
	nsenter:util-linux
	dbus-daemon:dbus-daemon        # private buses; resolved/hostnamed tests (systemd-resolved's .deb is fetched by the test, never installed)
	gcc:gcc                        # cgo, needed by go test -race
	/usr/include/stdio.h:libc6-dev # cgo headers and crt files
	dhclient:isc-dhcp-client       # the dhclient backend's e2e test
	dnsmasq:dnsmasq-base           # its DHCP server
	/lib/systemd/systemd-networkd:systemd # the systemd-networkd backend's e2e test and netevd lab --backend networkd
	NetworkManager:network-manager # the NetworkManager backend's e2e test (see below)
	ping:iputils-ping              # the policy routing two-uplink test
)

# NetworkManager must never run on this host: it would take over the host's
# interfaces and /etc/resolv.conf (the e2e test runs it in a namespace of its
# own). Its package starts and enables NetworkManager.service, so install it
# only where apt starts no services (/usr/sbin/policy-rc.d exits 101) and
# systemd is not PID 1 (which would start it at the next boot); elsewhere
# leave it out and the test skips.
if ! command -v NetworkManager >/dev/null; then
	policy=0
	if [ -x /usr/sbin/policy-rc.d ]; then /usr/sbin/policy-rc.d >/dev/null 2>&1 || policy=$?; fi
	if [ "$policy" != 101 ] || [ -d /run/systemd/system ]; then
		echo "install-test-deps: not installing network-manager: apt could start NetworkManager on this host" \
			"(needs /usr/sbin/policy-rc.d exiting 101 and systemd not PID 1); its e2e test will skip" >&2
		keep=()
		for n in "${NEEDS[@]}"; do [ "$n" = NetworkManager:network-manager ] || keep+=("$n"); done
		NEEDS=("${keep[@]}")
	fi
fi

missing=()
for n in "${NEEDS[@]}"; do
	what=${n%%:*} pkg=${n#*:}
	if [[ $what == /* ]]; then [ -e "$what" ] && continue; else command -v "$what" >/dev/null && continue; fi
	[[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		# Tests that need these need root too and skip without it; go test
		# -race itself fails clearly without gcc.
		echo "install-test-deps: missing ${missing[*]}; run as root to install them" >&2
		missing=()
	fi
fi
if ((${#missing[@]})); then
	echo "install-test-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; }
fi

# systemd-resolved is never installed: its package points the host's
# /etc/resolv.conf at a stub. The resolved tests run its binary unpacked from
# the .deb, which is fetched once, in the version of the installed systemd
# (the binary links against its libsystemd-shared), and kept here.
deb_cache=/var/cache/netevd-test
sd_version=$(dpkg-query -W -f='${Version}' systemd 2>/dev/null || true)
if [ "$(id -u)" = 0 ] && [ -n "$sd_version" ] &&
	! ls "$deb_cache"/systemd-resolved_"${sd_version//:/%3a}"_*.deb >/dev/null 2>&1; then
	mkdir -p "$deb_cache"
	rm -f "$deb_cache"/systemd-resolved_*.deb
	(cd "$deb_cache" &&
		{ apt-get download -qq "systemd-resolved=$sd_version" 2>/dev/null ||
			{ apt-get update -qq && apt-get download -qq "systemd-resolved=$sd_version"; }; }) ||
		echo "install-test-deps: could not download systemd-resolved $sd_version's .deb; its tests will skip" >&2
fi

if ! command -v go >/dev/null; then
	echo "install-test-deps: go not found in PATH or /usr/local/go/bin" >&2
	exit 1
fi
echo "install-test-deps: ok ($(go env GOVERSION))"
