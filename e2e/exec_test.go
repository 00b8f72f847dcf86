package e2e

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// execContainers is the one-off containers the host has now.
func (d *deployWorld) execContainers(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, c := range d.containers(t) {
		if strings.HasPrefix(c, "exec-") {
			out = append(out, c)
		}
	}
	return out
}

// waitNoExecContainers fails t unless every one-off container is gone
// within a few seconds.
func (d *deployWorld) waitNoExecContainers(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(d.execContainers(t)) > 0 {
		if time.Now().After(deadline) {
			t.Errorf("%s: one-off containers left: %v", what, d.execContainers(t))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// app exec: a one-off container of the live release, with its code and
// environment; output streams back, the exit status passes through, and
// the container is gone afterwards, also after a time limit or a dropped
// session. ssh joins its arguments with spaces, so words with spaces are
// quoted once more for the server's own split.
func TestExec(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	d.mustPush(t, rig.Repo(t, helloApp(t, "from-app-yaml", "runtime: python\nhealth: /\n")), app)
	d.mustServe(t, app, "from-app-yaml\n")
	instances := d.running(t, app)

	t.Run("exit status passes through", func(t *testing.T) {
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "sh", "-c", "'echo hi; echo oops >&2; exit 3'")
		if code != 3 || out != "hi\noops\n" {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 3 and hi, oops", code, out, errs)
		}
		out, errs, code = d.srv.SSH(d.key, "", "app", "exec", app, "--", "true")
		if code != 0 || out != "" || errs != "" {
			t.Errorf("true: exit %d, stdout %q, stderr %q", code, out, errs)
		}
		d.waitNoExecContainers(t, "after commands ended")
	})

	// What a user types in their own shell: ssh joins sh, -c, exit 7 with
	// spaces and the quotes are gone; the script still is "exit 7".
	t.Run("sh -c quoted once over ssh", func(t *testing.T) {
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "sh", "-c", "exit 7")
		if code != 7 {
			t.Errorf("sh -c 'exit 7': exit %d, stdout %q, stderr %q; want 7", code, out, errs)
		}
		out, errs, code = d.srv.SSH(d.key, "", "app", "exec", app, "--", "sh", "-c", "echo $MESSAGE; exit 3")
		if code != 3 || out != "from-app-yaml\n" {
			t.Errorf("sh -c 'echo $MESSAGE; exit 3': exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})

	t.Run("much output arrives whole and in order", func(t *testing.T) {
		begin := time.Now()
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "seq", "1", "20000")
		var want strings.Builder
		for i := 1; i <= 20000; i++ {
			fmt.Fprintf(&want, "%d\n", i)
		}
		if code != 0 || out != want.String() {
			t.Errorf("seq 1 20000: exit %d, %d bytes (want %d), stderr %q", code, len(out), want.Len(), errs)
		}
		t.Logf("20000 lines in %s", time.Since(begin).Round(time.Millisecond))
	})

	t.Run("command not found is 127", func(t *testing.T) {
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "nonexistent-cmd", "--flag")
		if code != 127 || !strings.Contains(out, "nonexistent-cmd: not found") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 127 and the shell's not found", code, out, errs)
		}
	})

	t.Run("release code and environment", func(t *testing.T) {
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "sh", "-c", `'echo "$MESSAGE $PORT"; pwd; ls app.py'`)
		if code != 0 || out != "from-app-yaml 8080\n/app\napp.py\n" {
			t.Errorf("exit %d, stdout %q, stderr %q; want app.yaml's env, PORT, in /app with the code", code, out, errs)
		}
		// Words are given as they are: no second round of shell expansion.
		out, errs, code = d.srv.SSH(d.key, "", "app", "exec", app, "--", "echo", "'a  b'", "'$HOME'", "'*'")
		if code != 0 || out != "a  b $HOME *\n" {
			t.Errorf("echo: exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})

	t.Run("config vars win over app.yaml", func(t *testing.T) {
		d.ssh(t, "config", "set", app, "'MESSAGE=from config'", "EXTRA=x")
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "sh", "-c", `'echo "$MESSAGE/$EXTRA"'`)
		if code != 0 || out != "from config/x\n" {
			t.Errorf("exit %d, stdout %q, stderr %q; want the config vars of the live release", code, out, errs)
		}
		instances = d.running(t, app) // config set deployed a new release
	})

	t.Run("time limit", func(t *testing.T) {
		begin := time.Now()
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", "--timeout", "2s", app, "--", "sh", "-c", "'echo started; sleep 60'")
		if code != 124 || out != "started\n" || strings.Count(errs, "\n") != 1 ||
			!strings.Contains(errs, "error: time limit: the command ran longer than 2s and was stopped") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 124 and one line on the time limit", code, out, errs)
		}
		if took := time.Since(begin); took > 20*time.Second {
			t.Errorf("a 2s time limit took %s", took)
		}
		d.waitNoExecContainers(t, "after the time limit")
	})

	t.Run("output streams and the session ending stops it", func(t *testing.T) {
		argv := append(d.srv.SSHCommand(d.key), "upscale@127.0.0.1", "app", "exec", app, "--", "sh", "-c", "'echo first; sleep 300'")
		cmd := exec.Command(argv[0], argv[1:]...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		lines := make(chan string, 1)
		go func() {
			l, _ := bufio.NewReader(stdout).ReadString('\n')
			lines <- l
		}()
		select {
		case l := <-lines:
			if l != "first\n" {
				t.Fatalf("first line %q", l)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no output within 30s while the command runs")
		}
		if len(d.execContainers(t)) != 1 {
			t.Fatalf("while it runs, one-off containers: %v", d.execContainers(t))
		}
		cmd.Process.Kill()
		cmd.Wait()
		d.waitNoExecContainers(t, "after the ssh client went away")
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{app}, "app exec needs NS/APP -- COMMAND [ARG...]"},
			{[]string{app, "--"}, "app exec needs NS/APP -- COMMAND [ARG...]"},
			{[]string{app, "ls"}, "app exec needs NS/APP -- COMMAND [ARG...]"},
			{[]string{"--timeout", "0s", app, "--", "ls"}, "--timeout must be more than 0"},
			{[]string{"--timeout", "48h", app, "--", "ls"}, "at most 24h0m0s"},
			{[]string{"acme/nope", "--", "ls"}, "app acme/nope not found"},
			{[]string{"acme/api", "--", "ls"}, "app acme/api has no live release to run a command in; push first"},
		} {
			_, errs, code := d.srv.SSH(d.key, "", append([]string{"app", "exec"}, tc.args...)...)
			oneErrorLine(t, "app exec "+strings.Join(tc.args, " "), errs, code, tc.want)
		}
	})

	// None of it touched the app.
	if got := d.running(t, app); strings.Join(got, " ") != strings.Join(instances, " ") {
		t.Errorf("instances changed from %v to %v", instances, got)
	}
	d.mustServe(t, app, "from config\n")
}
