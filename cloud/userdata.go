package cloud

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/shellquote"
)

// BootstrapUser is the account the user-data script asks the Upscale ssh
// server for the agent files.
const BootstrapUser = "upscale"

// UserData is the cloud-init script for an EC2 host. At first boot it
// installs openssh-client if missing, runs
// `ssh -p PORT upscale@SERVER hosts bootstrap HOST` with bootstrapKey (a
// private key PEM, meant for this one use) while trusting only
// serverHostKey (authorized_keys form), unpacks the tar the server answers
// with (regular files upscale-agent and credentials.json at its top level)
// into Dir, and runs Script's content. The bus credentials are never in
// the user data: EC2 keeps user data readable from the instance's metadata
// service for its whole life.
//
// server is the host:port of the Upscale ssh server (port 22 if omitted).
// For an invalid argument the script only prints why and exits 1.
func UserData(in Install, server, serverHostKey string, bootstrapKey []byte) string {
	in = in.withDefaults()
	if err := in.Check(); err != nil {
		return refusal(err)
	}
	addr, host := splitAddr(server)
	_, port, _ := net.SplitHostPort(addr)
	if !safeAddress.MatchString(host) || strings.HasPrefix(host, "-") {
		return refusal(fmt.Errorf("invalid server address %q", msgtext.OneLine(server)))
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(serverHostKey))
	if err != nil {
		return refusal(errors.New("the server's host key is not in authorized_keys form"))
	}
	if _, err := ssh.ParsePrivateKey(bootstrapKey); err != nil {
		// Not the key itself: it is a secret.
		return refusal(fmt.Errorf("the bootstrap key does not parse: %v", err))
	}
	known := host
	if port != "22" {
		known = "[" + host + "]:" + port
	}
	known += " " + string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(key)))

	var b strings.Builder
	fmt.Fprintf(&b, `#!/bin/sh
# Upscale host %[1]s: cloud-init runs this once, at first boot. It fetches
# the agent and its credentials from the Upscale server with a one-time key,
# then installs and starts the agent.
set -eu
DIR=%[2]s
SERVER_HOST=%[3]s
SERVER_PORT=%[4]s
HOST=%[5]s
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export PATH
export DEBIAN_FRONTEND=noninteractive
step() { echo "-----> $*"; }
fail() { echo "error: $1: $2"; exit 1; }
# last FILE: its last line, without the carriage return ssh ends some with.
last() { tail -n 1 "$1" | tr -d '\r'; }

if ! command -v ssh > /dev/null 2>&1; then
	step "Installing openssh-client"
	apt-get -qq -o DPkg::Lock::Timeout=300 update > /tmp/upscale-apt.log 2>&1 || { st=$?; fail "installing openssh-client" "apt-get update exited $st: $(last /tmp/upscale-apt.log)"; }
	apt-get -qq -y -o DPkg::Lock::Timeout=300 install openssh-client > /tmp/upscale-apt.log 2>&1 || { st=$?; fail "installing openssh-client" "apt-get exited $st: $(last /tmp/upscale-apt.log)"; }
	rm -f /tmp/upscale-apt.log
fi

umask 022
mkdir -p "$DIR"
chmod 0755 "$DIR"
# Staged inside DIR so that the final moves are renames on one file system;
# private because it holds the key and then the credentials.
umask 077
boot=$(mktemp -d "$DIR/.bootstrap.XXXXXX")
trap 'rm -rf "$boot"' EXIT
printf '%%s\n' %[6]s > "$boot/key"
printf '%%s\n' %[7]s > "$boot/known_hosts"

step "Fetching the agent from $SERVER_HOST:$SERVER_PORT"
# The server may not be reachable the moment the network comes up: retry
# for ten minutes (tests shorten that).
tries=${UPSCALE_BOOTSTRAP_TRIES:-60}
n=0
until ssh -F /dev/null -i "$boot/key" -o IdentitiesOnly=yes -o BatchMode=yes \
	-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$boot/known_hosts" -o GlobalKnownHostsFile=/dev/null \
	-o ConnectTimeout=15 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 \
	-p "$SERVER_PORT" -l %[8]s "$SERVER_HOST" hosts bootstrap "$HOST" > "$boot/agent.tar" 2> "$boot/ssh.log"; do
	n=$((n + 1))
	[ "$n" -lt "$tries" ] || fail "fetching the agent" "ssh exited: $(last "$boot/ssh.log")"
	sleep "${UPSCALE_BOOTSTRAP_WAIT:-10}"
done
rm -f "$boot/key"
mkdir "$boot/files"
# Naming the two members extracts nothing else and fails if one is missing.
tar -x --no-same-owner -f "$boot/agent.tar" -C "$boot/files" upscale-agent credentials.json 2> "$boot/tar.log" ||
	fail "unpacking the agent" "$(head -n 1 "$boot/tar.log" | tr -d '\r')"
[ -f "$boot/files/upscale-agent" ] && [ ! -L "$boot/files/upscale-agent" ] || fail "unpacking the agent" "upscale-agent is not a regular file"
[ -f "$boot/files/credentials.json" ] && [ ! -L "$boot/files/credentials.json" ] || fail "unpacking the agent" "credentials.json is not a regular file"
chmod 0755 "$boot/files/upscale-agent"
chmod 0600 "$boot/files/credentials.json"
mv -f "$boot/files/upscale-agent" "$DIR/upscale-agent"
mv -f "$boot/files/credentials.json" "$DIR/credentials.json"

umask 022
# A quoted here-document adds no escaping; no line of the script can be
# the delimiter, since Check keeps every value to one line.
cat > "$DIR/install.sh" <<'UPSCALE_INSTALL_EOF'
%[9]sUPSCALE_INSTALL_EOF
sh "$DIR/install.sh"
`, in.Host, shellquote.Quote(in.Dir), shellquote.Quote(host), shellquote.Quote(port), shellquote.Quote(in.Host),
		shellquote.Quote(strings.TrimSpace(string(bootstrapKey))), shellquote.Quote(known), BootstrapUser, Script(in))
	return b.String()
}
