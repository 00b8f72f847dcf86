package agentapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/bus"
)

// busPair is a real embedded bus with the server's connection and host
// h1's agent connection.
func busPair(t *testing.T) (server, agent *bus.Conn) {
	t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	creds, err := e.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		creds bus.Credentials
		name  string
		conn  **bus.Conn
	}{{e.ServerCredentials(), "server", &server}, {creds, "agent-h1", &agent}} {
		conn, err := bus.Connect(ctx, c.creds, c.name, bus.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Close)
		*c.conn = conn
	}
	return server, agent
}

// Every method of Client reaches the handler the agent serves for it,
// with the request as sent, and brings back its reply and progress lines.
func TestClientCallsEachMethod(t *testing.T) {
	server, agent := busPair(t)
	c := agentapi.Client{Bus: server}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc := agentapi.ReleaseContainer{Name: "acme-web-v1-abc", App: "acme/web", Release: 1, Memory: 1 << 20}
	var lines []string
	progress := func(l string) { lines = append(lines, l) }
	var output, notes []string

	for _, tc := range []struct {
		method string
		req    any // what the handler must get; nil for methods without one
		reply  any // what it answers
		lines  []string
		call   func() (any, error)
	}{
		{agentapi.MethodBuild, agentapi.BuildRequest{App: "acme/web", Release: 2, Steps: []string{"true"}}, agentapi.BuildReply{Outbox: "o", Digest: "d", Size: 3}, []string{"step"},
			func() (any, error) {
				return c.Build(ctx, "h1", agentapi.BuildRequest{App: "acme/web", Release: 2, Steps: []string{"true"}}, progress)
			}},
		{agentapi.MethodFetch, agentapi.FetchRequest{Outbox: "o", Offset: 5}, agentapi.FetchReply{Data: []byte("chunk")}, nil,
			func() (any, error) { return c.Fetch(ctx, "h1", agentapi.FetchRequest{Outbox: "o", Offset: 5}) }},
		{agentapi.MethodDrop, agentapi.DropRequest{Outbox: "o"}, nil, nil,
			func() (any, error) { return nil, c.Drop(ctx, "h1", agentapi.DropRequest{Outbox: "o"}) }},
		{agentapi.MethodStart, agentapi.StartRequest{ReleaseContainer: rc, Health: "/up"}, agentapi.StartReply{Addr: "10.0.0.2:8080", Start: time.Second}, []string{"image"},
			func() (any, error) {
				return c.Start(ctx, "h1", agentapi.StartRequest{ReleaseContainer: rc, Health: "/up"}, progress)
			}},
		{agentapi.MethodStop, agentapi.StopRequest{Name: rc.Name, Grace: time.Second}, nil, nil,
			func() (any, error) {
				return nil, c.Stop(ctx, "h1", agentapi.StopRequest{Name: rc.Name, Grace: time.Second})
			}},
		{agentapi.MethodDestroy, agentapi.DestroyRequest{Name: rc.Name}, nil, nil,
			func() (any, error) { return nil, c.Destroy(ctx, "h1", agentapi.DestroyRequest{Name: rc.Name}) }},
		{agentapi.MethodList, nil, agentapi.ListReply{Containers: []agentapi.ContainerInfo{{Name: rc.Name, State: "running", DiskOver: 9}}}, nil,
			func() (any, error) { return c.List(ctx, "h1") }},
		{agentapi.MethodLogs, agentapi.LogsRequest{Name: rc.Name, Lines: 10, Stamped: true}, nil, []string{"a", "b"},
			func() (any, error) {
				return nil, c.Logs(ctx, "h1", agentapi.LogsRequest{Name: rc.Name, Lines: 10, Stamped: true}, progress)
			}},
		{agentapi.MethodExec, agentapi.ExecRequest{ReleaseContainer: rc, Timeout: time.Minute}, agentapi.ExecReply{ExitCode: 3},
			[]string{agentapi.ExecOutput + "out", agentapi.ExecNote + "note", "?unknown"},
			func() (any, error) {
				return c.Exec(ctx, "h1", agentapi.ExecRequest{ReleaseContainer: rc, Timeout: time.Minute},
					func(l string) { output = append(output, l) }, func(l string) { notes = append(notes, l) })
			}},
		{agentapi.MethodImages, nil, agentapi.ImagesReply{Images: []agentapi.ImageInfo{{Runtime: "python", Key: "k"}}}, nil,
			func() (any, error) { return c.Images(ctx, "h1") }},
		{agentapi.MethodStatus, agentapi.StatusRequest{Router: "10.0.0.9"}, agentapi.Beat{Info: agentapi.Info{Name: "h1", CPUs: 2}, Containers: 1}, nil,
			func() (any, error) { return c.Status(ctx, "h1", agentapi.StatusRequest{Router: "10.0.0.9"}) }},
	} {
		t.Run(tc.method, func(t *testing.T) {
			lines, output, notes = nil, nil, nil
			var got json.RawMessage
			stop, err := agent.Handle(agentapi.Subject("h1", tc.method), func(_ context.Context, raw json.RawMessage, p func(string)) (any, error) {
				got = raw
				for _, l := range tc.lines {
					p(l)
				}
				if tc.reply == nil {
					return struct{}{}, nil
				}
				return tc.reply, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			reply, err := tc.call()
			if err != nil {
				t.Fatal(err)
			}
			if tc.req != nil {
				sent := reflect.New(reflect.TypeOf(tc.req))
				if err := json.Unmarshal(got, sent.Interface()); err != nil || !reflect.DeepEqual(sent.Elem().Interface(), tc.req) {
					t.Errorf("the agent got %s (%v), want %+v", got, err, tc.req)
				}
			}
			if tc.reply != nil && !reflect.DeepEqual(reply, tc.reply) {
				t.Errorf("reply %+v, want %+v", reply, tc.reply)
			}
			switch tc.method {
			case agentapi.MethodExec:
				if !reflect.DeepEqual(output, []string{"out"}) || !reflect.DeepEqual(notes, []string{"note"}) {
					t.Errorf("exec output %q, notes %q; want [out] and [note]", output, notes)
				}
			default:
				if !reflect.DeepEqual(lines, tc.lines) {
					t.Errorf("progress %q, want %q", lines, tc.lines)
				}
			}
		})
	}
}

// A host with no agent answering is an error the caller can tell apart,
// and an agent's refusal comes back as its message.
func TestClientErrors(t *testing.T) {
	server, agent := busPair(t)
	c := agentapi.Client{Bus: server}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.List(ctx, "h1"); !errors.Is(err, bus.ErrNoAnswer) {
		t.Errorf("List on a host nobody serves: %v, want bus.ErrNoAnswer", err)
	}
	stop, err := agent.Handle(agentapi.Subject("h1", agentapi.MethodStart), func(context.Context, json.RawMessage, func(string)) (any, error) {
		return nil, errors.New("the app exited (status 3) before it answered on port 8080")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var remote *bus.RemoteError
	_, err = c.Start(ctx, "h1", agentapi.StartRequest{}, nil)
	if !errors.As(err, &remote) || remote.Message != "the app exited (status 3) before it answered on port 8080" {
		t.Errorf("Start refused: %v, want the agent's message", err)
	}
}
