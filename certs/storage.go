package certs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/upscalehq/upscale/store"
)

// Storage is a certmagic.Storage on Upscale's store, so that certificates,
// keys and ACME state live with the rest of the state and two servers on
// one store share them. Its locks are rows with a lease: the holder extends
// the lease while it works, and a server that dies leaves a lock that
// expires, which another then takes.
type Storage struct {
	st    store.CertStore
	owner string // this Storage's name on the lock rows it takes
	// lease is how long a lock outlives its holder's last refresh; poll
	// how often a blocked Lock tries again.
	lease, poll time.Duration

	mu   sync.Mutex
	held map[string]*refresher // by lock name
}

// refresher extends one held lock's lease until stopped.
type refresher struct {
	stop context.CancelFunc
	done chan struct{}
}

// halt stops the refresher and waits for it, so that no refresh in flight
// puts back a lock Unlock is about to delete.
func (r *refresher) halt() {
	r.stop()
	<-r.done
}

var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

// NewStorage returns a Storage on st with a lease of lease (0: one minute).
func NewStorage(st store.CertStore, lease time.Duration) *Storage {
	if lease <= 0 {
		lease = time.Minute
	}
	return &Storage{st: st, owner: "upscale-" + rand.Text()[:16], lease: lease,
		poll: min(lease/4, time.Second), held: map[string]*refresher{}}
}

// notExist makes the store's ErrNotFound the error certmagic looks for.
func notExist(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return err
}

func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	return s.st.PutCertData(ctx, key, value)
}

func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	e, err := s.st.GetCertData(ctx, key)
	if err != nil {
		return nil, notExist(err)
	}
	return e.Value, nil
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	return s.st.DeleteCertData(ctx, key)
}

func (s *Storage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// Stat tells a key (terminal) from a directory, a prefix of other keys.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	e, err := s.st.GetCertData(ctx, key)
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: e.Modified, Size: e.Size, IsTerminal: true}, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return certmagic.KeyInfo{}, err
	}
	under, err := s.st.ListCertData(ctx, key+"/")
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, notExist(fmt.Errorf("certificate data %q: %w", key, store.ErrNotFound))
	}
	info := certmagic.KeyInfo{Key: key}
	for _, e := range under {
		if e.Modified.After(info.Modified) {
			info.Modified = e.Modified
		}
	}
	return info, nil
}

// List names what is under dir as FileStorage does: its direct children
// (files and directories), or with recursive every file and directory
// below it.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	if dir == "" {
		prefix = ""
	}
	entries, err := s.st.ListCertData(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, notExist(fmt.Errorf("certificate data %q: %w", dir, store.ErrNotFound))
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, e := range entries {
		rest := strings.TrimPrefix(e.Key, prefix)
		parts := strings.Split(rest, "/")
		if !recursive {
			add(prefix + parts[0])
			continue
		}
		for i := range parts {
			add(prefix + strings.Join(parts[:i+1], "/"))
		}
	}
	return out, nil
}

// Lock blocks until it holds the lock or ctx ends.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for lock %q: %w", name, ctx.Err())
		case <-time.After(s.poll):
		}
	}
}

// TryLock takes the lock if it is free or expired and keeps its lease
// fresh until Unlock. The lock rows name this Storage, not the caller, so
// the callers in this process are kept apart here: a name held by one of
// them is busy for the others, as it is for other servers.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	s.mu.Lock()
	if _, busy := s.held[name]; busy {
		s.mu.Unlock()
		return false, nil
	}
	refresh, stop := context.WithCancel(context.WithoutCancel(ctx))
	r := &refresher{stop: stop, done: make(chan struct{})}
	s.held[name] = r // taken for this process while the store is asked
	s.mu.Unlock()
	ok, err := s.st.LockCert(ctx, name, s.owner, time.Now().Add(s.lease))
	if err != nil || !ok {
		stop()
		s.mu.Lock()
		delete(s.held, name)
		s.mu.Unlock()
		return false, err
	}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(s.lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-refresh.Done():
				return
			case <-tick.C:
				// A failed refresh is retried at the next tick; the
				// lease is three ticks long.
				s.st.LockCert(refresh, name, s.owner, time.Now().Add(s.lease))
			}
		}
	}()
	return true, nil
}

// RenewLockLease extends the lease, as certmagic asks between retries.
func (s *Storage) RenewLockLease(ctx context.Context, name string, lease time.Duration) error {
	ok, err := s.st.LockCert(ctx, name, s.owner, time.Now().Add(max(lease, s.lease)))
	if err == nil && !ok {
		return fmt.Errorf("lock %q is held by another server", name)
	}
	return err
}

func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	r := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if r != nil {
		r.halt()
	}
	return s.st.UnlockCert(ctx, name, s.owner)
}

func (s *Storage) String() string { return "upscale store" }
