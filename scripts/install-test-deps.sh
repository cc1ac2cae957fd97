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
	gcc:gcc                        # cgo, needed by go test -race
	/usr/include/stdio.h:libc6-dev # cgo headers and crt files
)

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

if ! command -v go >/dev/null; then
	echo "install-test-deps: go not found in PATH or /usr/local/go/bin" >&2
	exit 1
fi
echo "install-test-deps: ok ($(go env GOVERSION))"
