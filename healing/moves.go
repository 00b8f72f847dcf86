package healing

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/scheduler"
	"github.com/upscalehq/upscale/store"
)

// Drain moves every instance off host: new ones start elsewhere and take
// over before the old ones go, so no request is dropped. It refuses when
// some app on host has nowhere else to run, unless force, which removes
// such instances.
func (hl *Healer) Drain(ctx context.Context, host string, force bool, out func(string)) error {
	h, err := hl.store.GetHost(ctx, host)
	if err != nil {
		return err
	}
	others := 0
	for _, fh := range hl.hosts.Up() {
		if fh.Name != host && fh.Active() {
			others++
		}
	}
	all, err := hl.store.ListInstances(ctx, "", "")
	if err != nil {
		return err
	}
	var here []store.Instance
	for _, in := range all {
		if in.Host == host {
			here = append(here, in)
		}
	}
	if len(here) > 0 && others == 0 && !force {
		return fmt.Errorf("host %s is the only host up to run %s; drain with --force to stop them", host, names2(here))
	}
	if err := hl.store.SetHostState(ctx, h.Name, store.HostDraining); err != nil {
		return err
	}
	out(fmt.Sprintf("-----> Draining %s: %d instance(s) to move", host, len(here)))
	if others == 0 {
		for _, in := range here {
			app := names.App{Namespace: in.Namespace, Name: in.App}
			unlock := hl.engine.Lock(app)
			rest, _ := hl.store.ListInstances(ctx, in.Namespace, in.App)
			rest = slices.DeleteFunc(rest, func(x store.Instance) bool { return x.Host == host })
			err := hl.engine.Reroute(ctx, app, rest, nil)
			unlock()
			if err != nil {
				return err
			}
			hl.engine.Remove(ctx, []store.Instance{in}, out)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := hl.Heal(ctx); err != nil {
			out("       " + err.Error())
		}
		left, err := hl.instancesOn(ctx, host)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			out(fmt.Sprintf("=====> %s is drained: nothing runs there", host))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still runs %s after 2 minutes", host, names2(left))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (hl *Healer) instancesOn(ctx context.Context, host string) ([]store.Instance, error) {
	all, err := hl.store.ListInstances(ctx, "", "")
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(in store.Instance) bool { return in.Host != host }), nil
}

// Rebalance evens out instances across the active hosts (see
// scheduler.Rebalance), one move at a time: the new instance starts and
// takes over before the old one goes. With dryRun it only says what it
// would move.
func (hl *Healer) Rebalance(ctx context.Context, dryRun bool, out func(string)) error {
	var hosts []scheduler.Host
	for _, h := range hl.hosts.Up() {
		if h.Active() {
			hosts = append(hosts, scheduler.Host{Name: h.Name, Weight: h.Record.Weight, MemFree: h.MemFree, Containers: h.Containers})
		}
	}
	all, err := hl.store.ListInstances(ctx, "", "")
	if err != nil {
		return err
	}
	var ins []scheduler.Instance
	for _, in := range all {
		ins = append(ins, scheduler.Instance{App: in.Namespace + "/" + in.App, Name: in.Name, Host: in.Host})
	}
	moves := scheduler.Rebalance(hosts, ins)
	if len(moves) == 0 {
		out("=====> Nothing to move: the hosts are even")
		return nil
	}
	for _, m := range moves {
		if dryRun {
			out(fmt.Sprintf("       would move %s (%s) from %s to %s", m.Name, m.App, m.Host, m.To))
			continue
		}
		if err := hl.move(ctx, m, out); err != nil {
			return err
		}
	}
	if dryRun {
		out(fmt.Sprintf("=====> %d move(s) planned; run without --dry-run to make them", len(moves)))
	} else {
		out(fmt.Sprintf("=====> %d instance(s) moved", len(moves)))
	}
	return nil
}

func (hl *Healer) move(ctx context.Context, m scheduler.Move, out func(string)) error {
	app, err := names.ParseApp(m.App)
	if err != nil {
		return err
	}
	defer hl.engine.Lock(app)()
	rel, err := hl.store.LiveRelease(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	cur, err := hl.store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(cur, func(in store.Instance) bool { return in.Name == m.Name })
	if i < 0 {
		return nil // gone meanwhile
	}
	fresh, err := hl.engine.StartOn(ctx, app, rel, deploy.ProcessOf(cur[i]), []string{m.To})
	if err != nil {
		return fmt.Errorf("moving %s to %s: %w", m.Name, m.To, err)
	}
	old := cur[i]
	cur = append(append(cur[:i:i], cur[i+1:]...), fresh...)
	if err := hl.engine.Reroute(ctx, app, cur, nil); err != nil {
		hl.engine.Remove(ctx, fresh, nil)
		return err
	}
	hl.engine.Remove(ctx, []store.Instance{old}, nil)
	out(fmt.Sprintf("-----> Moved %s (%s) from %s to %s as %s", m.Name, m.App, m.Host, m.To, fresh[0].Name))
	return nil
}
