package lxc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// logRuntime is a Runtime with one container "app" whose log is a plain
// file: the capping and reading logic without LXC or root.
func logRuntime(t *testing.T, limit int64) (*Runtime, *ctr, string) {
	t.Helper()
	return logRuntimeIn(t, t.TempDir(), limit)
}

func logRuntimeIn(t *testing.T, dir string, limit int64) (*Runtime, *ctr, string) {
	t.Helper()
	upper := filepath.Join(dir, "app", "upper")
	if err := os.MkdirAll(filepath.Join(upper, stateDirIn), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(upper, logPathIn)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &ctr{name: "app", dir: filepath.Join(dir, "app"), idBase: uint32(os.Getuid()), ready: true}
	r := &Runtime{
		cfg:       Config{LXCPath: dir, LogLimit: limit},
		ctrs:      map[string]*ctr{"app": c},
		stateHook: func(*ctr) string { return "stopped" },
	}
	t.Cleanup(func() { c.release() })
	return r, c, path
}

func appendLines(t *testing.T, path string, from, to int) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for i := from; i < to; i++ {
		k, err := fmt.Fprintf(f, "line %d\n", i)
		if err != nil {
			t.Fatal(err)
		}
		n += int64(k)
	}
	return n
}

func TestCapKeepsWholeNewestLines(t *testing.T) {
	r, c, path := logRuntime(t, 4096)
	written := appendLines(t, path, 0, 2000)
	if _, err := r.Logs("app", 1); err != nil { // opens the log
		t.Fatal(err)
	}
	if err := r.capLog(c); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Size() > 4096 || st.Size() < 1024 {
		t.Errorf("capped size %d", st.Size())
	}
	lines, off, err := r.LogTail("app", 0)
	if err != nil {
		t.Fatal(err)
	}
	if off != written {
		t.Errorf("logical end %d, want %d bytes written", off, written)
	}
	if lines[len(lines)-1] != "line 1999" || !strings.HasPrefix(lines[0], "line ") {
		t.Errorf("kept %q ... %q", lines[0], lines[len(lines)-1])
	}
	// What a restarted agent reads back: the bytes cut so far, and whether
	// the kept part starts inside a line (a cut on a block boundary).
	b, _ := os.ReadFile(filepath.Join(c.dir, logBaseFile))
	head, _ := os.ReadFile(path)
	if base, mid := parseLogBase(b); base != written-st.Size() || mid != !strings.HasPrefix(string(head), "line ") {
		t.Errorf("logbase = %q, want %d (file starts %q)", b, written-st.Size(), head[:10])
	}

	// Follow from an offset older than what is kept starts at the oldest
	// kept line, then from the logical end sees only new lines.
	more := appendLines(t, path, 2000, 2003)
	var got []string
	ctx := context.Background()
	follow := func(from int64) {
		got = nil
		if err := r.Follow(ctx, "app", from, func(l string) { got = append(got, l) }); err != nil {
			t.Fatal(err)
		}
	}
	follow(off)
	if strings.Join(got, "|") != "line 2000|line 2001|line 2002" {
		t.Errorf("Follow from end = %q", got)
	}
	follow(0)
	if got[0] != lines[0] || got[len(got)-1] != "line 2002" {
		t.Errorf("Follow from 0 = %q ... %q", got[0], got[len(got)-1])
	}
	if _, end, _ := r.LogTail("app", 1); end != written+more {
		t.Errorf("end %d, want %d", end, written+more)
	}
}

// On a file system without FALLOC_FL_COLLAPSE_RANGE (tmpfs) the kept tail
// is copied to the front: whole lines, in order, the newest kept.
func TestCapByCopying(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "upst-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r, c, path := logRuntimeIn(t, dir, 4096)
	written := appendLines(t, path, 0, 2000)
	if _, err := r.Logs("app", 1); err != nil {
		t.Fatal(err)
	}
	if err := r.capLog(c); err != nil {
		t.Fatal(err)
	}
	head, _ := os.ReadFile(path)
	if len(head) > 4096 || !strings.HasPrefix(string(head), "line ") || !strings.HasSuffix(string(head), "line 1999\n") {
		t.Errorf("capped log %d bytes: %q...", len(head), head[:min(len(head), 20)])
	}
	if b, _ := os.ReadFile(filepath.Join(c.dir, logBaseFile)); string(b) != strconv.FormatInt(written-int64(len(head)), 10)+"\n" {
		t.Errorf("logbase = %q, want %d", b, written-int64(len(head)))
	}
}

func TestParseLogBase(t *testing.T) {
	for in, want := range map[string]struct {
		base int64
		mid  bool
	}{"16384\n": {16384, false}, "16384 mid-line\n": {16384, true}, "": {0, false}, "-5": {0, false}, "x mid-line": {0, false}, "7 other": {7, false}} {
		if base, mid := parseLogBase([]byte(in)); base != want.base || mid != want.mid {
			t.Errorf("parseLogBase(%q) = %d, %v; want %+v", in, base, mid, want)
		}
	}
}

// The app appends while the capper moves the tail: the log must stay made
// of whole lines in order.
func TestCapWhileAppending(t *testing.T) {
	r, c, path := logRuntime(t, 8192)
	if _, err := r.Logs("app", 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		for i := range 50000 {
			fmt.Fprintf(f, "line %d\n", i)
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		if err := r.capLog(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.capLog(c); err != nil {
		t.Fatal(err)
	}
	lines, err := r.Logs("app", 0)
	if err != nil {
		t.Fatal(err)
	}
	prev := -1
	for _, l := range lines {
		n, err := strconv.Atoi(strings.TrimPrefix(l, "line "))
		if err != nil || !strings.HasPrefix(l, "line ") || n <= prev {
			t.Fatalf("broken or out-of-order line %q after %d", l, prev)
		}
		prev = n
	}
	if prev != 49999 {
		t.Errorf("last line %d, want 49999", prev)
	}
}

func TestLogsRefusesNonRegularFile(t *testing.T) {
	r, _, path := logRuntime(t, 4096)
	os.Remove(path)
	if err := os.Symlink("/etc/passwd", path); err != nil {
		t.Fatal(err)
	}
	if lines, err := r.Logs("app", 5); err == nil {
		t.Fatalf("Logs followed a symlink out of the container: %q", lines)
	}
	os.Remove(path)
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Logs("app", 5); err == nil {
		t.Fatal("Logs read a directory")
	}
}

// A stopped container ends Follow once everything written has been passed
// on; a running one is followed until ctx ends.
func TestFollowStoppedDrains(t *testing.T) {
	r, _, path := logRuntime(t, 4096)
	appendLines(t, path, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []string
	err := r.Follow(ctx, "app", 0, func(l string) { got = append(got, l) })
	if err != nil || strings.Join(got, "|") != "line 0|line 1|line 2" {
		t.Errorf("Follow = %q, %v", got, err)
	}

	var mu sync.Mutex
	state := "running"
	r.stateHook = func(*ctr) string { mu.Lock(); defer mu.Unlock(); return state }
	got = nil
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if err := r.Follow(ctx2, "app", 0, func(l string) { got = append(got, l) }); err != context.DeadlineExceeded || len(got) != 3 {
		t.Errorf("Follow of a running container = %q, %v; want 3 lines and the deadline", got, err)
	}
	// Output that arrives while following, then the stop.
	got = nil
	go func() {
		time.Sleep(150 * time.Millisecond)
		appendLines(t, path, 3, 5)
		mu.Lock()
		state = "stopped"
		mu.Unlock()
	}()
	if err := r.Follow(ctx, "app", -1, func(l string) { got = append(got, l) }); err != nil || strings.Join(got, "|") != "line 3|line 4" {
		t.Errorf("Follow new output = %q, %v", got, err)
	}
}

// Each line carries the time the runtime saw it written: lines of one tick
// share it, later ticks are later, output present when the log was opened
// gets the file's time, and the times survive capping.
func TestCaptureTimes(t *testing.T) {
	r, c, path := logRuntime(t, 4096)
	appendLines(t, path, 0, 2) // there before the runtime looked
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Logs("app", 1); err != nil { // opens the log
		t.Fatal(err)
	}
	tick := func() time.Time {
		t.Helper()
		before := time.Now().UTC()
		if err := r.capLog(c); err != nil {
			t.Fatal(err)
		}
		return before
	}
	appendLines(t, path, 2, 4)
	t1 := tick()
	time.Sleep(20 * time.Millisecond)
	appendLines(t, path, 4, 5)
	t2 := tick()
	appendLines(t, path, 5, 6) // not yet seen by a tick

	lines, err := r.LogLines("app", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 6 {
		t.Fatalf("LogLines = %+v", lines)
	}
	for i, l := range lines {
		if l.Text != fmt.Sprintf("line %d", i) {
			t.Errorf("line %d = %q", i, l.Text)
		}
		if l.At.Location() != time.UTC {
			t.Errorf("line %d at %v, want UTC", i, l.At)
		}
	}
	within := func(i int, from time.Time, d time.Duration) {
		t.Helper()
		if at := lines[i].At; at.Before(from) || at.After(from.Add(d)) {
			t.Errorf("line %d captured at %v, want within %v after %v", i, at, d, from)
		}
	}
	if !lines[0].At.Equal(old) || !lines[1].At.Equal(old) {
		t.Errorf("lines there at open: %v, %v; want the file's time %v", lines[0].At, lines[1].At, old)
	}
	within(2, t1, 10*time.Millisecond)
	if !lines[3].At.Equal(lines[2].At) {
		t.Errorf("lines of one tick at %v and %v", lines[2].At, lines[3].At)
	}
	within(4, t2, 10*time.Millisecond)
	if !lines[4].At.After(lines[3].At) || lines[5].At.Before(lines[4].At) {
		t.Errorf("times not in order: %v", lines)
	}
	if l := must(r.LogLines("app", 1)); len(l) != 1 || l[0].Text != "line 5" || l[0].At.Before(lines[4].At) {
		t.Errorf("LogLines(1) = %v, want the last line", l)
	}

	// Following from the start gives the same times.
	var got []LogLine
	if err := r.FollowLines(context.Background(), "app", 0, func(l LogLine) { got = append(got, l) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 || !got[2].At.Equal(lines[2].At) || !got[4].At.Equal(lines[4].At) || got[5].Text != "line 5" {
		t.Errorf("FollowLines = %v, want %v", got, lines)
	}

	// Capping drops old output, not the times of what is kept.
	tick()
	appendLines(t, path, 6, 2000)
	t3 := tick()
	lines, err = r.LogLines("app", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[1].Text != "line 1999" || lines[1].At.Before(t3) {
		t.Errorf("after capping: %v", lines)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
