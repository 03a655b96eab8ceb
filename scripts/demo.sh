#!/bin/sh
# The main job: mount the embedded default drive (an SQLite database),
# use it like any folder, show where the data lives, and unmount.
set -eu
DB=${VDRIVE_DB:-/var/lib/vdrive/demo.db}
MNT=${VDRIVE_MNT:-/mnt/vdrive-demo}
VDRIVE=${VDRIVE:-vdrive}

if "$VDRIVE" help | grep -q '^  sqlite:'; then
	SRC="sqlite:$DB"
	mkdir -p "$(dirname "$DB")"
else
	SRC="mem:"
fi
mkdir -p "$MNT"
echo "+ vdrive mount $SRC $MNT --name demo"
"$VDRIVE" mount "$SRC" "$MNT" --name demo
trap '"$VDRIVE" unmount demo' EXIT
set -x
mkdir -p "$MNT/notes"
date > "$MNT/notes/hello.txt"
echo "written through vdrive" >> "$MNT/notes/hello.txt"
cat "$MNT/notes/hello.txt"
cp /etc/os-release "$MNT/notes/"
ls -l "$MNT/notes"
df -h "$MNT"
"$VDRIVE" list
set +x
case "$SRC" in
sqlite:*)
	"$VDRIVE" unmount demo
	trap - EXIT
	echo "+ the files live in $DB:"
	sqlite3 -header -column "$DB" "SELECT name, mode, sz FROM sqlar ORDER BY name" | head -20
	echo "+ mounted again, the data is still there:"
	"$VDRIVE" mount "$SRC" "$MNT" --name demo
	trap '"$VDRIVE" unmount demo' EXIT
	cat "$MNT/notes/hello.txt"
	;;
esac
echo "demo: OK ($SRC at $MNT; mount it yourself with: vdrive mount $SRC $MNT)"
