package certs

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

// openStore is a new SQLite store, closed when t ends.
func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "upscale.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestStorageFiles(t *testing.T) {
	ctx := t.Context()
	s := NewStorage(openStore(t), 0)
	for _, k := range []string{"certificates/ca/a.com/a.com.crt", "certificates/ca/a.com/a.com.key", "certificates/ca/b.com/b.com.crt", "acme/ca/users/x/key"} {
		if err := s.Store(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Load(ctx, "certificates/ca/a.com/a.com.key"); err != nil || string(v) != "v:certificates/ca/a.com/a.com.key" {
		t.Errorf("Load: %q, %v", v, err)
	}
	if _, err := s.Load(ctx, "certificates/ca/c.com/c.com.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing key: %v, want fs.ErrNotExist (what certmagic checks)", err)
	}
	if !s.Exists(ctx, "certificates/ca/a.com") || !s.Exists(ctx, "certificates/ca/a.com/a.com.crt") || s.Exists(ctx, "certificates/ca/a") {
		t.Error("Exists: want true for a directory and a file, false for a prefix that is neither")
	}
	if info, err := s.Stat(ctx, "certificates/ca"); err != nil || info.IsTerminal || info.Modified.IsZero() {
		t.Errorf("Stat of a directory: %+v, %v", info, err)
	}
	if info, err := s.Stat(ctx, "acme/ca/users/x/key"); err != nil || !info.IsTerminal || info.Size != int64(len("v:acme/ca/users/x/key")) {
		t.Errorf("Stat of a file: %+v, %v", info, err)
	}
	if _, err := s.Stat(ctx, "nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of nothing: %v", err)
	}

	list, err := s.List(ctx, "certificates", false)
	if want := []string{"certificates/ca"}; err != nil || !slices.Equal(list, want) {
		t.Errorf("List: %q, %v; want %q", list, err, want)
	}
	list, err = s.List(ctx, "certificates/ca", false)
	if want := []string{"certificates/ca/a.com", "certificates/ca/b.com"}; err != nil || !slices.Equal(list, want) {
		t.Errorf("List: %q, %v; want %q", list, err, want)
	}
	list, err = s.List(ctx, "certificates", true)
	want := []string{"certificates/ca", "certificates/ca/a.com", "certificates/ca/a.com/a.com.crt",
		"certificates/ca/a.com/a.com.key", "certificates/ca/b.com", "certificates/ca/b.com/b.com.crt"}
	if err != nil || !slices.Equal(list, want) {
		t.Errorf("recursive List: %q, %v; want %q", list, err, want)
	}

	if err := s.Delete(ctx, "certificates/ca/a.com"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/a.com/a.com.key") || !s.Exists(ctx, "certificates/ca/b.com/b.com.crt") {
		t.Error("Delete of a directory: want its files gone, its siblings kept")
	}
	if err := s.Delete(ctx, "certificates/ca/a.com"); err != nil {
		t.Errorf("Delete of nothing: %v", err)
	}
}

func TestStorageLocksAcrossServers(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	// Two servers on one store; a short lease so that a dead holder's
	// lock is taken over within the test.
	a, b := NewStorage(st, 600*time.Millisecond), NewStorage(st, 600*time.Millisecond)
	if err := a.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_x"); err != nil || ok {
		t.Fatalf("b took a's lock: %v, %v", ok, err)
	}
	// a keeps its lease fresh: after several leases b still cannot take it.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.Lock(short, "issue_cert_x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b.Lock while a holds and refreshes the lock: %v, want it to wait until its deadline", err)
	}
	// Unlock hands it over.
	unlocked := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		unlocked <- a.Unlock(ctx, "issue_cert_x")
	}()
	if err := b.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	if err := <-unlocked; err != nil {
		t.Fatal(err)
	}

	// b dies holding it: its refresher stops, the row stays, and a takes
	// the lock once the lease is over.
	b.mu.Lock()
	r := b.held["issue_cert_x"]
	delete(b.held, "issue_cert_x")
	b.mu.Unlock()
	r.halt()
	if ok, _ := a.TryLock(ctx, "issue_cert_x"); ok {
		t.Fatal("a took the lock before b's lease ended")
	}
	if err := a.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_x"); err != nil || !ok {
		t.Fatalf("the lock after a's Unlock: %v, %v; want it free", ok, err)
	}
	b.Unlock(ctx, "issue_cert_x")
}

// TestStorageLocksWithinServer is the regression test of two obtains in
// one server both "holding" a lock: the rows name the Storage, so they
// once both got it, and two ACME accounts were registered at once, one
// key overwriting the other's (Pebble: "JWS verification error").
func TestStorageLocksWithinServer(t *testing.T) {
	ctx := t.Context()
	s := NewStorage(openStore(t), 0)
	if err := s.Lock(ctx, "register_acme_account"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TryLock(ctx, "register_acme_account"); err != nil || ok {
		t.Fatalf("a second caller in the same server took a held lock: %v, %v", ok, err)
	}
	got := make(chan error, 1)
	go func() { got <- s.Lock(ctx, "register_acme_account") }()
	select {
	case err := <-got:
		t.Fatalf("Lock returned while another caller held the lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := s.Unlock(ctx, "register_acme_account"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(ctx, "register_acme_account"); err != nil {
		t.Fatal(err)
	}
}
