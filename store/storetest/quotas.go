package storetest

import (
	"errors"
	"testing"

	"github.com/upscalehq/upscale/store"
)

var quotaTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Quotas", testQuotas},
	{"AppsQuota", testAppsQuota},
	{"ConcurrentAppsQuota", testConcurrentAppsQuota},
}

func ptr[T any](v T) *T { return &v }

func testQuotas(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	equal(t, "a new namespace's quota", must(s.GetNamespace(ctx, "acme"))(t).Quota, store.Quota{})
	got := must(s.SetQuota(ctx, "acme", store.QuotaChange{Apps: ptr(3), Memory: ptr(int64(8 << 30))}))(t)
	equal(t, "after setting apps and memory", got, store.Quota{Apps: 3, Memory: 8 << 30})
	// Keys left out stay as they are; 0 goes back to the default.
	got = must(s.SetQuota(ctx, "acme", store.QuotaChange{Apps: ptr(0), Instances: ptr(7), Exec: ptr(2)}))(t)
	want := store.Quota{Instances: 7, Memory: 8 << 30, Exec: 2}
	equal(t, "after a second change", got, want)
	equal(t, "GetNamespace", must(s.GetNamespace(ctx, "acme"))(t).Quota, want)
	for _, ns := range must(s.ListNamespaces(ctx))(t) {
		if ns.Name == "acme" {
			equal(t, "ListNamespaces", ns.Quota, want)
		} else {
			equal(t, "another namespace's quota", ns.Quota, store.Quota{})
		}
	}
	equal(t, "an empty change", must(s.SetQuota(ctx, "acme", store.QuotaChange{}))(t), want)

	_, err := s.SetQuota(ctx, "nope", store.QuotaChange{Apps: ptr(1)})
	checkError(t, err, store.ErrNotFound, `"nope"`)
	_, err = s.SetQuota(ctx, "nope", store.QuotaChange{})
	checkError(t, err, store.ErrNotFound, `"nope"`)
	if _, err := s.SetQuota(ctx, "acme", store.QuotaChange{Exec: ptr(-1)}); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("a negative quota: %v, want an error", err)
	}
	equal(t, "after refused changes", must(s.GetNamespace(ctx, "acme"))(t).Quota, want)
}

func testAppsQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s) // acme holds api and web
	_, err := s.CreateAppWithin(ctx, "acme", "shop", 2)
	if !errors.Is(err, store.ErrOverQuota) {
		t.Fatalf("a third app under a default of 2: %v, want ErrOverQuota", err)
	}
	must(s.CreateAppWithin(ctx, "acme", "shop", 3))(t)
	must(s.CreateAppWithin(ctx, "acme", "blog", 0))(t) // no limit
	// The namespace's own quota wins over the default, both ways.
	must(s.SetQuota(ctx, "acme", store.QuotaChange{Apps: ptr(5)}))(t)
	must(s.CreateAppWithin(ctx, "acme", "docs", 1))(t)
	if _, err := s.CreateAppWithin(ctx, "acme", "more", 100); !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("a sixth app under its own quota of 5: %v, want ErrOverQuota", err)
	}
	equal(t, "apps", appNames(must(s.ListApps(ctx, "acme"))(t)), []string{"acme/api", "acme/blog", "acme/docs", "acme/shop", "acme/web"})
	_, err = s.CreateAppWithin(ctx, "nope", "web", 1)
	checkError(t, err, store.ErrNotFound, `"nope"`)
	_, err = s.CreateAppWithin(ctx, "beta", "site", 10)
	checkError(t, err, store.ErrConflict, `"beta/site"`)
}

func testConcurrentAppsQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(s.CreateNamespace(ctx, "acme"))(t)
	names := []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"}
	errs := race(len(names), func(i int) error {
		_, err := s.CreateAppWithin(ctx, "acme", names[i], 3)
		return err
	})
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, store.ErrOverQuota):
			t.Errorf("racing creates: %v", err)
		}
	}
	if n := len(must(s.ListApps(ctx, "acme"))(t)); created != 3 || n != 3 {
		t.Errorf("10 racing creates under a quota of 3 made %d apps (%d said created)", n, created)
	}
}
