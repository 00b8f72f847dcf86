package gitd

import (
	"crypto/rand"
	"encoding/hex"
	"sync"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

// push is one receive-pack in progress: who pushes to which app. The hook
// client names it by an unguessable id the git service put in git's env.
type push struct {
	principal keys.Principal
	app       names.App
	// release runs when the push ends (the app's deploy lock).
	release []func()
	// hooked: a hook asked for it, so git had received the whole pack.
	hooked bool
}

type pushRegistry struct {
	mu     sync.Mutex
	pushes map[string]push
}

func newPushRegistry() *pushRegistry { return &pushRegistry{pushes: map[string]push{}} }

func (r *pushRegistry) add(p push) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	id := hex.EncodeToString(b)
	r.mu.Lock()
	r.pushes[id] = p
	r.mu.Unlock()
	return id
}

// get returns push id, and records that it reached its hooks.
func (r *pushRegistry) get(id string) (push, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pushes[id]
	if ok && !p.hooked {
		p.hooked = true
		r.pushes[id] = p
	}
	return p, ok
}

func (r *pushRegistry) reachedHooks(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushes[id].hooked
}

// holdUntilDone runs f when the push id ends (at once if it already has).
func (r *pushRegistry) holdUntilDone(id string, f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pushes[id]
	if !ok {
		f()
		return
	}
	p.release = append(p.release, f)
	r.pushes[id] = p
}

func (r *pushRegistry) remove(id string) {
	r.mu.Lock()
	p := r.pushes[id]
	delete(r.pushes, id)
	r.mu.Unlock()
	for _, f := range p.release {
		f()
	}
}
