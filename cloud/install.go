// Package cloud turns a machine into an Upscale host: it installs and starts
// upscale-agent over SSH on an existing Debian machine (Provision), or
// launches an EC2 instance whose user data does the same at first boot
// (EC2.Create with UserData). The server decides names, subnets and
// credentials; this package only carries them out.
//
// Contracts with the rest of Upscale:
//   - The agent exits ExitRevoked (3) when its credentials are revoked;
//     neither systemd nor the supervised loop restarts it then.
//   - Scripts print "-----> step" and "       detail" lines; a failure is one
//     line "error: STEP: CAUSE" and exit status 1 (ScriptError reads it).
//   - UserData fetches the agent with `ssh -p PORT upscale@SERVER hosts
//     bootstrap HOST`; the answer on stdout must be an uncompressed tar whose
//     top level holds the regular files upscale-agent and credentials.json
//     (no "./" prefix); other members are ignored.
package cloud

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"

	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/shellquote"
)

// Defaults for the Install fields left empty.
const (
	DefaultBridge     = "upsbr0"
	DefaultDir        = "/opt/upscale-agent"
	DefaultImageCache = "/var/cache/upscale/images"
)

// DefaultPackages are the Debian packages the agent needs: LXC for
// containers, debootstrap for runtime images, nftables and iproute2 for the
// bridge and NAT, ca-certificates for the Debian mirror over HTTPS.
func DefaultPackages() []string {
	return []string{"lxc", "debootstrap", "nftables", "iproute2", "ca-certificates"}
}

// ExitRevoked is the agent's exit status when the server revoked its
// credentials: restarting it would only be refused again, so neither systemd
// nor the supervised loop restarts it.
const ExitRevoked = 3

// Install is what goes onto a host.
type Install struct {
	Host        string   // the host's name on the bus, ^[a-z][a-z0-9-]{0,39}$
	Address     string   // the host's address as the server reaches it (agent --address); "" = the agent's first IPv4
	Subnet      string   // its container subnet, e.g. "10.77.3.0/24" (agent --subnet)
	Router      string   // the router's address as the host sees it (agent --ingress-allow); "" = only the bus server's
	Bridge      string   // default DefaultBridge
	Credentials []byte   // the agent's bus credentials file (JSON, secret: never logged)
	Agent       string   // local path of the upscale-agent binary to copy
	Dir         string   // install directory on the host, default DefaultDir
	Packages    []string // Debian packages the agent needs, default DefaultPackages()
	ImageCache  string   // default DefaultImageCache
}

func (in Install) withDefaults() Install {
	if in.Bridge == "" {
		in.Bridge = DefaultBridge
	}
	if in.Dir == "" {
		in.Dir = DefaultDir
	}
	if in.Packages == nil {
		in.Packages = DefaultPackages()
	}
	if in.ImageCache == "" {
		in.ImageCache = DefaultImageCache
	}
	return in
}

var (
	// Paths, addresses and package names end up unquoted in a systemd unit
	// (where a space splits arguments and % starts a specifier), so they are
	// held to characters that mean nothing there nor to a shell.
	safePath    = regexp.MustCompile(`^/[A-Za-z0-9._/-]*$`)
	safeAddress = regexp.MustCompile(`^[A-Za-z0-9.:-]{1,253}$`)
	safeBridge  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,14}$`)
	safePackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{1,99}$`)
)

// Check reports the first field of in (with defaults applied) that cannot
// go onto a host. Script and UserData refuse to work from such an Install.
func (in Install) Check() error {
	in = in.withDefaults()
	if err := names.Check("host", in.Host); err != nil {
		return err
	}
	if in.Address != "" && !safeAddress.MatchString(in.Address) {
		return fmt.Errorf("invalid host address %s", names.Quote(in.Address))
	}
	if a, err := netip.ParseAddr(in.Router); in.Router != "" && (err != nil || !a.Is4()) {
		return fmt.Errorf("invalid router address %s: want an IPv4 address", names.Quote(in.Router))
	}
	p, err := netip.ParsePrefix(in.Subnet)
	if err != nil || p != p.Masked() {
		return fmt.Errorf("invalid container subnet %s: want a network such as 10.77.3.0/24", names.Quote(in.Subnet))
	}
	if !safeBridge.MatchString(in.Bridge) {
		return fmt.Errorf("invalid bridge name %s: use up to 15 lowercase letters, digits and dashes", names.Quote(in.Bridge))
	}
	if err := checkPath("install directory", in.Dir); err != nil {
		return err
	}
	// Uninstalling ends with rm -rf of Dir: a typo such as /usr must never
	// get that far.
	if base := path.Base(in.Dir); strings.Count(in.Dir, "/") < 2 || !strings.Contains(base, "upscale") {
		return fmt.Errorf("install directory %s must be at least two levels deep and its last element must contain \"upscale\"", names.Quote(in.Dir))
	}
	if err := checkPath("image cache", in.ImageCache); err != nil {
		return err
	}
	for _, p := range in.Packages {
		if !safePackage.MatchString(p) {
			return fmt.Errorf("invalid Debian package name %s", names.Quote(p))
		}
	}
	return nil
}

func checkPath(what, p string) error {
	if !safePath.MatchString(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("invalid %s %s: want a clean absolute path of letters, digits, '.', '_', '-'", what, names.Quote(p))
	}
	return nil
}

// Unit is the systemd unit name of host's agent; one per host name lets
// several agents (tests, several hosts on one machine) live side by side.
func Unit(host string) string { return "upscale-agent-" + host + ".service" }

// agentArgs is the agent's command line (without the binary) for in.
func agentArgs(in Install) []string {
	args := []string{
		"--credentials", path.Join(in.Dir, "credentials.json"),
		"--name", in.Host,
		"--state", path.Join(in.Dir, "state"),
		"--lxcpath", path.Join(in.Dir, "state", "containers"),
		"--images", in.ImageCache,
		"--bridge", in.Bridge,
		"--subnet", in.Subnet,
	}
	if in.Address != "" {
		args = append(args, "--address", in.Address)
	}
	if in.Router != "" {
		args = append(args, "--ingress-allow", in.Router)
	}
	return args
}

// Script is the shell script (POSIX sh, set -eu) that, run as root on the
// host with the binary at Dir/upscale-agent and the credentials at
// Dir/credentials.json already in place, installs the missing packages and
// starts the agent: under systemd when /run/systemd/system exists, as a
// supervised loop (pidfile Dir/supervisor.pid, log Dir/agent.log) otherwise.
// Re-running it upgrades in place.
//
// Output: "-----> step" and "       detail" lines. A failure prints one line
// "error: STEP: CAUSE" and exits 1 (see ScriptError). The environment
// variable UPSCALE_SYSTEMD_ROOT, when set, is prefixed to
// /run/systemd/system and /etc/systemd/system so tests can simulate
// systemd. For an Install that fails Check, the script only prints that
// error and exits 1.
func Script(in Install) string {
	in = in.withDefaults()
	if err := in.Check(); err != nil {
		return refusal(err)
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Installs or upgrades the Upscale agent of host " + in.Host + ". Generated by upscale; safe to re-run.\n")
	b.WriteString(prelude(in))
	fmt.Fprintf(&b, "PACKAGES=%s\n", shellquote.Quote(strings.Join(in.Packages, " ")))
	b.WriteString(installBody)
	fmt.Fprintf(&b, "\nwrite_unit() {\n\tcat > \"$1\" <<'UPSCALE_UNIT_EOF'\n%sUPSCALE_UNIT_EOF\n}\n", unitFile(in))
	fmt.Fprintf(&b, "\nwrite_supervisor() {\n\tcat > \"$1\" <<'UPSCALE_SUPERVISOR_EOF'\n%sUPSCALE_SUPERVISOR_EOF\n}\n", supervisor(in))
	b.WriteString(startBody)
	return b.String()
}

// UninstallScript stops the agent (systemd unit or supervised loop),
// destroys its containers with `upscale-agent --teardown` and removes Dir.
// The image cache stays: other agents on the machine may share it.
func UninstallScript(in Install) string {
	in = in.withDefaults()
	if err := in.Check(); err != nil {
		return refusal(err)
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Removes the Upscale agent of host " + in.Host + " and its containers. Generated by upscale.\n")
	b.WriteString(prelude(in))
	fmt.Fprintf(&b, "TEARDOWN=%s\n", shellquote.Quote(strings.Join([]string{
		"--teardown", "--state", path.Join(in.Dir, "state"), "--bridge", in.Bridge, "--subnet", in.Subnet,
	}, " ")))
	b.WriteString(uninstallBody)
	return b.String()
}

func refusal(err error) string {
	return "#!/bin/sh\necho " + shellquote.Quote("error: checking the install: "+msgtext.OneLine(err.Error())) + "\nexit 1\n"
}

// prelude holds what both scripts share: settings and helpers.
func prelude(in Install) string {
	return fmt.Sprintf(`set -eu
DIR=%s
HOST=%s
UNIT=%s
SYSTEMD_ROOT="${UPSCALE_SYSTEMD_ROOT:-}"
# sudo and cloud-init may hand us a PATH without the sbin directories.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export PATH
export DEBIAN_FRONTEND=noninteractive

step() { echo "-----> $*"; }
info() { echo "       $*"; }
fail() { echo "error: $1: $2"; exit 1; }
last() { tail -n 1 "$1" | tr -d '\r'; }

# alive PID WORD: PID runs a command line containing WORD, so that a stale
# pidfile whose number was reused by another process is never acted on.
alive() {
	case "$1" in ''|*[!0-9]*) return 1 ;; esac
	[ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF -- "$2"
}

# stop_pid PID WORD: TERM, then KILL after 10 s.
stop_pid() {
	alive "$1" "$2" || return 0
	kill "$1" 2>/dev/null || true
	i=0
	while alive "$1" "$2"; do
		i=$((i + 1))
		if [ "$i" -ge 100 ]; then
			kill -9 "$1" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
}

# stop_supervisor stops the supervised loop and then its agent, should the
# loop itself have been killed without passing TERM on.
stop_supervisor() {
	if [ -f "$DIR/supervisor.pid" ]; then
		stop_pid "$(cat "$DIR/supervisor.pid" 2>/dev/null)" "$DIR/supervise.sh"
		rm -f "$DIR/supervisor.pid"
	fi
	if [ -f "$DIR/agent.pid" ]; then
		stop_pid "$(cat "$DIR/agent.pid" 2>/dev/null)" "$DIR/upscale-agent"
		rm -f "$DIR/agent.pid"
	fi
}

`, shellquote.Quote(in.Dir), shellquote.Quote(in.Host), shellquote.Quote(Unit(in.Host)))
}

const installBody = `
step "Checking $DIR"
[ -f "$DIR/upscale-agent" ] || fail "checking the agent files" "$DIR/upscale-agent is missing"
[ -f "$DIR/credentials.json" ] || fail "checking the agent files" "$DIR/credentials.json is missing"
chmod 0755 "$DIR" "$DIR/upscale-agent"
chmod 0600 "$DIR/credentials.json"
# 0711: the containers' mapped root must traverse down to their rootfs;
# no one else lists or reads the agent's state (the agent sets it too).
mkdir -p "$DIR/state/containers"
chmod 0711 "$DIR/state"

missing=
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$'; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	step "Installing packages:$missing"
	# A fresh machine's package lists are often empty or stale, and its
	# unattended-upgrades may hold the dpkg lock for a while after boot.
	apt-get -qq -o DPkg::Lock::Timeout=300 update > "$DIR/apt.log" 2>&1 || { st=$?; fail "installing packages" "apt-get update exited $st: $(last "$DIR/apt.log")"; }
	# $missing unquoted: one word per package.
	apt-get -qq -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install $missing > "$DIR/apt.log" 2>&1 || { st=$?; fail "installing packages" "apt-get exited $st: $(last "$DIR/apt.log")"; }
	rm -f "$DIR/apt.log"
else
	step "Packages already installed: $PACKAGES"
fi
`

const startBody = `
if [ -d "$SYSTEMD_ROOT/run/systemd/system" ]; then
	step "Starting $UNIT under systemd"
	# The host may have run the supervised loop before systemd came along.
	stop_supervisor
	units="$SYSTEMD_ROOT/etc/systemd/system"
	mkdir -p "$units"
	write_unit "$units/$UNIT.tmp"
	mv -f "$units/$UNIT.tmp" "$units/$UNIT"
	systemctl daemon-reload || fail "starting the agent" "systemctl daemon-reload exited $?"
	systemctl enable --quiet "$UNIT" || fail "starting the agent" "systemctl enable $UNIT exited $?"
	# restart, not start: re-running the script is how the agent is upgraded.
	systemctl restart "$UNIT" || fail "starting the agent" "systemctl restart $UNIT exited $?; see journalctl -u $UNIT"
	info "journalctl -u $UNIT shows its log"
else
	step "Starting the agent as a supervised process (no systemd)"
	stop_supervisor
	write_supervisor "$DIR/supervise.sh.tmp"
	mv -f "$DIR/supervise.sh.tmp" "$DIR/supervise.sh"
	# setsid: the loop must outlive the SSH session or cloud-init run that
	# started it, and not get their hangup.
	setsid sh "$DIR/supervise.sh" < /dev/null > /dev/null 2>&1 &
	i=0
	until [ -f "$DIR/supervisor.pid" ] && alive "$(cat "$DIR/supervisor.pid" 2>/dev/null)" "$DIR/supervise.sh"; do
		i=$((i + 1))
		[ "$i" -lt 100 ] || fail "starting the agent" "the supervisor did not start"
		sleep 0.1
	done
	info "supervisor pid $(cat "$DIR/supervisor.pid" 2>/dev/null), log $DIR/agent.log"
fi
step "Agent started for host $HOST"
`

const uninstallBody = `
step "Stopping the agent"
units="$SYSTEMD_ROOT/etc/systemd/system"
if [ -f "$units/$UNIT" ]; then
	if [ -d "$SYSTEMD_ROOT/run/systemd/system" ]; then
		systemctl disable --now --quiet "$UNIT" || fail "stopping the agent" "systemctl disable --now $UNIT exited $?"
	fi
	rm -f "$units/$UNIT"
	if [ -d "$SYSTEMD_ROOT/run/systemd/system" ]; then
		systemctl daemon-reload || true
	fi
fi
stop_supervisor

if [ -x "$DIR/upscale-agent" ]; then
	step "Destroying the agent's containers"
	# $TEARDOWN unquoted: its words hold no spaces nor globs (Check).
	"$DIR/upscale-agent" $TEARDOWN > "$DIR/teardown.log" 2>&1 || { st=$?; fail "destroying containers" "upscale-agent --teardown exited $st: $(last "$DIR/teardown.log")"; }
fi

step "Removing $DIR"
rm -rf "$DIR"
`

func unitFile(in Install) string {
	bin := path.Join(in.Dir, "upscale-agent")
	return fmt.Sprintf(`[Unit]
Description=Upscale agent of host %s
After=network-online.target
Wants=network-online.target
# Never give up: the bus may be away for longer than any start limit.
StartLimitIntervalSec=0

[Service]
ExecStart=%s %s
Restart=always
RestartSec=1
# 3 = credentials revoked: starting again would only be refused again.
RestartPreventExitStatus=%d
# Only the agent stops on restart or upgrade; its containers keep serving.
KillMode=process
# LXC creates the containers' cgroups below the agent's own.
Delegate=yes
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`, in.Host, bin, strings.Join(agentArgs(in), " "), ExitRevoked)
}

func supervisor(in Install) string {
	quoted := make([]string, 0, 1+len(agentArgs(in)))
	quoted = append(quoted, shellquote.Quote(path.Join(in.Dir, "upscale-agent")))
	for _, a := range agentArgs(in) {
		quoted = append(quoted, shellquote.Quote(a))
	}
	return fmt.Sprintf(`#!/bin/sh
# Supervises the Upscale agent of host %s where there is no systemd: restarts
# it 1 s after it exits, unless it exits %d (credentials revoked).
DIR=%s
LOG="$DIR/agent.log"
echo $$ > "$DIR/supervisor.pid"
child=
# TERM stops the agent and the loop, never the containers: they are not
# our children.
trap 'if [ -n "$child" ]; then kill "$child" 2>/dev/null; wait "$child"; fi; rm -f "$DIR/supervisor.pid" "$DIR/agent.pid"; exit 0' TERM INT
while :; do
	# Keep one old log: a crash loop must not fill the disk.
	if [ -f "$LOG" ] && [ "$(wc -c < "$LOG")" -gt 10485760 ]; then
		mv -f "$LOG" "$LOG.1"
	fi
	%s >> "$LOG" 2>&1 &
	child=$!
	echo "$child" > "$DIR/agent.pid"
	st=0
	wait "$child" || st=$?
	child=
	if [ "$st" -eq %d ]; then
		echo "upscale-supervisor: upscale-agent exited %d (credentials revoked): not restarting" >> "$LOG"
		rm -f "$DIR/supervisor.pid" "$DIR/agent.pid"
		exit %d
	fi
	echo "upscale-supervisor: upscale-agent exited $st: restarting in 1 s" >> "$LOG"
	sleep 1
done
`, in.Host, ExitRevoked, shellquote.Quote(in.Dir), strings.Join(quoted, " "), ExitRevoked, ExitRevoked, ExitRevoked)
}

// ScriptError finds the failure a script printed ("error: STEP: CAUSE",
// the last one wins) and returns step and cause; ok is false when there is
// none.
func ScriptError(output string) (step, cause string, ok bool) {
	lines := strings.Split(output, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		rest, found := strings.CutPrefix(strings.TrimRight(lines[i], "\r"), "error: ")
		if !found {
			continue
		}
		step, cause, found = strings.Cut(rest, ": ")
		if !found || step == "" {
			return "", msgtext.OneLine(rest), true
		}
		return msgtext.OneLine(step), msgtext.OneLine(cause), true
	}
	return "", "", false
}
