package agenttest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/bus"
)

// What a host lists follows what it was asked: a started instance is
// listed as running where it started, a stopped one as stopped, a
// destroyed one not at all.
func TestContainersFollowCalls(t *testing.T) {
	a := New()
	ctx := context.Background()
	rc := agentapi.ReleaseContainer{Name: "acme-web-v1-aaa", App: "acme/web", Release: 1}
	reply, err := a.Start(ctx, "h1", agentapi.StartRequest{ReleaseContainer: rc}, nil)
	if err != nil || reply.Addr == "" {
		t.Fatalf("start: %+v, %v", reply, err)
	}
	list, _ := a.List(ctx, "h1")
	if len(list.Containers) != 1 || list.Containers[0].Addr != reply.Addr || list.Containers[0].State != "running" {
		t.Fatalf("h1 lists %+v", list.Containers)
	}
	if beat, _ := a.Status(ctx, "h2", agentapi.StatusRequest{}); beat.Name != "h2" || beat.Containers != 0 {
		t.Fatalf("h2's beat %+v", beat)
	}
	a.Stop(ctx, "h1", agentapi.StopRequest{Name: rc.Name})
	if got := a.Containers("h1"); len(got) != 1 || got[0].State != "stopped" {
		t.Fatalf("after stop h1 has %+v", got)
	}
	a.Destroy(ctx, "h1", agentapi.DestroyRequest{Name: rc.Name})
	if got := a.Containers("h1"); len(got) != 0 {
		t.Fatalf("after destroy h1 has %+v", got)
	}
	if !slices.Equal(a.Started(), []string{rc.Name}) || !slices.Equal(a.Destroyed(), []string{rc.Name}) || len(a.Stopped()) != 1 {
		t.Fatalf("recorded started %v, stopped %v, destroyed %v", a.Started(), a.Stopped(), a.Destroyed())
	}
}

// A failed start is recorded as asked but not as started, and leaves
// nothing on the host.
func TestFailedStart(t *testing.T) {
	a := New()
	a.FailStarts(errors.New("unhealthy"))
	if _, err := a.Start(context.Background(), "h1", agentapi.StartRequest{ReleaseContainer: agentapi.ReleaseContainer{Name: "c"}}, nil); err == nil || err.Error() != "unhealthy" {
		t.Fatalf("start: %v", err)
	}
	if len(a.Started()) != 1 || len(a.Starts()) != 0 || len(a.Containers("h1")) != 0 {
		t.Fatalf("started %v, starts %v, h1 has %v", a.Started(), a.Starts(), a.Containers("h1"))
	}
}

// A build's result comes back whole through Fetch, in chunks no larger
// than the protocol allows, and is gone once dropped.
func TestBuildFetchDrop(t *testing.T) {
	a := New()
	ctx := context.Background()
	out := bytes.Repeat([]byte("x"), 2*agentapi.FetchChunk+5)
	a.SetOutput(out)
	var lines []string
	built, err := a.Build(ctx, "h1", agentapi.BuildRequest{App: "acme/web"}, func(l string) { lines = append(lines, l) })
	if err != nil || built.Size != int64(len(out)) || !slices.Equal(lines, []string{BuildLine}) {
		t.Fatalf("build: %+v, %v, lines %q", built, err, lines)
	}
	var got []byte
	for {
		chunk, err := a.Fetch(ctx, "h1", agentapi.FetchRequest{Outbox: built.Outbox, Offset: int64(len(got))})
		if err != nil {
			t.Fatal(err)
		}
		if len(chunk.Data) > agentapi.FetchChunk {
			t.Fatalf("a chunk of %d bytes", len(chunk.Data))
		}
		if len(chunk.Data) == 0 {
			break
		}
		got = append(got, chunk.Data...)
	}
	if !bytes.Equal(got, out) {
		t.Fatalf("fetched %d bytes, want %d", len(got), len(out))
	}
	a.Drop(ctx, "h1", agentapi.DropRequest{Outbox: built.Outbox})
	if _, err := a.Fetch(ctx, "h1", agentapi.FetchRequest{Outbox: built.Outbox}); err == nil {
		t.Fatal("fetched a dropped outbox")
	}
}

// A host that is down answers nothing, as the bus says of a silent agent.
func TestDownHost(t *testing.T) {
	a := New()
	a.SetDown("h2", true)
	if _, err := a.List(context.Background(), "h2"); !errors.Is(err, bus.ErrNoAnswer) {
		t.Fatalf("list on a down host: %v", err)
	}
	if _, err := a.List(context.Background(), "h1"); err != nil {
		t.Fatalf("list on an up host: %v", err)
	}
}
