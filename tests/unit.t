#!/bin/bash
# The C unit tests: each source (and lib/'s parts) through its own calls,
# no kernel. Every check of every program is a line of its own here.
. "$(dirname "$0")/lib.sh"
vd_init unit

units=$(ls "$VDRIVE_BUILD"/tests/*_test 2>/dev/null || true)
[ -n "$units" ] || missing_all "no unit tests built (make)"
for u in $units; do
	tap_include "$(basename "$u")" "$u"
done
done_testing
