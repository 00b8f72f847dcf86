package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/store"
)

var certTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"CertData", testCertData},
	{"CertDataErrors", testCertDataErrors},
	{"CertLocks", testCertLocks},
	{"ConcurrentLockCert", testConcurrentLockCert},
	{"CertStatus", testCertStatus},
	{"CertIssues", testCertIssues},
	{"ConcurrentReserveCertIssue", testConcurrentReserveCertIssue},
}

func certKeys(list []store.CertEntry) []string {
	var out []string
	for _, e := range list {
		out = append(out, e.Key)
	}
	return out
}

func testCertData(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	// Binary values, with bytes that are not UTF-8, come back unchanged.
	binary := []byte{0, 0xff, 0xfe, '\n', 'k'}
	for _, kv := range []struct {
		k string
		v []byte
	}{
		{"certificates/ca/a.example.com/a.example.com.crt", []byte("-----BEGIN CERTIFICATE-----\n")},
		{"certificates/ca/a.example.com/a.example.com.key", binary},
		{"certificates/ca/a.example.com.bak", []byte("sibling, not a child")},
		{"certificates/ca/a.example.com/sub/deep.json", []byte("{}")},
		{"acme/ca/users/é@example.com/key", []byte("k")},
		{"empty", nil},
	} {
		must(0, s.PutCertData(ctx, kv.k, kv.v))(t)
	}
	got := must(s.GetCertData(ctx, "certificates/ca/a.example.com/a.example.com.key"))(t)
	if !bytes.Equal(got.Value, binary) || got.Size != int64(len(binary)) {
		t.Errorf("binary value: %q (size %d), want %q", got.Value, got.Size, binary)
	}
	recent(t, "Modified", got.Modified, before)
	if e := must(s.GetCertData(ctx, "empty"))(t); e.Value == nil || len(e.Value) != 0 || e.Size != 0 {
		t.Errorf("empty value: %+v", e)
	}

	// Overwriting replaces the value.
	must(0, s.PutCertData(ctx, "certificates/ca/a.example.com/a.example.com.crt", []byte("new")))(t)
	if v := must(s.GetCertData(ctx, "certificates/ca/a.example.com/a.example.com.crt"))(t).Value; string(v) != "new" {
		t.Errorf("after overwrite: %q", v)
	}

	equal(t, "list under a prefix", certKeys(must(s.ListCertData(ctx, "certificates/ca/a.example.com/"))(t)), []string{
		"certificates/ca/a.example.com/a.example.com.crt",
		"certificates/ca/a.example.com/a.example.com.key",
		"certificates/ca/a.example.com/sub/deep.json",
	})
	list := must(s.ListCertData(ctx, ""))(t)
	equal(t, "list all", len(list), 6)
	for _, e := range list {
		if e.Value != nil {
			t.Errorf("ListCertData returned the value of %s", e.Key)
		}
	}
	equal(t, "list a prefix that is not a directory", certKeys(must(s.ListCertData(ctx, "acme/ca/users/é"))(t)),
		[]string{"acme/ca/users/é@example.com/key"})
	equal(t, "list a prefix with nothing", len(must(s.ListCertData(ctx, "nothing/"))(t)), 0)

	// Deleting a directory takes what is under it, not its siblings that
	// share its name as a prefix.
	must(0, s.DeleteCertData(ctx, "certificates/ca/a.example.com"))(t)
	equal(t, "after deleting a directory", certKeys(must(s.ListCertData(ctx, "certificates/"))(t)),
		[]string{"certificates/ca/a.example.com.bak"})
	must(0, s.DeleteCertData(ctx, "certificates/ca/a.example.com.bak"))(t)
	must(0, s.DeleteCertData(ctx, "certificates/ca/a.example.com.bak"))(t) // nothing there: no error
	_, err := s.GetCertData(ctx, "certificates/ca/a.example.com.bak")
	checkError(t, err, store.ErrNotFound, "a.example.com.bak")
}

func testCertDataErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(0, s.PutCertData(ctx, "kept", []byte("v")))(t)
	for _, key := range []string{"", "/abs", "dir/", "bad\xffutf8", "nul\x00", strings.Repeat("k", 1025)} {
		if err := s.PutCertData(ctx, key, []byte("x")); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("PutCertData(%q): %v, want a one-line error", key, err)
		}
	}
	if err := s.PutCertData(ctx, "big", make([]byte, 1<<20+1)); err == nil {
		t.Error("a value over 1 MiB was stored")
	}
	if err := s.DeleteCertData(ctx, ""); err == nil {
		t.Error("DeleteCertData(\"\") took no error: it could empty everything")
	}
	equal(t, "after refused calls", certKeys(must(s.ListCertData(ctx, ""))(t)), []string{"kept"})
}

func testCertLocks(t *testing.T, s store.Store) {
	ctx := t.Context()
	later := time.Now().Add(time.Hour)
	lock := func(name, owner string, until time.Time) bool {
		t.Helper()
		return must(s.LockCert(ctx, name, owner, until))(t)
	}
	if !lock("issue_cert_a", "server-1", later) {
		t.Fatal("a free lock was not taken")
	}
	if lock("issue_cert_a", "server-2", later) {
		t.Fatal("a held lock was taken by another owner")
	}
	if !lock("issue_cert_b", "server-2", later) {
		t.Fatal("another name's lock is independent")
	}
	if !lock("issue_cert_a", "server-1", later.Add(time.Hour)) {
		t.Fatal("the holder could not extend its lease")
	}
	must(0, s.UnlockCert(ctx, "issue_cert_a", "server-2"))(t) // not its lock: left alone
	if lock("issue_cert_a", "server-2", later) {
		t.Fatal("UnlockCert by a non-owner released the lock")
	}
	must(0, s.UnlockCert(ctx, "issue_cert_a", "server-1"))(t)
	if !lock("issue_cert_a", "server-2", later) {
		t.Fatal("a released lock was not taken")
	}
	// A holder that died leaves an expired lease behind: it is taken.
	if !lock("issue_cert_c", "dead", time.Now().Add(-time.Second)) {
		t.Fatal("a free lock was not taken")
	}
	if !lock("issue_cert_c", "server-1", later) {
		t.Fatal("an expired lock was not taken over")
	}
	if lock("issue_cert_c", "dead", later) {
		t.Fatal("the dead holder got its lock back")
	}
	must(0, s.UnlockCert(ctx, "never-locked", "server-1"))(t)
}

func testConcurrentLockCert(t *testing.T, s store.Store) {
	ctx := t.Context()
	// An expired lock, for everyone to race for.
	must(s.LockCert(ctx, "issue_cert_x", "dead", time.Now().Add(-time.Second)))(t)
	errs := race(10, func(i int) error {
		got, err := s.LockCert(ctx, "issue_cert_x", fmt.Sprintf("server-%d", i), time.Now().Add(time.Hour))
		if err == nil && !got {
			return store.ErrConflict
		}
		return err
	})
	oneWins(t, errs, store.ErrConflict)
}

func testCertStatus(t *testing.T, s store.Store) {
	ctx := t.Context()
	equal(t, "no status", len(must(s.ListCertStatus(ctx))(t)), 0)
	at := time.Unix(1700000000, 123).UTC()
	live := store.CertStatus{Name: "web.acme.example.com", Issuer: "acme", State: store.CertLive,
		NotAfter: at.Add(90 * 24 * time.Hour), UpdatedAt: at}
	failed := store.CertStatus{Name: "*.acme.example.com", Issuer: "acme", State: store.CertFailed,
		LastError: "the CA said no\nfor a reason " + strings.Repeat("x", 2000), Failures: 3, NextTry: at.Add(time.Hour), UpdatedAt: at}
	must(0, s.SetCertStatus(ctx, live))(t)
	must(0, s.SetCertStatus(ctx, failed))(t)
	list := must(s.ListCertStatus(ctx))(t)
	if len(list) != 2 {
		t.Fatalf("%d statuses, want 2", len(list))
	}
	// Sorted by name: "*" sorts before letters.
	if got := list[0]; got.Name != failed.Name || strings.Contains(got.LastError, "\n") ||
		!strings.HasPrefix(got.LastError, "the CA said no") || len(got.LastError) > 1024 ||
		got.Failures != 3 || !got.NextTry.Equal(failed.NextTry) || !got.NotAfter.IsZero() {
		t.Errorf("failed status read back as %+v", got)
	}
	equal(t, "live status", list[1], live)

	// Set replaces.
	live.State, live.LastError, live.UpdatedAt = store.CertFailed, "renewal failed", time.Time{}
	before := time.Now()
	must(0, s.SetCertStatus(ctx, live))(t)
	got := must(s.ListCertStatus(ctx))(t)[1]
	recent(t, "UpdatedAt", got.UpdatedAt, before)
	live.UpdatedAt = got.UpdatedAt
	equal(t, "replaced status", got, live)

	must(0, s.DeleteCertStatus(ctx, live.Name))(t)
	checkError(t, s.DeleteCertStatus(ctx, live.Name), store.ErrNotFound, live.Name)
	equal(t, "after delete", len(must(s.ListCertStatus(ctx))(t)), 1)
}

func testCertIssues(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now()
	week := now.Add(-7 * 24 * time.Hour)
	// An order older than the window does not count.
	must(s.ReserveCertIssue(ctx, "example.com", "old.example.com", week.Add(-time.Minute), week.Add(-time.Hour), 2))(t)
	first := must(s.ReserveCertIssue(ctx, "example.com", "a.example.com", now, week, 2))(t)
	must(s.ReserveCertIssue(ctx, "example.com", "b.example.com", now, week, 2))(t)
	_, err := s.ReserveCertIssue(ctx, "example.com", "c.example.com", now, week, 2)
	if !errors.Is(err, store.ErrOverQuota) || !strings.Contains(err.Error(), "example.com") {
		t.Fatalf("a third order under a quota of 2: %v, want ErrOverQuota naming the domain", err)
	}
	must(s.ReserveCertIssue(ctx, "example.org", "a.example.org", now, week, 2))(t) // another domain
	equal(t, "orders in the window", must(s.CountCertIssues(ctx, "example.com", week))(t), 2)

	// A failed order gives its place back.
	must(0, s.CancelCertIssue(ctx, first))(t)
	must(0, s.CancelCertIssue(ctx, first))(t)
	equal(t, "after cancel", must(s.CountCertIssues(ctx, "example.com", week))(t), 1)
	must(s.ReserveCertIssue(ctx, "example.com", "c.example.com", now, week, 2))(t)
	if _, err := s.ReserveCertIssue(ctx, "example.com", "c.example.com", now, week, 0); err == nil || errors.Is(err, store.ErrOverQuota) {
		t.Errorf("a quota of 0: %v, want an error that is not ErrOverQuota", err)
	}
}

func testConcurrentReserveCertIssue(t *testing.T, s store.Store) {
	ctx := t.Context()
	const max = 3
	now := time.Now()
	errs := race(10, func(i int) error {
		_, err := s.ReserveCertIssue(ctx, "example.com", fmt.Sprintf("h%d.example.com", i), now, now.Add(-time.Hour), max)
		return err
	})
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrOverQuota):
			t.Errorf("call %d: %v", i, err)
		}
	}
	if won != max {
		t.Errorf("%d orders reserved at once under a quota of %d", won, max)
	}
	equal(t, "orders", must(s.CountCertIssues(ctx, "example.com", now.Add(-time.Hour)))(t), max)
}
