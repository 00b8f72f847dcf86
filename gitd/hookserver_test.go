package gitd

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

// fakePushes refuses pushes to acme/bad and takes a "lock" on pre-receive.
type fakePushes struct {
	released chan string
}

func (f fakePushes) PreReceive(_ context.Context, who keys.Principal, app names.App, req hooks.Request, hold func(func()), out func(string)) error {
	hold(func() { f.released <- app.String() })
	out("-----> checked for " + who.Name + "\n       two lines")
	if app.Name == "bad" {
		return errors.New("push rejected; acme/bad is unchanged")
	}
	return nil
}

func (f fakePushes) PostReceive(_ context.Context, who keys.Principal, app names.App, req hooks.Request, out func(string)) error {
	out("recorded " + req.Updates[0].Ref)
	return nil
}

// hook sends req over a pipe to s's hook handler and returns the lines
// it relays and the exit status.
func hook(t *testing.T, s *Server, req hooks.Request) ([]string, int) {
	t.Helper()
	client, server := net.Pipe()
	go s.serveHook(server)
	defer client.Close()
	if err := json.NewEncoder(client).Encode(req); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(client)
	var lines []string
	for {
		var r hooks.Reply
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		if r.Exit != nil {
			return lines, *r.Exit
		}
		lines = append(lines, r.Line)
	}
}

// The hook socket relays what the application layer says, one reply per
// line, turns its error into the last "error:" line and exit status 1,
// and keeps the lock it took until the push ends.
func TestHookRelaysTheBackend(t *testing.T) {
	released := make(chan string, 2)
	s := New(Config{Pushes: fakePushes{released: released}, HookTimeout: time.Minute})
	alice := keys.Principal{Name: "alice"}
	good := s.pushes.add(push{principal: alice, app: names.App{Namespace: "acme", Name: "web"}})
	bad := s.pushes.add(push{principal: alice, app: names.App{Namespace: "acme", Name: "bad"}})
	upd := []hooks.Update{{Old: hooks.ZeroID, New: strings.Repeat("a", 40), Ref: "refs/heads/master"}}

	for _, tc := range []struct {
		req   hooks.Request
		lines string
		code  int
	}{
		{hooks.Request{Hook: hooks.PreReceive, PushID: good, Updates: upd}, "-----> checked for alice|       two lines", 0},
		{hooks.Request{Hook: hooks.PostReceive, PushID: good, Updates: upd}, "recorded refs/heads/master", 0},
		{hooks.Request{Hook: hooks.PreReceive, PushID: bad, Updates: upd}, "-----> checked for alice|       two lines|error: push rejected; acme/bad is unchanged", 1},
		{hooks.Request{Hook: hooks.PreReceive, PushID: "nope", Updates: upd}, "error: this push is not known to the server", 1},
		{hooks.Request{Hook: "update", PushID: good, Updates: upd}, `error: unknown hook "update"`, 1},
	} {
		lines, code := hook(t, s, tc.req)
		if got := strings.Join(lines, "|"); got != tc.lines || code != tc.code {
			t.Errorf("%s %s: said %q, exit %d; want %q, exit %d", tc.req.Hook, tc.req.PushID, got, code, tc.lines, tc.code)
		}
	}
	select {
	case app := <-released:
		t.Fatalf("the lock of %s went before its push ended", app)
	default:
	}
	s.pushes.remove(good)
	if app := <-released; app != "acme/web" {
		t.Fatalf("released %s", app)
	}
}
