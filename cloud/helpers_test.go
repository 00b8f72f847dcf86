package cloud_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stubAgent is a shell script standing in for upscale-agent. Each start
// appends "PID NETNS ARGS" to starts; start number n then exits with line
// n of plan, or runs until TERM when that line is missing or "run".
// --teardown only appends its arguments to teardown.
func stubAgent(starts, plan, teardown string) string {
	return `#!/bin/sh
case " $* " in *" --teardown "*) echo "$*" >> '` + teardown + `'; exit 0 ;; esac
echo "$$ $(readlink /proc/self/ns/net) $*" >> '` + starts + `'
n=$(wc -l < '` + starts + `')
code=$(sed -n "${n}p" '` + plan + `' 2>/dev/null || true)
if [ -n "$code" ] && [ "$code" != run ]; then exit "$code"; fi
trap 'exit 0' TERM
# Short sleeps: nothing outlives this stub by more than 0.2 s.
while :; do sleep 0.2; done
`
}

// fakeTools writes apt-get, dpkg-query and systemctl stubs into a new
// directory and returns it (to go first on PATH) and the log they append
// their arguments to. dpkg-query says every package is installed except
// those in $FAKE_MISSING; apt-get install fails like a missing package
// when $FAKE_APT_FAIL is set.
func fakeTools(t *testing.T) (bin, log string) {
	t.Helper()
	bin = t.TempDir()
	log = filepath.Join(bin, "calls.log")
	tools := map[string]string{
		"dpkg-query": `#!/bin/sh
printf "%s\\n" "dpkg-query $*" >> '` + log + `'
for p in "$@"; do pkg=$p; done
for m in ${FAKE_MISSING:-}; do
	if [ "$m" = "$pkg" ]; then echo "dpkg-query: no packages found matching $pkg" >&2; exit 1; fi
done
echo "install ok installed"
`,
		"apt-get": `#!/bin/sh
printf "%s\\n" "apt-get $*" >> '` + log + `'
case " $* " in *" install "*)
	if [ -n "${FAKE_APT_FAIL:-}" ]; then echo "Reading package lists..."; echo "E: Unable to locate package nope" >&2; exit 100; fi ;;
esac
exit 0
`,
		"systemctl": `#!/bin/sh
printf "%s\\n" "systemctl $*" >> '` + log + `'
`,
	}
	for name, body := range tools {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin, log
}

// runScript runs script with sh and env added to ours; it returns the
// combined output and exit status.
func runScript(t *testing.T, script string, env ...string) (string, int) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", f)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The supervisor it starts keeps no pipe of ours open, or Wait would
	// hang; a time limit makes such a bug a failure, not a stuck test.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running the script: %v\n%s", err, out.String())
	}
	return out.String(), 0
}

// killUnder ends every process whose command line contains dir, a unique
// temp path of one test: supervisors and stub agents it started, however
// the test ended. TERM first so the stubs end their sleeps, then KILL.
func killUnder(t *testing.T, dir string) {
	t.Helper()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		pids := pidsUnder(dir)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, sig)
		}
		deadline := time.Now().Add(3 * time.Second)
		for len(pidsUnder(dir)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if left := pidsUnder(dir); len(left) > 0 {
		t.Errorf("processes under %s survive KILL: %v", dir, left)
	}
}

func pidsUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid runs (a zombie counts as gone).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func readPid(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return pid
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lines(file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func mode(t *testing.T, file string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }
