// HTTPS: certificates installed into HAProxy without a reload.
//
// Files under DIR/tls (0700, each file 0600, written atomically):
// pending.pem (the default certificate, see pending.go), certs/NAME.pem
// (chain and key of the certificate installed under its first name),
// certs.list (HAProxy's crt-list: each file with the names it serves) and
// certs.map (each name to its certificate: the names that are live, which
// the HTTP→HTTPS redirect and HSTS depend on). The files are the truth:
// syncCerts brings the running HAProxy to them through the runtime API,
// and a HAProxy started or reloaded reads them.

package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/upscalehq/upscale/atomicfile"
	"github.com/upscalehq/upscale/certbundle"
)

// certEntry is one line of certs.list.
type certEntry struct {
	file  string // absolute, under DIR/tls/certs
	names []string
}

func (r *Router) tlsPath(name string) string { return filepath.Join(r.cfg.Dir, "tls", name) }

func (r *Router) certFile(id string) string { return r.tlsPath(filepath.Join("certs", id+".pem")) }

// errNoHTTPS refuses certificate changes to a router that listens for
// HTTP only: nothing would serve them.
var errNoHTTPS = errors.New("router: no HTTPS listener (Config.HTTPSAddr is empty)")

// prepareTLS makes the files HAProxy's configuration names: the tls
// directory, a pending certificate that is not about to expire, an empty
// crt-list the first time, certs.map from the crt-list.
func (r *Router) prepareTLS(now time.Time) error {
	if err := os.MkdirAll(r.tlsPath("certs"), 0o700); err != nil {
		return err
	}
	for _, d := range []string{r.tlsPath(""), r.tlsPath("certs")} {
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
	}
	if old, err := os.ReadFile(r.tlsPath("pending.pem")); err != nil || !pendingFresh(old, now) {
		p, err := newPendingPEM(now)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(r.tlsPath("pending.pem"), p, 0o600); err != nil {
			return err
		}
	}
	if _, err := os.Stat(r.tlsPath("certs.list")); errors.Is(err, os.ErrNotExist) {
		if err := atomicfile.Write(r.tlsPath("certs.list"), nil, 0o600); err != nil {
			return err
		}
	}
	entries, err := r.readList()
	if err != nil {
		return err
	}
	return r.writeCertFiles(entries)
}

// readList reads certs.list. Upscale writes it; anything else in it is an
// error to fix by hand, not a line to guess at.
func (r *Router) readList() ([]certEntry, error) {
	data, err := os.ReadFile(r.tlsPath("certs.list"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []certEntry
	for _, l := range nonEmptyLines(string(data)) {
		f := strings.Fields(l)
		e := certEntry{file: f[0], names: f[1:]}
		if id := strings.TrimSuffix(filepath.Base(e.file), ".pem"); e.file != r.certFile(id) || checkCertNames(e.names) != nil || certID(e.names[0]) != id {
			return nil, fmt.Errorf("%s: line %q was not written by Upscale", r.tlsPath("certs.list"), truncate(l))
		}
		out = append(out, e)
	}
	return out, nil
}

// writeCertFiles writes certs.list and certs.map for entries; certs.map
// stays empty without an HTTPS listener, so that nothing redirects to it.
func (r *Router) writeCertFiles(entries []certEntry) error {
	var list bytes.Buffer
	for _, e := range entries {
		fmt.Fprintf(&list, "%s %s\n", e.file, strings.Join(e.names, " "))
	}
	if err := writeSecret(r.tlsPath("certs.list"), list.Bytes()); err != nil {
		return err
	}
	return writeSecret(r.tlsPath("certs.map"), renderPairs(r.liveNames(entries)))
}

// liveNames maps each name with a certificate to that certificate's ID.
func (r *Router) liveNames(entries []certEntry) map[string]string {
	m := map[string]string{}
	if r.httpsBind == "" {
		return m
	}
	for _, e := range entries {
		for _, n := range e.names {
			m[n] = certID(e.names[0])
		}
	}
	return m
}

// writeSecret is atomicfile.Write (synced: certificates are state to keep)
// that leaves an unchanged file alone.
func writeSecret(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// InstallCert makes HAProxy serve pemData (the certificate chain, leaf
// first, and its private key) for names over HTTPS, without a reload, and
// writes it to disk for the next start. The certificate is installed under
// its first name: installing again under that name replaces it (a
// renewal), its names included. A name is served by one certificate only.
// Once installed, the names' HTTP requests redirect to HTTPS (unless their
// app opted out) and HSTS applies.
func (r *Router) InstallCert(ctx context.Context, names []string, pemData []byte) error {
	if r.httpsBind == "" {
		return errNoHTTPS
	}
	if err := checkCertNames(names); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	_, data, err := parseCertPEM(names, pemData, time.Now())
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := r.readList()
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	e := certEntry{file: r.certFile(certID(names[0])), names: slices.Clone(names)}
	i := slices.IndexFunc(entries, func(o certEntry) bool { return o.file == e.file })
	for _, o := range entries {
		for _, n := range names {
			if o.file != e.file && slices.Contains(o.names, n) {
				return fmt.Errorf("router: %s is served by the certificate of %s: remove that one first", n, o.names[0])
			}
		}
	}
	if i < 0 {
		entries = append(entries, e)
	} else {
		entries[i] = e
	}
	if err := writeSecret(e.file, data); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := r.writeCertFiles(entries); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := r.syncCerts(ctx); err != nil {
		return fmt.Errorf("router: certificate for %s written but not installed: %w", names[0], err)
	}
	r.cfg.Log.Info("certificate installed", "names", names)
	return nil
}

// RemoveCert stops serving the certificate installed under name (its
// first name); its names get the pending certificate, and plain HTTP
// again.
func (r *Router) RemoveCert(ctx context.Context, name string) error {
	if r.httpsBind == "" {
		return errNoHTTPS
	}
	if err := checkCertName(name); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := r.readList()
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	file := r.certFile(certID(name))
	i := slices.IndexFunc(entries, func(o certEntry) bool { return o.file == file })
	if i < 0 {
		return fmt.Errorf("router: no certificate is installed under %s", name)
	}
	entries = slices.Delete(entries, i, i+1)
	if err := r.writeCertFiles(entries); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := r.syncCerts(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := os.Remove(file); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	r.cfg.Log.Info("certificate removed", "name", name)
	return nil
}

// Cert is an installed certificate as an operator reads it.
type Cert struct {
	Names    []string // the names it is served for; it is installed under the first
	Subject  string
	Issuer   string
	NotAfter time.Time
	// Serving: the running HAProxy serves this very certificate for its
	// names (false while HAProxy is down, or after a failed install).
	Serving bool
}

// Certs lists the installed certificates, in the order they were first
// installed.
func (r *Router) Certs(ctx context.Context) ([]Cert, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries, err := r.readList()
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	var lines []crtLine
	var pid int
	if p, err := r.showProc(ctx); err == nil && p.worker != 0 && r.httpsBind != "" {
		pid = p.worker
		if lines, err = r.crtLines(ctx, pid); err != nil {
			return nil, fmt.Errorf("router: %w", err)
		}
	}
	out := []Cert{}
	for _, e := range entries {
		data, err := os.ReadFile(e.file)
		if err != nil {
			return nil, fmt.Errorf("router: %w", err)
		}
		leaf, err := certbundle.FirstCert(data)
		if err != nil {
			return nil, fmt.Errorf("router: %s: %w", e.file, err)
		}
		c := Cert{Names: e.names, Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), NotAfter: leaf.NotAfter}
		if pid != 0 && slices.ContainsFunc(lines, func(l crtLine) bool { return l.file == e.file && slices.Equal(l.names, e.names) }) {
			fp, err := r.runtimeFingerprint(ctx, pid, e.file)
			c.Serving = err == nil && fp == fingerprint(leaf.Raw)
		}
		out = append(out, c)
	}
	return out, nil
}

func (r *Router) crtLines(ctx context.Context, pid int) ([]crtLine, error) {
	out, err := r.worker(ctx, pid, "show ssl crt-list -n "+r.tlsPath("certs.list"))
	if err != nil {
		return nil, err
	}
	return parseCrtList(out)
}

func (r *Router) runtimeFingerprint(ctx context.Context, pid int, file string) (string, error) {
	out, err := r.worker(ctx, pid, "show ssl cert "+file)
	if err != nil {
		return "", err
	}
	return parseCertFingerprint(out)
}
