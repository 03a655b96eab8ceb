#!/bin/bash
# The C unit tests: each source through its vd_ops table, no kernel.
VDRIVE_BUILD=${VDRIVE_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
units=$(ls "$VDRIVE_BUILD"/tests/*_test 2>/dev/null || true)
[ -n "$units" ] || { echo "1..0 # SKIP no unit tests built"; exit 0; }
n=0
for u in $units; do n=$((n + 1)); done
echo "1..$n"
i=0
for u in $units; do
	i=$((i + 1))
	out=$("$u" 2>&1) && ! grep -q "^not ok" <<<"$out" && ok=1 || ok=0
	if [ $ok = 1 ]; then
		echo "ok $i - $(basename "$u") ($(grep -c '^ok' <<<"$out") checks)"
	else
		echo "not ok $i - $(basename "$u")"
		sed 's/^/# /' <<<"$out" | grep -v "^# ok" | tail -40
	fi
done
