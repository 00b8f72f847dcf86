package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// NotEmptyError refuses to delete a namespace that still has apps.
type NotEmptyError struct{ Namespace string }

func (e *NotEmptyError) Error() string {
	return fmt.Sprintf("namespace %s still has apps; delete them first", e.Namespace)
}

func (e *NotEmptyError) Unwrap() error { return store.ErrNotEmpty }

// CreateNamespace creates namespace name (admins).
func (b *Backend) CreateNamespace(ctx context.Context, who keys.Principal, name string) (store.Namespace, error) {
	if err := names.Check("namespace", name); err != nil {
		return store.Namespace{}, err
	}
	if err := allow(who, keys.NamespaceCreate, keys.Target{Namespace: name}, "", "namespace create"); err != nil {
		return store.Namespace{}, err
	}
	if err := names.Reserved(name); err != nil {
		return store.Namespace{}, err
	}
	n, err := b.cfg.Store.CreateNamespace(ctx, name)
	if errors.Is(err, store.ErrConflict) {
		return n, fmt.Errorf("namespace %s already exists", name)
	}
	return n, err
}

// ListNamespaces lists the namespaces who may see: all of them for
// admins, their own for members.
func (b *Backend) ListNamespaces(ctx context.Context, who keys.Principal) ([]store.Namespace, error) {
	if err := allow(who, keys.NamespaceList, keys.Target{}, "", "namespace list"); err != nil {
		return nil, err
	}
	all, err := b.cfg.Store.ListNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	seen := []store.Namespace{}
	for _, n := range all {
		if who.Role == keys.RoleAdmin || n.Name == who.Namespace {
			seen = append(seen, n)
		}
	}
	return seen, nil
}

// DeleteNamespace deletes an empty namespace and its keys (admins).
func (b *Backend) DeleteNamespace(ctx context.Context, who keys.Principal, name string) error {
	if err := names.Check("namespace", name); err != nil {
		return err
	}
	if err := allow(who, keys.NamespaceDelete, keys.Target{Namespace: name}, "", "namespace delete"); err != nil {
		return err
	}
	err := b.cfg.Store.DeleteNamespace(ctx, name)
	if errors.Is(err, store.ErrNotEmpty) {
		return &NotEmptyError{Namespace: name}
	}
	return notFound(err, namespaceNotFound(name))
}

// NamespaceUsage is a namespace with its quotas and what it uses of them.
type NamespaceUsage struct {
	Namespace store.Namespace
	// Own is what the namespace set (0: the default), InForce what
	// applies (0: no limit), Use what it holds now.
	Own, InForce, Use store.Quota
}

// NamespaceInfo is namespace name's quotas and what it uses of them.
func (b *Backend) NamespaceInfo(ctx context.Context, who keys.Principal, name string) (NamespaceUsage, error) {
	var u NamespaceUsage
	if err := names.Check("namespace", name); err != nil {
		return u, err
	}
	if err := allow(who, keys.NamespaceInfo, keys.Target{Namespace: name}, namespaceNotFound(name), ""); err != nil {
		return u, err
	}
	n, err := b.cfg.Store.GetNamespace(ctx, name)
	if err != nil {
		return u, notFound(err, namespaceNotFound(name))
	}
	if b.cfg.Usage == nil {
		return u, errors.New("what a namespace uses is the server's to know: ssh upscale@HOST namespace info " + name)
	}
	u.Namespace = n
	u.Own, u.InForce, u.Use, err = b.cfg.Usage(ctx, name)
	return u, err
}

// SetQuota changes some of namespace name's quotas (admins) and returns
// them as they are now: its own and those in force.
func (b *Backend) SetQuota(ctx context.Context, who keys.Principal, name string, change store.QuotaChange) (own, inForce store.Quota, err error) {
	if err := names.Check("namespace", name); err != nil {
		return own, inForce, err
	}
	if err := allow(who, keys.NamespaceQuota, keys.Target{Namespace: name}, namespaceNotFound(name), ""); err != nil {
		return own, inForce, err
	}
	own, err = b.cfg.Store.SetQuota(ctx, name, change)
	if err != nil {
		return own, inForce, notFound(err, namespaceNotFound(name))
	}
	return own, own.Or(b.cfg.Quota), nil
}
