package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/msgtext"
)

// lifecycleApp is a Python app for the lifecycle tests: / answers
// $MESSAGE, /env/NAME the variable NAME (404 when unset), /slow answers
// after 2 s, /crash makes it exit with status 3, then and on every start
// after a moment (a crash loop), /fill starts writing 320 MiB to /tmp
// over 8 s. A worker process prints ticks.
const lifecycleApp = `import os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARK = "/app/.crashed"
if os.path.exists(MARK):
    print("crashed before; exiting again", flush=True)
    time.sleep(0.3)
    os._exit(3)


def fill():
    os.makedirs("/tmp/fill", exist_ok=True)
    for i in range(40):
        with open("/tmp/fill/%d" % i, "wb") as f:
            f.write(os.urandom(8 << 20))
        time.sleep(0.2)
    print("wrote 320 MiB", flush=True)


class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            open(MARK, "w").close()
            os._exit(3)
        if self.path == "/fill":
            threading.Thread(target=fill, daemon=True).start()
        if self.path == "/slow":
            time.sleep(2)
        status, body = 200, os.environ.get("MESSAGE", "unset") + "\n"
        if self.path.startswith("/env/"):
            v = os.environ.get(self.path[5:])
            status, body = (404, "unset\n") if v is None else (200, v)
        b = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, fmt, *args):
        pass


class S(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


print("listening", flush=True)
S(("0.0.0.0", int(os.environ.get("PORT", "8080"))), H).serve_forever()
`

func lifecycleFiles(appYAML string) map[string]string {
	return map[string]string{"app.yaml": appYAML, "app.py": lifecycleApp}
}

// fails runs an ssh command that must fail with exactly one error line
// (want) and exit 1.
func (d *deployWorld) fails(t *testing.T, want string, args ...string) {
	t.Helper()
	d.failsIn(t, "", want, args...)
}

func (d *deployWorld) failsIn(t *testing.T, stdin, want string, args ...string) {
	t.Helper()
	out, errs, code := d.srv.SSH(d.key, stdin, args...)
	if code != 1 || errs != want+"\n" || out != "" {
		t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", msgtext.Truncate(strings.Join(args, " "), 80), code, msgtext.Truncate(out, 200), errs, want)
	}
}

// release is one row of `releases --format json`.
type release struct {
	Version int    `json:"version"`
	Commit  string `json:"commit"`
	Subject string `json:"subject"`
	Author  string `json:"author"`
	By      string `json:"by"`
	At      string `json:"at"`
	Status  string `json:"status"`
	Change  string `json:"change"`
	Failure string `json:"failure"`
}

func (d *deployWorld) releases(t *testing.T, app string) []release {
	t.Helper()
	var v []release
	if err := json.Unmarshal([]byte(d.ssh(t, "releases", app, "--format", "json", "-n", "0")), &v); err != nil {
		t.Fatalf("releases: %v", err)
	}
	return v
}

// statuses are "v3:live v2:superseded ...", newest first.
func statuses(rels []release) string {
	var parts []string
	for _, r := range rels {
		parts = append(parts, "v"+itoa(r.Version)+":"+r.Status)
	}
	return strings.Join(parts, " ")
}

type event struct {
	At      string `json:"at"`
	Kind    string `json:"kind"`
	By      string `json:"by"`
	Message string `json:"message"`
}

func (d *deployWorld) events(t *testing.T, app string) []event {
	t.Helper()
	var v []event
	if err := json.Unmarshal([]byte(d.ssh(t, "app", "events", app, "--format", "json", "-n", "0")), &v); err != nil {
		t.Fatalf("app events: %v", err)
	}
	return v
}

// psFull is app ps --format json with the process type and restarts.
type psRow struct {
	Name     string `json:"name"`
	Process  string `json:"process"`
	Release  int    `json:"release"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	LastExit int    `json:"last_exit"`
}

func (d *deployWorld) psFull(t *testing.T, app string) []psRow {
	t.Helper()
	var v []psRow
	if err := json.Unmarshal([]byte(d.ssh(t, "app", "ps", app, "--format", "json")), &v); err != nil {
		t.Fatalf("app ps: %v", err)
	}
	return v
}

// count is how many instances of each process type app ps shows:
// "web=2 worker=1".
func (d *deployWorld) count(t *testing.T, app string) string {
	t.Helper()
	n := map[string]int{}
	for _, p := range d.psFull(t, app) {
		n[p.Process]++
	}
	var parts []string
	for _, typ := range []string{"web", "worker"} {
		if n[typ] > 0 {
			parts = append(parts, typ+"="+itoa(n[typ]))
		}
	}
	return strings.Join(parts, " ")
}

// mustAnswer waits until GET path of app answers code.
func (d *deployWorld) mustAnswer(t *testing.T, app, path string, code int) {
	t.Helper()
	var got int
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, b, err := d.srv.Get(app, path)
		if err == nil && c == code {
			return
		}
		got, body = c, b
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s of %s answers %d %q, want %d", path, app, got, msgtext.Truncate(body, 100), code)
}

func itoa(n int) string { return strconv.Itoa(n) }
