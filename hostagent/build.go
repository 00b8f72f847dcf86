package hostagent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/shellquote"
)

// defaultBuildTimeout bounds a build whose request names no limit.
const defaultBuildTimeout = 10 * time.Minute

func (a *Agent) build(ctx context.Context, raw json.RawMessage, progress func(string)) (any, error) {
	req, err := decode[agentapi.BuildRequest](raw)
	if err != nil {
		return nil, err
	}
	// Build steps are the tenant's code: they run in its namespace's range
	// like its instances, whose files they make.
	base, err := a.idBase(ctx, req.App)
	if err != nil {
		return nil, err
	}
	img, err := a.images.Ensure(ctx, req.Runtime, base, progress)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(a.cfg.StateDir, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "app")
	if err := a.fetchInto(ctx, req.Source, "", src, base); err != nil {
		return nil, fmt.Errorf("fetching the source: %w", err)
	}
	name := fmt.Sprintf("%s%s-%d", buildPrefix, shortID(), req.Release)
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultBuildTimeout
	}
	memory, cpu := req.Memory, req.CPU
	if memory <= 0 {
		memory = agentapi.DefaultBuildMemory
	}
	if cpu <= 0 {
		cpu = agentapi.DefaultBuildCPU
	}
	progress(fmt.Sprintf("-----> Building with %s (%d step(s), time limit %s, memory %s)", req.Runtime.Name, len(req.Steps), timeout, appspec.FormatSize(memory)))
	if _, err := a.rt.Create(ctx, ContainerSpec{
		Name: name, Image: img.Shifted, AppDir: src, Command: buildScript(req.Steps),
		Env: buildEnv(req), Memory: memory, CPU: cpu, PidsMax: a.cfg.PidsMax, ShmSize: shmSize(memory), IDBase: base,
	}); err != nil {
		return nil, err
	}
	defer a.remove(name)
	a.watchLayer(name, cmp.Or(req.Disk, agentapi.DefaultBuildDisk))
	if err := a.rt.Start(ctx, name); err != nil {
		return nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		// Follow ends by itself once the container stopped and its output
		// is read; bctx only cuts it short for a build over its limit.
		if err := a.rt.Follow(bctx, name, 0, func(l string) { progress("       " + l) }); err != nil && bctx.Err() == nil {
			a.cfg.Log.Warn("following a build", "container", name, "err", err)
		}
	}()
	code, err := a.rt.Wait(bctx, name)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		<-followed
		return nil, fmt.Errorf("the build ran longer than its time limit of %s and was stopped", timeout)
	}
	select {
	case <-followed:
	case <-time.After(5 * time.Second):
		cancel()
		<-followed
	}
	if err != nil {
		return nil, err
	}
	if code != 0 {
		if over, limit := a.layerOver(name); over > 0 {
			return nil, fmt.Errorf("%s; clean up caches in the build steps, or ask the operator to raise --build-disk", agentapi.DiskOver("the build", limit))
		}
		if c, err := a.rt.Get(name); err == nil && c.OOMKilled {
			return nil, fmt.Errorf("a build step ran out of memory (limit %s); raise memory in app.yaml", appspec.FormatSize(memory))
		}
		return nil, fmt.Errorf("a build step failed (exit status %d)", code)
	}
	lim := PackLimits{Bytes: req.MaxOutput, Entries: req.MaxEntries}
	if lim.Bytes <= 0 {
		lim.Bytes = agentapi.DefaultMaxBuildOutput
	}
	if lim.Entries <= 0 {
		lim.Entries = agentapi.DefaultMaxBuildEntries
	}
	return a.pack(a.rt.AppDir(name), base, lim)
}

// buildEnv is the app's env plus UPSCALE_APP ("NS/APP"), which build steps
// use to name what the app does not (the go runtime's module without a
// go.mod). app.yaml cannot set UPSCALE_ names, so nothing is overridden.
func buildEnv(req agentapi.BuildRequest) map[string]string {
	env := maps.Clone(req.Env)
	if env == nil {
		env = map[string]string{}
	}
	env["UPSCALE_APP"] = req.App
	return env
}

// buildPrefix starts the name of every build container.
const buildPrefix = "build-"

// buildScript runs each step in order, saying which one runs, and stops at
// the first that fails.
func buildScript(steps []string) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	for i, s := range steps {
		fmt.Fprintf(&b, "echo %s\n", shellquote.Quote(fmt.Sprintf("step %d: %s", i+1, firstLine(s))))
		fmt.Fprintf(&b, "( %s\n)\n", s)
	}
	return b.String()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return msgtext.Truncate(l, 120)
}

// pack puts the tree at dir, made by a container of range idBase, into
// the outbox.
func (a *Agent) pack(dir string, idBase uint32, lim PackLimits) (agentapi.BuildReply, error) {
	outbox := filepath.Join(a.cfg.StateDir, "outbox")
	if err := os.MkdirAll(outbox, 0o700); err != nil {
		return agentapi.BuildReply{}, err
	}
	f, err := os.CreateTemp(outbox, "build-*.tar.gz")
	if err != nil {
		return agentapi.BuildReply{}, err
	}
	defer f.Close()
	h := sha256.New()
	n := &countWriter{}
	if err := Pack(dir, idBase, io.MultiWriter(f, h, n), lim); err != nil {
		os.Remove(f.Name())
		var le *LimitError
		if errors.As(err, &le) {
			return agentapi.BuildReply{}, err
		}
		return agentapi.BuildReply{}, fmt.Errorf("packing the build: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return agentapi.BuildReply{}, err
	}
	return agentapi.BuildReply{Outbox: filepath.Base(f.Name()), Digest: hex.EncodeToString(h.Sum(nil)), Size: n.n}, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func (a *Agent) outboxPath(name string) (string, error) {
	if !strings.HasPrefix(name, "build-") || !strings.HasSuffix(name, ".tar.gz") || strings.ContainsAny(name, "/\\") {
		return "", fmt.Errorf("invalid outbox name %q", name)
	}
	return filepath.Join(a.cfg.StateDir, "outbox", name), nil
}

func (a *Agent) fetch(_ context.Context, raw json.RawMessage, _ func(string)) (any, error) {
	req, err := decode[agentapi.FetchRequest](raw)
	if err != nil {
		return nil, err
	}
	p, err := a.outboxPath(req.Outbox)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, agentapi.FetchChunk)
	n, err := f.ReadAt(buf, req.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return agentapi.FetchReply{Data: buf[:n]}, nil
}

func (a *Agent) drop(_ context.Context, raw json.RawMessage, _ func(string)) (any, error) {
	req, err := decode[agentapi.DropRequest](raw)
	if err != nil {
		return nil, err
	}
	p, err := a.outboxPath(req.Outbox)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return struct{}{}, nil
}

// release returns the extracted tree of a release artifact with owners in
// range idBase, fetching it once per host and range: every instance of the
// release starts from it.
func (a *Agent) release(ctx context.Context, artifact, digest string, idBase uint32) (string, error) {
	if len(digest) != 64 || strings.Trim(digest, "0123456789abcdef") != "" {
		return "", fmt.Errorf("invalid artifact digest %q", digest)
	}
	// Two namespaces may push the same tree (the digest is of its bytes):
	// each gets its own copy, owned by its ids.
	key := fmt.Sprintf("%s-%d", digest, idBase)
	a.mu.Lock()
	l, ok := a.releases[key]
	if !ok {
		l = &sync.Mutex{}
		a.releases[key] = l
	}
	a.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	dir := filepath.Join(a.cfg.StateDir, "releases", key)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := a.fetchInto(ctx, artifact, digest, tmp, idBase); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("fetching release %s: %w", artifact, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// fetchInto downloads an artifact and unpacks it into dir, its owners
// shifted into range idBase. A digest, when given, must match.
func (a *Agent) fetchInto(ctx context.Context, artifact, digest, dir string, idBase uint32) error {
	f, err := os.CreateTemp(a.cfg.StateDir, "artifact-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	got, err := a.bus.GetArtifact(ctx, artifact, f)
	if err != nil {
		return err
	}
	if digest != "" && got.SHA256 != digest {
		return fmt.Errorf("artifact %s has digest %s, want %s", artifact, got.SHA256, digest)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return Unpack(f, dir, idBase)
}
