#!/bin/sh
# Installs the Debian packages given as arguments that are not installed yet.
# Quiet and idempotent: `make run` and `make test` call it every time.
set -eu
missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: only what Upscale uses. The tests start the
# daemons they need themselves, whether or not the packages started them.
apt-get install -y -qq --no-install-recommends $missing >/dev/null
