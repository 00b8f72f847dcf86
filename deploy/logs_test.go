package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/agentapi/agenttest"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

// liveApp is a store in which acme/web's release 1 runs instances.
func liveApp(t *testing.T, instances ...store.Instance) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.CreateNamespace(ctx, "acme")
	st.CreateApp(ctx, "acme", "web")
	rel, _ := st.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web"})
	st.FinishBuild(ctx, "acme", "web", rel.Version, "a", strings.Repeat("d", 64), 1)
	if err := st.Activate(ctx, "acme", "web", rel.Version, instances); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLogsMergeAndPrefix(t *testing.T) {
	ctx := context.Background()
	st := liveApp(t,
		store.Instance{Name: "acme-web-v1-bbb", Host: "h2", Addr: "10.0.0.2:8080"},
		store.Instance{Name: "acme-web-v1-aaa", Host: "h1", Addr: "10.0.0.1:8080"},
		store.Instance{Name: "acme-web-worker-v1-ccc", Process: "worker", Host: "h1", Addr: "10.0.0.3:8080"},
	)
	t0 := time.Date(2026, 11, 25, 2, 3, 4, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	agents := agenttest.New()
	agents.SetLogs("acme-web-v1-aaa", []agenttest.LogLine{{At: at(0), Text: "a1"}, {At: at(20), Text: "a2"}, {At: at(20), Text: "a3"}}, nil)
	agents.SetLogs("acme-web-v1-bbb", []agenttest.LogLine{{At: at(10), Text: "b1"}, {At: at(30), Text: "b2"}}, []agenttest.LogLine{{At: at(5000), Text: "b live"}})
	agents.SetLogs("acme-web-worker-v1-ccc", []agenttest.LogLine{{At: at(20), Text: "c1"}, {At: at(25), Text: ""}}, nil)
	d := &Deployer{cfg: Config{Store: st, Agents: agents, Log: slog.New(slog.DiscardHandler)}}
	app := names.App{Namespace: "acme", Name: "web"}

	var got []string
	collect := func(l string) { got = append(got, l) }
	if err := d.Logs(ctx, app, 100, false, collect); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"2026-11-25T02:03:04.000Z web.1 acme-web-v1-aaa| a1",
		"2026-11-25T02:03:04.010Z web.2 acme-web-v1-bbb| b1",
		"2026-11-25T02:03:04.020Z web.1 acme-web-v1-aaa| a2",
		"2026-11-25T02:03:04.020Z web.1 acme-web-v1-aaa| a3",
		"2026-11-25T02:03:04.020Z worker.1 acme-web-worker-v1-ccc| c1",
		"2026-11-25T02:03:04.025Z worker.1 acme-web-worker-v1-ccc| ",
		"2026-11-25T02:03:04.030Z web.2 acme-web-v1-bbb| b2",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("app logs:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range agents.LogsAsked() {
		if !r.Stamped || r.Lines != 100 || r.Follow {
			t.Errorf("asked %+v", r)
		}
	}

	// Following: the merged last lines first, then new lines as they come.
	got = nil
	fctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	done := make(chan error)
	go func() {
		done <- d.Logs(fctx, app, 2, true, func(l string) { mu.Lock(); got = append(got, l); mu.Unlock() })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Logs -f ended with %v", err)
	}
	// -n is the app's last lines, not each instance's.
	want = append(append([]string{}, want[5:]...), "2026-11-25T02:03:09.000Z web.2 acme-web-v1-bbb| b live")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("app logs -f -n 2:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An agent that does not stamp its lines still gets them shown at once,
// with the time they came, also when following.
func TestLogsFromAnOldAgent(t *testing.T) {
	ctx := context.Background()
	st := liveApp(t, store.Instance{Name: "acme-web-v1-aaa", Host: "h1", Addr: "10.0.0.1:8080"})
	agents := agenttest.New()
	agents.UnstampedLogs(true)
	agents.SetLogs("acme-web-v1-aaa", []agenttest.LogLine{{Text: "old one"}}, nil)
	d := &Deployer{cfg: Config{Store: st, Agents: agents, Log: slog.New(slog.DiscardHandler)}}
	fctx, cancel := context.WithCancel(ctx)
	lines := make(chan string, 10)
	done := make(chan error)
	before := time.Now().UTC().Truncate(time.Millisecond)
	go func() {
		done <- d.Logs(fctx, names.App{Namespace: "acme", Name: "web"}, 10, true, func(l string) { lines <- l })
	}()
	select {
	case l := <-lines:
		at, err := time.Parse(logTimeLayout, l[:len(logTimeLayout)])
		if err != nil || at.Before(before) || !strings.HasSuffix(l, " web.1 acme-web-v1-aaa| old one") {
			t.Errorf("line %q (%v), want the time it came and the prefix", l, err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the line of an old agent was held back")
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// The new lines held back while a host lags keep the newest up to a
// number of lines and of bytes; what went is counted.
func TestEarlyLinesAreBounded(t *testing.T) {
	e := earlyLines{maxLines: 3, maxBytes: 10}
	for i := range 5 {
		e.add(logLine{text: fmt.Sprint(i)})
	}
	kept, dropped := e.take()
	if fmt.Sprint(texts(kept)) != "[2 3 4]" || dropped != 2 {
		t.Errorf("by lines: kept %v, dropped %d; want [2 3 4], 2", texts(kept), dropped)
	}
	if kept, dropped := e.take(); len(kept) != 0 || dropped != 0 {
		t.Errorf("take did not empty the buffer: %v, %d", texts(kept), dropped)
	}
	for _, s := range []string{"aaaa", "bbbb", "cccc", "d"} {
		e.add(logLine{text: s})
	}
	if kept, dropped := e.take(); fmt.Sprint(texts(kept)) != "[bbbb cccc d]" || dropped != 1 {
		t.Errorf("by bytes: kept %v, dropped %d; want [bbbb cccc d], 1", texts(kept), dropped)
	}
	e.add(logLine{text: strings.Repeat("x", 11)})
	if kept, dropped := e.take(); len(kept) != 0 || dropped != 1 {
		t.Errorf("a line over the byte bound: kept %v, dropped %d", texts(kept), dropped)
	}
	// Full, and fed a great deal more: never more than the bound, in
	// memory too.
	e = earlyLines{maxLines: maxEarlyLines, maxBytes: maxEarlyBytes}
	for i := range 5 * maxEarlyLines {
		e.add(logLine{text: fmt.Sprint(i)})
		if len(e.lines)-e.start > maxEarlyLines || cap(e.lines) > 4*maxEarlyLines {
			t.Fatalf("after %d lines: %d kept, capacity %d", i+1, len(e.lines)-e.start, cap(e.lines))
		}
	}
	kept, dropped = e.take()
	if len(kept) != maxEarlyLines || dropped != 4*maxEarlyLines || kept[0].text != fmt.Sprint(4*maxEarlyLines) {
		t.Errorf("kept %d from %q, dropped %d", len(kept), kept[0].text, dropped)
	}
}

func texts(lines []logLine) []string {
	var s []string
	for _, l := range lines {
		s = append(s, l.text)
	}
	return s
}

// laggingAgents is two agents: h1 sends its history at once and then a
// flood of new lines; h2 sends its history only when let go.
type laggingAgents struct {
	*agenttest.Agents
	flood   int
	flooded chan struct{}
	letGo   chan struct{}
}

func (b *laggingAgents) Logs(ctx context.Context, host string, r agentapi.LogsRequest, progress func(string)) error {
	t0 := time.Date(2026, 11, 25, 2, 3, 4, 0, time.UTC)
	if host == "h2" {
		select {
		case <-b.letGo:
		case <-ctx.Done():
			return ctx.Err()
		}
		progress(agentapi.StampLine(t0, "slow history"))
		progress("")
		<-ctx.Done()
		return ctx.Err()
	}
	progress(agentapi.StampLine(t0, "fast history"))
	progress("")
	for i := range b.flood {
		progress(agentapi.StampLine(t0.Add(time.Second), fmt.Sprintf("%s live %d", r.Name, i)))
	}
	close(b.flooded)
	<-ctx.Done()
	return ctx.Err()
}

// logs -f while one host is slow to send its last lines: the other's new
// lines wait, up to the bound; the oldest go, and one line says how many.
func TestLogsFollowBoundsWhatALaggingHostHoldsBack(t *testing.T) {
	ctx := context.Background()
	st := liveApp(t,
		store.Instance{Name: "acme-web-v1-aaa", Host: "h1", Addr: "10.0.0.1:8080"},
		store.Instance{Name: "acme-web-v1-bbb", Host: "h2", Addr: "10.0.0.2:8080"},
	)
	const flood = maxEarlyLines + 25
	b := &laggingAgents{Agents: agenttest.New(), flood: flood, flooded: make(chan struct{}), letGo: make(chan struct{})}
	d := &Deployer{cfg: Config{Store: st, Agents: b, Log: slog.New(slog.DiscardHandler)}}
	fctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var got []string
	done := make(chan error)
	go func() {
		done <- d.Logs(fctx, names.App{Namespace: "acme", Name: "web"}, 10, true, func(l string) { mu.Lock(); got = append(got, l); mu.Unlock() })
	}()
	<-b.flooded
	close(b.letGo)
	want := 2 + 1 + maxEarlyLines
	for deadline := time.Now().Add(10 * time.Second); ; {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Logs -f ended with %v", err)
	}
	if len(got) != want {
		t.Fatalf("%d lines, want %d", len(got), want)
	}
	for i, w := range map[int]string{
		0: "web.1 acme-web-v1-aaa| fast history",
		1: "web.2 acme-web-v1-bbb| slow history",
		3: "web.1 acme-web-v1-aaa| acme-web-v1-aaa live 25",
	} {
		if !strings.HasSuffix(got[i], w) {
			t.Errorf("line %d is %q, want it to end %q", i, got[i], w)
		}
	}
	if note := "upscale: 25 lines that came while waiting for a slow host were dropped; the last 10000 follow"; got[2] != note {
		t.Errorf("line 2 is %q, want %q", got[2], note)
	}
	if last := got[len(got)-1]; !strings.HasSuffix(last, fmt.Sprintf("live %d", flood-1)) {
		t.Errorf("the last line is %q, want the newest", last)
	}
}

// app logs -f follows the app, not the instances it began with: a
// replaced instance's stream ending is no error, and the new instance's
// output follows from its first line.
func TestLogsFollowTheAppAcrossInstances(t *testing.T) {
	defer func(p, g time.Duration) { followPoll, followGrace = p, g }(followPoll, followGrace)
	followPoll, followGrace = 10*time.Millisecond, 20*time.Millisecond
	ctx := context.Background()
	st := liveApp(t, store.Instance{Name: "acme-web-v1-aaa", Host: "h1", Addr: "10.0.0.1:8080"})
	t0 := time.Date(2026, 11, 25, 2, 3, 4, 0, time.UTC)
	agents := agenttest.New()
	agents.SetLogs("acme-web-v1-aaa", []agenttest.LogLine{{At: t0, Text: "old"}}, nil)
	agents.SetLogs("acme-web-v2-bbb", []agenttest.LogLine{{At: t0.Add(time.Minute), Text: "new starting"}}, []agenttest.LogLine{{At: t0.Add(2 * time.Minute), Text: "new serving"}})
	d := &Deployer{cfg: Config{Store: st, Agents: agents, Log: slog.New(slog.DiscardHandler)}}
	fctx, cancel := context.WithCancel(ctx)
	lines := make(chan string, 10)
	done := make(chan error)
	go func() {
		done <- d.Logs(fctx, names.App{Namespace: "acme", Name: "web"}, 10, true, func(l string) { lines <- l })
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(5 * time.Second):
			return "(nothing)"
		}
	}
	if l := next(); !strings.HasSuffix(l, "web.1 acme-web-v1-aaa| old") {
		t.Fatalf("first line %q", l)
	}
	// A deploy: release 2 replaces the instance.
	rel, _ := st.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web"})
	st.FinishBuild(ctx, "acme", "web", rel.Version, "b", strings.Repeat("d", 64), 1)
	if err := st.Activate(ctx, "acme", "web", rel.Version, []store.Instance{{Name: "acme-web-v2-bbb", Host: "h2", Addr: "10.0.0.2:8080"}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"web.1 acme-web-v2-bbb| new starting", "web.1 acme-web-v2-bbb| new serving"} {
		if l := next(); !strings.HasSuffix(l, want) {
			t.Fatalf("after the deploy: %q, want ...%q", l, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Logs -f ended with %v", err)
	}
	close(lines)
	for l := range lines {
		t.Errorf("unexpected line %q", l)
	}
	var old, new int
	for _, r := range agents.LogsAsked() {
		switch r.Name {
		case "acme-web-v1-aaa":
			old++
		case "acme-web-v2-bbb":
			new++
			if !r.Follow || r.Lines < 100 {
				t.Errorf("the new instance was asked %+v", r)
			}
		}
	}
	if old != 1 || new != 1 {
		t.Errorf("asked the old instance %d times and the new %d, want once each", old, new)
	}
}

// app logs -f of an app that is deleted meanwhile ends, saying so.
func TestLogsFollowEndsWhenTheAppIsDeleted(t *testing.T) {
	defer func(p time.Duration) { followPoll = p }(followPoll)
	followPoll = 10 * time.Millisecond
	st := liveApp(t, store.Instance{Name: "acme-web-v1-aaa", Host: "h1", Addr: "10.0.0.1:8080"})
	agents := agenttest.New()
	agents.SetLogs("acme-web-v1-aaa", []agenttest.LogLine{{At: time.Unix(1, 0), Text: "hi"}}, nil)
	d := &Deployer{cfg: Config{Store: st, Agents: agents, Log: slog.New(slog.DiscardHandler)}}
	lines := make(chan string, 10)
	done := make(chan error)
	go func() {
		done <- d.Logs(context.Background(), names.App{Namespace: "acme", Name: "web"}, 10, true, func(l string) { lines <- l })
	}()
	<-lines
	if err := st.DeleteApp(context.Background(), "acme", "web"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if l := <-lines; err != nil || l != "upscale: app acme/web was deleted" {
			t.Errorf("Logs -f ended with %v after %q", err, l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs -f did not end when the app was deleted")
	}
}
