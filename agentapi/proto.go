// Package agentapi is the protocol between the server and upscale-agent:
// the methods an agent answers on the bus, their request and reply types,
// and a typed client (Client) that is the server's only way to call an
// agent. The JSON names are the wire format: agents and servers of
// different versions talk to each other, so a field may be added (with a
// zero value that means what it meant before) but never renamed.
package agentapi

import (
	"fmt"
	"time"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/runtimes"
)

// The server calls an agent on subjects upscale.agent.HOST.METHOD.
const (
	MethodBuild   = "build"
	MethodStart   = "start"
	MethodStop    = "stop"
	MethodDestroy = "destroy"
	MethodList    = "list"
	MethodLogs    = "logs"
	MethodImages  = "images"
	MethodStatus  = "status"
	MethodFetch   = "fetch"
	MethodDrop    = "drop"
	MethodExec    = "exec"
)

// Subject is where host answers method. Only the agent (to serve) and
// Client (to call) spell it.
func Subject(host, method string) string { return "upscale.agent." + host + "." + method }

// Port is the port every app listens on inside its container ($PORT):
// each container has its own address, so one port fits all.
const Port = 8080

// BuildRequest asks an agent to build a release: run the runtime's and the
// app's build steps over the source in a build container and pack /app.
// Agents may only read the artifact store, so the packed result waits in
// the agent's outbox until the server fetches it (MethodFetch) and drops it
// (MethodDrop).
type BuildRequest struct {
	App     string            `json:"app"`
	Release int               `json:"release"`
	Runtime runtimes.Runtime  `json:"runtime"`
	Source  string            `json:"source"` // artifact name of the source tarball
	Steps   []string          `json:"steps"`  // shell steps, run in /app in order
	Env     map[string]string `json:"env,omitempty"`
	Timeout time.Duration     `json:"timeout"`
	// The build container's limits and what its result may hold; 0 means
	// the Default* below (a server that predates them).
	Memory     int64   `json:"memory,omitempty"`
	CPU        float64 `json:"cpu,omitempty"`
	MaxOutput  int64   `json:"max_output,omitempty"`  // bytes of the packed result
	MaxEntries int     `json:"max_entries,omitempty"` // files, directories and links in it
	Disk       int64   `json:"disk,omitempty"`        // what the build may write beyond its source
}

// Defaults of a build's limits, which the server's flags also start from.
const (
	DefaultBuildMemory     = 1 << 30
	DefaultBuildCPU        = 1.0
	DefaultMaxBuildOutput  = 1 << 30
	DefaultMaxBuildEntries = 200000
)

// DiskOver says why an agent stopped a container (what: "the build", a
// container's name...): it wrote past its writable layer's limit. How far
// past is not known: measuring stops at the limit.
func DiskOver(what string, limit int64) string {
	return fmt.Sprintf("%s wrote more than its limit of %s to its filesystem and was stopped", what, appspec.FormatSize(limit))
}

// DefaultContainerDisk and DefaultBuildDisk are the writable-layer limits
// a request without one gets (a server that predates them).
const (
	DefaultContainerDisk = 2 << 30
	DefaultBuildDisk     = 4 << 30
)

// BuildReply names the packed result in the agent's outbox.
type BuildReply struct {
	Outbox string `json:"outbox"`
	Digest string `json:"digest"` // sha256 hex of the packed result
	Size   int64  `json:"size"`
}

// FetchChunk is how much of an outbox file one fetch returns: its JSON
// (base64) must stay under the bus's 256 KiB result limit.
const FetchChunk = 160 << 10

// FetchRequest reads part of an outbox file.
type FetchRequest struct {
	Outbox string `json:"outbox"`
	Offset int64  `json:"offset"`
}

// FetchReply is one chunk; an empty one means the end.
type FetchReply struct {
	Data []byte `json:"data"`
}

// DropRequest deletes an outbox file.
type DropRequest struct {
	Outbox string `json:"outbox"`
}

// ReleaseContainer is what any container of a release is made of; its
// fields are inline on the wire.
type ReleaseContainer struct {
	Name     string            `json:"name"`
	App      string            `json:"app"`
	Release  int               `json:"release"`
	Runtime  runtimes.Runtime  `json:"runtime"`
	Artifact string            `json:"artifact"`
	Digest   string            `json:"digest"`
	Command  string            `json:"command"`
	Env      map[string]string `json:"env,omitempty"`
	Memory   int64             `json:"memory,omitempty"`
	CPU      float64           `json:"cpu,omitempty"`
	// Disk bounds what it may write to its filesystem (its writable
	// layer) beyond its release; 0 is no limit.
	Disk int64 `json:"disk,omitempty"`
	// Volumes are mounted on the host (if they are not already) and
	// bound into the container before it starts; each must belong to
	// App's namespace.
	Volumes []VolumeMount `json:"volumes,omitempty"`
}

// StartRequest asks for one running, healthy instance of a release.
type StartRequest struct {
	ReleaseContainer
	Health        string        `json:"health,omitempty"` // HTTP path; TCP connect when ""
	HealthTimeout time.Duration `json:"health_timeout"`
	// Worker: a process that listens on nothing; it is healthy when it
	// is still running a moment after it started.
	Worker bool `json:"worker,omitempty"`
}

// StartReply is where the healthy instance answers, and how long it took
// to get there.
type StartReply struct {
	Addr   string        `json:"addr"`   // "10.77.0.5:8080"
	Start  time.Duration `json:"start"`  // fetch, create and start the container
	Health time.Duration `json:"health"` // from started to healthy
}

// StopRequest stops (and DestroyRequest removes) one container.
type StopRequest struct {
	Name  string        `json:"name"`
	Grace time.Duration `json:"grace"`
}

// DestroyRequest removes one container and everything it wrote.
type DestroyRequest struct {
	Name string `json:"name"`
}

// ContainerInfo describes one container on a host.
type ContainerInfo struct {
	Name      string    `json:"name"`
	App       string    `json:"app,omitempty"`
	Release   int       `json:"release,omitempty"`
	Addr      string    `json:"addr,omitempty"`
	State     string    `json:"state"`
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	ExitCode  int       `json:"exit_code"`
	Restarts  int       `json:"restarts,omitempty"`  // crash restarts by the agent
	LastExit  int       `json:"last_exit,omitempty"` // exit status of the last crash
	// Disk is its writable layer's limit; DiskOver, when set, what it had
	// written when its agent stopped it for passing that limit (for good:
	// the server replaces it).
	Disk     int64 `json:"disk,omitempty"`
	DiskOver int64 `json:"disk_over,omitempty"`
}

// ListReply lists a host's containers.
type ListReply struct {
	Containers []ContainerInfo `json:"containers"`
}

// LogsRequest asks for a container's last lines of output, sent as
// progress; with Follow the agent keeps sending new lines until the caller
// goes away. The reply is empty.
type LogsRequest struct {
	Name   string `json:"name"`
	Lines  int    `json:"lines"`
	Follow bool   `json:"follow,omitempty"`
	// Stamped asks for each line as StampLine makes it, with its capture
	// time, and, with Follow, an empty line after the last lines, before
	// the new ones. (An agent that predates it sends bare lines.)
	Stamped bool `json:"stamped,omitempty"`
}

// stampLayout is fixed-width RFC 3339 in UTC, nanoseconds included.
const stampLayout = "2006-01-02T15:04:05.000000000Z"

// StampLine is a log line with its capture time in front.
func StampLine(at time.Time, text string) string {
	return at.UTC().Format(stampLayout) + " " + text
}

// ParseStampedLine splits what StampLine made; ok is false for a line
// that is not stamped.
func ParseStampedLine(l string) (at time.Time, text string, ok bool) {
	if len(l) <= len(stampLayout) || l[len(stampLayout)] != ' ' {
		return time.Time{}, l, false
	}
	at, err := time.Parse(stampLayout, l[:len(stampLayout)])
	if err != nil {
		return time.Time{}, l, false
	}
	return at, l[len(stampLayout)+1:], true
}

// ImagesReply names the runtime images a host has built.
type ImagesReply struct {
	Images []ImageInfo `json:"images"`
}

// ImageInfo is one built runtime image.
type ImageInfo struct {
	Runtime string    `json:"runtime"`
	Key     string    `json:"key"`
	Built   time.Time `json:"built"`
}

// StatusRequest is what the server says with each MethodStatus call.
type StatusRequest struct {
	// Router is the address the router's connections to this host's
	// containers come from (the server's source address toward the host):
	// the agent lets it reach them. Hosts made on EC2 learn it only so.
	Router string `json:"router,omitempty"`
}

// Info describes a host.
type Info struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	State    string `json:"state"`
	CPUs     int    `json:"cpus"`
	MemTotal uint64 `json:"memory_total_bytes"`
	MemFree  uint64 `json:"memory_available_bytes"`
}

// Beat is an agent's answer to MethodStatus, which the server asks every
// second: a heartbeat the server pulls, so that only the real agent can
// answer for its host.
type Beat struct {
	Info
	Containers int             `json:"containers"`
	List       []ContainerInfo `json:"list,omitempty"` // every container, for healing
	Images     []ImageInfo     `json:"images,omitempty"`
	At         time.Time       `json:"at"`
}

// ExecRequest asks for a one-off container of a release running Command
// (a shell command line) to its end. Its output comes back as progress
// lines, each starting with ExecOutput (a line the command printed,
// stdout and stderr merged in order) or ExecNote (the agent's own, such as
// a runtime image being built); the reply carries the exit status. The
// container is destroyed when the command ends, runs over Timeout, or the
// caller goes away.
type ExecRequest struct {
	ReleaseContainer
	Timeout time.Duration `json:"timeout"`
}

// ExecReply is how the command ended.
type ExecReply struct {
	ExitCode int `json:"exit_code"`
}

// Kinds of ExecRequest progress lines: the first byte of each.
const (
	ExecOutput = "|"
	ExecNote   = "-"
)
