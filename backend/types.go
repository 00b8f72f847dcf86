package backend

import (
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/store"
)

// The store's records the use cases hand out as they are: a transport
// formats them without importing the store.
type (
	Namespace   = store.Namespace
	Quota       = store.Quota
	QuotaChange = store.QuotaChange
	Release     = store.Release
	Event       = store.Event
	Domain      = store.Domain
	Push        = store.Push
)

// Release statuses, as the store records them.
const (
	ReleaseLive   = store.ReleaseLive
	ReleaseFailed = store.ReleaseFailed
)

// Limits and defaults of the release engine that transports check input
// against before they call (and say in their help).
const (
	// Web is the process type a bare count scales.
	Web = deploy.Web
	// MaxScale is the most instances of one process type.
	MaxScale = deploy.MaxScale
	// DefaultExecTimeout is how long app exec runs unless told; MaxExecTimeout the most it may be told.
	DefaultExecTimeout = deploy.DefaultExecTimeout
	MaxExecTimeout     = deploy.MaxExecTimeout
	// Retries of a pending domain's proof: every DomainRetryFast for
	// DomainFastPeriod, then every DomainRetrySlow.
	DomainRetryFast  = deploy.DomainRetryFast
	DomainFastPeriod = deploy.DomainFastPeriod
	DomainRetrySlow  = deploy.DomainRetrySlow
	// MaxLogLines is the most lines app logs shows.
	MaxLogLines = 10000
)

// ErrExecTimeout is the error of a one-off command stopped at its time
// limit.
var ErrExecTimeout = deploy.ErrExecTimeout
