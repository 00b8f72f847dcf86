package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// NewKey is a key to add: a member of Namespace, a deploy key of
// Namespace/App, or an admin key (Role keys.RoleAdmin, no namespace).
type NewKey struct {
	Name      string
	Role      keys.Role
	Namespace string
	App       string
	// Text is the public key as OpenSSH writes it.
	Text string
}

// AddKey adds a key for who, recorded as added by who.
func (b *Backend) AddKey(ctx context.Context, who keys.Principal, nk NewKey) (store.Key, error) {
	k := store.Key{Name: nk.Name, Role: nk.Role, Namespace: nk.Namespace, App: nk.App, AddedBy: who.Name}
	if err := names.Check("key", nk.Name); err != nil {
		return k, err
	}
	var err error
	switch nk.Role {
	case keys.RoleAdmin:
		if nk.Namespace != "" || nk.App != "" {
			return k, errors.New("--admin keys belong to no namespace or app; drop --namespace/--app")
		}
		err = allow(who, keys.KeysAddAdmin, keys.Target{}, "", "keys add")
	case keys.RoleDeploy:
		app := names.App{Namespace: nk.Namespace, Name: nk.App}
		if err := checkApp(app); err != nil {
			return k, err
		}
		err = allow(who, keys.KeysAdd, keys.Target{Namespace: app.Namespace}, appNotFound(app), "")
	case keys.RoleNamespace:
		if nk.App != "" {
			return k, errors.New("a namespace key has no app; make it a deploy key")
		}
		if err := names.Check("namespace", nk.Namespace); err != nil {
			return k, err
		}
		err = allow(who, keys.KeysAdd, keys.Target{Namespace: nk.Namespace}, namespaceNotFound(nk.Namespace), "")
	default:
		return k, fmt.Errorf("a key is an admin, namespace or deploy key, not %s", names.Quote(string(nk.Role)))
	}
	if err != nil {
		return k, err
	}
	p, err := keys.Parse(nk.Text)
	if err != nil {
		return k, err
	}
	k.Fingerprint, k.Type, k.PublicKey = p.Fingerprint, p.Type, p.Line
	added, err := b.cfg.Store.AddKey(ctx, k)
	switch {
	case errors.Is(err, store.ErrKeyTaken):
		return k, fmt.Errorf("key %s is already registered; one key acts for one principal only", p.Fingerprint)
	case errors.Is(err, store.ErrKeyNameTaken):
		return k, fmt.Errorf("a key named %s already exists %s", k.Name, ScopeText(k))
	case errors.Is(err, store.ErrNotFound) && k.App != "":
		return k, errors.New(appNotFound(names.App{Namespace: k.Namespace, Name: k.App}))
	case errors.Is(err, store.ErrNotFound):
		return k, errors.New(namespaceNotFound(k.Namespace))
	}
	return added, err
}

// ScopeText says what a key is for: "to namespace acme", "as a deploy
// key of acme/web", "as an admin key".
func ScopeText(k store.Key) string {
	switch k.Role {
	case keys.RoleAdmin:
		return "as an admin key"
	case keys.RoleDeploy:
		return fmt.Sprintf("as a deploy key of %s/%s", k.Namespace, k.App)
	}
	return "to namespace " + k.Namespace
}

// ListKeys lists namespace's keys, or every key when namespace is ""
// (admins).
func (b *Backend) ListKeys(ctx context.Context, who keys.Principal, namespace string) ([]store.Key, error) {
	if namespace != "" {
		if err := names.Check("namespace", namespace); err != nil {
			return nil, err
		}
		if err := allow(who, keys.KeysList, keys.Target{Namespace: namespace}, namespaceNotFound(namespace), ""); err != nil {
			return nil, err
		}
		if _, err := b.cfg.Store.GetNamespace(ctx, namespace); errors.Is(err, store.ErrNotFound) {
			return nil, errors.New(namespaceNotFound(namespace))
		}
	} else if err := allow(who, keys.KeysList, keys.Target{}, "", "keys list"); err != nil {
		return nil, err
	}
	return b.cfg.Store.ListKeys(ctx, store.KeyFilter{Namespace: namespace})
}

// RemoveKey removes the key ref names: a fingerprint (SHA256:...), or a
// key name in namespace (for admins, "" looks the name up over every key
// and wants it unique). To who may not remove it, a key that exists reads
// exactly like one that does not.
func (b *Backend) RemoveKey(ctx context.Context, who keys.Principal, ref, namespace string) (store.Key, error) {
	k, err := b.findKey(ctx, who, ref, namespace)
	if err != nil {
		return store.Key{}, err
	}
	if k == nil {
		return store.Key{}, errors.New(keyNotFound(ref))
	}
	if k.Role == keys.RoleAdmin {
		err = allow(who, keys.KeysAddAdmin, keys.Target{}, keyNotFound(ref), "")
	} else {
		err = allow(who, keys.KeysRemove, keys.Target{Namespace: k.Namespace}, keyNotFound(ref), "")
	}
	if err != nil {
		return store.Key{}, err
	}
	if err := b.cfg.Store.RemoveKey(ctx, k.Fingerprint); err != nil {
		return store.Key{}, notFound(err, keyNotFound(ref))
	}
	return *k, nil
}

// findKey looks a key up by fingerprint, or by name in ns; nil when there
// is none.
func (b *Backend) findKey(ctx context.Context, who keys.Principal, ref, ns string) (*store.Key, error) {
	if strings.HasPrefix(ref, "SHA256:") {
		k, err := b.cfg.Store.KeyByFingerprint(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return &k, err
	}
	if err := names.Check("key", ref); err != nil {
		return nil, err
	}
	if ns != "" {
		if err := names.Check("namespace", ns); err != nil {
			return nil, err
		}
	}
	if ns != "" || who.Role != keys.RoleAdmin {
		k, err := b.cfg.Store.KeyByName(ctx, ns, ref)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return &k, err
	}
	all, err := b.cfg.Store.ListKeys(ctx, store.KeyFilter{})
	if err != nil {
		return nil, err
	}
	var found []store.Key
	var where []string
	for _, k := range all {
		if k.Name == ref {
			found = append(found, k)
			ns := k.Namespace
			if ns == "" {
				ns = "-" // an admin key, as keys list shows it
			}
			where = append(where, ns)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return &found[0], nil
	}
	return nil, fmt.Errorf("key name %s is used in several namespaces (%s); add --namespace NS or give the fingerprint", ref, strings.Join(where, ", "))
}
