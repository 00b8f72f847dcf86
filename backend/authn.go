package backend

import (
	"context"
	"errors"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/store"
)

// ErrUnknownKey is a key that is not registered (or no longer is).
var ErrUnknownKey = errors.New("unknown key")

// Authenticator says who a key is. It comes before any use case, since
// it is what makes the actor, so it is not one of Backend's methods (which
// all take an actor).
type Authenticator struct{ st store.Store }

// NewAuthenticator looks keys up in st.
func NewAuthenticator(st store.Store) *Authenticator { return &Authenticator{st: st} }

// Authenticate is who key is, when it is registered as it is: the
// fingerprint alone does not do, the registered key must be the same.
func (a *Authenticator) Authenticate(ctx context.Context, key gossh.PublicKey) (keys.Principal, error) {
	k, err := a.st.KeyByFingerprint(ctx, gossh.FingerprintSHA256(key))
	if err != nil {
		return keys.Principal{}, ErrUnknownKey
	}
	if p, err := keys.Parse(k.PublicKey); err != nil || string(p.Key.Marshal()) != string(key.Marshal()) {
		return keys.Principal{}, ErrUnknownKey
	}
	return k.Principal(), nil
}

// Principal is who the key of fingerprint fp is now: read afresh, so a key
// removed since a connection authenticated acts no more.
func (a *Authenticator) Principal(ctx context.Context, fp string) (keys.Principal, error) {
	k, err := a.st.KeyByFingerprint(ctx, fp)
	if err != nil {
		return keys.Principal{}, err
	}
	return k.Principal(), nil
}
