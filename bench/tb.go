package main

import (
	"fmt"
	"os"
	"sync"

	"github.com/upscalehq/upscale/e2e/rig"
)

// failure is what Fatalf panics with; run turns it into exit status 1
// after the cleanups.
type failure string

// tb implements rig.TB for a plain program: everything lives under one
// upscale-bench-* directory, which `make clean-test` knows.
type tb struct {
	root     string
	mu       sync.Mutex
	cleanups []func()
	done     bool
	once     sync.Once
}

var _ rig.TB = (*tb)(nil)

func newTB() (*tb, error) {
	root, err := os.MkdirTemp("", "upscale-bench-")
	if err != nil {
		return nil, err
	}
	t := &tb{root: root}
	t.Cleanup(func() { os.RemoveAll(root) })
	return t, nil
}

func (t *tb) Helper() {}

func (t *tb) Fatalf(format string, args ...any) { panic(failure(fmt.Sprintf(format, args...))) }

// Cleanup registers f; once the cleanups have started (an interrupt), it
// runs f at once, so that nothing started late is left behind.
func (t *tb) Cleanup(f func()) {
	t.mu.Lock()
	done := t.done
	if !done {
		t.cleanups = append(t.cleanups, f)
	}
	t.mu.Unlock()
	if done {
		f()
	}
}

func (t *tb) TempDir() string {
	d, err := os.MkdirTemp(t.root, "t")
	if err != nil {
		t.Fatalf("%v", err)
	}
	return d
}

// cleanup runs the cleanups once, newest first, whether the run ended,
// failed or was interrupted; a second caller waits for the first to finish
// (main must not exit while the signal handler is still cleaning up).
func (t *tb) cleanup() {
	t.once.Do(func() {
		t.mu.Lock()
		t.done = true
		fs := t.cleanups
		t.mu.Unlock()
		for i := len(fs) - 1; i >= 0; i-- {
			func() {
				defer func() { recover() }() // a failing cleanup must not skip the others
				fs[i]()
			}()
		}
	})
}
