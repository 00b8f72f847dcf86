// Package deploytest holds fakes of what the release engine drives — the
// artifact store, the router, the hosts — for the unit tests of deploy and
// of the packages built on it (healing). The agents' fake is agenttest.
package deploytest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/router"
	"github.com/upscalehq/upscale/store"
)

// Artifacts is the bus's object store in memory.
type Artifacts struct {
	mu      sync.Mutex
	Objects map[string][]byte
}

// NewArtifacts makes an empty artifact store.
func NewArtifacts() *Artifacts { return &Artifacts{Objects: map[string][]byte{}} }

func (b *Artifacts) PutArtifact(_ context.Context, name string, r io.Reader) (bus.Artifact, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return bus.Artifact{}, err
	}
	b.mu.Lock()
	b.Objects[name] = data
	b.mu.Unlock()
	sum := sha256.Sum256(data)
	return bus.Artifact{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

func (b *Artifacts) DeleteArtifact(_ context.Context, name string) error {
	b.mu.Lock()
	delete(b.Objects, name)
	b.mu.Unlock()
	return nil
}

// Router records every Apply; with Err set it refuses them.
type Router struct {
	Applied [][]router.Backend
	Err     error
}

func (r *Router) Apply(_ context.Context, bs []router.Backend) error {
	if r.Err != nil {
		return r.Err
	}
	r.Applied = append(r.Applied, bs)
	return nil
}

// Servers is what the last Apply routes to app.
func (r *Router) Servers(app string) []string {
	if len(r.Applied) == 0 {
		return nil
	}
	var out []string
	for _, b := range r.Applied[len(r.Applied)-1] {
		if b.Name == app {
			for _, s := range b.Servers {
				out = append(out, s.Addr)
			}
		}
	}
	return out
}

// Hosts is a fleet the test drives by hand; like the real one, it takes
// a host's state from Store when Store has the host.
type Hosts struct {
	All   []fleet.Host
	Store store.Store
}

func (s *Hosts) Hosts() []fleet.Host {
	if s.Store != nil {
		for i := range s.All {
			if rec, err := s.Store.GetHost(context.Background(), s.All[i].Name); err == nil {
				s.All[i].Record.State = rec.State
			}
		}
	}
	return s.All
}

func (s *Hosts) Up() []fleet.Host {
	var up []fleet.Host
	for _, h := range s.Hosts() {
		if h.Up {
			up = append(up, h)
		}
	}
	return up
}

// Set makes host name up or down, in state, running list, as of now; a
// new name joins with weight 1 and 8 GiB free.
func (s *Hosts) Set(name string, up bool, state store.HostState, list ...agentapi.ContainerInfo) {
	for i := range s.All {
		if s.All[i].Name == name {
			s.All[i].Up, s.All[i].Record.State, s.All[i].List = up, state, list
			s.All[i].At = time.Now()
			return
		}
	}
	s.All = append(s.All, fleet.Host{Up: up, Record: store.Host{Name: name, State: state, Weight: 1},
		Beat: agentapi.Beat{Info: agentapi.Info{Name: name, MemFree: 8 << 30}, At: time.Now(), List: list}})
}
