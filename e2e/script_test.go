package e2e

// User stories as transcripts: each testdata/script/*.txtar is one user's
// session against a server of its own (rig.StartWithAgent), written as the
// ssh, git and curl commands they type and what those print. Multi-host
// stories and anything about timing stay Go tests.
//
// Adding a story: write testdata/script/NAME.txtar (see
// testdata/script/README.md for the commands and conventions) and run it
// alone, under the shared lock:
//
//	flock /tmp/upscale-e2e.lock env UPSCALE_E2E=1 go test -count=1 -run 'TestScripts/NAME' ./e2e/
//
// Then break what it shows (an expected line, or the code) and see it fail.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/upscalehq/upscale/commands"
	"github.com/upscalehq/upscale/dnsproof/dnsprooftest"
	"github.com/upscalehq/upscale/e2e/rig"
)

// scriptKey is where Setup leaves a script's world for its commands.
type scriptKey struct{}

// scriptWorld is one script's server and what its commands remember.
type scriptWorld struct {
	srv   *rig.Server
	admin rig.Key
	dns   *dnsprooftest.Server
	// status is the exit status of the last upscale, git or get.
	status int
}

func TestScripts(t *testing.T) {
	examples, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                "testdata/script",
		RequireUniqueNames: true,
		Setup: func(env *testscript.Env) error {
			t := env.T().(testing.TB)
			dns := dnsprooftest.Start(t)
			args := []string{"--dns-resolver", dns.Addr}
			// A story that needs its own server flags (short time limits)
			// says so in a file of the archive.
			// FREEPORT in them is a free loopback port (HTTPS's, say).
			if b, err := os.ReadFile(filepath.Join(env.WorkDir, "server-flags")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					args = append(args, strings.ReplaceAll(f, "FREEPORT", strconv.Itoa(rig.FreePort(t))))
				}
			}
			w := &scriptWorld{srv: rig.StartWithAgent(t, bin, args...), admin: rig.NewKey(t, "admin"), dns: dns}
			if _, errs, code := w.srv.Local("keys", "add", "--admin", "--name", "admin", "--public", w.admin.Public); code != 0 {
				return fmt.Errorf("adding the admin key: %s", errs)
			}
			env.Values[scriptKey{}] = w
			// git's fixed author and no user configuration, as the Go tests have.
			for _, kv := range rig.GitEnv(env.WorkDir) {
				if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "GIT_") || k == "HOME" {
					env.Setenv(k, v)
				}
			}
			env.Setenv("REMOTE", fmt.Sprintf("ssh://upscale@127.0.0.1:%d", w.srv.Port))
			env.Setenv("EXAMPLES", examples)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"upscale":       cmdUpscale,
			"upscale-local": cmdUpscaleLocal,
			"git":           cmdGit,
			"get":           cmdGet,
			"status":        cmdStatus,
			"dns-publish":   cmdDNSPublish,
		},
	})
}

func scriptOf(ts *testscript.TestScript) *scriptWorld {
	return ts.Value(scriptKey{}).(*scriptWorld)
}

// asKey takes a leading "-as NAME" off args: the key pair $WORK/NAME (made
// by ssh-keygen in the script) instead of the admin key.
func asKey(ts *testscript.TestScript, args []string) (rig.Key, []string) {
	if len(args) >= 2 && args[0] == "-as" {
		return rig.Key{Path: filepath.Join(ts.Getenv("WORK"), args[1])}, args[2:]
	}
	return scriptOf(ts).admin, args
}

// ran records a command's exit status and fails the script when it does
// not match neg (a `!` in front of the command).
func ran(ts *testscript.TestScript, neg bool, name string, err error) {
	w := scriptOf(ts)
	var exit *exec.ExitError
	switch {
	case err == nil:
		w.status = 0
	case errors.As(err, &exit):
		w.status = exit.ExitCode()
	default:
		ts.Fatalf("%s: %v", name, err)
	}
	if neg && w.status == 0 {
		ts.Fatalf("%s succeeded unexpectedly", name)
	}
	if !neg && w.status != 0 {
		ts.Fatalf("%s: exit status %d", name, w.status)
	}
}

// quoteWord quotes a word for the server's split (commands.Split), so that
// the script's words are the command's words: ssh joins its arguments with
// spaces, where a user's shell would need a second level of quotes.
func quoteWord(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// upscale [-as NAME] ARGS... is `ssh upscale@host ARGS...` with the admin
// key, or with the key NAME.
func cmdUpscale(ts *testscript.TestScript, neg bool, args []string) {
	key, args := asKey(ts, args)
	if len(args) == 0 {
		ts.Fatalf("usage: upscale [-as NAME] ARGS...")
	}
	argv := append(scriptOf(ts).srv.SSHCommand(key), "upscale@127.0.0.1")
	for _, a := range args {
		argv = append(argv, quoteWord(a))
	}
	ran(ts, neg, "upscale "+args[0], ts.Exec(argv[0], argv[1:]...))
}

// upscale-local ARGS... is `upscale ARGS...` on the server's box, acting on
// its data directory as the operator.
func cmdUpscaleLocal(ts *testscript.TestScript, neg bool, args []string) {
	argv := scriptOf(ts).srv.LocalCommand(args...)
	ran(ts, neg, "upscale-local", ts.Exec(argv[0], argv[1:]...))
}

// git [-as NAME] ARGS... is git with ssh using the admin key, or the key
// NAME.
func cmdGit(ts *testscript.TestScript, neg bool, args []string) {
	key, args := asKey(ts, args)
	old := ts.Getenv("GIT_SSH_COMMAND")
	ts.Setenv("GIT_SSH_COMMAND", strings.Join(scriptOf(ts).srv.SSHCommand(key), " "))
	defer ts.Setenv("GIT_SSH_COMMAND", old)
	ran(ts, neg, "git", ts.Exec("git", args...))
}

// get URL asks the server's router for URL, whatever host it names, as
// curl would if that host resolved to the router; it prints the status
// line and the body. Like curl -f, a status of 400 or more is a failure.
func cmdGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: get URL")
	}
	u, err := url.Parse(args[0])
	if err != nil || u.Scheme != "http" {
		ts.Fatalf("get: want an http:// URL, not %q", args[0])
	}
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", scriptOf(ts).srv.HTTPPort, u.RequestURI()), nil)
	ts.Check(err)
	req.Host = u.Host
	// A redirect (to HTTPS) is what the user sees, not followed.
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "%s %s\n", resp.Proto, resp.Status)
	if loc := resp.Header.Get("Location"); loc != "" {
		fmt.Fprintf(ts.Stdout(), "Location: %s\n", loc)
	}
	fmt.Fprintf(ts.Stdout(), "%s", body)
	scriptOf(ts).status = resp.StatusCode
	if bad := resp.StatusCode >= 400; bad != neg {
		ts.Fatalf("get %s: %s", args[0], resp.Status)
	}
}

// status N checks the exit status of the last upscale or git (for get, the
// HTTP status).
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: status N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	if got := scriptOf(ts).status; (got == want) == neg {
		ts.Fatalf("exit status %d, want %s%d", got, map[bool]string{true: "not "}[neg], want)
	}
}

var txtRecord = regexp.MustCompile(`(?m)^\s*(_upscale-challenge\.\S+)\s+TXT\s+"([^"]+)"`)

// dns-publish does what a domain's owner does with the record that the last
// command printed (`domains add`): publishes it in the DNS server the
// script's server asks.
func cmdDNSPublish(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: dns-publish")
	}
	m := txtRecord.FindStringSubmatch(ts.ReadFile("stdout"))
	if m == nil {
		ts.Fatalf("dns-publish: the last command printed no _upscale-challenge TXT record")
	}
	scriptOf(ts).dns.SetTXT(m[1], m[2])
	fmt.Fprintf(ts.Stdout(), "published %s TXT %q\n", m[1], m[2])
}

// The words a script gives upscale are the words the server's command sees.
func TestQuoteWordRoundTrip(t *testing.T) {
	words := []string{"app", "exec", "acme/web", "--", "sh", "-c", `echo "$MESSAGE"; exit 3`,
		"a  b", "", "it's", `back\slash`, "tab\there", "line\nbreak", "*", "$HOME", "MESSAGE=Hello from config"}
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, quoteWord(w))
	}
	got, err := commands.Split(strings.Join(quoted, " "))
	if err != nil || !slices.Equal(got, words) {
		t.Errorf("Split(%q) = %q, %v; want %q", strings.Join(quoted, " "), got, err, words)
	}
}
