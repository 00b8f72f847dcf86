// Package builder turns a pushed commit into a release artifact: it
// exports the commit's tree through repos (the objects may still be in the
// push's quarantine), hands it to an agent's build container, and gets back
// the stored artifact.
package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/runtimes"
)

// Bus is what a build needs of the service bus: its artifact store.
type Bus interface {
	PutArtifact(ctx context.Context, name string, r io.Reader) (bus.Artifact, error)
	DeleteArtifact(ctx context.Context, name string) error
}

// Agents is what a build needs of the agents (agentapi.Client).
type Agents interface {
	Build(ctx context.Context, host string, req agentapi.BuildRequest, progress func(line string)) (agentapi.BuildReply, error)
	Fetch(ctx context.Context, host string, req agentapi.FetchRequest) (agentapi.FetchReply, error)
	Drop(ctx context.Context, host string, req agentapi.DropRequest) error
}

// Job is one build.
type Job struct {
	App     names.App
	Release int
	Source  repos.Source
	Runtime runtimes.Runtime
	Steps   []string // app.yaml's extra steps, after the runtime's
	Env     map[string]string
	Host    string
	Timeout time.Duration
	// Limits of the build container (bytes, cores) and of its result
	// (packed bytes, entries); 0 leaves each to the agent's default.
	Memory     int64
	CPU        float64
	MaxOutput  int64
	MaxEntries int
	Disk       int64 // what the build may write beyond its source; 0: the agent's default
}

// SourceName is where a build's source is stored while it builds.
func SourceName(app names.App, commit string) string {
	return fmt.Sprintf("source/%s/%s/%s.tar", app.Namespace, app.Name, commit)
}

// ArtifactName is where release v of app is stored.
func ArtifactName(app names.App, v int) string {
	return fmt.Sprintf("release/%s/%s/v%d.tar.gz", app.Namespace, app.Name, v)
}

// Build runs job on its host and stores the result as the release's
// artifact.
func Build(ctx context.Context, b Bus, agents Agents, job Job, progress func(string)) (bus.Artifact, error) {
	src := SourceName(job.App, job.Source.Commit)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(job.Source.Archive(ctx, pw)) }()
	_, err := b.PutArtifact(ctx, src, pr)
	pr.CloseWithError(err)
	if err != nil {
		return bus.Artifact{}, fmt.Errorf("exporting the source: %w", err)
	}
	defer b.DeleteArtifact(context.WithoutCancel(ctx), src)
	req := agentapi.BuildRequest{
		App:     job.App.String(),
		Release: job.Release,
		Runtime: job.Runtime,
		Source:  src,
		Steps:   append(append([]string{}, job.Runtime.Build...), job.Steps...),
		Env:     job.Env,
		Timeout: job.Timeout,
		Memory:  job.Memory, CPU: job.CPU, MaxOutput: job.MaxOutput, MaxEntries: job.MaxEntries, Disk: job.Disk,
	}
	built, err := agents.Build(ctx, job.Host, req, progress)
	if err != nil {
		if errors.Is(err, bus.ErrNoAnswer) && ctx.Err() == nil {
			// The agent went away mid-build (restarted, or its host
			// died); the one that comes back removes the container.
			return bus.Artifact{}, fmt.Errorf("%s stopped answering during the build (its agent restarted or the host is down): %w", job.Host, err)
		}
		return bus.Artifact{}, err
	}
	defer agents.Drop(context.WithoutCancel(ctx), job.Host, agentapi.DropRequest{Outbox: built.Outbox})
	// Agents only read the store: the server carries the result over.
	pr, pw = io.Pipe()
	go func() { pw.CloseWithError(fetch(ctx, agents, job.Host, built.Outbox, pw)) }()
	art, err := b.PutArtifact(ctx, ArtifactName(job.App, job.Release), pr)
	pr.CloseWithError(err)
	if err != nil {
		return art, fmt.Errorf("storing the build: %w", err)
	}
	if art.SHA256 != built.Digest || art.Size != built.Size {
		return art, fmt.Errorf("the stored build (%d bytes, sha256 %s) is not what %s packed (%d bytes, sha256 %s)", art.Size, art.SHA256, job.Host, built.Size, built.Digest)
	}
	return art, nil
}

func fetch(ctx context.Context, agents Agents, host, outbox string, w io.Writer) error {
	for off := int64(0); ; {
		chunk, err := agents.Fetch(ctx, host, agentapi.FetchRequest{Outbox: outbox, Offset: off})
		if err != nil {
			return err
		}
		if len(chunk.Data) == 0 {
			return nil
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return err
		}
		off += int64(len(chunk.Data))
	}
}
