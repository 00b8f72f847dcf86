package agentapi

import (
	"context"
	"fmt"
	"strings"

	"github.com/upscalehq/upscale/appspec"
)

// Volume methods: MethodMount mounts a volume on the host for a namespace
// (the server asks before it starts instances, so that a mount failure
// fails the roll-out before any container); MethodUnmount unmounts one no
// container of the host uses any more.
const (
	MethodMount   = "mount"
	MethodUnmount = "unmount"
)

// VolumeMount is a volume a container mounts: the GlusterFS volume, the
// storage hosts to fetch its layout from (any one that answers), and where
// it goes in the container.
type VolumeMount struct {
	Volume   string   `json:"volume"`         // gluster.VolumeName(namespace, name)
	Servers  []string `json:"servers"`        // storage hosts' addresses
	Path     string   `json:"path,omitempty"` // in the container; not used by MethodMount
	ReadOnly bool     `json:"read_only,omitempty"`
}

// VolumeNamespace is the namespace a volume's GlusterFS name belongs to
// (the agent mounts a volume for its own namespace only), or an error.
func VolumeNamespace(volume string) (string, error) {
	rest, ok := strings.CutPrefix(volume, "upscale_")
	ns, name, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || ns == "" || name == "" || strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" || strings.Contains(name, "_") {
		return "", fmt.Errorf("invalid volume %q", volume)
	}
	return ns, nil
}

// Check checks what the agent is asked to mount, and where (inContainer).
func (v VolumeMount) Check(inContainer bool) error {
	if _, err := VolumeNamespace(v.Volume); err != nil {
		return err
	}
	if len(v.Servers) == 0 {
		return fmt.Errorf("volume %s: no storage host", v.Volume)
	}
	if inContainer {
		if err := appspec.CheckVolumePath(v.Path); err != nil {
			return fmt.Errorf("volume %s: %w", v.Volume, err)
		}
	}
	return nil
}

// MountRequest mounts a volume on the host for a namespace's containers:
// its root is given to the namespace's id range there.
type MountRequest struct {
	Namespace string      `json:"namespace"`
	Volume    VolumeMount `json:"volume"`
}

// UnmountRequest unmounts a volume from the host; refused while a
// container there uses it.
type UnmountRequest struct {
	Volume string `json:"volume"`
}

func (c Client) Mount(ctx context.Context, host string, req MountRequest) error {
	return c.Bus.Call(ctx, Subject(host, MethodMount), req, &struct{}{}, nil)
}

func (c Client) Unmount(ctx context.Context, host string, req UnmountRequest) error {
	return c.Bus.Call(ctx, Subject(host, MethodUnmount), req, &struct{}{}, nil)
}
