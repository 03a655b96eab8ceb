#!/bin/bash
# The suite again on ASan/UBSan builds: unit tests, the tool, and the
# POSIX cases on mounted drives. Any sanitizer report, from a test or a
# background drive process, fails it (reports go to files we then check).
# Two builds: on the system's libfuse 3.14 (so that build stays tested
# beside the default one), and on the private libfuse `make deps` builds
# (3.18: passthrough and io_uring, the ring threads under the sanitizers).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SAN_BUILD=${VDRIVE_SAN_BUILD:-$ROOT/build-san}
PRIVATE=${LIBFUSE_PRIVATE:-/opt/vdrive-libfuse}
LOGS=$(mktemp -d /tmp/vdrive-test-san.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT
n=0

# pass NAME BUILD LIBFUSE TESTS...: build with SAN=1 into BUILD-san on
# LIBFUSE, run TESTS on it, then look for reports. Three TAP lines.
pass() {
	local name=$1 build=$2 libfuse=$3 tests="" t logs
	logs=$LOGS/$(echo "$1" | tr -c "a-z0-9.\n" _)
	shift 3
	mkdir -p "$logs"
	if make -C "$ROOT" -s SAN=1 LIBFUSE="$libfuse" BUILD="$build" all \
		>"$logs/build.txt" 2>&1; then
		echo "ok $((++n)) - $name: sanitizer build"
	else
		echo "not ok $((++n)) - $name: sanitizer build"
		sed 's/^/# /' "$logs/build.txt" | tail -30
		echo "ok $((++n)) # SKIP no build"
		echo "ok $((++n)) # SKIP no build"
		return
	fi
	for t in "$@"; do
		[ -x "$ROOT/tests/$t" ] && tests="$tests $ROOT/tests/$t"
	done
	# shellcheck disable=SC2086
	if VDRIVE_BUILD="$build-san" VDRIVE_QUICK=1 \
		ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:abort_on_error=0" \
		UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1" \
		prove $tests >"$logs/prove.txt" 2>&1; then
		echo "ok $((++n)) - $name: suite passes on the sanitizer build:$tests"
	else
		echo "not ok $((++n)) - $name: suite passes on the sanitizer build:$tests"
		sed 's/^/# /' "$logs/prove.txt" | grep -v "^# ok" | tail -40
	fi
	reports=$(ls "$logs"/asan.* "$logs"/ubsan.* 2>/dev/null)
	if [ -z "$reports" ]; then
		echo "ok $((++n)) - $name: no sanitizer reports"
	else
		echo "not ok $((++n)) - $name: sanitizer reports"
		for r in $reports; do sed 's/^/# /' "$r" | head -40; done
	fi
}

pass "libfuse 3.14" "${SAN_BUILD%-san}" "" unit.t cli.t posix.t fsx.t
if [ -f "$PRIVATE/lib/pkgconfig/fuse3.pc" ]; then
	pass "private libfuse" "${SAN_BUILD%-san}-private" "$PRIVATE" \
		posix.t uring.t fsx.t share.t share-daemon.t webdav.t cache.t
else
	echo "ok $((++n)) # SKIP no private libfuse in $PRIVATE"
fi
echo "1..$n"
