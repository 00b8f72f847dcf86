// Running debootstrap and passing its output on as progress lines.

package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// debootstrapEnv is a fixed environment: debootstrap chroots into the
// target and runs maintainer scripts there, which must not see the agent's
// variables, a locale the target lacks, or a PATH without /usr/sbin.
func debootstrapEnv() []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LC_ALL=C",
		"DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true",
	}
	for _, v := range []string{"http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if val, ok := os.LookupEnv(v); ok {
			env = append(env, v+"="+val)
		}
	}
	return env
}

func (b *Builder) debootstrapVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.debootstrap(), "--version")
	cmd.Env = debootstrapEnv()
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "debootstrap ")
}

func (b *Builder) runDebootstrap(ctx context.Context, s spec, target string, progress func(string)) error {
	args := []string{
		"--variant=minbase",
		"--components=main",
		// An image is built from the network and run for every app:
		// refuse an archive whose signature cannot be checked rather than
		// fall back to trusting it, which is debootstrap's default
		// without a keyring.
		"--force-check-gpg",
	}
	if len(s.packages) > 0 {
		args = append(args, "--include="+strings.Join(s.packages, ","))
	}
	args = append(args, s.suite, target, s.mirror)
	// Through sh for the umask: the agent's may be 077, and the files
	// debootstrap writes itself (sources.list) must be readable by every
	// user of the container, not only its root.
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `umask 022 && exec "$0" "$@"`, b.debootstrap()}, args...)...)
	cmd.Env = debootstrapEnv()
	cmd.Dir = "/"
	st := newSteps(progress)
	out := &lineWriter{emit: st.line, keep: 12}
	// One writer for both streams: exec then calls it from one goroutine
	// at a time, and Wait returns only once it has seen all the output.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		// debootstrap mounts /proc and /sys (and, in some containers,
		// binds /dev) inside the target. In a mount namespace of its own
		// those mounts end with it, however it ends, so removing a failed
		// build can never reach into the host's /dev or /proc.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	// debootstrap runs dpkg, chroot and maintainer scripts: cancel them
	// all, not just the script.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out.flush()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("debootstrap stopped: %w", ctx.Err())
	}
	st.dump()
	msg := fmt.Sprintf("debootstrap failed (%v)", err)
	if tail := out.tail(); len(tail) > 0 {
		msg += "; its last lines:\n    " + strings.Join(tail, "\n    ")
	}
	// debootstrap's output points at its log inside the target, which is
	// about to be removed: keep the log where the operator can read it.
	if logData, rerr := os.ReadFile(filepath.Join(target, "debootstrap", "debootstrap.log")); rerr == nil {
		kept := filepath.Join(b.cacheDir(), ".failed-"+s.key+".log")
		if werr := os.WriteFile(kept, logData, 0o600); werr == nil {
			msg += "\n  debootstrap.log, kept as " + kept + ", ends with:\n    " + strings.Join(lastLines(string(logData), 8), "\n    ")
		}
	}
	return errors.New(msg)
}

// lineWriter passes complete lines to emit and keeps the last few.
type lineWriter struct {
	emit    func(string)
	keep    int
	partial []byte
	last    []string
}

// maxLine bounds a line without a newline, so a program printing
// progress bars cannot make the buffer grow without end.
const maxLine = 4096

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := slices.Index(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			if len(w.partial) >= maxLine {
				w.line(w.partial)
				w.partial = w.partial[:0]
			}
			break
		}
		w.partial = append(w.partial, p[:i]...)
		w.line(w.partial)
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) line(b []byte) {
	l := strings.TrimRight(strings.ToValidUTF8(string(b), "?"), " \r\t")
	if l == "" {
		return
	}
	w.emit(l)
	w.last = append(w.last, l)
	if len(w.last) > w.keep {
		w.last = w.last[len(w.last)-w.keep:]
	}
}

func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.line(w.partial)
		w.partial = w.partial[:0]
	}
}

func (w *lineWriter) tail() []string { return w.last }

func lastLines(s string, n int) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
