package store

import (
	"context"
	"time"
)

// CertEntry is one entry of the certificate engine's key-value space: ACME
// accounts, certificates, their private keys and metadata, the internal
// CA, challenge tokens. Keys are slash-separated paths, as certmagic makes
// them ("certificates/CA/NAME/NAME.crt").
type CertEntry struct {
	Key      string
	Value    []byte // nil in ListCertData's answer
	Size     int64
	Modified time.Time
}

// CertState is where a name's certificate is.
type CertState string

const (
	CertPending  CertState = "pending"   // asked for, none obtained yet
	CertLive     CertState = "live"      // a valid certificate is installed
	CertFailed   CertState = "failed"    // the last attempt failed; retried later
	CertHeldBack CertState = "held-back" // the CA's weekly quota is half spent; retried later
)

// CertStatus is what the engine says about one name, for `certs list`.
type CertStatus struct {
	Name      string // hostname or wildcard ("*.acme.example.com")
	Issuer    string // "acme", "internal", "manual"; "" before the first attempt
	State     CertState
	NotAfter  time.Time // the live certificate's expiry; zero when none
	LastError string    // one line; "" when the last attempt worked
	Failures  int       // attempts failed in a row
	NextTry   time.Time // when the engine tries again; zero when nothing is planned
	UpdatedAt time.Time
}

// CertStore is the part of the store the certificate engine uses. Two
// servers sharing a store share certificates, locks, status and the CA
// quota through it.
type CertStore interface {
	// PutCertData creates or replaces the entry at key. Keys are non-empty
	// UTF-8 paths of at most 1024 bytes, neither starting nor ending with
	// "/"; values at most 1 MiB. Anything else is an error that is none of
	// the sentinels.
	PutCertData(ctx context.Context, key string, value []byte) error
	// GetCertData returns the entry at key. ErrNotFound.
	GetCertData(ctx context.Context, key string) (CertEntry, error)
	// ListCertData lists, without their values, the entries whose keys
	// start with prefix ("" lists all), sorted by key.
	ListCertData(ctx context.Context, prefix string) ([]CertEntry, error)
	// DeleteCertData removes the entry at key and every entry under
	// key + "/". Nothing there is no error.
	DeleteCertData(ctx context.Context, key string) error

	// LockCert takes the named lock for owner until `until`, and says
	// whether it did: a lock held by another owner is taken only once it
	// has expired (its holder died or stopped refreshing it). The holder
	// calls it again to extend its lease.
	LockCert(ctx context.Context, name, owner string, until time.Time) (bool, error)
	// UnlockCert releases owner's lock; a lock owner does not hold (any
	// more) is left alone and is no error.
	UnlockCert(ctx context.Context, name, owner string) error

	// SetCertStatus creates or replaces the status of st.Name; UpdatedAt is
	// set by the store when zero.
	SetCertStatus(ctx context.Context, st CertStatus) error
	// ListCertStatus lists every name's status, sorted by name.
	ListCertStatus(ctx context.Context) ([]CertStatus, error)
	// DeleteCertStatus forgets a name. ErrNotFound.
	DeleteCertStatus(ctx context.Context, name string) error

	// ReserveCertIssue records an order for name under the registered
	// domain, at `at`, and returns its id, unless the domain already has
	// max orders at or after since: then ErrOverQuota. The count and the
	// insert are one step, so two servers cannot both take the last place.
	ReserveCertIssue(ctx context.Context, domain, name string, at, since time.Time, max int) (int64, error)
	// CancelCertIssue gives a reservation back (the order failed and the
	// CA counted no certificate). An unknown id is no error.
	CancelCertIssue(ctx context.Context, id int64) error
	// CountCertIssues counts the domain's orders at or after since.
	CountCertIssues(ctx context.Context, domain string, since time.Time) (int, error)
}
