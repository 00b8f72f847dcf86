// Package store holds Upscale's durable state behind intent-shaped methods.
// Implementations (SQLite, MariaDB) live in store/sqlstore; the shared
// behaviour suite in store/storetest.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/upscalehq/upscale/keys"
)

// Errors every implementation maps its driver errors to. Callers test them
// with errors.Is; the wrapping text names the entity for logs.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	// ErrNotEmpty: a namespace still holds apps.
	ErrNotEmpty = errors.New("not empty")
	// ErrKeyTaken and ErrKeyNameTaken tell which uniqueness a new key broke;
	// both are ErrConflict.
	ErrKeyTaken     = fmt.Errorf("key %w", ErrConflict)
	ErrKeyNameTaken = fmt.Errorf("key name %w", ErrConflict)
)

// DefaultDeployBranch is the branch whose pushes deploy unless the app says
// otherwise.
const DefaultDeployBranch = "master"

// Namespace is a tenant.
type Namespace struct {
	Name      string
	CreatedAt time.Time
	Apps      int // number of applications, filled by list and get
}

// App is an application: one bare repository, one hostname.
type App struct {
	Namespace    string
	Name         string
	DeployBranch string
	CreatedAt    time.Time
}

// Key is a registered SSH public key and what it may do.
type Key struct {
	Fingerprint string // SHA256:..., unique over all keys
	Name        string // unique within its scope: Namespace ("" for admin keys)
	Role        keys.Role
	Namespace   string // "" for admin keys
	App         string // deploy keys only
	Type        string
	PublicKey   string // authorized_keys line
	AddedBy     string // name of the principal that added it
	CreatedAt   time.Time
}

// Principal is what the key may act as.
func (k Key) Principal() keys.Principal {
	return keys.Principal{Name: k.Name, Fingerprint: k.Fingerprint, Role: k.Role, Namespace: k.Namespace, App: k.App}
}

// Push is one accepted ref update.
type Push struct {
	ID        int64
	Namespace string
	App       string
	Ref       string // refs/heads/master
	OldCommit string // 40 zeros for a new ref
	NewCommit string
	Subject   string // first line of the new commit's message
	KeyName   string // who pushed
	KeyFP     string
	At        time.Time
}

// Store is Upscale's state. Every method is one transaction.
type Store interface {
	CreateNamespace(ctx context.Context, name string) (Namespace, error) // ErrConflict
	GetNamespace(ctx context.Context, name string) (Namespace, error)    // ErrNotFound
	ListNamespaces(ctx context.Context) ([]Namespace, error)             // sorted by name
	// DeleteNamespace removes an empty namespace and its keys. ErrNotFound;
	// ErrNotEmpty while it holds apps.
	DeleteNamespace(ctx context.Context, name string) error

	// CreateApp: ErrNotFound when the namespace is missing, ErrConflict when
	// the app exists. DeployBranch starts as DefaultDeployBranch.
	CreateApp(ctx context.Context, namespace, name string) (App, error)
	GetApp(ctx context.Context, namespace, name string) (App, error) // ErrNotFound
	// ListApps lists one namespace's apps, or all when namespace is "",
	// sorted by namespace then name. ErrNotFound for a namespace that does
	// not exist.
	ListApps(ctx context.Context, namespace string) ([]App, error)
	// DeleteApp removes the app with its deploy keys and push history.
	DeleteApp(ctx context.Context, namespace, name string) error               // ErrNotFound
	SetDeployBranch(ctx context.Context, namespace, name, branch string) error // ErrNotFound

	// AddKey: ErrKeyTaken when the fingerprint is registered (to anyone),
	// ErrKeyNameTaken when the name is used in the same scope, ErrNotFound
	// when the key's namespace or app does not exist; an error too when
	// Namespace and App do not fit Role (admin: neither; namespace: a
	// Namespace only; deploy: both). CreatedAt is set by the store when zero.
	AddKey(ctx context.Context, k Key) (Key, error)
	KeyByFingerprint(ctx context.Context, fingerprint string) (Key, error) // ErrNotFound
	KeyByName(ctx context.Context, namespace, name string) (Key, error)    // ErrNotFound
	// ListKeys lists the keys the filter selects, sorted by namespace then
	// name (admin keys, with namespace "", first). ErrNotFound when
	// filter.Namespace does not exist.
	ListKeys(ctx context.Context, filter KeyFilter) ([]Key, error)
	RemoveKey(ctx context.Context, fingerprint string) error // ErrNotFound

	// RecordPush stores an accepted ref update and returns it with its ID;
	// ErrNotFound if the app is gone. At is set by the store when zero.
	RecordPush(ctx context.Context, p Push) (Push, error)
	// ListPushes returns an app's pushes, newest (by At, then ID) first, at
	// most limit, all when limit <= 0. ErrNotFound if the app does not exist.
	ListPushes(ctx context.Context, namespace, app string, limit int) ([]Push, error)

	Close() error
}

// KeyFilter selects keys for ListKeys. The zero value selects every key.
type KeyFilter struct {
	Namespace string // only this namespace's keys (members and deploy keys)
	AdminOnly bool   // only admin keys; with Namespace too, none
}
