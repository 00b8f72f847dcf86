package deploy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/hostagent"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

// logsBus plays the agents of several hosts answering MethodLogs: each
// container has its last lines, with capture times, and with Follow more
// lines after the marker.
type logsBus struct {
	history map[string][]hostagent.LogLine // by container
	live    map[string][]hostagent.LogLine
	bare    bool // an agent from before stamps: plain lines, no marker
	mu      sync.Mutex
	asked   []hostagent.LogsRequest
}

func (b *logsBus) Call(ctx context.Context, subject string, req, _ any, progress func(string)) error {
	r := req.(hostagent.LogsRequest)
	b.mu.Lock()
	b.asked = append(b.asked, r)
	b.mu.Unlock()
	if !strings.HasSuffix(subject, "."+hostagent.MethodLogs) {
		return fmt.Errorf("unexpected call %s", subject)
	}
	h := b.history[r.Name]
	if r.Lines > 0 && len(h) > r.Lines {
		h = h[len(h)-r.Lines:]
	}
	for _, l := range h {
		if b.bare {
			progress(l.Text)
			continue
		}
		progress(hostagent.StampLine(l.At, l.Text))
	}
	if b.bare && r.Follow {
		<-ctx.Done()
		return ctx.Err()
	}
	if !r.Follow {
		return nil
	}
	progress("")
	for _, l := range b.live[r.Name] {
		progress(hostagent.StampLine(l.At, l.Text))
	}
	<-ctx.Done()
	return ctx.Err()
}

func (b *logsBus) PutArtifact(context.Context, string, io.Reader) (bus.Artifact, error) {
	return bus.Artifact{}, nil
}
func (b *logsBus) DeleteArtifact(context.Context, string) error { return nil }

func TestLogsMergeAndPrefix(t *testing.T) {
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
	if err := st.Activate(ctx, "acme", "web", rel.Version, []store.Instance{
		{Name: "acme-web-v1-bbb", Host: "h2", Addr: "10.0.0.2:8080"},
		{Name: "acme-web-v1-aaa", Host: "h1", Addr: "10.0.0.1:8080"},
		{Name: "acme-web-worker-v1-ccc", Process: "worker", Host: "h1", Addr: "10.0.0.3:8080"},
	}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 25, 2, 3, 4, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	b := &logsBus{
		history: map[string][]hostagent.LogLine{
			"acme-web-v1-aaa":        {{At: at(0), Text: "a1"}, {At: at(20), Text: "a2"}, {At: at(20), Text: "a3"}},
			"acme-web-v1-bbb":        {{At: at(10), Text: "b1"}, {At: at(30), Text: "b2"}},
			"acme-web-worker-v1-ccc": {{At: at(20), Text: "c1"}, {At: at(25), Text: ""}},
		},
		live: map[string][]hostagent.LogLine{"acme-web-v1-bbb": {{At: at(5000), Text: "b live"}}},
	}
	d := &Deployer{Store: st, Bus: b, Log: slog.New(slog.DiscardHandler)}
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
	for _, r := range b.asked {
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
		if n >= 7 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Logs -f ended with %v", err)
	}
	want = append(append([]string{}, want[1:]...), "2026-11-25T02:03:09.000Z web.2 acme-web-v1-bbb| b live")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("app logs -f -n 2:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An agent that does not stamp its lines still gets them shown at once,
// with the time they came, also when following.
func TestLogsFromAnOldAgent(t *testing.T) {
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
	st.Activate(ctx, "acme", "web", rel.Version, []store.Instance{{Name: "acme-web-v1-aaa", Host: "h1", Addr: "10.0.0.1:8080"}})
	b := &logsBus{bare: true, history: map[string][]hostagent.LogLine{"acme-web-v1-aaa": {{Text: "old one"}}}}
	d := &Deployer{Store: st, Bus: b, Log: slog.New(slog.DiscardHandler)}
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
