#!/bin/sh
# Removes what a crashed test or bench run left behind: agents' containers,
# bridges and nftables rules, HAProxy and server processes, temp dirs, test
# databases, the multi-host tests' namespaces, links (upsh*), users and
# routes. Everything the tests make is named upscale-e2e-*, upscale-bench-*,
# upse2e-*, upsh* or upst* (upst-gluster-* for glusterd), upsp*, upso*, upsr* (the lxc package's own tests), so nothing else is
# touched.
set -u
agent=${1:-bin/upscale-agent}
for f in /tmp/upscale-e2e-agent-*/teardown.args /tmp/upscale-bench-*/agent-*/teardown.args; do
	[ -f "$f" ] && [ -x "$agent" ] && "$agent" $(cat "$f") >/dev/null 2>&1
done
# Multi-host tests: each host is a network namespace upse2e-ID whose sshd
# installed an agent under /tmp/upscale-e2e-hosts-ID. Supervisor first (it
# would restart the agent), then the agent's containers from inside the
# namespace, then whatever still runs there, then the namespace.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^upse2e-'); do
	dir=/tmp/upscale-e2e-hosts-${ns#upse2e-}/upscale-agent
	for pf in "$dir/supervisor.pid" "$dir/agent.pid"; do
		[ -f "$pf" ] && kill -9 "$(cat "$pf")" 2>/dev/null
	done
	if [ -x "$dir/upscale-agent" ]; then
		sub=$(sed -n "s/.*'--subnet' '\([0-9./]*\)'.*/\1/p" "$dir/supervise.sh" 2>/dev/null)
		nsenter --net="/run/netns/$ns" "$dir/upscale-agent" --teardown --state "$dir/state" \
			--bridge upsbr0 --subnet "${sub:-10.0.0.0/24}" >/dev/null 2>&1
	fi
	for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
	ip netns del "$ns" 2>/dev/null
done
# Their throwaway users and sudoers rules, the servers' advertised
# addresses on lo (10.252.X.253) and the unreachable routes that keep test
# traffic off the real network (10.160-199.0.0/16 host subnets, 10.252-253.*).
for u in $(getent passwd | cut -d: -f1 | grep '^upse2e-'); do
	pkill -9 -u "$u" 2>/dev/null
	userdel "$u" 2>/dev/null
done
rm -f /etc/sudoers.d/upse2e-*
for a in $(ip -o -4 addr show dev lo 2>/dev/null | awk '{print $4}' | grep '^10\.252\.'); do
	ip addr del "$a" dev lo 2>/dev/null
done
for r in $(ip route show type unreachable 2>/dev/null | awk '{print $2}' | grep -E '^10\.(1[6-9][0-9]|25[23])\.'); do
	ip route del unreachable "$r" 2>/dev/null
done
# The storage tests' glusterd (gluster/glustertest): each runs in a mount
# namespace of its own with its log under /tmp/upst-gluster-*; everything
# in that namespace (bricks, self-heal and quota daemons) goes with it.
# Their FUSE mounts under /tmp/upst-* are detached first.
awk '$3 ~ /^fuse.glusterfs$/ && $2 ~ "^/tmp/upst-" {print $2}' /proc/mounts | while read -r m; do umount -l "$m" 2>/dev/null; done
for pid in $(pgrep -f 'glusterd -N --log-file=/tmp/upst-gluster-' 2>/dev/null); do
	ns=$(readlink "/proc/$pid/ns/mnt") || continue
	[ "$ns" = "$(readlink /proc/self/ns/mnt)" ] && continue
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && kill -9 "${p#/proc/}" 2>/dev/null
	done
done
pkill -f 'upscale-e2e-' 2>/dev/null
pkill -f 'upscale-bench-' 2>/dev/null
for d in /tmp/upst-*/lxc-*/*/; do
	[ -d "$d" ] && lxc-stop -k -P "$(dirname "$d")" -n "$(basename "$d")" >/dev/null 2>&1
done
# The lxc package's stand-ins for forgers, routers and outside servers.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^upsp'); do
	for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
	ip netns del "$ns" 2>/dev/null
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(upse|upst|upsb|upsh|upso|upsr)' | cut -d@ -f1); do
	ip link del "$link" 2>/dev/null
done
nft list tables 2>/dev/null | awk '$3 ~ /^upscale_(upse|upst|upsb)/ {print $2, $3}' |
	while read -r family t; do nft delete table "$family" "$t" 2>/dev/null; done
rm -rf /tmp/upscale-e2e-* /tmp/upscale-bench-* /tmp/upst-*
# Last, once no agent runs: the id ranges the tests reserved.
"$(dirname "$0")/test-subids.sh" restore
mariadb -N -e "select schema_name from information_schema.schemata where schema_name like 'upscale\\_test\\_%'" 2>/dev/null |
	while read -r db; do mariadb -e "drop database \`$db\`"; done
exit 0
