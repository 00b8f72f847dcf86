package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type buildReq struct {
	App   string `json:"app"`
	Lines int    `json:"lines"`
}

type buildResp struct {
	Artifact string `json:"artifact"`
}

func TestCallProgressInOrderThenReply(t *testing.T) {
	e := newEnv(t)
	stop, err := e.agent.Handle("upscale.agent.h1.build", func(ctx context.Context, raw json.RawMessage, progress func(string)) (any, error) {
		var req buildReq
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, err
		}
		for i := range req.Lines {
			progress(fmt.Sprintf("-----> step %d of %s", i, req.App))
		}
		return buildResp{Artifact: req.App + "/v1.tar.gz"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	var lines []string
	var resp buildResp
	err = e.server.Call(testCtx(t), "upscale.agent.h1.build", buildReq{App: "ns/app", Lines: 500}, &resp,
		func(line string) { lines = append(lines, line) })
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if resp.Artifact != "ns/app/v1.tar.gz" {
		t.Errorf("reply = %+v", resp)
	}
	if len(lines) != 500 {
		t.Fatalf("got %d progress lines, want 500", len(lines))
	}
	for i, l := range lines {
		if want := fmt.Sprintf("-----> step %d of ns/app", i); l != want {
			t.Fatalf("line %d = %q, want %q", i, l, want)
		}
	}
}

func TestCallHandlerErrorKeepsMessage(t *testing.T) {
	e := newEnv(t)
	const msg = "build failed: step 3 exited with status 2"
	stop, err := e.agent.Handle("upscale.agent.h1.build", func(context.Context, json.RawMessage, func(string)) (any, error) {
		return nil, errors.New(msg)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	err = e.server.Call(testCtx(t), "upscale.agent.h1.build", buildReq{}, nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || err.Error() != msg {
		t.Fatalf("err = %#v (%v), want RemoteError %q", err, err, msg)
	}
}

func TestCallHandlerPanicBecomesError(t *testing.T) {
	e := newEnv(t)
	stop, err := e.agent.Handle("upscale.agent.h1.build", func(context.Context, json.RawMessage, func(string)) (any, error) {
		panic("boom")
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	err = e.server.Call(testCtx(t), "upscale.agent.h1.build", nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Fatalf("err = %v", err)
	}
	// The agent survives and keeps serving.
	err = e.server.Call(testCtx(t), "upscale.agent.h1.build", nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("second call: %v", err)
	}
}

func TestCallWithoutHandler(t *testing.T) {
	e := newEnv(t)
	// Default silence timeout: the answer must come from no-responders,
	// not from waiting.
	err := e.server.Call(testCtx(t), "upscale.agent.h1.build", buildReq{}, nil, nil)
	if !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err = %v, want ErrNoAnswer", err)
	}
	want := "no agent answered on upscale.agent.h1.build: is upscale-agent running?"
	if err.Error() != want {
		t.Fatalf("err = %q, want it to say %q", err, want)
	}
}

func TestCallSilentHandlerTimesOut(t *testing.T) {
	e := newEnv(t)
	// Something takes the request and never answers: a wedged or
	// incompatible agent.
	sub, err := e.agent.nc.SubscribeSync("upscale.agent.h1.build")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := e.agent.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	caller := connect(t, e.bus.ServerCredentials(), "impatient", WithSilenceTimeout(300*time.Millisecond))
	err = caller.Call(testCtx(t), "upscale.agent.h1.build", buildReq{}, nil, nil)
	if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "upscale.agent.h1.build") {
		t.Fatalf("err = %v, want ErrNoAnswer naming the subject", err)
	}
}

func TestCallSlowHandlerKeptAliveByKeepalives(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	stop, err := e.agent.Handle("upscale.agent.h1.build", func(ctx context.Context, _ json.RawMessage, progress func(string)) (any, error) {
		progress("started")
		<-release
		return "done", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	caller := connect(t, e.bus.ServerCredentials(), "impatient", WithSilenceTimeout(600*time.Millisecond))
	// The handler stays silent (apart from keepalives) for several silence
	// timeouts: release after enough keepalives have been seen, counted
	// on the caller's own subscription rather than by the clock.
	keepalives := countFrames(testCtx(t), t, e.server, "upscale.agent.h1.build", kindKeepalive, 5, release)
	var got string
	err = caller.Call(testCtx(t), "upscale.agent.h1.build", nil, &got, nil)
	if err != nil || got != "done" {
		t.Fatalf("Call = %q, %v", got, err)
	}
	<-keepalives
}

// countFrames watches all reply frames of subject and closes release once n
// frames of kind were seen.
func countFrames(ctx context.Context, t *testing.T, c *Conn, subject, kind string, n int, release chan struct{}) <-chan struct{} {
	t.Helper()
	sub, err := c.nc.SubscribeSync(subject + replyToken + "*")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sub.Unsubscribe()
		seen := 0
		for seen < n {
			msg, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				close(release)
				return
			}
			if f, err := decodeFrame(msg.Data); err == nil && f.Kind == kind {
				seen++
			}
		}
		close(release)
	}()
	return done
}

func TestCallCancelStopsHandler(t *testing.T) {
	e := newEnv(t)
	handlerSaw := make(chan error, 1)
	stop, err := e.agent.Handle("upscale.agent.h1.logs", func(ctx context.Context, _ json.RawMessage, progress func(string)) (any, error) {
		progress("following")
		<-ctx.Done()
		handlerSaw <- ctx.Err()
		return nil, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	err = e.server.Call(ctx, "upscale.agent.h1.logs", nil, nil, func(line string) {
		if line == "following" {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Call err = %v, want context.Canceled", err)
	}
	select {
	case herr := <-handlerSaw:
		if !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler ctx err = %v", herr)
		}
	case <-testCtx(t).Done():
		t.Fatal("handler was never cancelled")
	}
}

func TestStopCancelsRunningHandlersAndWaits(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{})
	finished := false
	stop, err := e.agent.Handle("upscale.agent.h1.run", func(ctx context.Context, _ json.RawMessage, _ func(string)) (any, error) {
		close(started)
		<-ctx.Done()
		finished = true
		return nil, errors.New("agent shutting down")
	})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- e.server.Call(testCtx(t), "upscale.agent.h1.run", nil, nil, nil) }()
	<-started
	stop()
	if !finished {
		t.Fatal("stop returned before the handler did")
	}
	if err := <-errc; err == nil || err.Error() != "agent shutting down" {
		t.Fatalf("Call err = %v, want the handler's final error", err)
	}
	// Stopped for good: no one answers any more.
	if err := e.server.Call(testCtx(t), "upscale.agent.h1.run", nil, nil, nil); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("after stop: %v", err)
	}
}

func TestHandleAndCallRejectBadSubjects(t *testing.T) {
	e := newEnv(t)
	for _, s := range []string{"", "upscale.agent.h1.>", "upscale.agent.*.build", "a..b", "a.b.", "upscale.agent.h1._reply", "a b"} {
		if _, err := e.agent.Handle(s, func(context.Context, json.RawMessage, func(string)) (any, error) { return nil, nil }); err == nil {
			t.Errorf("Handle(%q) accepted", s)
		}
		if err := e.server.Call(testCtx(t), s, nil, nil, nil); err == nil {
			t.Errorf("Call(%q) accepted", s)
		}
	}
}

func TestOversizedMessagesAreRefused(t *testing.T) {
	e := newEnv(t)
	stop, err := e.agent.Handle("upscale.agent.h1.big", func(_ context.Context, _ json.RawMessage, progress func(string)) (any, error) {
		progress(strings.Repeat("x", 2*maxLine))
		return strings.Repeat("y", 2*maxBody), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	var lines []string
	err = e.server.Call(testCtx(t), "upscale.agent.h1.big", nil, nil, func(l string) { lines = append(lines, l) })
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("err = %v, want reply too large", err)
	}
	if len(lines) != 1 || len(lines[0]) > maxLine {
		t.Fatalf("progress line not truncated: %d lines", len(lines))
	}
	err = e.server.Call(testCtx(t), "upscale.agent.h1.big", strings.Repeat("z", 2*maxBody), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "object store") {
		t.Fatalf("err = %v, want request too large", err)
	}
}

// A handler's call is cancelled once its end has been cut off from the
// bus for as long as its caller waits: when the server that asked dies
// with its embedded bus, a build does not run on for nobody.
func TestCallCancelledWhenCutOffLongerThanItsCallerWaits(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{})
	handlerSaw := make(chan error, 1)
	stop, err := e.agent.Handle("upscale.agent.h1.build", func(ctx context.Context, _ json.RawMessage, _ func(string)) (any, error) {
		close(started)
		<-ctx.Done()
		handlerSaw <- ctx.Err()
		return nil, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	caller := connect(t, e.bus.ServerCredentials(), "dies", WithSilenceTimeout(600*time.Millisecond))
	go caller.Call(testCtx(t), "upscale.agent.h1.build", nil, nil, nil)
	<-started
	e.bus.Shutdown()
	select {
	case herr := <-handlerSaw:
		if !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler ctx err = %v, want context.Canceled", herr)
		}
	case <-testCtx(t).Done():
		t.Fatal("the handler ran on with its caller gone and the bus down")
	}
}
