package agentapi

import (
	"context"
	"strings"
)

// Agents is what the server asks of the agents of its hosts, one method a
// call. Client does it over the bus; agenttest.Agents in memory, for
// tests. Errors come back as the transport gave them (bus.ErrNoAnswer,
// *bus.RemoteError), so callers can tell a silent host from a refusal.
type Agents interface {
	// Build runs a build on host; progress gets its output lines. The
	// packed result waits in the agent's outbox for Fetch and Drop.
	Build(ctx context.Context, host string, req BuildRequest, progress func(line string)) (BuildReply, error)
	// Fetch reads one chunk of an outbox file; an empty one is the end.
	Fetch(ctx context.Context, host string, req FetchRequest) (FetchReply, error)
	Drop(ctx context.Context, host string, req DropRequest) error
	// Start returns when the instance is healthy or could not become so;
	// progress gets the agent's notes on the way (a runtime image built).
	Start(ctx context.Context, host string, req StartRequest, progress func(line string)) (StartReply, error)
	Stop(ctx context.Context, host string, req StopRequest) error
	Destroy(ctx context.Context, host string, req DestroyRequest) error
	List(ctx context.Context, host string) (ListReply, error)
	// Logs sends a container's lines to line as the agent sends them (see
	// LogsRequest for their form); with Follow it returns when ctx ends.
	Logs(ctx context.Context, host string, req LogsRequest, line func(raw string)) error
	// Exec runs a one-off command to its end: output gets the lines it
	// printed, note the agent's own.
	Exec(ctx context.Context, host string, req ExecRequest, output, note func(line string)) (ExecReply, error)
	Images(ctx context.Context, host string) (ImagesReply, error)
	// Mount mounts a volume on host for a namespace; Unmount unmounts one
	// no container there uses.
	Mount(ctx context.Context, host string, req MountRequest) error
	Unmount(ctx context.Context, host string, req UnmountRequest) error
	Status(ctx context.Context, host string, req StatusRequest) (Beat, error)
}

// Caller is what Client needs of the bus (*bus.Conn).
type Caller interface {
	Call(ctx context.Context, subject string, req, resp any, progress func(line string)) error
}

// Client calls agents over the bus.
type Client struct {
	Bus Caller
}

var _ Agents = Client{}

func (c Client) Build(ctx context.Context, host string, req BuildRequest, progress func(string)) (BuildReply, error) {
	var reply BuildReply
	err := c.Bus.Call(ctx, Subject(host, MethodBuild), req, &reply, progress)
	return reply, err
}

func (c Client) Fetch(ctx context.Context, host string, req FetchRequest) (FetchReply, error) {
	var reply FetchReply
	err := c.Bus.Call(ctx, Subject(host, MethodFetch), req, &reply, nil)
	return reply, err
}

func (c Client) Drop(ctx context.Context, host string, req DropRequest) error {
	return c.Bus.Call(ctx, Subject(host, MethodDrop), req, nil, nil)
}

func (c Client) Start(ctx context.Context, host string, req StartRequest, progress func(string)) (StartReply, error) {
	var reply StartReply
	err := c.Bus.Call(ctx, Subject(host, MethodStart), req, &reply, progress)
	return reply, err
}

func (c Client) Stop(ctx context.Context, host string, req StopRequest) error {
	return c.Bus.Call(ctx, Subject(host, MethodStop), req, &struct{}{}, nil)
}

func (c Client) Destroy(ctx context.Context, host string, req DestroyRequest) error {
	return c.Bus.Call(ctx, Subject(host, MethodDestroy), req, &struct{}{}, nil)
}

func (c Client) List(ctx context.Context, host string) (ListReply, error) {
	var reply ListReply
	err := c.Bus.Call(ctx, Subject(host, MethodList), struct{}{}, &reply, nil)
	return reply, err
}

func (c Client) Logs(ctx context.Context, host string, req LogsRequest, line func(string)) error {
	return c.Bus.Call(ctx, Subject(host, MethodLogs), req, nil, line)
}

func (c Client) Exec(ctx context.Context, host string, req ExecRequest, output, note func(string)) (ExecReply, error) {
	var reply ExecReply
	err := c.Bus.Call(ctx, Subject(host, MethodExec), req, &reply, func(l string) {
		switch {
		case strings.HasPrefix(l, ExecOutput):
			output(l[len(ExecOutput):])
		case strings.HasPrefix(l, ExecNote):
			note(l[len(ExecNote):])
		}
	})
	return reply, err
}

func (c Client) Images(ctx context.Context, host string) (ImagesReply, error) {
	var reply ImagesReply
	err := c.Bus.Call(ctx, Subject(host, MethodImages), struct{}{}, &reply, nil)
	return reply, err
}

func (c Client) Status(ctx context.Context, host string, req StatusRequest) (Beat, error) {
	var reply Beat
	err := c.Bus.Call(ctx, Subject(host, MethodStatus), req, &reply, nil)
	return reply, err
}
