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
	at     time.Time
	source int // index into the instances
	text   string
}

// LogPrefix is what app logs puts before each line of an instance:
// capture time, process (type and number, like web.1) and container.
func LogPrefix(at time.Time, process, container string) string {
	return at.UTC().Format(logTimeLayout) + " " + process + " " + container + "| "
}

// Logs writes the last n lines of every instance's output, from every
// host, merged in the order they were captured, each prefixed as
// LogPrefix says:
//
//	2026-11-25T02:03:04.123Z web.1 acme-web-v3-abc123| GET / 200
//
// With follow it then writes new lines as they come, until ctx ends.
func (d *Deployer) Logs(ctx context.Context, app names.App, n int, follow bool, out func(string)) error {
	instances, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	if len(instances) == 0 {
		return fmt.Errorf("app %s runs no instances", app)
	}
	labels := processLabels(instances)
	prefix := func(l logLine) string {
		return LogPrefix(l.at, labels[l.source], instances[l.source].Name) + l.text
	}

	// Each instance's last lines are kept until every instance has sent
	// its own (or failed), then written merged; new lines that come
	// meanwhile wait behind them.
	var mu sync.Mutex
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
		for _, l := range all {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			live := false
			req := agentapi.LogsRequest{Name: in.Name, Lines: n, Follow: follow, Stamped: true}
			err := d.cfg.Agents.Logs(ctx, in.Host, req, func(raw string) {
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
				l := logLine{at: at, source: i, text: text}
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
			if err != nil {
				errs[i] = fmt.Errorf("%s on %s: %w", in.Name, in.Host, err)
			}
		}()
	}
	wg.Wait()
	if follow && ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
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
