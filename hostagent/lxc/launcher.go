package lxc

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/upscalehq/upscale/shellquote"
)

// Paths inside the container. The state directory lives in the upper dir so
// the host can read the log and the exit status without entering the
// container.
const (
	stateDirIn  = "/.upscale"
	appDirIn    = "/app"
	launcherIn  = stateDirIn + "/init"
	logName     = "app.log"
	exitName    = "exit"
	oomName     = "oom"
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// Raising a score needs no privilege, so the launcher can set it from
	// inside; lowering PID 1's instead would need CAP_SYS_RESOURCE on the
	// host, which not every agent has.
	appOOMScoreAdj = 500
)

// launcher is the container's init: a POSIX shell script run by /bin/sh
// (dash in Debian images, busybox ash in the test image).
//
// Why a wrapper rather than exec'ing the app as PID 1: the kernel drops every
// signal sent to a pid namespace's init for which the init has no handler, so
// a Python http.server running as PID 1 would ignore SIGTERM and only die at
// the SIGKILL after the grace period. The wrapper installs handlers and
// forwards TERM/INT/HUP to the app's process group.
//
// The app is started under setsid (when the image has it) so it leads its own
// process group: if `sh -c` does not exec the command (compound command
// lines), both the shell and the real app get the signal. After a forwarded
// TERM the wrapper also waits until that whole group is gone, because the
// kernel SIGKILLs everything left in the container as soon as PID 1 exits.
//
// The app's oom_score_adj is raised (appOOMScoreAdj) so that, over its
// memory limit, the OOM killer takes the app rather than PID 1.
//
// The exit status, and the OOM killer's count for the container's cgroup
// when it is not 0, are written to the state dir before the wrapper exits;
// when the wrapper itself is SIGKILLed (grace expired) no status is written
// and the runtime records 137 on its own. The count is read from inside
// because LXC removes the cgroup as soon as the container stops, before the
// host could look, and a status of 137 does not say who killed the app.
type launcher struct {
	StateDir string // stateDirIn, other values only in tests
	AppDir   string // appDirIn, other values only in tests
	Env      map[string]string
	Command  string
}

func (l launcher) script() []byte {
	var b bytes.Buffer
	u := shellquote.Quote(l.StateDir)
	fmt.Fprintf(&b, `#!/bin/sh
# Written by upscale-agent (hostagent/lxc): the container's PID 1.
# It forwards TERM/INT/HUP to the app's process group (PID 1 ignores signals
# it has no handler for) and records the app's exit status in %[2]s/exit.
u=%[1]s
rm -f "$u/exit" "$u/%[5]s"
pid=
sig=
stopping=
fwd() {
	[ -n "$pid" ] || return 0
	kill -"$1" -"$pid" 2>/dev/null || kill -"$1" "$pid" 2>/dev/null
}
trap 'sig=1; stopping=1; fwd TERM' TERM
trap 'sig=1; fwd INT' INT
trap 'sig=1; fwd HUP' HUP
sid=
for p in /usr/bin/setsid /bin/setsid /usr/sbin/setsid /sbin/setsid; do
	if [ -x "$p" ]; then sid=$p; break; fi
done
(
	# Make the app the OOM killer's choice: over its memory limit it must
	# die, not PID 1 (that would take the container down and lose the exit
	# status), and in a host-wide shortage apps go before host services.
	echo %[4]d >/proc/self/oom_score_adj 2>/dev/null
	cd %[3]s || exit 126
	# Positional parameters rather than $sid: the exports below may set any
	# variable, IFS and sid included.
	if [ -n "$sid" ]; then set -- "$sid"; else set --; fi
`, u, strings.ReplaceAll(l.StateDir, "\n", " "), shellquote.Quote(l.AppDir), appOOMScoreAdj, oomName)
	for _, k := range sortedKeys(l.Env) {
		fmt.Fprintf(&b, "\texport %s=%s\n", k, shellquote.Quote(l.Env[k]))
	}
	fmt.Fprintf(&b, `	exec "$@" /bin/sh -c %s
) </dev/null >>"$u/%s" 2>&1 &
pid=$!
if [ -n "$stopping" ]; then fwd TERM; fi
# wait returns early (>128) when a trapped signal arrives, even if the app
# exited meanwhile; waiting again then returns the app's real status, which
# the shell keeps (dash and busybox ash alike).
while :; do
	sig=
	wait "$pid"
	code=$?
	[ -n "$sig" ] || break
done
if [ -n "$stopping" ]; then
	while kill -0 -"$pid" 2>/dev/null; do sleep 0.1 2>/dev/null || sleep 1 || break; done
fi
# cgroup v2's memory.events, else v1's memory.oom_control: both have a line
# "oom_kill N" for this container's cgroup (the cgroup namespace's root).
for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
	[ -r "$f" ] || continue
	while read -r k v; do
		if [ "$k" = oom_kill ] && [ "$v" != 0 ]; then echo "$v" >"$u/%s"; fi
	done <"$f"
	break
done
echo "$code" >"$u/exit"
exit "$code"
`, shellquote.Quote(l.Command), logName, oomName)
	return b.Bytes()
}

// appEnv is the command's environment: defaults a bare LXC init lacks, then
// the caller's values, which win.
func appEnv(env map[string]string) map[string]string {
	out := map[string]string{
		"PATH":             defaultPath,
		"HOME":             "/root",
		"LANG":             "C.UTF-8",
		"PYTHONUNBUFFERED": "1",
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
