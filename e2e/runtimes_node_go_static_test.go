package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// The node, go and static runtimes deploy their examples with real
// dependencies (the npm registry, the Go module proxy), and each bad input
// of theirs is refused with a line that says what to fix, the release
// before it still serving. One good push per example: images are cached by
// the agent, but a first build of each still fetches a toolchain or
// dependencies.

// TestRuntimeNode: the Express example with its lockfile installs with npm
// ci and answers; package.json that is not JSON and a lockfile out of sync
// are refused, and an engines.node Debian's node does not match warns.
func TestRuntimeNode(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	files := exampleFiles(t, "node")
	trustEgress(t, files)
	dir := rig.Repo(t, files)
	errs := d.mustPush(t, dir, app)
	mustHave(t, errs, "remote: -----> Building with node", "installing dependencies: npm ci (lockfile)", "added ")
	if strings.Contains(errs, "warning: package.json asks for node") {
		t.Errorf("engines.node >=18 warned on node 18:\n%s", errs)
	}
	const body = "Hello from Node.js on Upscale!\n"
	d.mustServe(t, app, body)

	bad := func(t *testing.T, change map[string]string, want ...string) {
		t.Helper()
		head := d.branch(t, app)
		defer gitOut(t, dir, "reset", "-q", "--hard", head)
		rig.Commit(t, dir, "bad: "+t.Name(), change)
		errs, code := d.push(dir, app)
		rejected(t, app, errs, code)
		mustHave(t, errs, want...)
		if got := d.branch(t, app); got != head {
			t.Errorf("master moved to %s, want %s", got, head)
		}
		d.mustServe(t, app, body)
	}
	t.Run("package.json not JSON", func(t *testing.T) {
		bad(t, map[string]string{"package.json": `{"name": "hello-node",}`},
			"remote:        error: package.json is not valid JSON: ")
	})
	t.Run("lockfile out of sync", func(t *testing.T) {
		pkg := strings.Replace(files["package.json"], `"express": "^4.21.2"`, `"express": "^4.21.2", "left-pad": "^1.3.0"`, 1)
		pkg = strings.Replace(pkg, `">=18"`, `">=20"`, 1)
		bad(t, map[string]string{"package.json": pkg},
			"remote:        warning: package.json asks for node >=20; this runtime has v18.",
			"remote:        Missing: left-pad@",
			"remote:        error: package-lock.json is out of sync with package.json: run npm install and commit package-lock.json")
	})
}

// TestRuntimeGo: the example with a module dependency builds with a Go
// fetched through the module proxy and runs; a go.mod asking for a Go the
// proxy does not serve is refused; a main package without go.mod builds as
// a module named after the app.
func TestRuntimeGo(t *testing.T) {
	d := newDeployWorld(t)
	files := exampleFiles(t, "go")
	trustEgress(t, files)
	dir := rig.Repo(t, files)
	errs := d.mustPush(t, dir, "acme/web")
	mustHave(t, errs, "remote: -----> Building with go", "fetching go1.27.3 from ", "go: downloading rsc.io/quote/v4 v4.0.1", "built .")
	d.mustServe(t, "acme/web", "Hello from Go on Upscale!\n")
	if code, body, err := d.srv.Get("acme/web", "/proverb"); code != 200 || body != "Don't communicate by sharing memory, share memory by communicating.\n" {
		t.Errorf("/proverb: %d %q %v; want rsc.io/quote's Go proverb", code, body, err)
	}

	// Only the standard library's net, which builds in seconds: the
	// module's name is what is checked.
	bare := map[string]string{"app.yaml": "runtime: go\n", "main.go": `package main

import (
	"net"
	"os"
	"runtime/debug"
)

func main() {
	info, _ := debug.ReadBuildInfo()
	l, err := net.Listen("tcp", "0.0.0.0:"+os.Getenv("PORT"))
	if err != nil {
		panic(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nmodule " + info.Main.Path + "\n"))
		c.Close()
	}
}
`}
	trustEgress(t, bare)
	dir = rig.Repo(t, bare)
	errs = d.mustPush(t, dir, "acme/api")
	mustHave(t, errs, "no go.mod: building as module api")
	d.mustServe(t, "acme/api", "module api\n")

	t.Run("go.mod needs a Go the proxy does not serve", func(t *testing.T) {
		head := d.branch(t, "acme/api")
		rig.Commit(t, dir, "go 1.99", map[string]string{"go.mod": "module api\n\ngo 1.99\n"})
		errs, code := d.push(dir, "acme/api")
		rejected(t, "acme/api", errs, code)
		mustHave(t, errs, "remote:        error: go.mod needs Go 1.99, which the Go module proxy does not serve: name a released Go in go.mod's go and toolchain lines")
		if got := d.branch(t, "acme/api"); got != head {
			t.Errorf("master moved to %s, want %s", got, head)
		}
		d.mustServe(t, "acme/api", "module api\n")
	})
}

// TestRuntimeStatic: the static example is served by lighttpd with its
// index.html, the right types, revalidation headers, and no dot files.
func TestRuntimeStatic(t *testing.T) {
	d := newDeployWorld(t)
	files := exampleFiles(t, "static")
	d.mustPush(t, rig.Repo(t, files), "acme/web")
	d.mustServe(t, "acme/web", files["index.html"])

	for _, tc := range []struct {
		path, status, ctype, cache string
	}{
		{"/", "200", "text/html; charset=utf-8", "no-cache"},
		{"/index.html", "200", "text/html; charset=utf-8", "no-cache"},
		{"/style.css", "200", "text/css; charset=utf-8", "public, max-age=3600"},
		{"/.static", "403", "", ""},
		{"/missing.html", "404", "", ""},
	} {
		resp := staticGet(t, d.srv, "acme/web", tc.path, "")
		got := fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
		if tc.status == "200" && (resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "") {
			t.Errorf("%s: no ETag or Last-Modified: %v", tc.path, resp.Header)
		}
		if want := tc.status + " " + tc.ctype + " " + tc.cache; tc.status == "200" && got != want || tc.status != "200" && !strings.HasPrefix(got, tc.status+" ") {
			t.Errorf("%s: got %q, want %q", tc.path, got, want)
		}
	}
	// A second visit revalidates instead of downloading again.
	etag := staticGet(t, d.srv, "acme/web", "/style.css", "").Header.Get("ETag")
	if resp := staticGet(t, d.srv, "acme/web", "/style.css", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match %s: status %d, want 304", etag, resp.StatusCode)
	}
}

// trustEgress gives the build the CA bundle this machine's HTTPS egress is
// trusted with, when SSL_CERT_FILE names one (an egress proxy that
// intercepts TLS): through app.yaml's env, as a user behind such a proxy
// would (docs/runtimes.md). Elsewhere it changes nothing.
func trustEgress(t *testing.T, files map[string]string) {
	t.Helper()
	path := os.Getenv("SSL_CERT_FILE")
	if path == "" {
		return
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	files[".egress-ca.pem"] = string(pem)
	files["app.yaml"] += "env:\n"
	for _, v := range []string{"SSL_CERT_FILE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"} {
		files["app.yaml"] += "  " + v + ": /app/.egress-ca.pem\n"
	}
}

// staticGet requests path of app through the router, with If-None-Match
// when etag is not "", and returns the response with its body closed.
func staticGet(t *testing.T, srv *rig.Server, app, path, etag string) *http.Response {
	t.Helper()
	ns, name, _ := strings.Cut(app, "/")
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", srv.HTTPPort, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = name + "." + ns + ".upscale.localhost"
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp
}
