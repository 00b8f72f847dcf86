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
	// ErrConflict: a name is taken, or (with its own text) the thing is not
	// in a state that allows the change, like a failed release activated.
	ErrConflict = errors.New("already exists")
	// ErrNotEmpty: a namespace still holds apps, or a host instances.
	ErrNotEmpty = errors.New("not empty")
	// ErrOverQuota: the change would take a namespace past one of its
	// quotas.
	ErrOverQuota = errors.New("over quota")
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
	Quota     Quota
}

// Quota is how much a namespace may hold at once. In a namespace's record
// a 0 means the operator's default; in the operator's defaults, and in a
// quota in force, it means no limit.
type Quota struct {
	Apps      int   `json:"apps"`
	Instances int   `json:"instances"` // of every process type, over all its apps
	Memory    int64 `json:"memory"`    // bytes: the sum of its instances' memory limits
	Exec      int   `json:"exec"`      // app exec containers running at once
}

// Or is the quota in force: q's own values, defaults where q has none.
func (q Quota) Or(defaults Quota) Quota {
	pick := func(own, def int64) int64 {
		if own > 0 {
			return own
		}
		return def
	}
	return Quota{
		Apps:      int(pick(int64(q.Apps), int64(defaults.Apps))),
		Instances: int(pick(int64(q.Instances), int64(defaults.Instances))),
		Memory:    pick(q.Memory, defaults.Memory),
		Exec:      int(pick(int64(q.Exec), int64(defaults.Exec))),
	}
}

// QuotaChange says which of a namespace's quotas change: a nil one stays
// as it is, a 0 goes back to the operator's default.
type QuotaChange struct {
	Apps, Instances, Exec *int
	Memory                *int64
}

// App is an application: one bare repository, one hostname.
type App struct {
	Namespace    string
	Name         string
	DeployBranch string
	// Stopped is the desired state after `app stop`: no instances run,
	// the router answers 503, until `app run`.
	Stopped bool
	// NoHTTPSRedirect keeps plain HTTP answering once the app has a
	// certificate (`app set NS/APP https-redirect off`); HSTSMaxAge, in
	// seconds, sends Strict-Transport-Security over HTTPS (0: none).
	NoHTTPSRedirect bool
	HSTSMaxAge      int64
	CreatedAt       time.Time
	// LiveVersion (0 before the first deploy) and Instances are what runs
	// of the app, read with it by GetApp and ListApps (one query for
	// app list, not two per app); the calls that change them ignore them.
	LiveVersion int
	Instances   int
}

// ReleaseStatus is where a release is in its life.
type ReleaseStatus string

const (
	ReleaseBuilding   ReleaseStatus = "building"
	ReleaseFailed     ReleaseStatus = "failed"
	ReleaseBuilt      ReleaseStatus = "built"      // artifact stored, not (yet) live
	ReleaseLive       ReleaseStatus = "live"       // what the app runs; at most one per app
	ReleaseSuperseded ReleaseStatus = "superseded" // was live before
)

// ReleaseConfig is what a release runs with, resolved when the release is
// made: app.yaml at its commit, then the app's config vars over its env.
type ReleaseConfig struct {
	Start     string            `json:"start"`
	Instances int               `json:"instances"`
	Memory    int64             `json:"memory,omitempty"`
	CPU       float64           `json:"cpu,omitempty"` // share of a core; 0 = the default
	Health    string            `json:"health,omitempty"`
	Env       map[string]string `json:"env,omitempty"` // app.yaml's env
	// Vars are the app's config vars when the release was made; they win
	// over Env.
	Vars map[string]string `json:"vars,omitempty"`
	// Processes maps a process type (web, worker, ...) to its command; nil
	// means one web process running Start.
	Processes map[string]string `json:"processes,omitempty"`
	// Formation is how many instances of each process type run; nil means
	// Instances of web.
	Formation map[string]int `json:"formation,omitempty"`
	// Note says what made the release: "push abc1234", "set FOO",
	// "rollback to v3".
	Note string `json:"note,omitempty"`
}

// Release is an immutable build of one commit plus its config: vN.
type Release struct {
	Namespace string
	App       string
	Version   int // 1, 2, ... per app, assigned by CreateRelease
	Commit    string
	Subject   string
	Author    string
	Runtime   string
	Config    ReleaseConfig
	Artifact  string // object store name; set by FinishBuild
	Digest    string // sha256 hex of the artifact
	Size      int64
	Status    ReleaseStatus
	Failure   string // why it failed, one line
	Pruned    bool   // its artifact was deleted to keep the store small
	By        string // key name of whoever caused it
	CreatedAt time.Time
}

// Domain is an app's claim on a custom hostname. It is pending until its
// owner proves control of the name in DNS, and only a verified domain is
// routed. Several apps may hold pending claims on one hostname; at most one
// has it verified.
type Domain struct {
	Hostname  string
	Namespace string
	App       string
	// Token is what a TXT record at _upscale-challenge.HOSTNAME must hold;
	// random per claim. Empty for domains routed before proofs existed.
	Token      string
	CreatedAt  time.Time
	CheckedAt  time.Time // last check; zero before the first
	VerifiedAt time.Time // zero while pending
	Failure    string    // why the last check failed, one line; "" once verified
}

// Verified says whether d is routed.
func (d Domain) Verified() bool { return !d.VerifiedAt.IsZero() }

// Event is one thing that happened to an app: who did what, when.
type Event struct {
	ID        int64
	Namespace string
	App       string
	Kind      string // push, deploy, config, scale, restart, stop, run, rollback, failure, crash, domain
	Message   string // one line
	By        string // key name, or "upscale" for the platform itself
	At        time.Time
}

// HostState is whether a host takes new containers.
type HostState string

const (
	HostActive   HostState = "active"
	HostDraining HostState = "draining" // its containers move away; nothing new lands
)

// Host is a machine that runs an upscale-agent. Whether it is up is not
// stored: it is whatever its heartbeat says now.
type Host struct {
	Name       string // its name on the bus, ^[a-z][a-z0-9-]{0,39}$
	Address    string // where the server reaches it (and routes its Subnet), unique
	Subnet     string // its containers' subnet, e.g. "10.77.3.0/24", unique
	Weight     int    // share of containers relative to other hosts, >= 1
	State      HostState
	Provider   string // "local" (the server's own box), "ssh" or "ec2"
	InstanceID string // EC2 instance id
	Region     string // EC2 region
	HostKey    string // SSH host key(s) pinned at hosts add, authorized_keys lines; "" for EC2 hosts (never connected to)
	CreatedAt  time.Time
}

// Instance is one container of an app's live release.
type Instance struct {
	Name      string // container name, unique over all instances
	Process   string // process type; "" is web
	Namespace string
	App       string
	Release   int
	Host      string
	Addr      string // "10.77.0.5:8080"
	CreatedAt time.Time
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
	// ErrNotEmpty while it holds apps or volumes.
	DeleteNamespace(ctx context.Context, name string) error
	// SetQuota changes a namespace's quotas and returns them as they are
	// after. ErrNotFound; a negative value is an error that is none of the
	// sentinels.
	SetQuota(ctx context.Context, namespace string, change QuotaChange) (Quota, error)

	// CreateApp: ErrNotFound when the namespace is missing, ErrConflict when
	// the app exists. DeployBranch starts as DefaultDeployBranch.
	CreateApp(ctx context.Context, namespace, name string) (App, error)
	// CreateAppWithin is CreateApp in a namespace that may hold at most
	// its own apps quota, else maxApps (0: no limit): ErrOverQuota when
	// it already holds that many. The count and the insert are one step,
	// so racing creates cannot both take the last place.
	CreateAppWithin(ctx context.Context, namespace, name string, maxApps int) (App, error)
	GetApp(ctx context.Context, namespace, name string) (App, error) // ErrNotFound
	// ListApps lists one namespace's apps, or all when namespace is "",
	// sorted by namespace then name. ErrNotFound for a namespace that does
	// not exist.
	ListApps(ctx context.Context, namespace string) ([]App, error)
	// DeleteApp removes the app with its deploy keys, push history,
	// releases, instances, config vars, formation, domains, events and
	// volume attachments (not the volumes).
	DeleteApp(ctx context.Context, namespace, name string) error               // ErrNotFound
	SetDeployBranch(ctx context.Context, namespace, name, branch string) error // ErrNotFound
	// SetStopped records the app's desired state only; the instances that
	// actually run change through SetInstances. ErrNotFound.
	SetStopped(ctx context.Context, namespace, name string, stopped bool) error
	// SetHTTPSRedirect and SetHSTS record the app's HTTPS policy (see App).
	SetHTTPSRedirect(ctx context.Context, namespace, name string, on bool) error // ErrNotFound
	SetHSTS(ctx context.Context, namespace, name string, maxAge int64) error     // ErrNotFound

	// SetConfig sets the app's config vars in set, then removes those in
	// unset (one that is not set is no error), all in one go, and returns
	// every var the app has after, nil when none. Names are the caller's to
	// validate: the store keeps any name, compared byte for byte, and any
	// value up to 64 KiB; a name or value that is not valid UTF-8 is an
	// error that is none of the sentinels. ErrNotFound when the app does
	// not exist.
	SetConfig(ctx context.Context, namespace, app string, set map[string]string, unset []string) (map[string]string, error)
	// GetConfig returns the app's config vars, nil when none. ErrNotFound.
	GetConfig(ctx context.Context, namespace, app string) (map[string]string, error)
	// SetFormation records how many instances of each process type the app
	// runs; nil or empty clears it. A negative count is an error that is
	// none of the sentinels. ErrNotFound.
	SetFormation(ctx context.Context, namespace, app string, formation map[string]int) error
	// GetFormation returns what SetFormation recorded, nil when nothing
	// (or nothing since it was cleared). ErrNotFound.
	GetFormation(ctx context.Context, namespace, app string) (map[string]int, error)

	// CreateRelease stores r as the app's next version (1 for its first
	// release, then the highest so far plus one), status ReleaseBuilding, and
	// returns it as stored: Version and Status set, Artifact, Digest, Size
	// and Failure cleared, Config as it reads back (an empty Env is nil),
	// CreatedAt set by the store when zero. ErrNotFound when the app does
	// not exist.
	CreateRelease(ctx context.Context, r Release) (Release, error)
	// FinishBuild records a building release's artifact and makes it built.
	// ErrNotFound; ErrConflict when the release is not building.
	FinishBuild(ctx context.Context, namespace, app string, version int, artifact, digest string, size int64) error
	// FailRelease marks a building or built release failed, with why.
	// ErrNotFound; ErrConflict in any other status.
	FailRelease(ctx context.Context, namespace, app string, version int, failure string) error
	// Activate makes a built, superseded or live release the app's live one,
	// the one live before superseded, and replaces the app's instances with
	// instances, as SetInstances does; their Release is version (filled in
	// when zero, an error when another). All or nothing. ErrNotFound;
	// ErrConflict when the release is building, failed or pruned, or an
	// instance name is taken.
	Activate(ctx context.Context, namespace, app string, version int, instances []Instance) error
	GetRelease(ctx context.Context, namespace, app string, version int) (Release, error) // ErrNotFound
	// LiveRelease: ErrNotFound when the app does not exist or has no live
	// release.
	LiveRelease(ctx context.Context, namespace, app string) (Release, error)
	// ListReleases returns an app's releases, newest (highest version)
	// first, at most limit, all when limit <= 0. ErrNotFound if the app does
	// not exist.
	ListReleases(ctx context.Context, namespace, app string, limit int) ([]Release, error)
	// PruneRelease records that a release's artifact was deleted: Pruned is
	// set, the rest of the release is kept, and it can no longer be
	// activated. Pruning a pruned release again is no error. ErrNotFound;
	// ErrConflict when the release is building or live, or instances still
	// run it.
	PruneRelease(ctx context.Context, namespace, app string, version int) error

	// SetInstances replaces the app's instances. Each instance's Namespace
	// and App are the app's (filled in when empty, an error when they name
	// another app); each needs a Name; Release must be a release of the app
	// (ErrNotFound); CreatedAt is set by the store when zero. ErrNotFound when the app does
	// not exist; ErrConflict when a name is taken, by any app's instance or
	// twice in instances.
	SetInstances(ctx context.Context, namespace, app string, instances []Instance) error
	// ListInstances lists one app's instances, one namespace's when app is
	// "", or all when both are "", sorted by namespace, app, then name; an
	// app without its namespace is an error. ErrNotFound for a namespace or
	// app that does not exist.
	ListInstances(ctx context.Context, namespace, app string) ([]Instance, error)

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

	// AddDomain records d.App's pending claim on the custom hostname
	// d.Hostname (with d.Token) and returns it as stored; CreatedAt is set
	// by the store when zero, the check fields are cleared. Another app's
	// pending claim on the hostname does not stand in the way: only a
	// verified one does. ErrConflict when another app has the hostname
	// verified, or this app already claims it, the error naming the app
	// (`domain "www.example.com": taken by acme/web`). ErrNotFound when the
	// app does not exist. Hostnames are the caller's to validate and
	// normalize (lower case, no trailing dot): the store compares them byte
	// for byte.
	AddDomain(ctx context.Context, d Domain) (Domain, error)
	// VerifyDomain marks the app's claim on hostname verified at `at` and
	// returns it; a claim verified already is returned as it is. The first
	// claim to be verified wins: ErrConflict, naming the app, when another
	// app has the hostname verified. ErrNotFound when the app has no such
	// claim.
	VerifyDomain(ctx context.Context, namespace, app, hostname string, at time.Time) (Domain, error)
	// FailDomainCheck records a failed check of the app's pending claim on
	// hostname: when, and why in one line. A verified claim stays verified
	// and is returned unchanged. ErrNotFound when the app has no such claim.
	FailDomainCheck(ctx context.Context, namespace, app, hostname string, at time.Time, why string) (Domain, error)
	// RemoveDomain takes a hostname from the app. ErrNotFound when the app
	// does not have it (another app's hostname is not found either).
	RemoveDomain(ctx context.Context, namespace, app, hostname string) error
	// ListDomains lists one app's domains, one namespace's when app is "",
	// or all when both are "", sorted by namespace, app, then hostname; an
	// app without its namespace is an error. ErrNotFound for a namespace
	// or app that does not exist.
	ListDomains(ctx context.Context, namespace, app string) ([]Domain, error)

	// RecordEvent stores e and returns it with its ID; At is set by the
	// store when zero. ErrNotFound if the app does not exist.
	RecordEvent(ctx context.Context, e Event) (Event, error)
	// ListEvents returns an app's events, newest (by At, then ID) first, at
	// most limit, all when limit <= 0. ErrNotFound if the app does not exist.
	ListEvents(ctx context.Context, namespace, app string, limit int) ([]Event, error)

	// AddHost records a host and returns it as stored; ErrConflict when its
	// name, address or subnet is taken (the error says which and by whom).
	// State defaults to HostActive and Weight to 1 when zero; CreatedAt is
	// set by the store when zero. Name, Address and Subnet are required; a
	// missing one, a Weight below 1 or an unknown State is an error that is
	// none of the sentinels.
	AddHost(ctx context.Context, h Host) (Host, error)
	GetHost(ctx context.Context, name string) (Host, error) // ErrNotFound
	ListHosts(ctx context.Context) ([]Host, error)          // sorted by name
	// SetHostWeight and SetHostState: ErrNotFound; a weight below 1 or an
	// unknown state is an error that is none of the sentinels.
	SetHostWeight(ctx context.Context, name string, weight int) error
	SetHostState(ctx context.Context, name string, state HostState) error
	// RemoveHost deletes a host record. Instances still on it (by
	// Instance.Host) are the caller's to move first: ErrNotEmpty while the
	// store has any. ErrNotFound when no such host is recorded, even if
	// instances name it.
	RemoveHost(ctx context.Context, name string) error

	CertStore
	VolumeStore

	Close() error
}

// KeyFilter selects keys for ListKeys. The zero value selects every key.
type KeyFilter struct {
	Namespace string // only this namespace's keys (members and deploy keys)
	AdminOnly bool   // only admin keys; with Namespace too, none
}
