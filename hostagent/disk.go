package hostagent

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/upscalehq/upscale/appspec"
)

// Writable layers: what a container writes to its filesystem (outside
// /dev/shm, which its memory limit holds) lands in its overlay's upper dir
// on the host's disk. Each one has a limit on what it may add to the
// layer it started with (its release's /app and the files the agent
// writes); a container that passes it is stopped, and an instance is then
// replaced by the server with a fresh one. Overlay on a plain directory has
// no quota of its own (project quotas need XFS or a prjquota ext4), so the
// agent measures: cheaply, only when the filesystem holding the layers has
// grown since it last looked, and every few minutes in any case.
const (
	diskTick   = 2 * time.Second
	diskGrowth = 64 << 20 // filesystem growth that calls for a look
	diskRescan = 5 * time.Minute
	// minEntry is what each file, directory or link counts at least, so
	// that a flood of empty files (inodes, which the host also runs out
	// of) is bounded by the same limit.
	minEntry = 4 << 10
)

// layer is one watched container's writable layer.
type layer struct {
	limit int64 // bytes it may add to base
	base  int64 // usage when it was made
	over  int64 // what it had added (at least) when it was stopped; 0 while within
}

type layers struct {
	mu sync.Mutex
	m  map[string]*layer
}

// watchLayer starts watching the layer of a container just made, with
// limit (0: none); it returns the layer's usage now, its base.
func (a *Agent) watchLayer(name string, limit int64) int64 {
	if limit <= 0 {
		return 0
	}
	base, err := layerUsage(a.rt.Layer(name), 0)
	if err != nil {
		a.cfg.Log.Warn("measuring a writable layer", "name", name, "err", err)
	}
	a.layers.mu.Lock()
	defer a.layers.mu.Unlock()
	if a.layers.m == nil {
		a.layers.m = map[string]*layer{}
	}
	a.layers.m[name] = &layer{limit: limit, base: base}
	return base
}

// layerOver is what the container had added to its layer when it was
// stopped for passing its limit, and the limit; 0 when it was not.
func (a *Agent) layerOver(name string) (over, limit int64) {
	a.layers.mu.Lock()
	defer a.layers.mu.Unlock()
	if l := a.layers.m[name]; l != nil {
		return l.over, l.limit
	}
	return 0, 0
}

func (a *Agent) unwatchLayer(name string) {
	a.layers.mu.Lock()
	defer a.layers.mu.Unlock()
	delete(a.layers.m, name)
}

// adoptLayers watches the app containers a previous agent process
// watched, from their meta.
func (a *Agent) adoptLayers() {
	cs, err := a.rt.List()
	if err != nil {
		return
	}
	a.layers.mu.Lock()
	defer a.layers.mu.Unlock()
	if a.layers.m == nil {
		a.layers.m = map[string]*layer{}
	}
	for _, c := range cs {
		if m := a.loadMeta(c.Name); m.Disk > 0 {
			a.layers.m[c.Name] = &layer{limit: m.Disk, base: m.DiskBase, over: m.DiskOver}
		}
	}
}

func (a *Agent) diskLoop(ctx context.Context) {
	t := time.NewTicker(diskTick)
	defer t.Stop()
	var seen uint64 // filesystem usage at the last look
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		used := a.layersFSUsed()
		if !last.IsZero() && used < seen+diskGrowth && time.Since(last) < diskRescan {
			seen = min(seen, used) // space freed counts against later growth
			continue
		}
		seen, last = used, time.Now()
		a.checkLayers(ctx)
	}
}

// layersFSUsed is the space used on the filesystems that hold watched
// layers.
func (a *Agent) layersFSUsed() uint64 {
	a.layers.mu.Lock()
	names := make([]string, 0, len(a.layers.m))
	for n := range a.layers.m {
		names = append(names, n)
	}
	a.layers.mu.Unlock()
	var total uint64
	seen := map[[2]int32]bool{}
	for _, n := range names {
		var st syscall.Statfs_t
		if syscall.Statfs(a.rt.Layer(n), &st) != nil || seen[st.Fsid.X__val] {
			continue
		}
		seen[st.Fsid.X__val] = true
		total += (st.Blocks - st.Bfree) * uint64(st.Bsize)
	}
	return total
}

// checkLayers measures every watched layer and stops each container past
// its limit.
func (a *Agent) checkLayers(ctx context.Context) {
	a.layers.mu.Lock()
	todo := map[string]layer{}
	for n, l := range a.layers.m {
		if l.over == 0 {
			todo[n] = *l
		}
	}
	a.layers.mu.Unlock()
	for name, l := range todo {
		used, err := layerUsage(a.rt.Layer(name), l.base+l.limit)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the snapshot
		}
		if err != nil {
			a.cfg.Log.Warn("measuring a writable layer", "name", name, "err", err)
			continue
		}
		if used <= l.base+l.limit {
			continue
		}
		a.stopOverLayer(ctx, name, used-l.base, l.limit)
	}
}

// stopOverLayer stops a container that wrote more than its limit; an app
// container is held (no crash restart) and its meta says why, for the
// server, which replaces it.
func (a *Agent) stopOverLayer(ctx context.Context, name string, added, limit int64) {
	a.layers.mu.Lock()
	l := a.layers.m[name]
	if l == nil { // removed meanwhile
		a.layers.mu.Unlock()
		return
	}
	l.over = added
	a.layers.mu.Unlock()
	a.cfg.Log.Warn("container stopped: its writable layer is over its limit", "name", name,
		"written_at_least", added, "limit", appspec.FormatSize(limit))
	a.mu.Lock()
	if m := a.loadMeta(name); m.App != "" {
		m.Held, m.DiskOver = true, added
		if err := a.saveMeta(name, m); err != nil {
			a.cfg.Log.Warn("recording a stop for disk", "name", name, "err", err)
		}
	}
	a.mu.Unlock()
	if err := a.rt.Stop(ctx, name, 2*time.Second); err != nil {
		a.cfg.Log.Warn("stopping a container over its disk limit", "name", name, "err", err)
	}
}

var errEnough = errors.New("enough")

// layerUsage is what a writable layer holds: allocated bytes, each inode
// once (hard links), every entry at least minEntry. It stops counting
// once past stop (0: count it all). Entries that vanish while it counts
// (the container is running) are skipped.
func layerUsage(dir string, stop int64) (int64, error) {
	var total int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // gone since it was listed
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += max(st.Blocks*512, minEntry)
		if stop > 0 && total > stop {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return total, err
}
