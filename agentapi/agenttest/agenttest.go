// Package agenttest is a fake of the agents of any number of hosts, in
// memory, for the server's unit tests: it answers every agentapi method the
// way a healthy agent would (builds pack Packed, starts give each instance
// an address and list it as running, destroys forget it), records every
// call, and has knobs for what a test needs to go wrong.
package agenttest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/bus"
)

const (
	// Packed is what every build packs, unless SetOutput says otherwise.
	Packed = "packed app"
	// BuildLine is the line every build prints.
	BuildLine = "       step 1: true"
)

// Call is one call an agent got, as it was asked.
type Call struct {
	Host   string
	Method string // agentapi.Method*
	Req    any    // the request type of Method; nil for List and Images
	Err    error  // what the fake answered; nil while it has not
}

// LogLine is one line of a container's output and when it was captured.
type LogLine struct {
	At   time.Time
	Text string
}

// Agents is the fake. Its zero value is not usable: call New.
type Agents struct {
	mu       sync.Mutex
	calls    []Call
	hosts    map[string]map[string]agentapi.ContainerInfo // containers by host, then name
	down     map[string]bool
	outboxes map[string][]byte // by host/outbox
	next     int

	output   []byte
	buildErr error
	startErr error
	mountErr error
	onBuild  func(agentapi.BuildRequest)
	execGate chan struct{}
	history  map[string][]LogLine // by container
	live     map[string][]LogLine
	bare     bool
}

var _ agentapi.Agents = (*Agents)(nil)

// New makes agents that answer for every host.
func New() *Agents {
	return &Agents{
		hosts:    map[string]map[string]agentapi.ContainerInfo{},
		down:     map[string]bool{},
		outboxes: map[string][]byte{},
		output:   []byte(Packed),
		history:  map[string][]LogLine{},
		live:     map[string][]LogLine{},
	}
}

// FailBuilds makes every build fail with err (nil: succeed again).
func (a *Agents) FailBuilds(err error) { a.set(func() { a.buildErr = err }) }

// FailStarts makes every start fail with err (nil: succeed again), as an
// instance that never became healthy; the agent keeps nothing of it.
func (a *Agents) FailStarts(err error) { a.set(func() { a.startErr = err }) }

// FailMounts makes every mount fail with err (nil: succeed again).
func (a *Agents) FailMounts(err error) { a.set(func() { a.mountErr = err }) }

// SetOutput is what builds pack from now on.
func (a *Agents) SetOutput(b []byte) { a.set(func() { a.output = slices.Clone(b) }) }

// OnBuild has fn see every build request before it runs.
func (a *Agents) OnBuild(fn func(agentapi.BuildRequest)) { a.set(func() { a.onBuild = fn }) }

// GateExecs holds every exec until gate is closed (or the caller goes
// away); each then ends with exit status 0. nil lets them through.
func (a *Agents) GateExecs(gate chan struct{}) { a.set(func() { a.execGate = gate }) }

// SetDown makes host's agent silent, as a host that is down or cut off:
// every call to it fails with bus.ErrNoAnswer.
func (a *Agents) SetDown(host string, down bool) { a.set(func() { a.down[host] = down }) }

// SetContainers replaces what host lists (List, Status).
func (a *Agents) SetContainers(host string, cs ...agentapi.ContainerInfo) {
	a.set(func() {
		a.hosts[host] = map[string]agentapi.ContainerInfo{}
		for _, c := range cs {
			a.hosts[host][c.Name] = c
		}
	})
}

// SetLogs gives container name the lines it has written (history) and,
// for a follower, the lines it writes next (live), whatever its host.
func (a *Agents) SetLogs(name string, history, live []LogLine) {
	a.set(func() { a.history[name], a.live[name] = slices.Clone(history), slices.Clone(live) })
}

// UnstampedLogs plays agents from before LogsRequest.Stamped: bare lines,
// and no marker between a follower's history and the new lines.
func (a *Agents) UnstampedLogs(bare bool) { a.set(func() { a.bare = bare }) }

func (a *Agents) set(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
}

// Calls is every call so far, in the order they came.
func (a *Agents) Calls() []Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// Forget clears the record of calls (not the containers).
func (a *Agents) Forget() { a.set(func() { a.calls = nil }) }

// Requests lists the requests of the calls of method, answered or not.
func Requests[T any](a *Agents, method string) []T {
	var out []T
	for _, c := range a.Calls() {
		if c.Method == method {
			out = append(out, c.Req.(T))
		}
	}
	return out
}

// Started names the containers every start was asked for, failed or not.
func (a *Agents) Started() []string {
	var out []string
	for _, r := range Requests[agentapi.StartRequest](a, agentapi.MethodStart) {
		out = append(out, r.Name)
	}
	return out
}

// Starts lists the starts that succeeded.
func (a *Agents) Starts() []agentapi.StartRequest {
	var out []agentapi.StartRequest
	for _, c := range a.Calls() {
		if c.Method == agentapi.MethodStart && c.Err == nil {
			out = append(out, c.Req.(agentapi.StartRequest))
		}
	}
	return out
}

// Stopped lists the stop requests.
func (a *Agents) Stopped() []agentapi.StopRequest {
	return Requests[agentapi.StopRequest](a, agentapi.MethodStop)
}

// Destroyed names the containers destroys were asked for.
func (a *Agents) Destroyed() []string {
	var out []string
	for _, r := range Requests[agentapi.DestroyRequest](a, agentapi.MethodDestroy) {
		out = append(out, r.Name)
	}
	return out
}

// Execs lists the exec requests, those still running included.
func (a *Agents) Execs() []agentapi.ExecRequest {
	return Requests[agentapi.ExecRequest](a, agentapi.MethodExec)
}

// Builds lists the build requests.
func (a *Agents) Builds() []agentapi.BuildRequest {
	return Requests[agentapi.BuildRequest](a, agentapi.MethodBuild)
}

// LogsAsked lists the logs requests.
func (a *Agents) LogsAsked() []agentapi.LogsRequest {
	return Requests[agentapi.LogsRequest](a, agentapi.MethodLogs)
}

// Containers lists what host has now, by name.
func (a *Agents) Containers(host string) []agentapi.ContainerInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.list(host)
}

func (a *Agents) list(host string) []agentapi.ContainerInfo {
	var out []agentapi.ContainerInfo
	for _, c := range a.hosts[host] {
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y agentapi.ContainerInfo) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

// begin records a call and says whether host answers; done records the
// answer. Callers hold a.mu.
func (a *Agents) begin(host, method string, req any) (int, error) {
	a.calls = append(a.calls, Call{Host: host, Method: method, Req: req})
	i := len(a.calls) - 1
	if a.down[host] {
		return i, a.done(i, fmt.Errorf("no agent answered on %s's %s: %w", host, method, bus.ErrNoAnswer))
	}
	return i, nil
}

func (a *Agents) done(i int, err error) error {
	a.calls[i].Err = err
	return err
}

func (a *Agents) Build(ctx context.Context, host string, req agentapi.BuildRequest, progress func(string)) (agentapi.BuildReply, error) {
	a.mu.Lock()
	i, err := a.begin(host, agentapi.MethodBuild, req)
	onBuild := a.onBuild
	a.mu.Unlock()
	if err != nil {
		return agentapi.BuildReply{}, err
	}
	if onBuild != nil {
		onBuild(req)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.buildErr != nil {
		return agentapi.BuildReply{}, a.done(i, a.buildErr)
	}
	if progress != nil {
		progress(BuildLine)
	}
	a.next++
	outbox := fmt.Sprintf("build-%d.tar.gz", a.next)
	a.outboxes[host+"/"+outbox] = a.output
	sum := sha256.Sum256(a.output)
	return agentapi.BuildReply{Outbox: outbox, Digest: hex.EncodeToString(sum[:]), Size: int64(len(a.output))}, nil
}

func (a *Agents) Fetch(ctx context.Context, host string, req agentapi.FetchRequest) (agentapi.FetchReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, err := a.begin(host, agentapi.MethodFetch, req)
	if err != nil {
		return agentapi.FetchReply{}, err
	}
	data, ok := a.outboxes[host+"/"+req.Outbox]
	if !ok {
		return agentapi.FetchReply{}, a.done(i, &bus.RemoteError{Message: "no outbox " + req.Outbox})
	}
	data = data[min(req.Offset, int64(len(data))):]
	return agentapi.FetchReply{Data: data[:min(len(data), agentapi.FetchChunk)]}, nil
}

func (a *Agents) Drop(ctx context.Context, host string, req agentapi.DropRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.begin(host, agentapi.MethodDrop, req); err != nil {
		return err
	}
	delete(a.outboxes, host+"/"+req.Outbox)
	return nil
}

func (a *Agents) Start(ctx context.Context, host string, req agentapi.StartRequest, progress func(string)) (agentapi.StartReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, err := a.begin(host, agentapi.MethodStart, req)
	if err != nil {
		return agentapi.StartReply{}, err
	}
	if a.startErr != nil {
		return agentapi.StartReply{}, a.done(i, a.startErr)
	}
	a.next++
	addr := fmt.Sprintf("10.77.0.%d:%d", a.next, agentapi.Port)
	if a.hosts[host] == nil {
		a.hosts[host] = map[string]agentapi.ContainerInfo{}
	}
	a.hosts[host][req.Name] = agentapi.ContainerInfo{Name: req.Name, App: req.App, Release: req.Release, Addr: addr,
		State: "running", StartedAt: time.Now().UTC(), Disk: req.Disk}
	return agentapi.StartReply{Addr: addr}, nil
}

func (a *Agents) Stop(ctx context.Context, host string, req agentapi.StopRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.begin(host, agentapi.MethodStop, req); err != nil {
		return err
	}
	if c, ok := a.hosts[host][req.Name]; ok {
		c.State, c.PID = "stopped", 0
		a.hosts[host][req.Name] = c
	}
	return nil
}

func (a *Agents) Destroy(ctx context.Context, host string, req agentapi.DestroyRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.begin(host, agentapi.MethodDestroy, req); err != nil {
		return err
	}
	delete(a.hosts[host], req.Name)
	return nil
}

func (a *Agents) List(ctx context.Context, host string) (agentapi.ListReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.begin(host, agentapi.MethodList, nil); err != nil {
		return agentapi.ListReply{}, err
	}
	return agentapi.ListReply{Containers: a.list(host)}, nil
}

func (a *Agents) Images(ctx context.Context, host string) (agentapi.ImagesReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.begin(host, agentapi.MethodImages, nil); err != nil {
		return agentapi.ImagesReply{}, err
	}
	return agentapi.ImagesReply{}, nil
}

func (a *Agents) Status(ctx context.Context, host string, req agentapi.StatusRequest) (agentapi.Beat, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.begin(host, agentapi.MethodStatus, req); err != nil {
		return agentapi.Beat{}, err
	}
	list := a.list(host)
	return agentapi.Beat{Info: agentapi.Info{Name: host, State: "up"}, Containers: len(list), List: list, At: time.Now().UTC()}, nil
}

// Logs sends the container's history (its last req.Lines) and, when
// following, the marker and its live lines, then waits for ctx to end.
func (a *Agents) Logs(ctx context.Context, host string, req agentapi.LogsRequest, line func(string)) error {
	a.mu.Lock()
	_, err := a.begin(host, agentapi.MethodLogs, req)
	h, live, bare := a.history[req.Name], a.live[req.Name], a.bare
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if req.Lines > 0 && len(h) > req.Lines {
		h = h[len(h)-req.Lines:]
	}
	stamped := req.Stamped && !bare
	send := func(l LogLine) {
		if stamped {
			line(agentapi.StampLine(l.At, l.Text))
		} else {
			line(l.Text)
		}
	}
	for _, l := range h {
		send(l)
	}
	if !req.Follow {
		return nil
	}
	if stamped {
		line("")
		for _, l := range live {
			send(l)
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// Exec ends with exit status 0 once GateExecs' gate lets it, printing
// nothing.
func (a *Agents) Exec(ctx context.Context, host string, req agentapi.ExecRequest, output, note func(string)) (agentapi.ExecReply, error) {
	a.mu.Lock()
	i, err := a.begin(host, agentapi.MethodExec, req)
	gate := a.execGate
	a.mu.Unlock()
	if err != nil {
		return agentapi.ExecReply{}, err
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			a.mu.Lock()
			defer a.mu.Unlock()
			return agentapi.ExecReply{}, a.done(i, ctx.Err())
		}
	}
	return agentapi.ExecReply{ExitCode: 0}, nil
}

// Mounts lists the mount requests.
func (a *Agents) Mounts() []agentapi.MountRequest {
	return Requests[agentapi.MountRequest](a, agentapi.MethodMount)
}

func (a *Agents) Mount(ctx context.Context, host string, req agentapi.MountRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, err := a.begin(host, agentapi.MethodMount, req)
	if err != nil {
		return err
	}
	if err := req.Volume.Check(false); err != nil {
		return a.done(i, &bus.RemoteError{Message: err.Error()})
	}
	return a.done(i, a.mountErr)
}

func (a *Agents) Unmount(ctx context.Context, host string, req agentapi.UnmountRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err := a.begin(host, agentapi.MethodUnmount, req)
	return err
}
