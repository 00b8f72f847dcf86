package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// logTimeLayout is how app logs show capture times: UTC, milliseconds.
const logTimeLayout = "2006-01-02T15:04:05.000Z"

// logLine is one line of an instance's output.
type logLine struct {
	at                 time.Time
	process, container string // as LogPrefix shows them
	text               string
}

// LogPrefix is what app logs puts before each line of an instance:
// capture time, process (type and number, like web.1) and container.
func LogPrefix(at time.Time, process, container string) string {
	return at.UTC().Format(logTimeLayout) + " " + process + " " + container + "| "
}

// How app logs -f follows the app rather than the instances it began
// with: the app's instances are looked up every followPoll, a new one is
// followed from its first line (up to newInstanceLines), and one gone
// from the store is let go after followGrace (its last lines, such as
// how it shut down, come in meanwhile). Variables for the tests.
var (
	followPoll       = time.Second
	followGrace      = 30 * time.Second
	newInstanceLines = 1000
)

// Logs writes the last n lines of the app's output, from every instance
// on every host, merged in the order they were captured, each prefixed as
// LogPrefix says:
//
//	2026-11-25T02:03:04.123Z web.1 acme-web-v3-abc123| GET / 200
//
// With follow it then writes new lines as they come, until ctx ends,
// from whatever instances the app has: across deploys, restarts, scaling
// and moves to other hosts.
func (d *Deployer) Logs(ctx context.Context, app names.App, n int, follow bool, out func(string)) error {
	instances, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	if len(instances) == 0 && !follow {
		return fmt.Errorf("app %s runs no instances", app)
	}
	labels := processLabels(instances)
	prefix := func(l logLine) string { return LogPrefix(l.at, l.process, l.container) + l.text }
	f := &follower{d: d, app: app, ctx: ctx, out: out, prefix: prefix, streams: map[string]*stream{}}
	if len(instances) == 0 {
		out(fmt.Sprintf("upscale: %s runs no instances now; their output follows once some start", app))
	}

	// Each instance's last lines are kept until every instance has sent
	// its own (or failed), then written merged; new lines that come
	// meanwhile wait behind them.
	mu := &f.mu
	history := make([][]logLine, len(instances))
	done := make([]bool, len(instances))
	waiting := len(instances)
	early := earlyLines{maxLines: maxEarlyLines, maxBytes: maxEarlyBytes}
	historyDone := func(i int) {
		mu.Lock()
		defer mu.Unlock()
		if done[i] {
			return
		}
		done[i] = true
		if waiting--; waiting > 0 {
			return
		}
		var all []logLine
		for _, h := range history {
			all = append(all, h...)
		}
		// Each instance's lines are in order already: a stable sort keeps
		// them so when their times tie.
		slices.SortStableFunc(all, func(a, b logLine) int { return a.at.Compare(b.at) })
		// -n is the app's last lines, as with heroku logs -n: each instance
		// was asked for n, and the newest n of them all are shown.
		for _, l := range all[max(len(all)-n, 0):] {
			out(prefix(l))
		}
		kept, dropped := early.take()
		if dropped > 0 {
			out(fmt.Sprintf("upscale: %d lines that came while waiting for a slow host were dropped; the last %d follow", dropped, len(kept)))
		}
		for _, l := range kept {
			out(prefix(l))
		}
	}
	errs := make([]error, len(instances))
	var wg sync.WaitGroup
	for i, in := range instances {
		process := labels[i]
		sctx := f.add(in.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			live := false
			req := agentapi.LogsRequest{Name: in.Name, Lines: n, Follow: follow, Stamped: true}
			err := d.cfg.Agents.Logs(sctx, in.Host, req, func(raw string) {
				if live && raw == "" {
					return
				}
				if raw == "" {
					live = true
					historyDone(i)
					return
				}
				at, text, ok := agentapi.ParseStampedLine(raw)
				if !ok {
					// An agent from before stamps: the time it came, and
					// no marker will tell its last lines from new ones.
					at = time.Now().UTC()
					if follow && !live {
						live = true
						historyDone(i)
					}
				}
				l := logLine{at: at, process: process, container: in.Name, text: text}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case !live:
					history[i] = append(history[i], l)
				case waiting > 0:
					early.add(l)
				default:
					out(prefix(l))
				}
			})
			if !live {
				historyDone(i)
			}
			if follow {
				f.ended(in, err)
			} else if err != nil {
				errs[i] = fmt.Errorf("%s on %s: %w", in.Name, in.Host, err)
			}
		}()
	}
	if !follow {
		wg.Wait()
		return errors.Join(errs...)
	}
	defer wg.Wait()
	return f.watch()
}

// follower is app logs -f after the start: it follows the app's new
// instances and lets go of the gone ones.
type follower struct {
	d      *Deployer
	app    names.App
	ctx    context.Context
	prefix func(logLine) string
	wg     sync.WaitGroup

	mu      sync.Mutex // out and what follows
	out     func(string)
	streams map[string]*stream // by instance name, gone ones too
}

type stream struct {
	cancel context.CancelFunc
	gone   time.Time // when it was first seen gone from the store
}

// add registers a stream of instance name and returns its context.
func (f *follower) add(name string) context.Context {
	ctx, cancel := context.WithCancel(f.ctx)
	f.mu.Lock()
	f.streams[name] = &stream{cancel: cancel}
	f.mu.Unlock()
	return ctx
}

// ended notes that the stream of in ended with err: silently when the
// instance is gone (replaced, scaled away, moved), with a line otherwise.
func (f *follower) ended(in store.Instance, err error) {
	if err == nil || f.ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.streams[in.Name]; s != nil && !s.gone.IsZero() {
		return
	}
	if now, err2 := f.d.cfg.Store.ListInstances(f.ctx, f.app.Namespace, f.app.Name); err2 == nil &&
		!slices.ContainsFunc(now, func(i store.Instance) bool { return i.Name == in.Name }) {
		return
	}
	f.out(fmt.Sprintf("upscale: stopped following %s on %s: %v", in.Name, in.Host, err))
}

// watch follows the app's instances as they change, until ctx ends or
// the app is deleted.
func (f *follower) watch() error {
	defer func() {
		f.mu.Lock()
		for _, s := range f.streams {
			s.cancel()
		}
		f.mu.Unlock()
		f.wg.Wait()
	}()
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return nil
		case <-tick.C:
		}
		now, err := f.d.cfg.Store.ListInstances(f.ctx, f.app.Namespace, f.app.Name)
		if errors.Is(err, store.ErrNotFound) {
			f.mu.Lock()
			f.out(fmt.Sprintf("upscale: app %s was deleted", f.app))
			f.mu.Unlock()
			return nil
		}
		if err != nil {
			continue
		}
		f.sweep(now)
	}
}

// sweep starts following the instances of now not followed yet and lets
// go of those gone from it for followGrace.
func (f *follower) sweep(now []store.Instance) {
	labels := processLabels(now)
	t := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, s := range f.streams {
		switch {
		case slices.ContainsFunc(now, func(i store.Instance) bool { return i.Name == name }):
			s.gone = time.Time{}
		case s.gone.IsZero():
			s.gone = t
		case t.Sub(s.gone) >= followGrace:
			s.cancel()
		}
	}
	for i, in := range now {
		if _, ok := f.streams[in.Name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(f.ctx)
		f.streams[in.Name] = &stream{cancel: cancel}
		process := labels[i]
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			// From its first line: none of it has been shown yet.
			req := agentapi.LogsRequest{Name: in.Name, Lines: newInstanceLines, Follow: true, Stamped: true}
			err := f.d.cfg.Agents.Logs(ctx, in.Host, req, func(raw string) {
				if raw == "" {
					return
				}
				at, text, ok := agentapi.ParseStampedLine(raw)
				if !ok {
					at = time.Now().UTC()
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				f.out(f.prefix(logLine{at: at, process: process, container: in.Name, text: text}))
			})
			f.ended(in, err)
		}()
	}
}

// What logs -f keeps of the new lines that come while a host is still
// sending its last ones: one lagging host must not make the server hold
// every other instance's output.
const (
	maxEarlyLines = 10_000
	maxEarlyBytes = 4 << 20
)

// earlyLines holds the newest lines up to maxLines and maxBytes of text,
// dropping the oldest, and counts what it dropped.
type earlyLines struct {
	maxLines, maxBytes int
	lines              []logLine // kept: lines[start:]
	start              int
	bytes, dropped     int
}

func (e *earlyLines) add(l logLine) {
	e.lines = append(e.lines, l)
	e.bytes += len(l.text)
	for len(e.lines)-e.start > e.maxLines || (e.bytes > e.maxBytes && e.start < len(e.lines)) {
		e.bytes -= len(e.lines[e.start].text)
		e.lines[e.start] = logLine{} // its text can go now
		e.start++
		e.dropped++
	}
	// Compacted once half is dropped: amortized, and the backing array
	// stays within twice what is kept.
	if e.start > len(e.lines)/2 {
		e.lines = append([]logLine(nil), e.lines[e.start:]...)
		e.start = 0
	}
}

// take returns the lines kept and how many were dropped, and empties e.
func (e *earlyLines) take() ([]logLine, int) {
	lines, dropped := e.lines[e.start:], e.dropped
	*e = earlyLines{maxLines: e.maxLines, maxBytes: e.maxBytes}
	return lines, dropped
}

// processLabels names each instance by its process type and its number
// among that type's instances (sorted by name), like web.1 and worker.2.
func processLabels(instances []store.Instance) []string {
	order := make([]int, len(instances))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return strings.Compare(ProcessOf(instances[a])+" "+instances[a].Name, ProcessOf(instances[b])+" "+instances[b].Name)
	})
	labels := make([]string, len(instances))
	count := map[string]int{}
	for _, i := range order {
		p := ProcessOf(instances[i])
		count[p]++
		labels[i] = p + "." + strconv.Itoa(count[p])
	}
	return labels
}
