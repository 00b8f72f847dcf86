package lxc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The launcher runs here without a container so its shell logic is checked
// on every machine, with each shell it meets in images: dash and busybox ash.
// When unshare(1) can make a pid namespace it runs as PID 1 there, which is
// what makes signals without handlers vanish and orphans its to reap.
func launcherShells(t *testing.T) []string {
	var shells []string
	for _, sh := range []string{"/bin/dash", "/bin/busybox"} {
		if _, err := os.Stat(sh); err == nil {
			shells = append(shells, sh)
		}
	}
	if len(shells) == 0 {
		t.Skip("neither dash nor busybox installed")
	}
	return shells
}

type launched struct {
	cmd     *exec.Cmd
	unshare bool // the launcher is the child of cmd, not cmd
	dir     string
}

func (l launched) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	pid := l.cmd.Process.Pid
	if l.unshare {
		pid = childOf(t, pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
}

func runLauncher(t *testing.T, shell string, l launcher) launched {
	t.Helper()
	dir := t.TempDir()
	l.StateDir = filepath.Join(dir, "state")
	l.AppDir = filepath.Join(dir, "app")
	for _, d := range []string{l.StateDir, l.AppDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(dir, "init")
	if err := os.WriteFile(script, l.script(), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{script}
	if strings.HasSuffix(shell, "busybox") {
		args = []string{"sh", script}
	}
	args = append([]string{shell}, args...)
	pidns := pidNamespaceArgs()
	cmd := exec.Command(pidns[0], append(pidns[1:], args...)...)
	cmd.Env = []string{"PATH=" + defaultPath}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return launched{cmd: cmd, unshare: len(pidns) > 1, dir: dir}
}

// pidNamespaceArgs is the command prefix that runs the launcher as PID 1 of
// a new pid namespace, or env(1) when unshare cannot do it here.
func pidNamespaceArgs() []string {
	try := [][]string{{"unshare", "--pid", "--fork", "--kill-child"}, {"unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"}}
	for _, args := range try {
		if exec.Command(args[0], append(args[1:], "true")...).Run() == nil {
			return args
		}
	}
	return []string{"env"}
}

func childOf(t *testing.T, pid int) int {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no child under unshare %d", pid)
	return 0
}

func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("launcher did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestLauncherExitCodeAndEnv(t *testing.T) {
	tricky := "it's a \"test\"\n$HOME `id` \\ \t end'"
	for _, sh := range launcherShells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			l := launcher{
				Env: appEnv(map[string]string{
					"TRICKY": tricky,
					"IFS":    "/",
					"sid":    "/nonexistent",
					"u":      "elsewhere",
				}),
				Command: `printf '%s' "$TRICKY" > tricky; printf '%s' "$PYTHONUNBUFFERED" > unbuf; pwd > pwd; echo to-log; echo err-to-log >&2; exit 3`,
			}
			run := runLauncher(t, sh, l)
			dir := run.dir
			if code := waitExit(t, run.cmd); code != 3 {
				t.Errorf("launcher exit = %d, want 3", code)
			}
			if got := readTrim(t, filepath.Join(dir, "state", "exit")); got != "3" {
				t.Errorf("exit file = %q, want 3", got)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "app", "tricky")); string(b) != tricky {
				t.Errorf("TRICKY = %q, want %q", b, tricky)
			}
			if got := readTrim(t, filepath.Join(dir, "app", "unbuf")); got != "1" {
				t.Errorf("PYTHONUNBUFFERED = %q", got)
			}
			if got := readTrim(t, filepath.Join(dir, "app", "pwd")); got != filepath.Join(dir, "app") {
				t.Errorf("cwd = %q", got)
			}
			if got := readTrim(t, filepath.Join(dir, "state", logName)); got != "to-log\nerr-to-log" {
				t.Errorf("log = %q", got)
			}
		})
	}
}

func TestLauncherForwardsTERM(t *testing.T) {
	for _, sh := range launcherShells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			l := launcher{
				Env:     appEnv(nil),
				Command: `trap 'echo got-term > marker; exit 0' TERM; echo ready > ready; while :; do sleep 0.05; done`,
			}
			run := runLauncher(t, sh, l)
			dir := run.dir
			waitFile(t, filepath.Join(dir, "app", "ready"))
			run.signal(t, syscall.SIGTERM)
			if code := waitExit(t, run.cmd); code != 0 {
				t.Errorf("launcher exit = %d, want 0 (the app handled TERM)", code)
			}
			if got := readTrim(t, filepath.Join(dir, "app", "marker")); got != "got-term" {
				t.Errorf("marker = %q", got)
			}
			if got := readTrim(t, filepath.Join(dir, "state", "exit")); got != "0" {
				t.Errorf("exit file = %q", got)
			}
		})
	}
}

// A compound command line keeps `sh -c` alive as the app's parent; TERM
// must still reach the grandchild, and the launcher must wait for it.
func TestLauncherTERMReachesProcessGroup(t *testing.T) {
	for _, sh := range launcherShells(t) {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			l := launcher{
				Env:     appEnv(nil),
				Command: `/bin/sh -c 'trap "sleep 0.3; echo child-term > marker; exit 0" TERM; echo ready > ready; while :; do sleep 0.05; done'; echo after`,
			}
			run := runLauncher(t, sh, l)
			dir := run.dir
			waitFile(t, filepath.Join(dir, "app", "ready"))
			run.signal(t, syscall.SIGTERM)
			waitExit(t, run.cmd)
			// The grandchild's delayed handler finished before the launcher left.
			if got := readTrim(t, filepath.Join(dir, "app", "marker")); got != "child-term" {
				t.Errorf("marker = %q", got)
			}
		})
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
}
