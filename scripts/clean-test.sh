#!/bin/sh
# Removes what a crashed test or bench run left behind: agents' containers,
# bridges and NAT rules, HAProxy and server processes, temp dirs, test
# databases. Everything the tests make is named upscale-e2e-*, upscale-bench-*
# or upst* (the lxc package's own tests), so nothing else is touched.
set -u
agent=${1:-bin/upscale-agent}
for f in /tmp/upscale-e2e-agent-*/teardown.args /tmp/upscale-bench-*/agent-*/teardown.args; do
	[ -f "$f" ] && [ -x "$agent" ] && "$agent" $(cat "$f") >/dev/null 2>&1
done
pkill -f 'upscale-e2e-' 2>/dev/null
pkill -f 'upscale-bench-' 2>/dev/null
for d in /tmp/upst-*/lxc-*/*/; do
	[ -d "$d" ] && lxc-stop -k -P "$(dirname "$d")" -n "$(basename "$d")" >/dev/null 2>&1
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(upse|upst|upsb)' | cut -d@ -f1); do
	ip link del "$link" 2>/dev/null
done
for t in $(nft list tables 2>/dev/null | awk '$2 == "ip" && $3 ~ /^upscale_(upse|upst|upsb)/ {print $3}'); do
	nft delete table ip "$t" 2>/dev/null
done
rm -rf /tmp/upscale-e2e-* /tmp/upscale-bench-* /tmp/upst-*
mariadb -N -e "select schema_name from information_schema.schemata where schema_name like 'upscale\\_test\\_%'" 2>/dev/null |
	while read -r db; do mariadb -e "drop database \`$db\`"; done
exit 0
