package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/upscalehq/upscale/store"
)

const hostQuery = `SELECT name, address, subnet, weight, state, provider, instance_id, region, host_key, created_at FROM hosts`

func scanHost(r scanner) (store.Host, error) {
	var h store.Host
	var at int64
	err := r.Scan(&h.Name, &h.Address, &h.Subnet, &h.Weight, &h.State, &h.Provider, &h.InstanceID, &h.Region, &h.HostKey, &at)
	h.CreatedAt = fromNanos(at)
	return h, err
}

// AddHost fills in the defaults (HostActive, weight 1) and the CreatedAt of
// a zero one. A field it refuses is a caller's bug, not a state of the
// store, so that error is none of the sentinels; the schema's checks say
// the same again.
func (s *Store) AddHost(ctx context.Context, h store.Host) (store.Host, error) {
	if h.State == "" {
		h.State = store.HostActive
	}
	if h.Weight == 0 {
		h.Weight = 1
	}
	if err := checkHost(h); err != nil {
		return store.Host{}, err
	}
	h.CreatedAt = stamp(h.CreatedAt)
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO hosts
			(name, address, subnet, weight, state, provider, instance_id, region, host_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			h.Name, h.Address, h.Subnet, h.Weight, h.State, h.Provider, h.InstanceID, h.Region, h.HostKey, h.CreatedAt.UnixNano())
		if violated(err) != uniqueKey {
			return err
		}
		return hostTaken(ctx, tx, h)
	})
	if err != nil {
		return store.Host{}, fmt.Errorf("host %q: %w", h.Name, err)
	}
	return h, nil
}

// hostTaken finds which of h's unique columns another host holds, since the
// engines report a duplicate key each in their own words and order: the
// name first, then the address, then the subnet. It is an ErrConflict in
// every case.
func hostTaken(ctx context.Context, tx *sql.Tx, h store.Host) error {
	taken, err := exists(ctx, tx, "SELECT 1 FROM hosts WHERE name = ?", h.Name)
	switch {
	case err != nil:
		return err
	case taken:
		return store.ErrConflict
	}
	for _, col := range []struct{ name, value string }{{"address", h.Address}, {"subnet", h.Subnet}} {
		var other string
		err := tx.QueryRowContext(ctx, "SELECT name FROM hosts WHERE "+col.name+" = ?", col.value).Scan(&other)
		switch {
		case err == nil:
			return conflict(fmt.Sprintf("%s %s is taken by host %s", col.name, col.value, other))
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
	}
	// The host that held it was removed since (MySQL).
	return store.ErrConflict
}

// checkHost refuses what the schema would, in words, and the empty text
// that would make two hosts' addresses or subnets collide.
func checkHost(h store.Host) error {
	if h.Name == "" {
		return errors.New("a host has no name")
	}
	var err error
	switch {
	case h.Address == "":
		err = errors.New("no address")
	case h.Subnet == "":
		err = errors.New("no subnet")
	case h.Weight < 1:
		err = checkWeight(h.Weight)
	default:
		err = checkState(h.State)
	}
	if err != nil {
		return fmt.Errorf("host %q: %w", h.Name, err)
	}
	return nil
}

func checkWeight(weight int) error {
	if weight < 1 {
		return fmt.Errorf("weight %d, want 1 or more", weight)
	}
	return nil
}

func checkState(state store.HostState) error {
	switch state {
	case store.HostActive, store.HostDraining:
		return nil
	}
	return fmt.Errorf("unknown state %q, want %s or %s", state, store.HostActive, store.HostDraining)
}

func (s *Store) GetHost(ctx context.Context, name string) (store.Host, error) {
	var h store.Host
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		h, err = scanHost(tx.QueryRowContext(ctx, hostQuery+" WHERE name = ?", name))
		return err
	})
	if err != nil {
		return store.Host{}, fmt.Errorf("host %q: %w", name, notFound(err))
	}
	return h, nil
}

func (s *Store) ListHosts(ctx context.Context) ([]store.Host, error) {
	var list []store.Host
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = queryAll(ctx, tx, scanHost, hostQuery+" ORDER BY name")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	return list, nil
}

func (s *Store) SetHostWeight(ctx context.Context, name string, weight int) error {
	if err := checkWeight(weight); err != nil {
		return fmt.Errorf("host %q: %w", name, err)
	}
	return s.updateHost(ctx, name, "UPDATE hosts SET weight = ? WHERE name = ?", weight, name)
}

func (s *Store) SetHostState(ctx context.Context, name string, state store.HostState) error {
	if err := checkState(state); err != nil {
		return fmt.Errorf("host %q: %w", name, err)
	}
	return s.updateHost(ctx, name, "UPDATE hosts SET state = ? WHERE name = ?", state, name)
}

// updateHost runs a statement that must match the one host.
func (s *Store) updateHost(ctx context.Context, name, query string, args ...any) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := changed(tx.ExecContext(ctx, query, args...))
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("host %q: %w", name, err)
	}
	return nil
}

// RemoveHost deletes first and counts after, rolling the delete back when
// instances remain, so that a host that does not exist is ErrNotFound even
// when instances name it.
//
// There is no foreign key to wait for, as DeleteNamespace has: on MySQL an
// instance placed on the host by a transaction that commits after the count
// is not seen. That is the same as that transaction running after this one,
// which may happen anyway: SetInstances takes any host name, registered or
// not, and never reads hosts. Whoever removes a host drains it first, so
// that nothing new is placed on it.
func (s *Store) RemoveHost(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := changed(tx.ExecContext(ctx, "DELETE FROM hosts WHERE name = ?", name))
		switch {
		case err != nil:
			return err
		case n == 0:
			return store.ErrNotFound
		}
		var instances int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM instances WHERE host = ?", name).Scan(&instances); err != nil {
			return err
		}
		if instances > 0 {
			return fmt.Errorf("still has %d %s: %w", instances, plural(instances, "instance", "instances"), store.ErrNotEmpty)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("host %q: %w", name, err)
	}
	return nil
}
