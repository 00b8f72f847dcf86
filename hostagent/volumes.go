package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/names"
)

// Mounter mounts volumes on the host: gluster.Mount and gluster.Unmount
// in upscale-agent, a fake in tests.
type Mounter interface {
	// Mount mounts volume at dir (again is no error) and gives its root
	// to uid:gid.
	Mount(ctx context.Context, servers []string, volume, dir string, uid, gid int) error
	Unmount(dir string) error
}

// Bind is a host directory mounted into a container (a volume).
type Bind struct {
	Source, Target string
	ReadOnly       bool
}

// volumeDir is where a volume is mounted on this host: under the state
// directory, which the containers' roots may traverse (StateDirMode), as
// LXC binds it from inside their user namespace.
func (a *Agent) volumeDir(volume string) string {
	return filepath.Join(a.cfg.StateDir, "volumes", volume)
}

// mountFor mounts a volume for namespace's containers, whose root is
// host uid base: a volume of another namespace is refused, whatever the
// server asks.
func (a *Agent) mountFor(ctx context.Context, namespace string, base uint32, v agentapi.VolumeMount, inContainer bool) error {
	if a.cfg.Mounter == nil {
		return fmt.Errorf("volume %s: this agent mounts no volumes (it has no GlusterFS client)", v.Volume)
	}
	if err := v.Check(inContainer); err != nil {
		return err
	}
	if ns, _ := agentapi.VolumeNamespace(v.Volume); ns != namespace {
		return fmt.Errorf("volume %s is not namespace %s's", v.Volume, namespace)
	}
	if err := os.MkdirAll(filepath.Dir(a.volumeDir(v.Volume)), StateDirMode); err != nil {
		return fmt.Errorf("volume %s: %w", v.Volume, err)
	}
	if err := a.cfg.Mounter.Mount(ctx, v.Servers, v.Volume, a.volumeDir(v.Volume), int(base), int(base)); err != nil {
		return fmt.Errorf("volume %s: %w", v.Volume, err)
	}
	return nil
}

// mountVolumes mounts a container's volumes and returns their binds.
// Callers hold volMu until the container's record names them, so that a
// concurrent release does not unmount one in between.
func (a *Agent) mountVolumes(ctx context.Context, c agentapi.ReleaseContainer, base uint32) ([]string, []Bind, error) {
	if len(c.Volumes) == 0 {
		return nil, nil, nil
	}
	app, err := names.ParseApp(c.App)
	if err != nil {
		return nil, nil, err
	}
	var vols []string
	var binds []Bind
	for _, v := range c.Volumes {
		if slices.Contains(vols, v.Volume) {
			return nil, nil, fmt.Errorf("volume %s is asked for twice", v.Volume)
		}
		if err := a.mountFor(ctx, app.Namespace, base, v, true); err != nil {
			a.unmountUnused(vols, "")
			return nil, nil, err
		}
		vols = append(vols, v.Volume)
		binds = append(binds, Bind{Source: a.volumeDir(v.Volume), Target: v.Path, ReadOnly: v.ReadOnly})
	}
	return vols, binds, nil
}

// unmountUnused unmounts those of vols that no container's record names,
// but for the container except (which is going).
func (a *Agent) unmountUnused(vols []string, except string) {
	if len(vols) == 0 || a.cfg.Mounter == nil {
		return
	}
	used := a.volumeUsers(except)
	for _, v := range vols {
		if len(used[v]) > 0 {
			continue
		}
		if err := a.cfg.Mounter.Unmount(a.volumeDir(v)); err != nil {
			a.cfg.Log.Warn("unmounting a volume no container uses", "volume", v, "err", err)
		}
	}
}

// volumeUsers maps each volume to the containers whose records name it,
// but for except. The records on disk are the truth, so that a restarted
// agent unmounts what it should.
func (a *Agent) volumeUsers(except string) map[string][]string {
	users := map[string][]string{}
	entries, _ := os.ReadDir(filepath.Join(a.cfg.StateDir, "containers"))
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || name == except {
			continue
		}
		for _, v := range a.loadMeta(name).Volumes {
			users[v] = append(users[v], name)
		}
	}
	return users
}

func (a *Agent) mount(ctx context.Context, raw json.RawMessage, _ func(string)) (any, error) {
	req, err := decode[agentapi.MountRequest](raw)
	if err != nil {
		return nil, err
	}
	if err := names.Check("namespace", req.Namespace); err != nil {
		return nil, err
	}
	base := a.cfg.IDBase
	if a.cfg.Ranges != nil {
		if base, err = a.cfg.Ranges.For(ctx, req.Namespace); err != nil {
			return nil, err
		}
	}
	a.volMu.Lock()
	defer a.volMu.Unlock()
	return struct{}{}, a.mountFor(ctx, req.Namespace, base, req.Volume, false)
}

func (a *Agent) unmount(ctx context.Context, raw json.RawMessage, _ func(string)) (any, error) {
	req, err := decode[agentapi.UnmountRequest](raw)
	if err != nil {
		return nil, err
	}
	if _, err := agentapi.VolumeNamespace(req.Volume); err != nil {
		return nil, err
	}
	if a.cfg.Mounter == nil {
		return struct{}{}, nil
	}
	a.volMu.Lock()
	defer a.volMu.Unlock()
	if users := a.volumeUsers(""); len(users[req.Volume]) > 0 {
		return nil, fmt.Errorf("volume %s is in use by %s", req.Volume, strings.Join(users[req.Volume], ", "))
	}
	if err := a.cfg.Mounter.Unmount(a.volumeDir(req.Volume)); err != nil {
		return nil, errors.New(err.Error())
	}
	return struct{}{}, nil
}
