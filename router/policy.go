// Per-app HTTPS policy: which apps keep plain HTTP, which send HSTS.

package router

import (
	"context"
	"fmt"
	"strconv"
)

// policyMaps returns the two policy maps of st, by backend ID.
func policyMaps(st *state) (noRedirect, hsts map[string]string) {
	noRedirect, hsts = map[string]string{}, map[string]string{}
	for id, b := range st.backends {
		if b.policy.noRedirect {
			noRedirect[id] = "1"
		}
		if b.policy.hsts > 0 {
			hsts[id] = strconv.FormatInt(b.policy.hsts, 10)
		}
	}
	return noRedirect, hsts
}

// updatePolicy brings the runtime policy maps to want's, for the apps of
// both (an app going away loses its policy with its hosts). cur is
// updated.
func (r *Router) updatePolicy(ctx context.Context, pid int, cur, want *state) error {
	curNR, curHSTS := policyMaps(cur)
	wantNR, wantHSTS := policyMaps(want)
	logged := func(what string) func(id, v string) {
		return func(id, v string) { r.cfg.Log.Info("app policy changed", "backend", id, what, v) }
	}
	if err := r.syncMap(ctx, pid, r.path("noredirect.map"), curNR, wantNR, logged("no_https_redirect")); err != nil {
		return err
	}
	if err := r.syncMap(ctx, pid, r.path("hsts.map"), curHSTS, wantHSTS, logged("hsts_max_age")); err != nil {
		return err
	}
	for id, b := range cur.backends {
		var p policy
		if w := want.backends[id]; w != nil {
			p = w.policy
		}
		b.policy = p
	}
	return nil
}

// readPolicy reads the policy maps back from a worker into st's backends.
// An entry for no known backend, or one that does not parse, is left to
// the next write of the maps to drop.
func (r *Router) readPolicy(ctx context.Context, pid int, st *state) error {
	for _, m := range []string{"noredirect.map", "hsts.map"} {
		out, err := r.worker(ctx, pid, "show map "+r.path(m))
		if err != nil {
			return err
		}
		entries, err := parseMap(out)
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		for _, e := range entries {
			b := st.backends[e.key]
			if b == nil {
				continue
			}
			if m == "noredirect.map" {
				b.policy.noRedirect = true
				continue
			}
			if n, err := strconv.ParseInt(e.value, 10, 64); err == nil && n > 0 {
				b.policy.hsts = n
			}
		}
	}
	return nil
}
