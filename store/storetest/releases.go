package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/store"
)

var allStatuses = []store.ReleaseStatus{
	store.ReleaseBuilding, store.ReleaseBuilt, store.ReleaseFailed, store.ReleaseLive, store.ReleaseSuperseded,
}

func newRelease(namespace, app, subject string) store.Release {
	return store.Release{
		Namespace: namespace,
		App:       app,
		Commit:    strings.Repeat("c", 40),
		Subject:   subject,
		Author:    "Alice <alice@example.com>",
		Runtime:   "python",
		By:        "ci",
		Config: store.ReleaseConfig{
			Start:     "python3 app.py",
			Instances: 2,
			Memory:    256 << 20,
			Health:    "/healthz",
			Env:       map[string]string{"MODE": "production"},
		},
	}
}

func newInstance(name, host string) store.Instance {
	return store.Instance{Name: name, Host: host, Addr: "10.77.0.5:8080"}
}

// releaseIn creates a release of the app and takes it to status, the way
// the deployer would. A live release gets one instance, APP-vN; a
// superseded one is followed by a newer live release.
func releaseIn(t *testing.T, s store.Store, namespace, app string, status store.ReleaseStatus) store.Release {
	t.Helper()
	ctx := t.Context()
	r := must(s.CreateRelease(ctx, newRelease(namespace, app, string(status))))(t)
	switch status {
	case store.ReleaseBuilding:
	case store.ReleaseFailed:
		must(0, s.FailRelease(ctx, namespace, app, r.Version, "build failed: exit status 1"))(t)
	default:
		must(0, s.FinishBuild(ctx, namespace, app, r.Version, fmt.Sprintf("%s.%s.v%d.tar.zst", namespace, app, r.Version),
			strings.Repeat("d", 64), 4096))(t)
	}
	if status == store.ReleaseLive || status == store.ReleaseSuperseded {
		must(0, s.Activate(ctx, namespace, app, r.Version,
			[]store.Instance{newInstance(fmt.Sprintf("%s-v%d", app, r.Version), "h1")}))(t)
	}
	if status == store.ReleaseSuperseded {
		releaseIn(t, s, namespace, app, store.ReleaseLive)
	}
	return must(s.GetRelease(ctx, namespace, app, r.Version))(t)
}

// statuses is "vN:status" for each release, as ListReleases orders them.
func statuses(list []store.Release) []string {
	var out []string
	for _, r := range list {
		out = append(out, fmt.Sprintf("v%d:%s", r.Version, r.Status))
	}
	return out
}

// instanceNames is "NS/APP/NAME@vN" for each instance.
func instanceNames(list []store.Instance) []string {
	var out []string
	for _, in := range list {
		out = append(out, fmt.Sprintf("%s/%s/%s@v%d", in.Namespace, in.App, in.Name, in.Release))
	}
	return out
}

func testStopped(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	web := must(s.GetApp(ctx, "acme", "web"))(t)
	if web.Stopped {
		t.Fatal("a new app is stopped")
	}
	for _, tc := range []struct {
		name    string
		stopped bool
	}{
		{"stop", true},
		{"stop again", true},
		{"run", false},
		{"run again", false},
		{"stop once more", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			must(0, s.SetStopped(ctx, "acme", "web", tc.stopped))(t)
			web.Stopped = tc.stopped
			equal(t, "GetApp", must(s.GetApp(ctx, "acme", "web"))(t), web)
			var listed []store.App
			for _, a := range must(s.ListApps(ctx, ""))(t) {
				if a.Stopped {
					listed = append(listed, a)
				}
			}
			if tc.stopped {
				equal(t, "stopped apps listed", listed, []store.App{web})
			} else if len(listed) != 0 {
				t.Errorf("stopped apps listed: %v", appNames(listed))
			}
		})
	}
}

func testCreateRelease(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	before := time.Now()
	for _, tc := range []struct {
		name      string
		namespace string
		app       string
		version   int
	}{
		{"first of web", "acme", "web", 1},
		{"second of web", "acme", "web", 2},
		{"first of api: versions count per app", "acme", "api", 1},
		{"third of web", "acme", "web", 3},
		{"first of site", "beta", "site", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newRelease(tc.namespace, tc.app, tc.name)
			// What only the store decides is overwritten.
			in.Version, in.Status, in.Artifact, in.Digest, in.Size, in.Failure = 99, store.ReleaseLive, "x", "y", 1, "z"
			r := must(s.CreateRelease(ctx, in))(t)
			recent(t, "CreatedAt", r.CreatedAt, before)
			want := newRelease(tc.namespace, tc.app, tc.name)
			want.Version, want.Status, want.CreatedAt = tc.version, store.ReleaseBuilding, r.CreatedAt
			equal(t, "CreateRelease", r, want)
			equal(t, "GetRelease", must(s.GetRelease(ctx, tc.namespace, tc.app, tc.version))(t), r)
		})
	}

	// A CreatedAt given is kept, in UTC.
	at := time.Date(2024, 12, 31, 23, 59, 59, 987654321, time.FixedZone("CET", 3600))
	in := newRelease("acme", "web", "dated")
	in.CreatedAt = at
	r := must(s.CreateRelease(ctx, in))(t)
	got := must(s.GetRelease(ctx, "acme", "web", r.Version))(t)
	equal(t, "dated release", got, r)
	if !got.CreatedAt.Equal(at) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, at)
	}
	// Creating releases changes no app and makes none live.
	if _, err := s.LiveRelease(ctx, "acme", "web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LiveRelease after CreateRelease: %v, want not found", err)
	}
}

// testTransitions tries every operation on a release in every status.
func testTransitions(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(s.CreateNamespace(ctx, "acme"))(t)
	ops := []struct {
		name string
		do   func(r store.Release) error
		from []store.ReleaseStatus
		// after is the release after a successful do.
		after func(r store.Release) store.Release
	}{
		{"FinishBuild", func(r store.Release) error {
			return s.FinishBuild(ctx, r.Namespace, r.App, r.Version, "new.tar.zst", strings.Repeat("e", 64), 1<<30)
		}, []store.ReleaseStatus{store.ReleaseBuilding}, func(r store.Release) store.Release {
			r.Status, r.Artifact, r.Digest, r.Size = store.ReleaseBuilt, "new.tar.zst", strings.Repeat("e", 64), 1<<30
			return r
		}},
		{"FailRelease", func(r store.Release) error {
			return s.FailRelease(ctx, r.Namespace, r.App, r.Version, "health check: connection refused")
		}, []store.ReleaseStatus{store.ReleaseBuilding, store.ReleaseBuilt}, func(r store.Release) store.Release {
			r.Status, r.Failure = store.ReleaseFailed, "health check: connection refused"
			return r
		}},
		{"Activate", func(r store.Release) error {
			return s.Activate(ctx, r.Namespace, r.App, r.Version, []store.Instance{newInstance(r.App+"-new", "h2")})
		}, []store.ReleaseStatus{store.ReleaseBuilt, store.ReleaseSuperseded, store.ReleaseLive}, func(r store.Release) store.Release {
			r.Status = store.ReleaseLive
			return r
		}},
	}
	n := 0
	for _, op := range ops {
		for _, from := range allStatuses {
			n++
			app := fmt.Sprintf("app%d", n)
			allowed := slices.Contains(op.from, from)
			t.Run(fmt.Sprintf("%s %s", op.name, from), func(t *testing.T) {
				must(s.CreateApp(ctx, "acme", app))(t)
				r := releaseIn(t, s, "acme", app, from)
				others := must(s.ListReleases(ctx, "acme", app, 0))(t)
				instances := must(s.ListInstances(ctx, "acme", app))(t)

				err := op.do(r)
				got := must(s.GetRelease(ctx, "acme", app, r.Version))(t)
				if !allowed {
					isErr(t, err, store.ErrConflict)
					if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf(`app "acme/%s" release v%d is %s`, app, r.Version, from)) {
						t.Errorf("error %q does not say which release is in which status", msg)
					}
					equal(t, "releases after a refused "+op.name, must(s.ListReleases(ctx, "acme", app, 0))(t), others)
					equal(t, "instances after a refused "+op.name, must(s.ListInstances(ctx, "acme", app))(t), instances)
					return
				}
				must(0, err)(t)
				equal(t, "release", got, op.after(r))
				if op.name != "Activate" {
					return
				}
				// The one live before, if another, is superseded now; the
				// instances are the new ones.
				var want []string
				for _, o := range others {
					switch {
					case o.Version == r.Version:
						o.Status = store.ReleaseLive
					case o.Status == store.ReleaseLive:
						o.Status = store.ReleaseSuperseded
					}
					want = append(want, fmt.Sprintf("v%d:%s", o.Version, o.Status))
				}
				equal(t, "releases", statuses(must(s.ListReleases(ctx, "acme", app, 0))(t)), want)
				equal(t, "live", must(s.LiveRelease(ctx, "acme", app))(t), got)
				equal(t, "instances", instanceNames(must(s.ListInstances(ctx, "acme", app))(t)),
					[]string{fmt.Sprintf("acme/%s/%s-new@v%d", app, app, r.Version)})
			})
		}
	}
}

func testActivate(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	v1 := releaseIn(t, s, "acme", "web", store.ReleaseBuilt)
	v2 := releaseIn(t, s, "acme", "web", store.ReleaseBuilt)
	v3 := releaseIn(t, s, "acme", "web", store.ReleaseFailed)
	api := releaseIn(t, s, "acme", "api", store.ReleaseLive)

	for _, step := range []struct {
		name      string
		version   int
		instances []store.Instance
		want      error
		releases  []string // ListReleases after
		listed    []string // ListInstances after
	}{
		{"deploy v1", v1.Version, []store.Instance{newInstance("web-a", "h1"), newInstance("web-b", "h2")}, nil,
			[]string{"v3:failed", "v2:built", "v1:live"}, []string{"acme/web/web-a@v1", "acme/web/web-b@v1"}},
		{"deploy v2", v2.Version, []store.Instance{newInstance("web-c", "h1")}, nil,
			[]string{"v3:failed", "v2:live", "v1:superseded"}, []string{"acme/web/web-c@v2"}},
		{"failed v3 refused", v3.Version, []store.Instance{newInstance("web-d", "h1")}, store.ErrConflict,
			[]string{"v3:failed", "v2:live", "v1:superseded"}, []string{"acme/web/web-c@v2"}},
		{"roll back to v1, reusing an old name", v1.Version, []store.Instance{newInstance("web-a", "h3")}, nil,
			[]string{"v3:failed", "v2:superseded", "v1:live"}, []string{"acme/web/web-a@v1"}},
		{"v1 again on more instances, reusing a live name", v1.Version,
			[]store.Instance{newInstance("web-e", "h2"), newInstance("web-a", "h1")}, nil,
			[]string{"v3:failed", "v2:superseded", "v1:live"}, []string{"acme/web/web-a@v1", "acme/web/web-e@v1"}},
		{"name of another app's instance refused", v2.Version,
			[]store.Instance{newInstance("web-f", "h1"), newInstance(fmt.Sprintf("api-v%d", api.Version), "h1")}, store.ErrConflict,
			[]string{"v3:failed", "v2:superseded", "v1:live"}, []string{"acme/web/web-a@v1", "acme/web/web-e@v1"}},
		{"one name twice refused", v2.Version, []store.Instance{newInstance("web-g", "h1"), newInstance("web-g", "h2")}, store.ErrConflict,
			[]string{"v3:failed", "v2:superseded", "v1:live"}, []string{"acme/web/web-a@v1", "acme/web/web-e@v1"}},
		{"missing release", 9, nil, store.ErrNotFound,
			[]string{"v3:failed", "v2:superseded", "v1:live"}, []string{"acme/web/web-a@v1", "acme/web/web-e@v1"}},
		{"no instances", v2.Version, nil, nil,
			[]string{"v3:failed", "v2:live", "v1:superseded"}, nil},
	} {
		t.Run(step.name, func(t *testing.T) {
			err := s.Activate(ctx, "acme", "web", step.version, step.instances)
			if step.want == nil {
				must(0, err)(t)
			} else {
				isErr(t, err, step.want)
			}
			equal(t, "releases", statuses(must(s.ListReleases(ctx, "acme", "web", 0))(t)), step.releases)
			equal(t, "instances", instanceNames(must(s.ListInstances(ctx, "acme", "web"))(t)), step.listed)
			equal(t, "other app's instances", instanceNames(must(s.ListInstances(ctx, "acme", "api"))(t)),
				[]string{fmt.Sprintf("acme/api/api-v%d@v%d", api.Version, api.Version)})
		})
	}

	// The instances are stored as given, with what they left out filled in.
	before := time.Now()
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("EST", -5*3600))
	full := store.Instance{Name: "web-full", Namespace: "acme", App: "web", Release: v1.Version, Host: "h9", Addr: "[fd00::9]:8080", CreatedAt: at}
	must(0, s.Activate(ctx, "acme", "web", v1.Version, []store.Instance{newInstance("web-bare", "h1"), full}))(t)
	list := must(s.ListInstances(ctx, "acme", "web"))(t)
	if len(list) != 2 {
		t.Fatalf("instances %v", instanceNames(list))
	}
	recent(t, "CreatedAt", list[0].CreatedAt, before)
	bare := newInstance("web-bare", "h1")
	bare.Namespace, bare.App, bare.Release, bare.CreatedAt = "acme", "web", v1.Version, list[0].CreatedAt
	full.CreatedAt = at.UTC()
	equal(t, "instances", list, []store.Instance{bare, full})
}

func testInstances(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	must(s.CreateNamespace(ctx, "empty"))(t)
	web := releaseIn(t, s, "acme", "web", store.ReleaseBuilt)
	web2 := releaseIn(t, s, "acme", "web", store.ReleaseBuilt)
	api := releaseIn(t, s, "acme", "api", store.ReleaseBuilt)
	site := releaseIn(t, s, "beta", "site", store.ReleaseBuilt)
	with := func(in store.Instance, release int) store.Instance { in.Release = release; return in }

	// Mid-rollout an app runs two releases; SetInstances takes any of its own.
	must(0, s.SetInstances(ctx, "acme", "web", []store.Instance{
		with(newInstance("web-2", "h2"), web2.Version), with(newInstance("web-1", "h1"), web.Version),
	}))(t)
	must(0, s.SetInstances(ctx, "acme", "api", []store.Instance{with(newInstance("api-1", "h1"), api.Version)}))(t)
	must(0, s.SetInstances(ctx, "beta", "site", []store.Instance{with(newInstance("a-site", "h3"), site.Version)}))(t)

	for _, tc := range []struct {
		name           string
		namespace, app string
		want           []string
	}{
		{"all", "", "", []string{"acme/api/api-1@v1", "acme/web/web-1@v1", "acme/web/web-2@v2", "beta/site/a-site@v1"}},
		{"one namespace", "acme", "", []string{"acme/api/api-1@v1", "acme/web/web-1@v1", "acme/web/web-2@v2"}},
		{"one app", "acme", "web", []string{"acme/web/web-1@v1", "acme/web/web-2@v2"}},
		{"namespace without instances", "empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			equal(t, "instances", instanceNames(must(s.ListInstances(ctx, tc.namespace, tc.app))(t)), tc.want)
		})
	}

	// Replacing keeps nothing of the old list; nil empties it.
	must(0, s.SetInstances(ctx, "acme", "web", []store.Instance{with(newInstance("web-3", "h1"), web2.Version)}))(t)
	equal(t, "replaced", instanceNames(must(s.ListInstances(ctx, "acme", "web"))(t)), []string{"acme/web/web-3@v2"})
	must(0, s.SetInstances(ctx, "acme", "web", nil))(t)
	if list := must(s.ListInstances(ctx, "acme", "web"))(t); len(list) != 0 {
		t.Errorf("instances after SetInstances(nil): %v", instanceNames(list))
	}
	// Instances are not releases: none became live.
	if _, err := s.LiveRelease(ctx, "acme", "api"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LiveRelease after SetInstances: %v, want not found", err)
	}
	equal(t, "others kept", instanceNames(must(s.ListInstances(ctx, "", ""))(t)),
		[]string{"acme/api/api-1@v1", "beta/site/a-site@v1"})
	// A name is free once its instance is gone.
	must(0, s.SetInstances(ctx, "beta", "site", []store.Instance{with(newInstance("web-1", "h3"), site.Version)}))(t)
	equal(t, "name reused", instanceNames(must(s.ListInstances(ctx, "beta", ""))(t)), []string{"beta/site/web-1@v1"})

	// Apps are read with what runs of them: instances, and no live
	// release yet; then one goes live (Activate, with its one instance).
	runs := func() []string {
		var out []string
		for _, a := range must(s.ListApps(ctx, "acme"))(t) {
			out = append(out, fmt.Sprintf("%s v%d x%d", a.Name, a.LiveVersion, a.Instances))
		}
		return out
	}
	equal(t, "apps with instances", runs(), []string{"api v0 x1", "web v0 x0"})
	live := releaseIn(t, s, "acme", "api", store.ReleaseLive)
	equal(t, "apps with a live release", runs(), []string{fmt.Sprintf("api v%d x1", live.Version), "web v0 x0"})
	if a := must(s.GetApp(ctx, "acme", "api"))(t); a.LiveVersion != live.Version || a.Instances != 1 {
		t.Errorf("GetApp: live v%d, %d instance(s); want v%d, 1", a.LiveVersion, a.Instances, live.Version)
	}
}

func testListReleases(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	var created []store.Release
	for range 5 {
		created = append(created, releaseIn(t, s, "acme", "web", store.ReleaseBuilt))
	}
	releaseIn(t, s, "acme", "api", store.ReleaseBuilt)
	newest := slices.Clone(created)
	slices.Reverse(newest)
	for _, tc := range []struct {
		limit int
		want  []store.Release
	}{
		{0, newest},
		{-1, newest},
		{1, newest[:1]},
		{3, newest[:3]},
		{5, newest},
		{10, newest},
	} {
		equal(t, fmt.Sprintf("ListReleases limit %d", tc.limit), must(s.ListReleases(ctx, "acme", "web", tc.limit))(t), tc.want)
	}
	equal(t, "other app", statuses(must(s.ListReleases(ctx, "acme", "api", 0))(t)), []string{"v1:built"})
	if list := must(s.ListReleases(ctx, "beta", "site", 0))(t); len(list) != 0 {
		t.Errorf("app without releases lists %v", statuses(list))
	}
}

func testReleaseConfig(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	bigEnv := map[string]string{}
	for i := range 1000 {
		bigEnv[fmt.Sprintf("VAR_%04d", i)] = strings.Repeat("é", 50) // 100 KB in all: more than a TEXT column
	}
	everything := store.ReleaseConfig{
		Start:     `sh -c 'exec gunicorn -b "0.0.0.0:$PORT" app:app'`,
		Instances: 3,
		Memory:    1 << 40,
		Health:    "/health?deep=1&x=<y>",
		Env: map[string]string{
			"GREETING":    "héllo wörld — 世界 🚀 Ω",
			"QUOTES":      `it's "quoted" and 'single'`,
			"BACKSLASH":   `C:\path\n \' \" \\`,
			"HTML":        "<script>alert('&amp;')</script>",
			"LINES":       "one\ntwo\r\nthree\ttab",
			"SQL":         `'); DROP TABLE releases; --`,
			"JSON":        `{"nested": ["json", 1, null]}`,
			"EMPTY":       "",
			"ÜNICODE_KEY": "key too",
			"NUL":         "before\x00after",
		},
	}
	for _, tc := range []struct {
		name   string
		config store.ReleaseConfig
		want   store.ReleaseConfig // as it reads back
	}{
		{"everything", everything, everything},
		{"zero", store.ReleaseConfig{}, store.ReleaseConfig{}},
		{"empty env reads back as nil", store.ReleaseConfig{Start: "./run", Env: map[string]string{}},
			store.ReleaseConfig{Start: "./run"}},
		{"big env", store.ReleaseConfig{Start: "./run", Instances: 1, Env: bigEnv},
			store.ReleaseConfig{Start: "./run", Instances: 1, Env: bigEnv}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newRelease("acme", "web", tc.name)
			in.Config = tc.config
			r := must(s.CreateRelease(ctx, in))(t)
			equal(t, "CreateRelease config", r.Config, tc.want)
			got := must(s.GetRelease(ctx, "acme", "web", r.Version))(t)
			equal(t, "GetRelease", got, r)
			equal(t, "ListReleases", must(s.ListReleases(ctx, "acme", "web", 1))(t), []store.Release{r})
		})
	}
}

func testReleasesFreeText(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	for i, text := range []string{
		`it's "quoted"`,
		"héllo wörld — 世界 🚀 Ω",
		`'); DROP TABLE releases; --`,
		strings.Repeat("long é ", 2000),
	} {
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			in := newRelease("acme", "web", text)
			in.Author, in.By = text, text
			r := must(s.CreateRelease(ctx, in))(t)
			must(0, s.FailRelease(ctx, "acme", "web", r.Version, text))(t)
			got := must(s.GetRelease(ctx, "acme", "web", r.Version))(t)
			if got.Subject != text || got.Author != text || got.By != text || got.Failure != text {
				t.Errorf("got %q, %q, %q, %q; want %q", got.Subject, got.Author, got.By, got.Failure, text)
			}
		})
	}
}

func testConcurrentCreateRelease(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	const n = 10
	apps := []string{"web", "api"}
	releases := make([]store.Release, 2*n)
	errs := race(2*n, func(i int) (err error) {
		releases[i], err = s.CreateRelease(ctx, newRelease("acme", apps[i%2], fmt.Sprintf("release %02d", i)))
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	for a, app := range apps {
		var versions []int
		for i := a; i < len(releases); i += 2 {
			r := releases[i]
			versions = append(versions, r.Version)
			equal(t, fmt.Sprintf("release %d", i), must(s.GetRelease(ctx, "acme", app, r.Version))(t), r)
		}
		slices.Sort(versions)
		equal(t, app+" versions", versions, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
		if list := must(s.ListReleases(ctx, "acme", app, 0))(t); len(list) != n {
			t.Errorf("%s has %d releases, want %d", app, len(list), n)
		}
	}
}

func testConcurrentActivate(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	const n = 8
	versions := make([]int, n)
	for i := range versions {
		versions[i] = releaseIn(t, s, "acme", "web", store.ReleaseBuilt).Version
	}
	errs := race(n, func(i int) error {
		v := versions[i]
		return s.Activate(ctx, "acme", "web", v, []store.Instance{
			newInstance(fmt.Sprintf("web-v%d-a", v), "h1"), newInstance(fmt.Sprintf("web-v%d-b", v), "h2"),
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("activate v%d: %v", versions[i], err)
		}
	}
	live := must(s.LiveRelease(ctx, "acme", "web"))(t)
	var got []store.ReleaseStatus
	for _, r := range must(s.ListReleases(ctx, "acme", "web", 0))(t) {
		if r.Version != live.Version {
			got = append(got, r.Status)
		}
	}
	equal(t, "the others", got, slices.Repeat([]store.ReleaseStatus{store.ReleaseSuperseded}, n-1))
	// The last one to activate won, and its instances with it.
	v := live.Version
	equal(t, "instances", instanceNames(must(s.ListInstances(ctx, "", ""))(t)),
		[]string{fmt.Sprintf("acme/web/web-v%d-a@v%d", v, v), fmt.Sprintf("acme/web/web-v%d-b@v%d", v, v)})
}

func testConcurrentInstanceName(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(s.CreateNamespace(ctx, "acme"))(t)
	const n = 10
	for i := range n {
		app := fmt.Sprintf("app%d", i)
		must(s.CreateApp(ctx, "acme", app))(t)
		releaseIn(t, s, "acme", app, store.ReleaseBuilt)
	}
	errs := race(n, func(i int) error {
		app := fmt.Sprintf("app%d", i)
		return s.Activate(ctx, "acme", app, 1, []store.Instance{
			newInstance(app+"-own", "h1"), newInstance("shared", "h1"),
		})
	})
	winner := fmt.Sprintf("app%d", oneWins(t, errs, store.ErrConflict))
	equal(t, "instances", instanceNames(must(s.ListInstances(ctx, "", ""))(t)),
		[]string{fmt.Sprintf("acme/%s/%s-own@v1", winner, winner), fmt.Sprintf("acme/%s/shared@v1", winner)})
	live := 0
	for i := range n {
		if _, err := s.LiveRelease(ctx, "acme", fmt.Sprintf("app%d", i)); err == nil {
			live++
		}
	}
	if live != 1 {
		t.Errorf("%d apps have a live release, want only the winner", live)
	}
}

func testConcurrentFinishBuild(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	r := releaseIn(t, s, "acme", "web", store.ReleaseBuilding)
	errs := race(10, func(i int) error {
		return s.FinishBuild(ctx, "acme", "web", r.Version, fmt.Sprintf("artifact-%d", i), "digest", int64(i))
	})
	winner := oneWins(t, errs, store.ErrConflict)
	got := must(s.GetRelease(ctx, "acme", "web", r.Version))(t)
	r.Status, r.Artifact, r.Digest, r.Size = store.ReleaseBuilt, fmt.Sprintf("artifact-%d", winner), "digest", int64(winner)
	equal(t, "release", got, r)
}
