package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/upscalehq/upscale/store"
)

var volumeTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Volumes", testVolumes},
	{"VolumeErrors", testVolumeErrors},
	{"Attachments", testAttachments},
	{"VolumesOutliveNothing", testVolumesOutliveNothing},
	{"ConcurrentVolumeQuota", testConcurrentVolumeQuota},
}

func newVolume(namespace, name string, size int64, hosts ...string) store.Volume {
	v := store.Volume{Namespace: namespace, Name: name, Size: size, Replicas: len(hosts)}
	for _, h := range hosts {
		v.Bricks = append(v.Bricks, store.VolumeBrick{Host: h, Path: "/var/lib/upscale/bricks/" + namespace + "_" + name})
	}
	return v
}

func testVolumes(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	data := must(s.CreateVolume(ctx, newVolume("acme", "data", 10<<30, "h1", "h2", "h3"), 0))(t)
	if data.CreatedAt.IsZero() || data.Replicas != 3 || len(data.Bricks) != 3 || data.Bricks[1].Host != "h2" {
		t.Fatalf("created: %+v", data)
	}
	equal(t, "GetVolume", must(s.GetVolume(ctx, "acme", "data"))(t), data)
	cache := must(s.CreateVolume(ctx, newVolume("acme", "cache", 1<<20, "h2"), 0))(t)
	site := must(s.CreateVolume(ctx, newVolume("beta", "data", 2<<30, "h1", "h3"), 0))(t)
	equal(t, "one namespace's", must(s.ListVolumes(ctx, "acme"))(t), []store.Volume{cache, data})
	equal(t, "all", must(s.ListVolumes(ctx, ""))(t), []store.Volume{cache, data, site})
	equal(t, "a namespace without volumes", len(must(s.ListVolumes(ctx, "beta"))(t)), 1)

	_, err := s.CreateVolume(ctx, newVolume("acme", "data", 1<<20, "h1"), 0)
	checkError(t, err, store.ErrConflict, `"acme/data"`)
	_, err = s.GetVolume(ctx, "beta", "cache")
	checkError(t, err, store.ErrNotFound, `"beta/cache"`)
	_, err = s.ListVolumes(ctx, "nope")
	checkError(t, err, store.ErrNotFound, `"nope"`)

	must(0, s.DeleteVolume(ctx, "acme", "cache"))(t)
	checkError(t, s.DeleteVolume(ctx, "acme", "cache"), store.ErrNotFound, `"acme/cache"`)
	equal(t, "after delete", must(s.ListVolumes(ctx, "acme"))(t), []store.Volume{data})
}

func testVolumeErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	_, err := s.CreateVolume(ctx, newVolume("nope", "data", 1<<20, "h1"), 0)
	checkError(t, err, store.ErrNotFound, `"nope"`)
	for _, v := range []store.Volume{
		newVolume("acme", "data", 0, "h1"),
		newVolume("acme", "data", -1, "h1"),
		newVolume("acme", "data", 1<<20),
		newVolume("acme", "data", 1<<20, "h1", "h1"),
		{Namespace: "acme", Name: "data", Size: 1 << 20, Replicas: 2, Bricks: newVolume("acme", "data", 1, "h1").Bricks},
	} {
		_, err := s.CreateVolume(ctx, v, 0)
		if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
			t.Errorf("%+v: %v, want an error that is none of the sentinels", v, err)
		}
	}
	equal(t, "after refused creates", len(must(s.ListVolumes(ctx, ""))(t)), 0)

	// The namespace's volumes may hold maxBytes in all.
	must(s.CreateVolume(ctx, newVolume("acme", "a", 6<<30, "h1"), 10<<30))(t)
	_, err = s.CreateVolume(ctx, newVolume("acme", "b", 5<<30, "h1"), 10<<30)
	checkError(t, err, store.ErrOverQuota, `"acme"`)
	must(s.CreateVolume(ctx, newVolume("acme", "b", 4<<30, "h1"), 10<<30))(t)
	must(s.CreateVolume(ctx, newVolume("beta", "b", 8<<30, "h1"), 10<<30))(t) // another namespace's own
	equal(t, "volumes kept", len(must(s.ListVolumes(ctx, ""))(t)), 3)
}

func testAttachments(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	must(s.CreateVolume(ctx, newVolume("acme", "data", 1<<30, "h1", "h2"), 0))(t)
	must(s.CreateVolume(ctx, newVolume("acme", "logs", 1<<30, "h1"), 0))(t)
	must(s.CreateVolume(ctx, newVolume("beta", "secret", 1<<30, "h1"), 0))(t)

	web := must(s.AttachVolume(ctx, store.Attachment{Namespace: "acme", Volume: "data", App: "web", Path: "/app/uploads"}))(t)
	if web.CreatedAt.IsZero() {
		t.Error("no CreatedAt")
	}
	api := must(s.AttachVolume(ctx, store.Attachment{Namespace: "acme", Volume: "data", App: "api", Path: "/data", ReadOnly: true}))(t)
	logs := must(s.AttachVolume(ctx, store.Attachment{Namespace: "acme", Volume: "logs", App: "web", Path: "/app/logs"}))(t)
	equal(t, "the volume's apps", must(s.GetVolume(ctx, "acme", "data"))(t).Attachments, []store.Attachment{api, web})
	equal(t, "web's volumes, by path", must(s.AppVolumes(ctx, "acme", "web"))(t), []store.Attachment{logs, web})
	equal(t, "ListVolumes fills them too", must(s.ListVolumes(ctx, "acme"))(t)[0].Attachments, []store.Attachment{api, web})
	equal(t, "an app without volumes", len(must(s.AppVolumes(ctx, "beta", "site"))(t)), 0)

	// Another namespace's volume is not found, whoever asks.
	_, err := s.AttachVolume(ctx, store.Attachment{Namespace: "beta", Volume: "data", App: "site", Path: "/data"})
	checkError(t, err, store.ErrNotFound, `"beta/data"`)
	_, err = s.AttachVolume(ctx, store.Attachment{Namespace: "acme", Volume: "secret", App: "web", Path: "/s"})
	checkError(t, err, store.ErrNotFound, `"acme/secret"`)
	_, err = s.AttachVolume(ctx, store.Attachment{Namespace: "acme", Volume: "data", App: "nope", Path: "/s"})
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
	_, err = s.AttachVolume(ctx, store.Attachment{Namespace: "acme", Volume: "data", App: "web", Path: "/other"})
	checkError(t, err, store.ErrConflict, "already attached to acme/web")
	_, err = s.AttachVolume(ctx, store.Attachment{Namespace: "acme", Volume: "logs", App: "api", Path: "/data"})
	checkError(t, err, store.ErrConflict, "acme/api holds volume data at /data already")
	for _, p := range []string{"data", "", "/" + strings.Repeat("x", 1024)} {
		if _, err := s.AttachVolume(ctx, store.Attachment{Namespace: "acme", Volume: "logs", App: "api", Path: p}); err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
			t.Errorf("path %.20q: %v, want an error that is none of the sentinels", p, err)
		}
	}

	checkError(t, s.DeleteVolume(ctx, "acme", "data"), store.ErrNotEmpty, "attached to api, web")
	must(0, s.DetachVolume(ctx, "acme", "api", "data"))(t)
	checkError(t, s.DetachVolume(ctx, "acme", "api", "data"), store.ErrNotFound, `"acme/data"`)
	checkError(t, s.DeleteVolume(ctx, "acme", "data"), store.ErrNotEmpty, "attached to web")
	must(0, s.DetachVolume(ctx, "acme", "web", "data"))(t)
	must(0, s.DeleteVolume(ctx, "acme", "data"))(t)
	equal(t, "web keeps its other volume", must(s.AppVolumes(ctx, "acme", "web"))(t), []store.Attachment{logs})
	_, err = s.AppVolumes(ctx, "acme", "nope")
	checkError(t, err, store.ErrNotFound, `"acme/nope"`)
}

// An app deleted takes its attachments (not the volume); a namespace with
// volumes is not empty.
func testVolumesOutliveNothing(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	must(s.CreateVolume(ctx, newVolume("beta", "data", 1<<30, "h1"), 0))(t)
	must(s.AttachVolume(ctx, store.Attachment{Namespace: "beta", Volume: "data", App: "site", Path: "/data"}))(t)
	must(0, s.DeleteApp(ctx, "beta", "site"))(t)
	equal(t, "attachments after the app's delete", len(must(s.GetVolume(ctx, "beta", "data"))(t).Attachments), 0)
	checkError(t, s.DeleteNamespace(ctx, "beta"), store.ErrNotEmpty, "1 volume")
	must(0, s.DeleteVolume(ctx, "beta", "data"))(t)
	must(0, s.DeleteNamespace(ctx, "beta"))(t)
}

// Racing creates cannot both take the last of a namespace's bytes.
func testConcurrentVolumeQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateVolume(ctx, newVolume("acme", fmt.Sprintf("v%d", i), 1<<30, "h1"), 3<<30)
		})
	}
	wg.Wait()
	made := 0
	for _, err := range errs {
		switch {
		case err == nil:
			made++
		case !errors.Is(err, store.ErrOverQuota):
			t.Errorf("a racing create: %v", err)
		}
	}
	if made != 3 || len(must(s.ListVolumes(ctx, "acme"))(t)) != 3 {
		t.Errorf("%d volumes made within a quota of 3", made)
	}
}
