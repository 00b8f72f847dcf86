#!/bin/sh
# Keeps /etc/subuid and /etc/subgid as they were before a test run.
#   save     copy them aside, unless a crashed run's copy is there already
#            (that one holds the state before the tests)
#   restore  drop the lines the tests added (root's ranges, which agents
#            reserve, and the test users' upse2e-*), then forget the copy
# make test calls both; make clean-test calls restore.
set -eu
etc=${UPSCALE_ETC:-/etc}
saved=${UPSCALE_SUBIDS_SAVED:-/var/tmp/upscale-test-subids}
case "${1:-}" in
save)
	[ -d "$saved" ] && exit 0
	mkdir -p "$saved.new"
	for f in subuid subgid; do
		if [ -e "$etc/$f" ]; then cp -p "$etc/$f" "$saved.new/$f"; else touch "$saved.new/$f.absent"; fi
	done
	mv "$saved.new" "$saved"
	;;
restore)
	[ -d "$saved" ] || exit 0
	for f in subuid subgid; do
		[ -e "$etc/$f" ] || continue
		orig="$saved/$f"
		[ -e "$orig" ] || orig=/dev/null
		awk -F: 'NR == FNR { keep[$0] = 1; next }
			($1 == "root" || $1 ~ /^upse2e-/) && !($0 in keep) { next }
			{ print }' "$orig" "$etc/$f" >"$etc/$f+"
		chmod --reference="$etc/$f" "$etc/$f+"
		if [ -e "$saved/$f.absent" ] && [ ! -s "$etc/$f+" ]; then
			rm -f "$etc/$f+" "$etc/$f"
		else
			mv "$etc/$f+" "$etc/$f"
		fi
	done
	rm -rf "$saved"
	;;
*)
	echo "usage: $0 save|restore" >&2
	exit 2
	;;
esac
