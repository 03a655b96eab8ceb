#!/bin/bash
# The suite again on an ASan/UBSan build: unit tests, the tool, and the
# POSIX cases on mounted drives. Any sanitizer report, from a test or a
# background drive process, fails it (reports go to files we then check).
# It builds on the system's libfuse 3.14, so that build stays tested
# beside the default one on the private libfuse 3.17.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SAN_BUILD=${VDRIVE_SAN_BUILD:-$ROOT/build-san}
LOGS=$(mktemp -d /tmp/vdrive-test-san.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT

echo "1..3"
if make -C "$ROOT" -s SAN=1 LIBFUSE= BUILD="${SAN_BUILD%-san}" all >"$LOGS/build.txt" 2>&1; then
	echo "ok 1 - sanitizer build"
else
	echo "not ok 1 - sanitizer build"
	sed 's/^/# /' "$LOGS/build.txt" | tail -30
	echo "ok 2 # SKIP no build"
	echo "ok 3 # SKIP no build"
	exit 0
fi

export VDRIVE_BUILD="$SAN_BUILD"
export ASAN_OPTIONS="log_path=$LOGS/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$LOGS/ubsan:print_stacktrace=1"
tests=""
for t in unit.t cli.t posix.t fsx.t; do
	[ -x "$ROOT/tests/$t" ] && tests="$tests $ROOT/tests/$t"
done
# shellcheck disable=SC2086
if VDRIVE_QUICK=1 prove $tests >"$LOGS/prove.txt" 2>&1; then
	echo "ok 2 - suite passes on the sanitizer build:$tests"
else
	echo "not ok 2 - suite passes on the sanitizer build:$tests"
	sed 's/^/# /' "$LOGS/prove.txt" | grep -v "^# ok" | tail -40
fi
reports=$(ls "$LOGS"/asan.* "$LOGS"/ubsan.* 2>/dev/null)
if [ -z "$reports" ]; then
	echo "ok 3 - no sanitizer reports"
else
	echo "not ok 3 - sanitizer reports"
	for r in $reports; do sed 's/^/# /' "$r" | head -40; done
fi
