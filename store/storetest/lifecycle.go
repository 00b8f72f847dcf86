package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/store"
)

// The lifecycle of an app besides its releases: config vars, formations,
// pruned releases, custom domains and events.

var lifecycleTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Config", testConfig},
	{"ConfigLimits", testConfigLimits},
	{"Formation", testFormation},
	{"PruneRelease", testPruneRelease},
	{"Domains", testDomains},
	{"ListDomains", testListDomains},
	{"ConcurrentVerifyDomain", testConcurrentVerifyDomain},
	{"ConcurrentSetConfig", testConcurrentSetConfig},
	{"Events", testEvents},
	{"DeleteAppLifecycle", testDeleteAppLifecycle},
}

func testConfig(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)

	if vars := must(s.GetConfig(ctx, "acme", "web"))(t); vars != nil {
		t.Fatalf("a new app has config %v", vars)
	}
	for _, tc := range []struct {
		name  string
		set   map[string]string
		unset []string
		want  map[string]string
	}{
		{"set", map[string]string{"A": "1", "B": "two words", "EMPTY": ""}, nil,
			map[string]string{"A": "1", "B": "two words", "EMPTY": ""}},
		{"overwrite one, keep the others", map[string]string{"A": "one"}, nil,
			map[string]string{"A": "one", "B": "two words", "EMPTY": ""}},
		{"set and unset in one call", map[string]string{"C": "3"}, []string{"B"},
			map[string]string{"A": "one", "C": "3", "EMPTY": ""}},
		{"unset of a missing var is no error", nil, []string{"NOPE", "EMPTY"},
			map[string]string{"A": "one", "C": "3"}},
		{"a name both set and unset ends up unset", map[string]string{"D": "4", "A": "x"}, []string{"D"},
			map[string]string{"A": "x", "C": "3"}},
		{"names are compared byte for byte", map[string]string{"a": "lower", "ÿ": "utf-8"}, nil,
			map[string]string{"A": "x", "C": "3", "a": "lower", "ÿ": "utf-8"}},
		{"nothing to do", nil, nil, map[string]string{"A": "x", "C": "3", "a": "lower", "ÿ": "utf-8"}},
		{"unset all reads back nil", nil, []string{"A", "C", "a", "ÿ"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			equal(t, "SetConfig", must(s.SetConfig(ctx, "acme", "web", tc.set, tc.unset))(t), tc.want)
			equal(t, "GetConfig", must(s.GetConfig(ctx, "acme", "web"))(t), tc.want)
		})
	}
	// Another app's vars are its own.
	must(s.SetConfig(ctx, "acme", "api", map[string]string{"A": "api"}, nil))(t)
	must(s.SetConfig(ctx, "acme", "web", map[string]string{"A": "web"}, nil))(t)
	equal(t, "api", must(s.GetConfig(ctx, "acme", "api"))(t), map[string]string{"A": "api"})
	equal(t, "web", must(s.GetConfig(ctx, "acme", "web"))(t), map[string]string{"A": "web"})
	equal(t, "site", must(s.GetConfig(ctx, "beta", "site"))(t), map[string]string(nil))

	// A missing app, or an app looked for in another namespace.
	_, err := s.SetConfig(ctx, "acme", "nope", map[string]string{"A": "1"}, nil)
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
	_, err = s.SetConfig(ctx, "beta", "web", nil, []string{"A"})
	checkError(t, err, store.ErrNotFound, `"beta/web"`)
	_, err = s.GetConfig(ctx, "acme", "nope")
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
}

func testConfigLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	must(s.SetConfig(ctx, "acme", "web", map[string]string{"KEEP": "kept"}, nil))(t)

	max := strings.Repeat("x", 64<<10)
	utf8Max := strings.Repeat("é", 32<<10) // 64 KiB of two-byte runes
	vars := must(s.SetConfig(ctx, "acme", "web", map[string]string{"MAX": max, "UTF8": utf8Max}, nil))(t)
	if len(vars["MAX"]) != 64<<10 || vars["UTF8"] != utf8Max {
		t.Fatalf("64 KiB values came back as %d and %d bytes", len(vars["MAX"]), len(vars["UTF8"]))
	}
	if got := must(s.GetConfig(ctx, "acme", "web"))(t); got["MAX"] != max || got["UTF8"] != utf8Max {
		t.Fatalf("64 KiB values read back as %d and %d bytes", len(got["MAX"]), len(got["UTF8"]))
	}
	want := must(s.GetConfig(ctx, "acme", "web"))(t)

	for _, tc := range []struct {
		name    string
		set     map[string]string
		unset   []string
		mention string
	}{
		{"value one byte over 64 KiB", map[string]string{"OK": "1", "BIG": max + "x"}, nil, `"BIG"`},
		{"1 MB value", map[string]string{"BIG": strings.Repeat("x", 1<<20)}, nil, `"BIG"`},
		{"value not UTF-8", map[string]string{"OK": "1", "BAD": "caf\xe9"}, nil, "UTF-8"},
		{"name not UTF-8", map[string]string{"OK": "1", "B\xffD": "x"}, nil, "UTF-8"},
		{"unset name not UTF-8", map[string]string{"OK": "1"}, []string{"B\xffD"}, "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.SetConfig(ctx, "acme", "web", tc.set, tc.unset)
			checkError(t, err, nil, tc.mention)
			// All or nothing: the valid vars of the call are not set either.
			equal(t, "config after refused call", must(s.GetConfig(ctx, "acme", "web"))(t), want)
		})
	}
}

func testFormation(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)

	if f := must(s.GetFormation(ctx, "acme", "web"))(t); f != nil {
		t.Fatalf("a new app has formation %v", f)
	}
	for _, tc := range []struct {
		name string
		set  map[string]int
		want map[string]int
	}{
		{"set", map[string]int{"web": 2, "worker": 1}, map[string]int{"web": 2, "worker": 1}},
		{"replace, not merge", map[string]int{"web": 3}, map[string]int{"web": 3}},
		{"zero is a count", map[string]int{"web": 0, "worker": 4}, map[string]int{"web": 0, "worker": 4}},
		{"nil clears", nil, nil},
		{"set again", map[string]int{"web": 1}, map[string]int{"web": 1}},
		{"empty clears", map[string]int{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			must(0, s.SetFormation(ctx, "acme", "web", tc.set))(t)
			equal(t, "GetFormation", must(s.GetFormation(ctx, "acme", "web"))(t), tc.want)
		})
	}

	must(0, s.SetFormation(ctx, "acme", "web", map[string]int{"web": 2}))(t)
	must(0, s.SetFormation(ctx, "acme", "api", map[string]int{"web": 5}))(t)
	err := s.SetFormation(ctx, "acme", "web", map[string]int{"web": 1, "worker": -1})
	checkError(t, err, nil, `"worker"`)
	equal(t, "after a negative count", must(s.GetFormation(ctx, "acme", "web"))(t), map[string]int{"web": 2})
	equal(t, "other app's", must(s.GetFormation(ctx, "acme", "api"))(t), map[string]int{"web": 5})

	checkError(t, s.SetFormation(ctx, "acme", "nope", map[string]int{"web": 1}), store.ErrNotFound, `"acme/nope"`)
	checkError(t, s.SetFormation(ctx, "acme", "nope", nil), store.ErrNotFound, `"acme/nope"`)
	_, err = s.GetFormation(ctx, "beta", "web")
	checkError(t, err, store.ErrNotFound, `"beta/web"`)
}

func testPruneRelease(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	v1 := releaseIn(t, s, "acme", "web", store.ReleaseSuperseded) // v1, then v2 live on web-v2
	v3 := releaseIn(t, s, "acme", "web", store.ReleaseBuilt)
	v4 := releaseIn(t, s, "acme", "web", store.ReleaseFailed)
	v5 := releaseIn(t, s, "acme", "web", store.ReleaseBuilding)

	// Pruning keeps the release and its history, artifact name included.
	for _, r := range []store.Release{v1, v3, v4} {
		must(0, s.PruneRelease(ctx, "acme", "web", r.Version))(t)
		r.Pruned = true
		equal(t, fmt.Sprintf("v%d after prune", r.Version), must(s.GetRelease(ctx, "acme", "web", r.Version))(t), r)
		// Again is no error, and changes nothing.
		must(0, s.PruneRelease(ctx, "acme", "web", r.Version))(t)
		equal(t, fmt.Sprintf("v%d pruned twice", r.Version), must(s.GetRelease(ctx, "acme", "web", r.Version))(t), r)
	}
	equal(t, "releases", statuses(must(s.ListReleases(ctx, "acme", "web", 0))(t)),
		[]string{"v5:building", "v4:failed", "v3:built", "v2:live", "v1:superseded"})

	// A pruned release cannot go live again: nothing to start it from.
	before := snapshot(t, s)
	err := s.Activate(ctx, "acme", "web", v1.Version, []store.Instance{newInstance("web-back", "h1")})
	checkError(t, err, store.ErrConflict, "pruned")
	err = s.Activate(ctx, "acme", "web", v3.Version, nil)
	checkError(t, err, store.ErrConflict, "pruned")

	// The live and the building release keep their artifacts.
	checkError(t, s.PruneRelease(ctx, "acme", "web", 2), store.ErrConflict, "live")
	checkError(t, s.PruneRelease(ctx, "acme", "web", v5.Version), store.ErrConflict, "building")
	checkError(t, s.PruneRelease(ctx, "acme", "web", 9), store.ErrNotFound, "v9")
	checkError(t, s.PruneRelease(ctx, "acme", "nope", 1), store.ErrNotFound, `"acme/nope"`)
	checkError(t, s.PruneRelease(ctx, "beta", "site", 1), store.ErrNotFound, `"beta/site"`)
	if after := snapshot(t, s); after != before {
		t.Errorf("refused calls changed the store:\nbefore %s\nafter  %s", before, after)
	}

	// Mid-rollout, instances of a superseded release still run: it is kept
	// until they are gone.
	v6 := releaseIn(t, s, "acme", "web", store.ReleaseLive) // v2 superseded, web-v6 live
	with := func(in store.Instance, release int) store.Instance { in.Release = release; return in }
	must(0, s.SetInstances(ctx, "acme", "web", []store.Instance{
		with(newInstance("web-old", "h1"), 2), with(newInstance("web-new", "h2"), v6.Version),
	}))(t)
	checkError(t, s.PruneRelease(ctx, "acme", "web", 2), store.ErrConflict, "1 instance")
	if r := must(s.GetRelease(ctx, "acme", "web", 2))(t); r.Pruned {
		t.Fatal("v2 pruned while an instance runs it")
	}
	must(0, s.SetInstances(ctx, "acme", "web", []store.Instance{with(newInstance("web-new", "h2"), v6.Version)}))(t)
	must(0, s.PruneRelease(ctx, "acme", "web", 2))(t)
	if r := must(s.GetRelease(ctx, "acme", "web", 2))(t); !r.Pruned || r.Status != store.ReleaseSuperseded {
		t.Fatalf("v2 after prune: pruned %v, status %s", r.Pruned, r.Status)
	}
	// A release that was superseded, not pruned, still goes live.
	must(0, s.Activate(ctx, "acme", "web", v6.Version, nil))(t)
}

func domainNames(list []store.Domain) []string {
	var out []string
	for _, d := range list {
		out = append(out, d.Namespace+"/"+d.App+" "+d.Hostname)
	}
	return out
}

func testDomains(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	before := time.Now()

	d := must(s.AddDomain(ctx, store.Domain{Hostname: "www.example.com", Namespace: "acme", App: "web", Token: "tok-web",
		CheckedAt: before, VerifiedAt: before, Failure: "ignored"}))(t)
	recent(t, "CreatedAt", d.CreatedAt, before)
	if d.Hostname != "www.example.com" || d.Namespace != "acme" || d.App != "web" || d.Token != "tok-web" {
		t.Fatalf("AddDomain = %+v", d)
	}
	if d.Verified() || !d.CheckedAt.IsZero() || d.Failure != "" {
		t.Errorf("a new claim is not pending and unchecked: %+v", d)
	}
	equal(t, "ListDomains", must(s.ListDomains(ctx, "acme", "web"))(t), []store.Domain{d})
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	given := must(s.AddDomain(ctx, store.Domain{Hostname: "example.com", Namespace: "acme", App: "web", CreatedAt: at}))(t)
	equal(t, "given CreatedAt", given.CreatedAt, at)

	// A pending claim reserves nothing: other apps claim the same name.
	must(s.AddDomain(ctx, store.Domain{Hostname: "www.example.com", Namespace: "acme", App: "api", Token: "tok-api"}))(t)
	must(s.AddDomain(ctx, store.Domain{Hostname: "www.example.com", Namespace: "beta", App: "site", Token: "tok-site"}))(t)
	equal(t, "claims", domainNames(must(s.ListDomains(ctx, "", ""))(t)), []string{"acme/api www.example.com",
		"acme/web example.com", "acme/web www.example.com", "beta/site www.example.com"})
	_, err := s.AddDomain(ctx, store.Domain{Hostname: "www.example.com", Namespace: "acme", App: "web"})
	checkError(t, err, store.ErrConflict, "acme/web")

	// Failed checks are recorded on the claim they were made for.
	checked := at.Add(time.Minute)
	failed := must(s.FailDomainCheck(ctx, "acme", "web", "www.example.com", checked, "no TXT record at _upscale-challenge.www.example.com"))(t)
	if failed.Verified() || !failed.CheckedAt.Equal(checked) || failed.Failure != "no TXT record at _upscale-challenge.www.example.com" || failed.Token != "tok-web" {
		t.Errorf("FailDomainCheck = %+v", failed)
	}
	equal(t, "after a failed check", must(s.ListDomains(ctx, "acme", "web"))(t), []store.Domain{given, failed})

	// The first to verify wins; the others stay pending and cannot verify.
	verified := must(s.VerifyDomain(ctx, "acme", "api", "www.example.com", checked))(t)
	if !verified.Verified() || !verified.VerifiedAt.Equal(checked) || !verified.CheckedAt.Equal(checked) || verified.Failure != "" {
		t.Errorf("VerifyDomain = %+v", verified)
	}
	equal(t, "verified claim", must(s.ListDomains(ctx, "acme", "api"))(t), []store.Domain{verified})
	again := must(s.VerifyDomain(ctx, "acme", "api", "www.example.com", checked.Add(time.Hour)))(t)
	equal(t, "verified again", again, verified)
	unchanged := must(s.FailDomainCheck(ctx, "acme", "api", "www.example.com", checked.Add(time.Hour), "gone"))(t)
	equal(t, "a verified claim after a failed check", unchanged, verified)

	for _, tc := range []struct{ name, namespace, app string }{
		{"app of the same namespace", "acme", "web"},
		{"app of another namespace", "beta", "site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.VerifyDomain(ctx, tc.namespace, tc.app, "www.example.com", checked)
			checkError(t, err, store.ErrConflict, "acme/api")
		})
	}
	must(s.CreateApp(ctx, "beta", "late"))(t)
	snap := snapshot(t, s)
	// Verified, the name is taken: a new claim is refused, naming the owner.
	_, err = s.AddDomain(ctx, store.Domain{Hostname: "www.example.com", Namespace: "beta", App: "late"})
	checkError(t, err, store.ErrConflict, "acme/api")
	// A missing app is not found, even when the hostname is taken too.
	_, err = s.AddDomain(ctx, store.Domain{Hostname: "other.example.com", Namespace: "acme", App: "nope"})
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
	_, err = s.AddDomain(ctx, store.Domain{Hostname: "www.example.com", Namespace: "acme", App: "nope"})
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
	for name, op := range map[string]func() error{
		"verify another app's": func() error { _, err := s.VerifyDomain(ctx, "beta", "late", "www.example.com", at); return err },
		"fail another app's":   func() error { _, err := s.FailDomainCheck(ctx, "beta", "late", "www.example.com", at, "x"); return err },
		"verify unknown":       func() error { _, err := s.VerifyDomain(ctx, "acme", "web", "nope.example.com", at); return err },
	} {
		t.Run(name, func(t *testing.T) { checkError(t, op(), store.ErrNotFound, "has no domain") })
	}
	_, err = s.VerifyDomain(ctx, "acme", "nope", "www.example.com", at)
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
	_, err = s.FailDomainCheck(ctx, "acme", "nope", "www.example.com", at, "x")
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)

	// Only the app that has a claim can remove it.
	checkError(t, s.RemoveDomain(ctx, "beta", "late", "www.example.com"), store.ErrNotFound, "www.example.com")
	checkError(t, s.RemoveDomain(ctx, "acme", "web", "nope.example.com"), store.ErrNotFound, "nope.example.com")
	checkError(t, s.RemoveDomain(ctx, "acme", "nope", "www.example.com"), store.ErrNotFound, `"acme/nope"`)
	// Byte for byte: the caller normalizes.
	checkError(t, s.RemoveDomain(ctx, "acme", "api", "WWW.example.com"), store.ErrNotFound, "WWW.example.com")
	if after := snapshot(t, s); after != snap {
		t.Errorf("refused calls changed the store:\nbefore %s\nafter  %s", snap, after)
	}

	// Removed, the verified name is free: a pending claim can win it now.
	must(0, s.RemoveDomain(ctx, "acme", "api", "www.example.com"))(t)
	checkError(t, s.RemoveDomain(ctx, "acme", "api", "www.example.com"), store.ErrNotFound, "www.example.com")
	site := must(s.VerifyDomain(ctx, "beta", "site", "www.example.com", at))(t)
	if !site.Verified() || site.Token != "tok-site" {
		t.Errorf("beta/site after the owner left: %+v", site)
	}
	_, err = s.VerifyDomain(ctx, "acme", "web", "www.example.com", at)
	checkError(t, err, store.ErrConflict, "beta/site")
}

func testListDomains(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	must(s.CreateNamespace(ctx, "empty"))(t)
	for _, d := range []store.Domain{
		{Hostname: "z.example.com", Namespace: "acme", App: "web"},
		{Hostname: "shop.beta.test", Namespace: "beta", App: "site"},
		{Hostname: "a.example.com", Namespace: "acme", App: "web"},
		{Hostname: "api.example.com", Namespace: "acme", App: "api"},
		{Hostname: "m.example.com", Namespace: "acme", App: "web"},
	} {
		must(s.AddDomain(ctx, d))(t)
	}
	for _, tc := range []struct {
		name           string
		namespace, app string
		want           []string
	}{
		{"all", "", "", []string{"acme/api api.example.com", "acme/web a.example.com", "acme/web m.example.com",
			"acme/web z.example.com", "beta/site shop.beta.test"}},
		{"one namespace", "acme", "", []string{"acme/api api.example.com", "acme/web a.example.com",
			"acme/web m.example.com", "acme/web z.example.com"}},
		{"one app", "acme", "web", []string{"acme/web a.example.com", "acme/web m.example.com", "acme/web z.example.com"}},
		{"another namespace's app", "beta", "site", []string{"beta/site shop.beta.test"}},
		{"namespace without domains", "empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			equal(t, "domains", domainNames(must(s.ListDomains(ctx, tc.namespace, tc.app))(t)), tc.want)
		})
	}
	must(0, s.RemoveDomain(ctx, "acme", "api", "api.example.com"))(t)
	if list := must(s.ListDomains(ctx, "acme", "api"))(t); len(list) != 0 {
		t.Errorf("app without domains lists %v", domainNames(list))
	}

	_, err := s.ListDomains(ctx, "nope", "")
	checkError(t, err, store.ErrNotFound, `"nope"`)
	_, err = s.ListDomains(ctx, "acme", "nope")
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
	_, err = s.ListDomains(ctx, "beta", "web")
	checkError(t, err, store.ErrNotFound, `"beta/web"`)
	_, err = s.ListDomains(ctx, "", "web")
	checkError(t, err, nil, `"web"`)
}

func testConcurrentVerifyDomain(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	apps := [][2]string{{"acme", "web"}, {"acme", "api"}, {"beta", "site"}}
	for i := range 7 {
		name := fmt.Sprintf("app%d", i)
		must(s.CreateApp(ctx, "beta", name))(t)
		apps = append(apps, [2]string{"beta", name})
	}
	// Claims all at once: none stands in another's way.
	errs := race(len(apps), func(i int) error {
		_, err := s.AddDomain(ctx, store.Domain{Hostname: "www.example.com", Namespace: apps[i][0], App: apps[i][1]})
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	// Proofs all at once: one wins.
	errs = race(len(apps), func(i int) error {
		_, err := s.VerifyDomain(ctx, apps[i][0], apps[i][1], "www.example.com", time.Time{})
		return err
	})
	winner := oneWins(t, errs, store.ErrConflict)
	owner := apps[winner][0] + "/" + apps[winner][1]
	var verified []string
	for _, d := range must(s.ListDomains(ctx, "", ""))(t) {
		if d.Verified() {
			verified = append(verified, d.Namespace+"/"+d.App+" "+d.Hostname)
		}
	}
	equal(t, "verified", verified, []string{owner + " www.example.com"})
}

// testConcurrentSetConfig: writers of different vars of one app lose none
// of each other's, and each sees its own change in what it gets back.
func testConcurrentSetConfig(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	must(s.SetConfig(ctx, "acme", "web", map[string]string{"GONE": "x"}, nil))(t)
	const n = 10
	got := make([]map[string]string, n)
	errs := race(n, func(i int) (err error) {
		got[i], err = s.SetConfig(ctx, "acme", "web", map[string]string{fmt.Sprintf("VAR_%d", i): fmt.Sprint(i)}, []string{"GONE"})
		return err
	})
	want := map[string]string{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		name := fmt.Sprintf("VAR_%d", i)
		if got[i][name] != fmt.Sprint(i) || got[i]["GONE"] != "" {
			t.Errorf("call %d got back %v, want its own %s and no GONE", i, got[i], name)
		}
		want[name] = fmt.Sprint(i)
	}
	equal(t, "config after concurrent sets", must(s.GetConfig(ctx, "acme", "web"))(t), want)
}

func eventKinds(list []store.Event) []string {
	var out []string
	for _, e := range list {
		out = append(out, e.Kind+":"+e.Message)
	}
	return out
}

func testEvents(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	if list := must(s.ListEvents(ctx, "acme", "web", 0))(t); len(list) != 0 {
		t.Fatalf("a new app has events %v", eventKinds(list))
	}

	before := time.Now()
	first := must(s.RecordEvent(ctx, store.Event{Namespace: "acme", App: "web", Kind: "push", Message: "pushed abc", By: "ci"}))(t)
	recent(t, "At", first.At, before)
	if first.ID == 0 {
		t.Fatal("RecordEvent returned no ID")
	}
	base := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	// Recorded out of order; two at the same instant are told apart by ID.
	for _, e := range []store.Event{
		{Kind: "config", Message: "set A", By: "alice", At: base.Add(2 * time.Second)},
		{Kind: "deploy", Message: "v1 live", By: "upscale", At: base},
		{Kind: "scale", Message: "web=2", By: "alice", At: base.Add(time.Second)},
		{Kind: "rollback", Message: "to v1", By: "alice", At: base.Add(time.Second)},
	} {
		e.Namespace, e.App = "acme", "web"
		got := must(s.RecordEvent(ctx, e))(t)
		if got.ID <= first.ID || !got.At.Equal(e.At) {
			t.Fatalf("RecordEvent = %+v", got)
		}
		first.ID = got.ID
	}
	must(s.RecordEvent(ctx, store.Event{Namespace: "acme", App: "api", Kind: "push", Message: "api's", By: "ci"}))(t)

	all := []string{"push:pushed abc", "config:set A", "rollback:to v1", "scale:web=2", "deploy:v1 live"}
	equal(t, "all events", eventKinds(must(s.ListEvents(ctx, "acme", "web", 0))(t)), all)
	equal(t, "negative limit", eventKinds(must(s.ListEvents(ctx, "acme", "web", -1))(t)), all)
	equal(t, "limit 2", eventKinds(must(s.ListEvents(ctx, "acme", "web", 2))(t)), all[:2])
	equal(t, "limit over", eventKinds(must(s.ListEvents(ctx, "acme", "web", 50))(t)), all)
	equal(t, "other app", eventKinds(must(s.ListEvents(ctx, "acme", "api", 0))(t)), []string{"push:api's"})
	list := must(s.ListEvents(ctx, "acme", "web", 0))(t)
	if e := list[len(list)-1]; e.By != "upscale" || e.Namespace != "acme" || e.App != "web" || !e.At.Equal(base) {
		t.Errorf("oldest event read back as %+v", e)
	}

	_, err := s.RecordEvent(ctx, store.Event{Namespace: "acme", App: "nope", Kind: "push", Message: "x", By: "ci"})
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
	_, err = s.RecordEvent(ctx, store.Event{Namespace: "beta", App: "web", Kind: "push", Message: "x", By: "ci"})
	checkError(t, err, store.ErrNotFound, `"beta/web"`)
	_, err = s.ListEvents(ctx, "acme", "nope", 0)
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
}

// testDeleteAppLifecycle: deleting an app takes its config, formation,
// domains and events with it, and a new app of the same name starts clean.
func testDeleteAppLifecycle(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	for _, app := range []string{"web", "api"} {
		must(s.SetConfig(ctx, "acme", app, map[string]string{"APP": app}, nil))(t)
		must(0, s.SetFormation(ctx, "acme", app, map[string]int{"web": 2}))(t)
		must(s.AddDomain(ctx, store.Domain{Hostname: app + ".example.com", Namespace: "acme", App: app}))(t)
		must(s.VerifyDomain(ctx, "acme", app, app+".example.com", time.Time{}))(t)
		must(s.RecordEvent(ctx, store.Event{Namespace: "acme", App: app, Kind: "push", Message: app, By: "ci"}))(t)
	}
	must(0, s.DeleteApp(ctx, "acme", "web"))(t)

	for name, op := range map[string]func(context.Context) error{
		"GetConfig":    func(ctx context.Context) error { _, err := s.GetConfig(ctx, "acme", "web"); return err },
		"GetFormation": func(ctx context.Context) error { _, err := s.GetFormation(ctx, "acme", "web"); return err },
		"ListDomains":  func(ctx context.Context) error { _, err := s.ListDomains(ctx, "acme", "web"); return err },
		"ListEvents":   func(ctx context.Context) error { _, err := s.ListEvents(ctx, "acme", "web", 0); return err },
	} {
		if err := op(ctx); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("%s of the deleted app: %v, want not found", name, err)
		}
	}
	equal(t, "domains left", domainNames(must(s.ListDomains(ctx, "", ""))(t)), []string{"acme/api api.example.com"})
	equal(t, "other app's config", must(s.GetConfig(ctx, "acme", "api"))(t), map[string]string{"APP": "api"})
	equal(t, "other app's formation", must(s.GetFormation(ctx, "acme", "api"))(t), map[string]int{"web": 2})
	equal(t, "other app's events", eventKinds(must(s.ListEvents(ctx, "acme", "api", 0))(t)), []string{"push:api"})

	must(s.CreateApp(ctx, "acme", "web"))(t)
	equal(t, "recreated app's config", must(s.GetConfig(ctx, "acme", "web"))(t), map[string]string(nil))
	equal(t, "recreated app's formation", must(s.GetFormation(ctx, "acme", "web"))(t), map[string]int(nil))
	if list := must(s.ListDomains(ctx, "acme", "web"))(t); len(list) != 0 {
		t.Errorf("recreated app has domains %v", domainNames(list))
	}
	if list := must(s.ListEvents(ctx, "acme", "web", 0))(t); len(list) != 0 {
		t.Errorf("recreated app has events %v", eventKinds(list))
	}
	// Its old hostname is free again, even once verified.
	must(s.AddDomain(ctx, store.Domain{Hostname: "web.example.com", Namespace: "beta", App: "site"}))(t)
	must(s.VerifyDomain(ctx, "beta", "site", "web.example.com", time.Time{}))(t)
}
