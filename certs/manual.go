package certs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/upscalehq/upscale/certbundle"
	"github.com/upscalehq/upscale/store"
)

// CheckName says, in one line, why name cannot have a certificate: it must
// be a lower-case DNS name of two labels or more, or a wildcard "*." over
// one of three labels or more (never "*.com"-like).
func CheckName(name string) error {
	host, wildcard := strings.CutPrefix(name, "*.")
	labels := strings.Split(host, ".")
	switch {
	case name == "":
		return errors.New("empty hostname")
	case len(name) > 253:
		return fmt.Errorf("hostname of %d characters, over 253", len(name))
	case len(labels) < 2:
		return fmt.Errorf("%q: a certificate needs a name with a dot in it", name)
	case wildcard && len(labels) < 3:
		return fmt.Errorf("%q: a wildcard needs at least two labels after its *", name)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not a valid hostname (label %q)", name, l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a valid lower-case hostname (character %q)", name, c)
			}
		}
	}
	return nil
}

// manualPrefix is where a certificate brought for name is kept.
func manualPrefix(name string) string {
	return "upscale/manual/" + certmagic.StorageKeys.Safe(name)
}

func (e *Engine) manual(ctx context.Context, name string) (*certbundle.Bundle, error) {
	chain, err := e.storage.Load(ctx, manualPrefix(name)+"/chain.pem")
	if err != nil {
		return nil, err
	}
	key, err := e.storage.Load(ctx, manualPrefix(name)+"/key.pem")
	if err != nil {
		return nil, err
	}
	b, err := certbundle.Parse(append(append(chain, '\n'), key...))
	if err != nil {
		return nil, fmt.Errorf("certificate added for %s: %w", name, err)
	}
	return b, nil
}

// AddCert installs a certificate a user brings for name (`certs add`):
// pem holds the chain, leaf first, and its private key. It must match its
// key, be valid now and cover name; otherwise nothing changes and the
// error is one line saying what is wrong. It wins over any issuer until
// RemoveCert, and is managed from then on (name is asked for if it was
// not).
func (e *Engine) AddCert(ctx context.Context, name string, pem []byte) (Cert, error) {
	if err := CheckName(name); err != nil {
		return Cert{}, err
	}
	b, err := certbundle.Parse(pem)
	if err != nil {
		return Cert{}, err
	}
	if err := b.Check(name, time.Now()); err != nil {
		return Cert{}, err
	}
	// The key first: a chain without its key is not loaded.
	if err := e.storage.Store(ctx, manualPrefix(name)+"/key.pem", b.KeyPEM); err != nil {
		return Cert{}, err
	}
	if err := e.storage.Store(ctx, manualPrefix(name)+"/chain.pem", b.ChainPEM); err != nil {
		return Cert{}, err
	}
	e.mu.Lock()
	s := e.names[name]
	if s == nil {
		s = &nameState{}
		e.names[name] = s
	}
	s.next = time.Now().Add(e.opts.CheckInterval)
	e.mu.Unlock()
	if err := e.st.SetCertStatus(ctx, store.CertStatus{Name: name, Issuer: IssuerManual, State: store.CertLive,
		NotAfter: b.Leaf().NotAfter, NextTry: s.next}); err != nil {
		return Cert{}, err
	}
	e.deliver(name, IssuerManual, b)
	return Cert{Name: name, Issuer: IssuerManual, ChainPEM: b.ChainPEM, KeyPEM: PrivateKeyPEM(b.KeyPEM), NotAfter: b.Leaf().NotAfter}, nil
}

// RemoveCert takes back a certificate brought for name; the name's issuer
// takes over at once. ErrNotFound when none was brought.
func (e *Engine) RemoveCert(ctx context.Context, name string) error {
	if !e.storage.Exists(ctx, manualPrefix(name)) {
		return fmt.Errorf("%s: no certificate was added for it: %w", name, store.ErrNotFound)
	}
	if err := e.storage.Delete(ctx, manualPrefix(name)); err != nil {
		return err
	}
	if err := e.st.SetCertStatus(ctx, store.CertStatus{Name: name, Issuer: e.issuerName(name), State: store.CertPending}); err != nil {
		return err
	}
	e.mu.Lock()
	if s := e.names[name]; s != nil {
		s.next, s.delivered = time.Time{}, [32]byte{}
	}
	e.mu.Unlock()
	e.poke()
	return nil
}
