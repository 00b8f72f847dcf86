package store

import (
	"context"
	"time"
)

// Volume is a namespace's replicated storage (a GlusterFS volume), which
// its apps attach at a path.
type Volume struct {
	Namespace string
	Name      string // ^[a-z][a-z0-9-]{0,39}$, unique in its namespace
	Size      int64  // bytes: its quota
	Replicas  int
	// Bricks are where its copies live, one per replica, each on its own
	// storage host.
	Bricks []VolumeBrick
	// Attachments are the apps that mount it, sorted by app; filled by
	// GetVolume and ListVolumes.
	Attachments []Attachment
	CreatedAt   time.Time
}

// VolumeBrick is one copy of a volume: a directory on a storage host.
type VolumeBrick struct {
	Host string `json:"host"` // a host's name (Host.Name)
	Path string `json:"path"`
}

// Attachment is an app mounting one of its namespace's volumes at Path in
// every one of its containers.
type Attachment struct {
	Namespace string
	Volume    string
	App       string
	Path      string // absolute, in the container; the caller checks it
	ReadOnly  bool
	CreatedAt time.Time
}

// VolumeStore is the part of the store that records volumes. The volumes
// themselves live in GlusterFS; the store says which exist, where and who
// uses them.
type VolumeStore interface {
	// CreateVolume records v and returns it as stored (CreatedAt set by
	// the store when zero, no attachments), unless the namespace's volumes
	// would then hold more than maxBytes in all (0: no limit):
	// ErrOverQuota, the count and the insert as one step. ErrNotFound when
	// the namespace does not exist, ErrConflict when it has a volume of
	// that name. A Size below 1, Replicas below 1 or other than the number
	// of Bricks, or two bricks on one host is an error that is none of the
	// sentinels.
	CreateVolume(ctx context.Context, v Volume, maxBytes int64) (Volume, error)
	GetVolume(ctx context.Context, namespace, name string) (Volume, error) // ErrNotFound
	// ListVolumes lists one namespace's volumes, or all when namespace is
	// "", sorted by namespace then name. ErrNotFound for a namespace that
	// does not exist.
	ListVolumes(ctx context.Context, namespace string) ([]Volume, error)
	// DeleteVolume forgets a volume. ErrNotFound; ErrNotEmpty while an app
	// has it attached, the error naming the apps.
	DeleteVolume(ctx context.Context, namespace, name string) error
	// AttachVolume records a.App mounting a.Volume at a.Path and returns
	// it as stored. The volume and the app are of one namespace, so
	// another namespace's volume is simply not found: ErrNotFound for a
	// missing app or volume. ErrConflict when the app has the volume
	// attached already, or another volume at that path. A relative path or
	// one over 1024 bytes is an error that is none of the sentinels.
	AttachVolume(ctx context.Context, a Attachment) (Attachment, error)
	// DetachVolume takes a volume from an app. ErrNotFound when the app
	// does not have it attached.
	DetachVolume(ctx context.Context, namespace, app, volume string) error
	// AppVolumes lists what an app has attached, sorted by path.
	// ErrNotFound when the app does not exist.
	AppVolumes(ctx context.Context, namespace, app string) ([]Attachment, error)
}
