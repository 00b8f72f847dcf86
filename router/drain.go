// Taking servers out of traffic: drain, wait for their sessions, delete.

package router

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"
)

// removeServers drains, then deletes, every server of cur that want does
// not have. Draining waits until neither the current worker nor an old one
// (still finishing requests after a reload) has a session on them, bounded
// by DrainTimeout; what is left then is cut. cur is updated.
func (r *Router) removeServers(ctx context.Context, pid int, cur, want *state) error {
	var gone []string
	for _, id := range slices.Sorted(maps.Keys(cur.backends)) {
		for _, name := range slices.Sorted(maps.Keys(cur.backends[id].servers)) {
			if wb := want.backends[id]; wb == nil || !hasServer(wb, name) {
				gone = append(gone, id+"/"+name)
			}
		}
	}
	if len(gone) == 0 {
		return nil
	}
	var drain []string
	for _, key := range gone {
		if !want.lost[key] {
			drain = append(drain, key)
		}
	}
	for _, key := range gone {
		if err := r.do(ctx, pid, "set server "+key+" state drain", ""); err != nil {
			return err
		}
		id, name, _ := strings.Cut(key, "/")
		s := cur.backends[id].servers[name]
		s.admin = 8 // SRV_ADMF_FDRAIN: out of the written config from now on
		cur.backends[id].servers[name] = s
	}
	if err := r.writeFiles(cur); err != nil {
		return err
	}
	r.cfg.Log.Info("draining servers", "servers", gone)

	left := map[string]int{}
	if len(drain) > 0 {
		var err error
		if left, err = r.waitDrained(ctx, pid, drain); err != nil {
			return err
		}
	}
	for _, key := range gone {
		if err := r.do(ctx, pid, "set server "+key+" state maint", ""); err != nil {
			return err
		}
		if want.lost[key] {
			r.cfg.Log.Warn("lost server: cutting its sessions", "server", key)
			if err := r.do(ctx, pid, "shutdown sessions server "+key, ""); err != nil {
				return err
			}
		} else if left[key] > 0 {
			r.cfg.Log.Warn("drain timeout: cutting sessions", "server", key, "sessions", left[key])
			if err := r.do(ctx, pid, "shutdown sessions server "+key, ""); err != nil {
				return err
			}
		}
	}
	for _, key := range gone {
		if err := r.delServer(ctx, pid, key); err != nil {
			return err
		}
		id, name, _ := strings.Cut(key, "/")
		delete(cur.backends[id].servers, name)
		r.cfg.Log.Info("server removed", "server", key)
	}
	return nil
}

func hasServer(b *backendState, name string) bool {
	_, ok := b.servers[name]
	return ok
}

// waitDrained polls until the servers have no session and no old worker is
// left, or DrainTimeout passes; it returns the sessions still open.
func (r *Router) waitDrained(ctx context.Context, pid int, keys []string) (map[string]int, error) {
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	for {
		out, err := r.worker(ctx, pid, "show stat -1 4 -1")
		if err != nil {
			return nil, err
		}
		sess, err := parseSessions(out)
		if err != nil {
			return nil, err
		}
		left := map[string]int{}
		for _, k := range keys {
			if sess[k] > 0 {
				left[k] = sess[k]
			}
		}
		p, err := r.showProc(ctx)
		if err != nil {
			return nil, err
		}
		if len(left) == 0 && len(p.old) == 0 {
			return nil, nil
		}
		if time.Now().After(deadline) {
			return left, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// delServer retries for a moment: a server just put in maintenance may
// still hold a closing connection, and HAProxy refuses to delete it then.
func (r *Router) delServer(ctx context.Context, pid int, key string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := r.do(ctx, pid, "del server "+key, "Server deleted.")
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
