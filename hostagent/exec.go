package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/upscalehq/upscale/agentapi"
)

// defaultExecTimeout bounds a one-off command whose request names no limit.
const defaultExecTimeout = time.Hour

// execChunk is the longest output line sent as one progress line: the bus
// cuts longer ones, so they go in pieces.
const execChunk = 8 << 10

// exec runs a one-off command in a fresh container of a release, the way
// build runs build steps: the container is the agent's own (no meta, so
// neither crash restarts nor the server's orphan sweep touch it) and is
// destroyed whatever happens.
func (a *Agent) exec(ctx context.Context, raw json.RawMessage, progress func(string)) (any, error) {
	req, err := decode[agentapi.ExecRequest](raw)
	if err != nil {
		return nil, err
	}
	if req.Command == "" {
		return nil, errors.New("no command to run")
	}
	spec, err := a.prepare(ctx, req.ReleaseContainer, func(l string) { progress(agentapi.ExecNote + l) })
	if err != nil {
		return nil, err
	}
	if _, err := a.rt.Create(ctx, spec); err != nil {
		return nil, err
	}
	defer a.remove(req.Name)
	a.watchLayer(req.Name, req.Disk)
	if err := a.rt.Start(ctx, req.Name); err != nil {
		return nil, err
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultExecTimeout
	}
	ectx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		// Follow ends by itself once the container stopped and its output
		// is read.
		err := a.rt.Follow(ectx, req.Name, 0, func(l string) {
			for len(l) > execChunk {
				cut := execChunk
				for cut > 0 && !utf8.RuneStart(l[cut]) {
					cut--
				}
				progress(agentapi.ExecOutput + l[:cut])
				l = l[cut:]
			}
			progress(agentapi.ExecOutput + l)
		})
		if err != nil && ectx.Err() == nil {
			a.cfg.Log.Warn("following a one-off command", "container", req.Name, "err", err)
		}
	}()
	code, err := a.rt.Wait(ectx, req.Name)
	if err != nil {
		cancel()
		<-followed
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("the command ran longer than its time limit of %s and was stopped", timeout)
		}
		return nil, err
	}
	select {
	case <-followed:
	case <-time.After(5 * time.Second):
		cancel()
		<-followed
	}
	if over, limit := a.layerOver(req.Name); over > 0 {
		progress(agentapi.ExecNote + agentapi.DiskOver("the command", limit))
	}
	return agentapi.ExecReply{ExitCode: code}, nil
}

// execPrefix starts the name of every one-off container (the server names
// them, see deploy.Exec).
const execPrefix = "exec-"

// sweepLeftovers removes what a previous agent process left when it died
// in the middle of a one-off command or a build: their containers (nobody
// waits for their output any more, and with no meta nothing else would
// ever remove them), build work dirs, half-fetched artifacts and releases,
// and packed results. A packed result the server had yet to fetch is lost
// with it: that build fails, as it would have anyway once its agent went
// away.
func (a *Agent) sweepLeftovers() {
	cs, err := a.rt.List()
	if err != nil {
		a.cfg.Log.Warn("listing containers for leftover one-off commands and builds", "err", err)
	}
	for _, c := range cs {
		if (strings.HasPrefix(c.Name, execPrefix) || strings.HasPrefix(c.Name, buildPrefix)) && a.loadMeta(c.Name).App == "" {
			a.cfg.Log.Info("removing a container left by a previous agent", "name", c.Name)
			a.remove(c.Name)
		}
	}
	for _, pattern := range []string{"build-*", "artifact-*", filepath.Join("outbox", "build-*"), filepath.Join("releases", "*.tmp")} {
		paths, _ := filepath.Glob(filepath.Join(a.cfg.StateDir, pattern))
		for _, p := range paths {
			a.cfg.Log.Info("removing a build file left by a previous agent", "path", p)
			if err := os.RemoveAll(p); err != nil {
				a.cfg.Log.Warn("removing a leftover", "path", p, "err", err)
			}
		}
	}
}
