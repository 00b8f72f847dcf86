// Package storetest is the behaviour suite every store.Store implementation
// runs, so that SQLite and MariaDB are held to one contract.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/store"
)

// Run runs the suite. open must return a new, empty store on each call and
// close it when its test ends; subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Namespaces", testNamespaces},
		{"DeleteNamespace", testDeleteNamespace},
		{"Apps", testApps},
		{"DeleteApp", testDeleteApp},
		{"Keys", testKeys},
		{"ListKeys", testListKeys},
		{"RemoveKey", testRemoveKey},
		{"Pushes", testPushes},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"FreeText", testFreeText},
		{"Errors", testErrors},
		{"ConcurrentCreateApp", testConcurrentCreateApp},
		{"ConcurrentAddKey", testConcurrentAddKey},
		{"ConcurrentPushes", testConcurrentPushes},
		{"Stopped", testStopped},
		{"CreateRelease", testCreateRelease},
		{"Transitions", testTransitions},
		{"Activate", testActivate},
		{"Instances", testInstances},
		{"ListReleases", testListReleases},
		{"ReleaseConfig", testReleaseConfig},
		{"ReleasesFreeText", testReleasesFreeText},
		{"ConcurrentCreateRelease", testConcurrentCreateRelease},
		{"ConcurrentActivate", testConcurrentActivate},
		{"ConcurrentInstanceName", testConcurrentInstanceName},
		{"ConcurrentFinishBuild", testConcurrentFinishBuild},
		{"Hosts", testHosts},
		{"ListHosts", testListHosts},
		{"AddHostConflicts", testAddHostConflicts},
		{"HostErrors", testHostErrors},
		{"SetHost", testSetHost},
		{"RemoveHost", testRemoveHost},
		{"ConcurrentAddHost", testConcurrentAddHost},
	}
	tests = append(tests, lifecycleTests...)
	tests = append(tests, quotaTests...)
	tests = append(tests, certTests...)
	tests = append(tests, volumeTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// fixture is what seed puts in a store:
//
//	namespaces acme (apps api, web) and beta (app site)
//	keys: admin root; alice, member of acme; ci, deploy key of acme/web;
//	bob, member of beta
type fixture struct {
	keys map[string]store.Key // by name
}

func seed(t *testing.T, s store.Store) fixture {
	t.Helper()
	ctx := t.Context()
	f := fixture{keys: map[string]store.Key{}}
	for _, name := range []string{"acme", "beta"} {
		must(s.CreateNamespace(ctx, name))(t)
	}
	for _, a := range [][2]string{{"acme", "web"}, {"acme", "api"}, {"beta", "site"}} {
		must(s.CreateApp(ctx, a[0], a[1]))(t)
	}
	for _, k := range []store.Key{
		newKey("root", keys.RoleAdmin, "", ""),
		newKey("alice", keys.RoleNamespace, "acme", ""),
		newKey("ci", keys.RoleDeploy, "acme", "web"),
		newKey("bob", keys.RoleNamespace, "beta", ""),
	} {
		f.keys[k.Name] = must(s.AddKey(ctx, k))(t)
	}
	return f
}

// newKey makes a key whose fingerprint is unique to its name and scope.
func newKey(name string, role keys.Role, namespace, app string) store.Key {
	return store.Key{
		Fingerprint: "SHA256:" + name + "+" + namespace + "+" + app,
		Name:        name,
		Role:        role,
		Namespace:   namespace,
		App:         app,
		Type:        "ssh-ed25519",
		PublicKey:   "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + name + " " + name + "@example.com",
		AddedBy:     "local",
	}
}

func newPush(namespace, app, subject string, at time.Time) store.Push {
	return store.Push{
		Namespace: namespace,
		App:       app,
		Ref:       "refs/heads/master",
		OldCommit: strings.Repeat("0", 40),
		NewCommit: strings.Repeat("a", 40),
		Subject:   subject,
		KeyName:   "ci",
		KeyFP:     "SHA256:ci+acme+web",
		At:        at,
	}
}

// must is called as must(s.Method(...))(t): it fails t on err, else returns v.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// isErr fails t unless errors.Is(err, want).
func isErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// recent fails t unless at is a UTC time within [before, now].
func recent(t *testing.T, what string, at, before time.Time) {
	t.Helper()
	if at.Location() != time.UTC || at.Before(before.Add(-time.Microsecond)) || at.After(time.Now()) {
		t.Fatalf("%s = %v (%v), want UTC between %v and now", what, at, at.Location(), before)
	}
}

func namespaceNames(list []store.Namespace) []string {
	var out []string
	for _, ns := range list {
		out = append(out, fmt.Sprintf("%s:%d", ns.Name, ns.Apps))
	}
	return out
}

func appNames(list []store.App) []string {
	var out []string
	for _, a := range list {
		out = append(out, a.Namespace+"/"+a.Name)
	}
	return out
}

func keyNames(list []store.Key) []string {
	var out []string
	for _, k := range list {
		out = append(out, k.Namespace+"/"+k.Name)
	}
	return out
}

func subjects(list []store.Push) []string {
	var out []string
	for _, p := range list {
		out = append(out, p.Subject)
	}
	return out
}

func testNamespaces(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	ns := must(s.CreateNamespace(ctx, "acme"))(t)
	if ns.Name != "acme" || ns.Apps != 0 {
		t.Fatalf("CreateNamespace = %+v", ns)
	}
	recent(t, "CreatedAt", ns.CreatedAt, before)
	equal(t, "GetNamespace", must(s.GetNamespace(ctx, "acme"))(t), ns)

	for _, name := range []string{"b-2", "a1", "a-b"} {
		must(s.CreateNamespace(ctx, name))(t)
	}
	must(s.CreateApp(ctx, "acme", "web"))(t)
	must(s.CreateApp(ctx, "acme", "api"))(t)
	must(s.CreateApp(ctx, "a1", "web"))(t)

	// Byte order: '-' sorts before digits, digits before letters.
	equal(t, "ListNamespaces", namespaceNames(must(s.ListNamespaces(ctx))(t)),
		[]string{"a-b:0", "a1:1", "acme:2", "b-2:0"})
	got := must(s.GetNamespace(ctx, "acme"))(t)
	ns.Apps = 2
	equal(t, "GetNamespace with apps", got, ns)
}

func testDeleteNamespace(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := seed(t, s)

	err := s.DeleteNamespace(ctx, "acme")
	isErr(t, err, store.ErrNotEmpty)
	if !strings.Contains(err.Error(), "2 apps") {
		t.Errorf("error %q does not say how many apps", err)
	}
	equal(t, "keys after refused delete", keyNames(must(s.ListKeys(ctx, store.KeyFilter{Namespace: "acme"}))(t)),
		[]string{"acme/alice", "acme/ci"})

	must(0, s.DeleteApp(ctx, "acme", "web"))(t)
	must(0, s.DeleteApp(ctx, "acme", "api"))(t)
	must(0, s.DeleteNamespace(ctx, "acme"))(t)

	_, err = s.GetNamespace(ctx, "acme")
	isErr(t, err, store.ErrNotFound)
	_, err = s.KeyByFingerprint(ctx, f.keys["alice"].Fingerprint)
	isErr(t, err, store.ErrNotFound)
	equal(t, "namespaces left", namespaceNames(must(s.ListNamespaces(ctx))(t)), []string{"beta:1"})
	equal(t, "keys left", keyNames(must(s.ListKeys(ctx, store.KeyFilter{}))(t)), []string{"/root", "beta/bob"})

	// The name is free again and nothing of the old namespace comes back.
	ns := must(s.CreateNamespace(ctx, "acme"))(t)
	if ns.Apps != 0 {
		t.Errorf("recreated namespace has %d apps", ns.Apps)
	}
	if list := must(s.ListKeys(ctx, store.KeyFilter{Namespace: "acme"}))(t); len(list) != 0 {
		t.Errorf("recreated namespace has keys %v", keyNames(list))
	}
}

func testApps(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, name := range []string{"acme", "beta", "empty"} {
		must(s.CreateNamespace(ctx, name))(t)
	}
	before := time.Now()
	web := must(s.CreateApp(ctx, "acme", "web"))(t)
	if web.Namespace != "acme" || web.Name != "web" || web.DeployBranch != store.DefaultDeployBranch {
		t.Fatalf("CreateApp = %+v", web)
	}
	recent(t, "CreatedAt", web.CreatedAt, before)
	equal(t, "GetApp", must(s.GetApp(ctx, "acme", "web"))(t), web)

	for _, a := range [][2]string{{"beta", "api"}, {"acme", "zz"}, {"acme", "api"}} {
		must(s.CreateApp(ctx, a[0], a[1]))(t)
	}
	for _, tc := range []struct {
		namespace string
		want      []string
	}{
		{"", []string{"acme/api", "acme/web", "acme/zz", "beta/api"}},
		{"acme", []string{"acme/api", "acme/web", "acme/zz"}},
		{"beta", []string{"beta/api"}},
		{"empty", nil},
	} {
		equal(t, fmt.Sprintf("ListApps(%q)", tc.namespace), appNames(must(s.ListApps(ctx, tc.namespace))(t)), tc.want)
	}

	must(0, s.SetDeployBranch(ctx, "acme", "web", "main"))(t)
	web.DeployBranch = "main"
	equal(t, "GetApp after SetDeployBranch", must(s.GetApp(ctx, "acme", "web"))(t), web)
	// Setting the branch it already has finds the app all the same.
	must(0, s.SetDeployBranch(ctx, "acme", "web", "main"))(t)
	equal(t, "GetApp after same SetDeployBranch", must(s.GetApp(ctx, "acme", "web"))(t), web)
	if b := must(s.GetApp(ctx, "acme", "api"))(t).DeployBranch; b != store.DefaultDeployBranch {
		t.Errorf("other app's branch changed to %q", b)
	}
	// The HTTPS policy: redirect on and no HSTS by default.
	if a := must(s.GetApp(ctx, "acme", "api"))(t); a.NoHTTPSRedirect || a.HSTSMaxAge != 0 {
		t.Errorf("a new app's HTTPS policy: no redirect %v, HSTS %d", a.NoHTTPSRedirect, a.HSTSMaxAge)
	}
	must(0, s.SetHTTPSRedirect(ctx, "acme", "web", false))(t)
	must(0, s.SetHSTS(ctx, "acme", "web", 31536000))(t)
	web.NoHTTPSRedirect, web.HSTSMaxAge = true, 31536000
	equal(t, "GetApp after the HTTPS policy set", must(s.GetApp(ctx, "acme", "web"))(t), web)
	must(0, s.SetHTTPSRedirect(ctx, "acme", "web", true))(t)
	must(0, s.SetHSTS(ctx, "acme", "web", 0))(t)
	web.NoHTTPSRedirect, web.HSTSMaxAge = false, 0
	equal(t, "GetApp after the HTTPS policy reset", must(s.GetApp(ctx, "acme", "web"))(t), web)
	if err := s.SetHSTS(ctx, "acme", "web", -1); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetHSTS(-1): %v", err)
	}
}

func testDeleteApp(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := seed(t, s)
	for _, app := range []string{"web", "api"} {
		must(s.RecordPush(ctx, newPush("acme", app, "to "+app, time.Time{})))(t)
	}
	must(s.AddKey(ctx, newKey("ci-api", keys.RoleDeploy, "acme", "api")))(t)
	releaseIn(t, s, "acme", "web", store.ReleaseSuperseded) // v1, v2 live on web-v2
	releaseIn(t, s, "acme", "web", store.ReleaseFailed)
	api := releaseIn(t, s, "acme", "api", store.ReleaseLive)

	must(0, s.DeleteApp(ctx, "acme", "web"))(t)

	_, err := s.GetApp(ctx, "acme", "web")
	isErr(t, err, store.ErrNotFound)
	_, err = s.KeyByFingerprint(ctx, f.keys["ci"].Fingerprint)
	isErr(t, err, store.ErrNotFound)
	_, err = s.ListPushes(ctx, "acme", "web", 0)
	isErr(t, err, store.ErrNotFound)
	equal(t, "apps left", appNames(must(s.ListApps(ctx, ""))(t)), []string{"acme/api", "beta/site"})
	equal(t, "keys left", keyNames(must(s.ListKeys(ctx, store.KeyFilter{}))(t)),
		[]string{"/root", "acme/alice", "acme/ci-api", "beta/bob"})
	equal(t, "other app's pushes", subjects(must(s.ListPushes(ctx, "acme", "api", 0))(t)), []string{"to api"})
	_, err = s.ListReleases(ctx, "acme", "web", 0)
	isErr(t, err, store.ErrNotFound)
	_, err = s.GetRelease(ctx, "acme", "web", 1)
	isErr(t, err, store.ErrNotFound)
	_, err = s.ListInstances(ctx, "acme", "web")
	isErr(t, err, store.ErrNotFound)
	equal(t, "instances left", instanceNames(must(s.ListInstances(ctx, "", ""))(t)), []string{"acme/api/api-v1@v1"})
	equal(t, "other app's releases", must(s.ListReleases(ctx, "acme", "api", 0))(t), []store.Release{api})

	// A new app of the same name starts clean.
	app := must(s.CreateApp(ctx, "acme", "web"))(t)
	if app.DeployBranch != store.DefaultDeployBranch {
		t.Errorf("recreated app has branch %q", app.DeployBranch)
	}
	if list := must(s.ListPushes(ctx, "acme", "web", 0))(t); len(list) != 0 {
		t.Errorf("recreated app has pushes %v", subjects(list))
	}
	if list := must(s.ListReleases(ctx, "acme", "web", 0))(t); len(list) != 0 {
		t.Errorf("recreated app has releases %v", statuses(list))
	}
	if list := must(s.ListInstances(ctx, "acme", "web"))(t); len(list) != 0 {
		t.Errorf("recreated app has instances %v", instanceNames(list))
	}
	// Versions start again at 1, and the old instance names are free.
	r := releaseIn(t, s, "acme", "web", store.ReleaseLive)
	if r.Version != 1 {
		t.Errorf("recreated app's first release is v%d", r.Version)
	}
	equal(t, "recreated app's instances", instanceNames(must(s.ListInstances(ctx, "acme", "web"))(t)), []string{"acme/web/web-v1@v1"})
	must(0, s.Activate(ctx, "acme", "web", 1, []store.Instance{newInstance("web-v2", "h1")}))(t)
}

func testKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	f := seed(t, s)
	for name, k := range f.keys {
		want := newKey(k.Name, k.Role, k.Namespace, k.App)
		recent(t, name+" CreatedAt", k.CreatedAt, before)
		want.CreatedAt = k.CreatedAt
		equal(t, "AddKey "+name, k, want)
		equal(t, "KeyByFingerprint "+name, must(s.KeyByFingerprint(ctx, k.Fingerprint))(t), k)
		equal(t, "KeyByName "+name, must(s.KeyByName(ctx, k.Namespace, k.Name))(t), k)
	}
	ci := must(s.KeyByName(ctx, "acme", "ci"))(t)
	equal(t, "deploy key principal", ci.Principal(),
		keys.Principal{Name: "ci", Fingerprint: ci.Fingerprint, Role: keys.RoleDeploy, Namespace: "acme", App: "web"})

	// A name is unique within its scope only.
	for _, k := range []store.Key{
		newKey("alice", keys.RoleAdmin, "", ""),
		newKey("alice", keys.RoleNamespace, "beta", ""),
		newKey("root", keys.RoleDeploy, "beta", "site"),
	} {
		added := must(s.AddKey(ctx, k))(t)
		equal(t, "KeyByName "+k.Namespace+"/"+k.Name, must(s.KeyByName(ctx, k.Namespace, k.Name))(t), added)
	}

	// A bootstrap key names a host (in App), no namespace, and no app need
	// exist by that name.
	boot := must(s.AddKey(ctx, newKey("bootstrap-h9", keys.RoleBootstrap, "", "h9")))(t)
	equal(t, "bootstrap key principal", must(s.KeyByFingerprint(ctx, boot.Fingerprint))(t).Principal(),
		keys.Principal{Name: "bootstrap-h9", Fingerprint: boot.Fingerprint, Role: keys.RoleBootstrap, App: "h9"})
	if _, err := s.AddKey(ctx, newKey("bootstrap-x", keys.RoleBootstrap, "acme", "h9")); err == nil {
		t.Error("a bootstrap key with a namespace was accepted")
	}

	// A CreatedAt given is kept, in UTC.
	at := time.Date(2023, 12, 31, 22, 30, 0, 123456789, time.FixedZone("CET", 3600))
	k := newKey("dated", keys.RoleNamespace, "acme", "")
	k.CreatedAt = at
	added := must(s.AddKey(ctx, k))(t)
	got := must(s.KeyByFingerprint(ctx, k.Fingerprint))(t)
	equal(t, "dated key", got, added)
	if !got.CreatedAt.Equal(at) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, at)
	}
}

func testListKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	must(s.CreateNamespace(ctx, "gamma"))(t)
	must(s.AddKey(ctx, newKey("alice", keys.RoleAdmin, "", "")))(t)
	must(s.AddKey(ctx, newKey("deploy", keys.RoleDeploy, "beta", "site")))(t)

	for _, tc := range []struct {
		name   string
		filter store.KeyFilter
		want   []string
	}{
		{"all, admins first", store.KeyFilter{}, []string{"/alice", "/root", "acme/alice", "acme/ci", "beta/bob", "beta/deploy"}},
		{"admins", store.KeyFilter{AdminOnly: true}, []string{"/alice", "/root"}},
		{"acme", store.KeyFilter{Namespace: "acme"}, []string{"acme/alice", "acme/ci"}},
		{"beta", store.KeyFilter{Namespace: "beta"}, []string{"beta/bob", "beta/deploy"}},
		{"namespace without keys", store.KeyFilter{Namespace: "gamma"}, nil},
		{"admins of a namespace", store.KeyFilter{Namespace: "acme", AdminOnly: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list := must(s.ListKeys(ctx, tc.filter))(t)
			equal(t, "keys", keyNames(list), tc.want)
			for _, k := range list {
				equal(t, "listed "+k.Name, k, must(s.KeyByFingerprint(ctx, k.Fingerprint))(t))
			}
		})
	}
}

func testRemoveKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := seed(t, s)
	must(0, s.RemoveKey(ctx, f.keys["ci"].Fingerprint))(t)
	_, err := s.KeyByFingerprint(ctx, f.keys["ci"].Fingerprint)
	isErr(t, err, store.ErrNotFound)
	_, err = s.KeyByName(ctx, "acme", "ci")
	isErr(t, err, store.ErrNotFound)
	equal(t, "keys left", keyNames(must(s.ListKeys(ctx, store.KeyFilter{}))(t)), []string{"/root", "acme/alice", "beta/bob"})
	isErr(t, s.RemoveKey(ctx, f.keys["ci"].Fingerprint), store.ErrNotFound)

	// Fingerprint and name are free again.
	again := must(s.AddKey(ctx, newKey("ci", keys.RoleDeploy, "acme", "web")))(t)
	equal(t, "re-added", must(s.KeyByName(ctx, "acme", "ci"))(t), again)
}

func testPushes(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var recorded []store.Push
	ids := map[int64]bool{}
	for i := range 5 {
		in := newPush("acme", "web", fmt.Sprintf("push %d", i), base.Add(time.Duration(i)*time.Second))
		p := must(s.RecordPush(ctx, in))(t)
		if p.ID <= 0 || ids[p.ID] {
			t.Fatalf("push %d got id %d, want a new positive id", i, p.ID)
		}
		ids[p.ID] = true
		in.ID = p.ID
		equal(t, "RecordPush", p, in)
		recorded = append(recorded, p)
	}
	must(s.RecordPush(ctx, newPush("acme", "api", "elsewhere", base)))(t)
	newest := slices.Clone(recorded)
	slices.Reverse(newest)

	for _, tc := range []struct {
		limit int
		want  []store.Push
	}{
		{0, newest},
		{-1, newest},
		{2, newest[:2]},
		{5, newest},
		{10, newest},
	} {
		equal(t, fmt.Sprintf("ListPushes limit %d", tc.limit), must(s.ListPushes(ctx, "acme", "web", tc.limit))(t), tc.want)
	}
	equal(t, "other app", subjects(must(s.ListPushes(ctx, "acme", "api", 0))(t)), []string{"elsewhere"})
	if list := must(s.ListPushes(ctx, "beta", "site", 0))(t); len(list) != 0 {
		t.Errorf("app without pushes lists %v", subjects(list))
	}

	// A zero At is now: newer than the 2024 pushes. Equal times keep the
	// order they were recorded in, newest first.
	before := time.Now()
	now := must(s.RecordPush(ctx, newPush("acme", "web", "now", time.Time{})))(t)
	recent(t, "At", now.At, before)
	must(s.RecordPush(ctx, newPush("acme", "web", "same time, later", base.Add(4*time.Second))))(t)
	equal(t, "newest first", subjects(must(s.ListPushes(ctx, "acme", "web", 3))(t)), []string{"now", "same time, later", "push 4"})
}

func testTimeRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	for i, tc := range []struct {
		name string
		at   time.Time
	}{
		{"unix epoch", time.Unix(0, 0)},
		{"nanoseconds in another zone", time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.FixedZone("UTC-7", -7*3600))},
		{"before 1970", time.Date(1969, 7, 20, 20, 17, 40, 1, time.UTC)},
		{"far future", time.Date(2262, 1, 1, 0, 0, 0, 1, time.UTC)},
		{"local clock with monotonic reading", time.Now()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, got time.Time) {
				t.Helper()
				if !got.Equal(tc.at) || got.Location() != time.UTC {
					t.Errorf("%s = %v (%v), want %v in UTC", what, got, got.Location(), tc.at)
				}
			}
			k := newKey(fmt.Sprintf("k%d", i), keys.RoleAdmin, "", "")
			k.CreatedAt = tc.at
			check("AddKey", must(s.AddKey(ctx, k))(t).CreatedAt)
			check("KeyByFingerprint", must(s.KeyByFingerprint(ctx, k.Fingerprint))(t).CreatedAt)

			app := fmt.Sprintf("t%d", i)
			must(s.CreateApp(ctx, "acme", app))(t)
			check("RecordPush", must(s.RecordPush(ctx, newPush("acme", app, tc.name, tc.at)))(t).At)
			check("ListPushes", must(s.ListPushes(ctx, "acme", app, 1))(t)[0].At)

			r := newRelease("acme", app, tc.name)
			r.CreatedAt = tc.at
			check("CreateRelease", must(s.CreateRelease(ctx, r))(t).CreatedAt)
			check("GetRelease", must(s.GetRelease(ctx, "acme", app, 1))(t).CreatedAt)
			check("ListReleases", must(s.ListReleases(ctx, "acme", app, 1))(t)[0].CreatedAt)
			must(0, s.FinishBuild(ctx, "acme", app, 1, "a", "d", 1))(t)
			in := newInstance(app+"-1", "h1")
			in.CreatedAt = tc.at
			must(0, s.Activate(ctx, "acme", app, 1, []store.Instance{in}))(t)
			check("LiveRelease", must(s.LiveRelease(ctx, "acme", app))(t).CreatedAt)
			check("ListInstances", must(s.ListInstances(ctx, "acme", app))(t)[0].CreatedAt)

			h := newHost(app, i+1)
			h.CreatedAt = tc.at
			check("AddHost", must(s.AddHost(ctx, h))(t).CreatedAt)
			check("GetHost", must(s.GetHost(ctx, app))(t).CreatedAt)
			check("ListHosts", must(s.ListHosts(ctx))(t)[i].CreatedAt)
		})
	}
}

func testFreeText(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	for i, text := range []string{
		`it's "quoted"`,
		`back\slash \n \' \"`,
		`'); DROP TABLE apps; --`,
		"héllo wörld — 世界 🚀 Ω",
		"% and _ are LIKE wildcards",
		"tab\there, trailing space ",
		"",
		strings.Repeat("long é ", 2000),
	} {
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			p := must(s.RecordPush(ctx, newPush("acme", "web", text, time.Time{})))(t)
			got := must(s.ListPushes(ctx, "acme", "web", 1))(t)[0]
			equal(t, "push", got, p)
			if got.Subject != text {
				t.Errorf("Subject = %q, want %q", got.Subject, text)
			}

			k := newKey(fmt.Sprintf("text-%d", i), keys.RoleNamespace, "acme", "")
			k.PublicKey += " " + text
			k.AddedBy = text
			added := must(s.AddKey(ctx, k))(t)
			got2 := must(s.KeyByFingerprint(ctx, k.Fingerprint))(t)
			equal(t, "key", got2, added)
			if got2.PublicKey != k.PublicKey || got2.AddedBy != text {
				t.Errorf("PublicKey, AddedBy = %q, %q; want %q, %q", got2.PublicKey, got2.AddedBy, k.PublicKey, text)
			}

			hostsFreeText(t, s, i, text)
		})
	}
}

// snapshot is everything a store holds, to show that a failed call changed
// nothing.
func snapshot(t *testing.T, s store.Store) string {
	t.Helper()
	ctx := t.Context()
	var b strings.Builder
	fmt.Fprintln(&b, must(s.ListNamespaces(ctx))(t))
	apps := must(s.ListApps(ctx, ""))(t)
	fmt.Fprintln(&b, apps)
	fmt.Fprintln(&b, must(s.ListKeys(ctx, store.KeyFilter{}))(t))
	for _, a := range apps {
		fmt.Fprintln(&b, must(s.ListPushes(ctx, a.Namespace, a.Name, 0))(t))
		fmt.Fprintln(&b, must(s.ListReleases(ctx, a.Namespace, a.Name, 0))(t))
		fmt.Fprintln(&b, must(s.GetConfig(ctx, a.Namespace, a.Name))(t))
		fmt.Fprintln(&b, must(s.GetFormation(ctx, a.Namespace, a.Name))(t))
		fmt.Fprintln(&b, must(s.ListEvents(ctx, a.Namespace, a.Name, 0))(t))
	}
	fmt.Fprintln(&b, must(s.ListDomains(ctx, "", ""))(t))
	fmt.Fprintln(&b, must(s.ListInstances(ctx, "", ""))(t))
	fmt.Fprintln(&b, must(s.ListHosts(ctx))(t))
	return b.String()
}

func testErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := seed(t, s)
	must(s.RecordPush(ctx, newPush("acme", "web", "first", time.Time{})))(t)
	releaseIn(t, s, "acme", "web", store.ReleaseLive)     // v1, on instance web-v1
	releaseIn(t, s, "acme", "web", store.ReleaseBuilding) // v2
	releaseIn(t, s, "acme", "web", store.ReleaseFailed)   // v3
	releaseIn(t, s, "acme", "api", store.ReleaseBuilt)    // v1
	before := snapshot(t, s)
	instances := func(names ...string) []store.Instance {
		var list []store.Instance
		for _, name := range names {
			list = append(list, newInstance(name, "h1"))
		}
		return list
	}
	otherApp := newInstance("x", "h1")
	otherApp.Namespace, otherApp.App = "beta", "site"
	otherRelease := newInstance("x", "h1")
	otherRelease.Release = 2

	withFP := func(k store.Key, fp string) store.Key { k.Fingerprint = fp; return k }
	root, alice := f.keys["root"], f.keys["alice"]

	tests := []struct {
		name string
		op   func(ctx context.Context) error
		// want is the sentinel, or nil for an error that is none of them.
		want    error
		mention string // the error names the entity
	}{
		{"create existing namespace", func(ctx context.Context) error { _, err := s.CreateNamespace(ctx, "acme"); return err },
			store.ErrConflict, `namespace "acme"`},
		{"get missing namespace", func(ctx context.Context) error { _, err := s.GetNamespace(ctx, "nope"); return err },
			store.ErrNotFound, `namespace "nope"`},
		{"delete missing namespace", func(ctx context.Context) error { return s.DeleteNamespace(ctx, "nope") },
			store.ErrNotFound, `namespace "nope"`},
		{"delete namespace with apps", func(ctx context.Context) error { return s.DeleteNamespace(ctx, "acme") },
			store.ErrNotEmpty, `namespace "acme": still has 2 apps:`},
		{"delete namespace with an app", func(ctx context.Context) error { return s.DeleteNamespace(ctx, "beta") },
			store.ErrNotEmpty, `namespace "beta": still has 1 app:`},
		{"create app in missing namespace", func(ctx context.Context) error { _, err := s.CreateApp(ctx, "nope", "web"); return err },
			store.ErrNotFound, `namespace "nope"`},
		{"create existing app", func(ctx context.Context) error { _, err := s.CreateApp(ctx, "acme", "web"); return err },
			store.ErrConflict, `app "acme/web"`},
		{"get missing app", func(ctx context.Context) error { _, err := s.GetApp(ctx, "acme", "nope"); return err },
			store.ErrNotFound, `app "acme/nope"`},
		{"get app of another namespace", func(ctx context.Context) error { _, err := s.GetApp(ctx, "beta", "web"); return err },
			store.ErrNotFound, `app "beta/web"`},
		{"list apps of missing namespace", func(ctx context.Context) error { _, err := s.ListApps(ctx, "nope"); return err },
			store.ErrNotFound, `namespace "nope"`},
		{"delete missing app", func(ctx context.Context) error { return s.DeleteApp(ctx, "acme", "nope") },
			store.ErrNotFound, `app "acme/nope"`},
		{"delete app of another namespace", func(ctx context.Context) error { return s.DeleteApp(ctx, "beta", "web") },
			store.ErrNotFound, `app "beta/web"`},
		{"set branch of missing app", func(ctx context.Context) error { return s.SetDeployBranch(ctx, "acme", "nope", "main") },
			store.ErrNotFound, `app "acme/nope"`},
		{"set https-redirect of missing app", func(ctx context.Context) error { return s.SetHTTPSRedirect(ctx, "acme", "nope", false) },
			store.ErrNotFound, `app "acme/nope"`},
		{"set HSTS of missing app", func(ctx context.Context) error { return s.SetHSTS(ctx, "acme", "nope", 60) },
			store.ErrNotFound, `app "acme/nope"`},
		{"key of an admin again", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, withFP(newKey("other", keys.RoleAdmin, "", ""), root.Fingerprint))
			return err
		}, store.ErrKeyTaken, root.Fingerprint},
		{"key of a member for another namespace", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, withFP(newKey("other", keys.RoleNamespace, "beta", ""), alice.Fingerprint))
			return err
		}, store.ErrKeyTaken, alice.Fingerprint},
		{"same key and name again", func(ctx context.Context) error { _, err := s.AddKey(ctx, alice); return err },
			store.ErrKeyTaken, alice.Fingerprint},
		{"admin key name taken", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, withFP(newKey("root", keys.RoleAdmin, "", ""), "SHA256:new"))
			return err
		}, store.ErrKeyNameTaken, `admin key "root"`},
		{"member key name taken", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, withFP(newKey("alice", keys.RoleNamespace, "acme", ""), "SHA256:new"))
			return err
		}, store.ErrKeyNameTaken, `key "alice" of namespace "acme"`},
		{"deploy key named like a member", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("alice", keys.RoleDeploy, "acme", "api"))
			return err
		}, store.ErrKeyNameTaken, `key "alice" of namespace "acme"`},
		{"member key of missing namespace", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("x", keys.RoleNamespace, "nope", ""))
			return err
		}, store.ErrNotFound, `namespace "nope"`},
		{"deploy key of missing app", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("x", keys.RoleDeploy, "acme", "nope"))
			return err
		}, store.ErrNotFound, `app "acme/nope"`},
		{"deploy key of missing namespace", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("x", keys.RoleDeploy, "nope", "web"))
			return err
		}, store.ErrNotFound, `namespace "nope"`},
		{"admin key with a namespace", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("x", keys.RoleAdmin, "acme", ""))
			return err
		}, nil, `key "x"`},
		{"member key without namespace", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("x", keys.RoleNamespace, "", ""))
			return err
		}, nil, `key "x"`},
		{"member key with an app", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("x", keys.RoleNamespace, "acme", "web"))
			return err
		}, nil, `key "x"`},
		{"deploy key without app", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("x", keys.RoleDeploy, "acme", ""))
			return err
		}, nil, `key "x"`},
		{"unknown role", func(ctx context.Context) error {
			_, err := s.AddKey(ctx, newKey("x", "owner", "acme", ""))
			return err
		}, nil, `"owner"`},
		{"missing fingerprint", func(ctx context.Context) error { _, err := s.KeyByFingerprint(ctx, "SHA256:nope"); return err },
			store.ErrNotFound, "SHA256:nope"},
		{"missing key name", func(ctx context.Context) error { _, err := s.KeyByName(ctx, "acme", "nope"); return err },
			store.ErrNotFound, `key "nope" of namespace "acme"`},
		{"member is no admin", func(ctx context.Context) error { _, err := s.KeyByName(ctx, "", "alice"); return err },
			store.ErrNotFound, `admin key "alice"`},
		{"member of another namespace", func(ctx context.Context) error { _, err := s.KeyByName(ctx, "beta", "alice"); return err },
			store.ErrNotFound, `key "alice" of namespace "beta"`},
		{"remove missing key", func(ctx context.Context) error { return s.RemoveKey(ctx, "SHA256:nope") },
			store.ErrNotFound, "SHA256:nope"},
		{"keys of missing namespace", func(ctx context.Context) error {
			_, err := s.ListKeys(ctx, store.KeyFilter{Namespace: "nope"})
			return err
		}, store.ErrNotFound, `namespace "nope"`},
		{"push to missing app", func(ctx context.Context) error {
			_, err := s.RecordPush(ctx, newPush("acme", "nope", "x", time.Time{}))
			return err
		}, store.ErrNotFound, `app "acme/nope"`},
		{"push to missing namespace", func(ctx context.Context) error {
			_, err := s.RecordPush(ctx, newPush("nope", "web", "x", time.Time{}))
			return err
		}, store.ErrNotFound, `app "nope/web"`},
		{"pushes of missing app", func(ctx context.Context) error { _, err := s.ListPushes(ctx, "acme", "nope", 10); return err },
			store.ErrNotFound, `app "acme/nope"`},
		{"stop missing app", func(ctx context.Context) error { return s.SetStopped(ctx, "acme", "nope", true) },
			store.ErrNotFound, `app "acme/nope"`},
		{"release of missing app", func(ctx context.Context) error {
			_, err := s.CreateRelease(ctx, newRelease("acme", "nope", "x"))
			return err
		}, store.ErrNotFound, `app "acme/nope"`},
		{"release in missing namespace", func(ctx context.Context) error {
			_, err := s.CreateRelease(ctx, newRelease("nope", "web", "x"))
			return err
		}, store.ErrNotFound, `app "nope/web"`},
		{"finish build of missing release", func(ctx context.Context) error {
			return s.FinishBuild(ctx, "acme", "web", 9, "a", "d", 1)
		}, store.ErrNotFound, `app "acme/web" release v9`},
		{"finish build of missing app", func(ctx context.Context) error {
			return s.FinishBuild(ctx, "acme", "nope", 1, "a", "d", 1)
		}, store.ErrNotFound, `app "acme/nope"`},
		{"finish build of a live release", func(ctx context.Context) error {
			return s.FinishBuild(ctx, "acme", "web", 1, "a", "d", 1)
		}, store.ErrConflict, `app "acme/web" release v1 is live, not building`},
		{"finish build of a failed release", func(ctx context.Context) error {
			return s.FinishBuild(ctx, "acme", "web", 3, "a", "d", 1)
		}, store.ErrConflict, `app "acme/web" release v3 is failed, not building`},
		{"finish build of a built release", func(ctx context.Context) error {
			return s.FinishBuild(ctx, "acme", "api", 1, "a", "d", 1)
		}, store.ErrConflict, `app "acme/api" release v1 is built, not building`},
		{"fail missing release", func(ctx context.Context) error { return s.FailRelease(ctx, "acme", "web", 9, "x") },
			store.ErrNotFound, `app "acme/web" release v9`},
		{"fail a live release", func(ctx context.Context) error { return s.FailRelease(ctx, "acme", "web", 1, "x") },
			store.ErrConflict, `app "acme/web" release v1 is live, not building or built`},
		{"fail a failed release", func(ctx context.Context) error { return s.FailRelease(ctx, "acme", "web", 3, "x") },
			store.ErrConflict, `app "acme/web" release v3 is failed`},
		{"activate a building release", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "web", 2, instances("new"))
		}, store.ErrConflict, `app "acme/web" release v2 is building, not built, superseded or live`},
		{"activate a failed release", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "web", 3, instances("new"))
		}, store.ErrConflict, `app "acme/web" release v3 is failed`},
		{"activate missing release", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "web", 9, instances("new"))
		}, store.ErrNotFound, `app "acme/web" release v9`},
		{"activate on missing app", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "nope", 1, instances("new"))
		}, store.ErrNotFound, `app "acme/nope"`},
		{"activate with another app's instance name", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "api", 1, instances("new", "web-v1"))
		}, store.ErrConflict, `instance "web-v1"`},
		{"activate with a name twice", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "api", 1, instances("new", "new"))
		}, store.ErrConflict, `instance "new"`},
		{"activate with an instance of another app", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "web", 1, []store.Instance{otherApp})
		}, nil, `instance "x" is of app "beta/site"`},
		{"activate with an instance of another release", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "web", 1, []store.Instance{otherRelease})
		}, nil, `instance "x" is of release v2`},
		{"activate with a nameless instance", func(ctx context.Context) error {
			return s.Activate(ctx, "acme", "web", 1, instances(""))
		}, nil, "no name"},
		{"get missing release", func(ctx context.Context) error { _, err := s.GetRelease(ctx, "acme", "web", 9); return err },
			store.ErrNotFound, `app "acme/web" release v9`},
		{"get release of another app", func(ctx context.Context) error { _, err := s.GetRelease(ctx, "beta", "site", 1); return err },
			store.ErrNotFound, `app "beta/site" release v1`},
		{"no live release", func(ctx context.Context) error { _, err := s.LiveRelease(ctx, "acme", "api"); return err },
			store.ErrNotFound, `app "acme/api" has no live release`},
		{"live release of missing app", func(ctx context.Context) error { _, err := s.LiveRelease(ctx, "acme", "nope"); return err },
			store.ErrNotFound, `app "acme/nope"`},
		{"releases of missing app", func(ctx context.Context) error { _, err := s.ListReleases(ctx, "acme", "nope", 0); return err },
			store.ErrNotFound, `app "acme/nope"`},
		{"instances of missing app", func(ctx context.Context) error {
			return s.SetInstances(ctx, "acme", "nope", nil)
		}, store.ErrNotFound, `app "acme/nope"`},
		{"instance of missing release", func(ctx context.Context) error {
			in := newInstance("new", "h1")
			in.Release = 9
			return s.SetInstances(ctx, "acme", "web", []store.Instance{in})
		}, store.ErrNotFound, `app "acme/web" release v9`},
		{"instance without a release", func(ctx context.Context) error {
			return s.SetInstances(ctx, "acme", "web", instances("new"))
		}, store.ErrNotFound, `app "acme/web" release v0`},
		{"instance name taken", func(ctx context.Context) error {
			in := newInstance("web-v1", "h1")
			in.Release = 1
			return s.SetInstances(ctx, "acme", "api", []store.Instance{in})
		}, store.ErrConflict, `instance "web-v1"`},
		{"set instances of another app", func(ctx context.Context) error {
			return s.SetInstances(ctx, "acme", "web", []store.Instance{otherApp})
		}, nil, `instance "x" is of app "beta/site"`},
		{"list instances of missing app", func(ctx context.Context) error { _, err := s.ListInstances(ctx, "acme", "nope"); return err },
			store.ErrNotFound, `app "acme/nope"`},
		{"list instances of missing namespace", func(ctx context.Context) error { _, err := s.ListInstances(ctx, "nope", ""); return err },
			store.ErrNotFound, `namespace "nope"`},
		{"list instances of an app without namespace", func(ctx context.Context) error {
			_, err := s.ListInstances(ctx, "", "web")
			return err
		}, nil, `app "web" without its namespace`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkError(t, tc.op(ctx), tc.want, tc.mention) })
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("failed calls changed the store:\nbefore %s\nafter  %s", before, after)
	}
}

// checkError fails t unless err is want and no other sentinel (none at all
// when want is nil), in one line that mentions mention.
func checkError(t *testing.T, err, want error, mention string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	for _, e := range []error{store.ErrNotFound, store.ErrConflict, store.ErrNotEmpty, store.ErrKeyTaken, store.ErrKeyNameTaken} {
		// The two key sentinels are conflicts too.
		is := e == want || (e == store.ErrConflict && (want == store.ErrKeyTaken || want == store.ErrKeyNameTaken))
		if errors.Is(err, e) != is {
			t.Errorf("error %q: errors.Is(%q) = %v, want %v", err, e, !is, is)
		}
	}
	if msg := err.Error(); !strings.Contains(msg, mention) || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line mentioning %s", msg, mention)
	}
}

// race runs fn(i) for i in [0, n) at once and returns the errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWins fails t unless exactly one err is nil and the others are want;
// it returns the winner's index.
func oneWins(t *testing.T, errs []error, want error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = i
		case err == nil:
			t.Fatalf("calls %d and %d both succeeded", winner, i)
		case !errors.Is(err, want):
			t.Fatalf("call %d: got %v, want %v", i, err, want)
		}
	}
	if winner < 0 {
		t.Fatal("no call succeeded")
	}
	return winner
}

func testConcurrentCreateApp(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(s.CreateNamespace(ctx, "acme"))(t)
	apps := make([]store.App, 10)
	errs := race(10, func(i int) (err error) {
		apps[i], err = s.CreateApp(ctx, "acme", "web")
		return err
	})
	winner := oneWins(t, errs, store.ErrConflict)
	equal(t, "apps", appNames(must(s.ListApps(ctx, "acme"))(t)), []string{"acme/web"})
	equal(t, "GetApp", must(s.GetApp(ctx, "acme", "web"))(t), apps[winner])
}

func testConcurrentAddKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	for _, tc := range []struct {
		name string
		key  func(i int) store.Key
		want error
	}{
		{"same fingerprint", func(i int) store.Key {
			k := newKey(fmt.Sprintf("fp-%d", i), keys.RoleNamespace, "beta", "")
			k.Fingerprint = "SHA256:same"
			return k
		}, store.ErrKeyTaken},
		{"same name", func(i int) store.Key {
			k := newKey("same", keys.RoleAdmin, "", "")
			k.Fingerprint = fmt.Sprintf("SHA256:name-%d", i)
			return k
		}, store.ErrKeyNameTaken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := race(10, func(i int) error { _, err := s.AddKey(ctx, tc.key(i)); return err })
			want := tc.key(oneWins(t, errs, tc.want))
			got := must(s.KeyByFingerprint(ctx, want.Fingerprint))(t)
			want.CreatedAt = got.CreatedAt
			equal(t, "stored key", got, want)
		})
	}
	if list := must(s.ListKeys(ctx, store.KeyFilter{}))(t); len(list) != 4+2 {
		t.Errorf("keys %v, want the 4 seeded and one winner of each race", keyNames(list))
	}
}

func testConcurrentPushes(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	const n = 20
	pushes := make([]store.Push, n)
	errs := race(n, func(i int) (err error) {
		pushes[i], err = s.RecordPush(ctx, newPush("acme", "web", fmt.Sprintf("push %02d", i), time.Time{}))
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	list := must(s.ListPushes(ctx, "acme", "web", 0))(t)
	if len(list) != n {
		t.Fatalf("listed %d pushes, want %d", len(list), n)
	}
	byID := map[int64]store.Push{}
	for _, p := range list {
		byID[p.ID] = p
	}
	for i, p := range pushes {
		equal(t, fmt.Sprintf("push %d", i), byID[p.ID], p)
	}
	for i := 1; i < len(list); i++ {
		if list[i].At.After(list[i-1].At) {
			t.Fatalf("pushes not newest first: %v after %v", list[i].At, list[i-1].At)
		}
	}
}
