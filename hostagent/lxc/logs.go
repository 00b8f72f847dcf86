package lxc

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// App output: the launcher appends the app's stdout and stderr to
// upper/.upscale/app.log. The runtime keeps one descriptor on that file per
// container and, every capInterval, cuts its front when it is over
// LogLimit, keeping the newest half. Offsets handed to Follow are logical
// (bytes since the container was created) and survive the cutting: the
// number of bytes dropped so far is kept in NAME/logbase.
//
// The file is in the container's writable layer, where the app can replace
// it with a symlink or a FIFO: it is opened through an os.Root on the upper
// dir (no path leads out), non-blocking, and must be a regular file.

// Capture times: on every tick of capLoop the runtime notes how far each
// log has grown (a mark: the logical end offset, and the time). A line's
// capture time is that of the first mark at or after its end, so within
// capInterval after the app wrote it; a line written since the last tick
// is stamped now. Output the runtime did not see being written (it was
// there when the log was opened: an agent restart) gets the file's
// modification time then: when its last line was written, at the latest.
// Marks are kept in memory, at most maxMarks; past that every other old
// one is dropped, so old lines get coarser (later) times.

type mark struct {
	end int64
	at  time.Time
}

const maxMarks = 4096

// LogLine is one line of a container's output and when it was captured.
type LogLine struct {
	At   time.Time
	Text string
}

// noteGrowth adds a mark when the log grew since the last one. Caller
// holds c.logMu.
func (c *ctr) noteGrowth(size int64, at time.Time) {
	end := c.logBase + size
	if n := len(c.marks); n > 0 && c.marks[n-1].end >= end {
		return
	}
	// Marks of output cut away are of no use.
	for len(c.marks) > 1 && c.marks[1].end <= c.logBase {
		c.marks = c.marks[1:]
	}
	if len(c.marks) >= maxMarks {
		thin := c.marks[:0:0]
		for i, m := range c.marks {
			if i%2 == 1 || i >= len(c.marks)/2 {
				thin = append(thin, m)
			}
		}
		c.marks = thin
	}
	c.marks = append(c.marks, mark{end: end, at: at.UTC()})
}

// capturedAt is the capture time of the output that ends at the logical
// offset end.
func (r *Runtime) capturedAt(c *ctr, end int64) time.Time {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	i, _ := slices.BinarySearchFunc(c.marks, end, func(m mark, end int64) int { return cmp.Compare(m.end, end) })
	if i < len(c.marks) {
		return c.marks[i].at
	}
	return time.Now().UTC()
}

const (
	capInterval    = 100 * time.Millisecond
	followInterval = 25 * time.Millisecond
	maxLine        = 64 << 10 // Follow splits longer lines
)

var logPathIn = filepath.Join(stateDirIn[1:], logName)

// openLog opens the log in the container's upper dir; with create it
// replaces whatever the app left there by an empty log of the container's
// root.
func openLog(root *os.Root, create bool, id int) (*os.File, error) {
	f, err := root.OpenFile(logPathIn, os.O_RDWR|syscall.O_NONBLOCK, 0)
	if err == nil {
		st, err := f.Stat()
		if err == nil && st.Mode().IsRegular() {
			return f, nil
		}
		f.Close()
		if !create {
			return nil, fmt.Errorf("%s is not a regular file", logPathIn)
		}
	} else if !create {
		return nil, err
	}
	if err := root.Remove(logPathIn); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := root.Mkdir(stateDirIn[1:], 0o700); err == nil {
		if err := root.Lchown(stateDirIn[1:], id, id); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	f, err = root.OpenFile(logPathIn, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Chown(id, id); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// reopenLog is called before each start: the previous run may have
// replaced the file, and the new launcher opens whatever is at the path.
func (r *Runtime) reopenLog(c *ctr, root *os.Root) error {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if c.logF != nil {
		c.logF.Close()
		c.logF = nil
	}
	f, err := openLog(root, true, int(c.idBase))
	if err != nil {
		return err
	}
	c.logF = f
	c.noteOpened(f)
	return nil
}

// noteOpened marks what a log holds when the runtime opens it. Caller
// holds c.logMu.
func (c *ctr) noteOpened(f *os.File) {
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		c.noteGrowth(st.Size(), st.ModTime())
	}
}

// logFile returns the open log, opening it when the runtime has not
// started this container itself (adopted, or never started). Caller holds
// c.logMu.
func (r *Runtime) logFile(c *ctr) (*os.File, error) {
	if c.logF != nil {
		return c.logF, nil
	}
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if gone {
		return nil, fmt.Errorf("lxc: %s: %w", c.name, ErrNotFound)
	}
	root, err := os.OpenRoot(filepath.Join(c.dir, "upper"))
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := openLog(root, false, int(c.idBase))
	if err != nil {
		return nil, err
	}
	c.logF = f
	c.noteOpened(f)
	return f, nil
}

func (r *Runtime) capLoop() {
	defer close(r.done)
	t := time.NewTicker(capInterval)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-t.C:
		}
		r.mu.Lock()
		ctrs := make([]*ctr, 0, len(r.ctrs))
		for _, c := range r.ctrs {
			ctrs = append(ctrs, c)
		}
		r.mu.Unlock()
		for _, c := range ctrs {
			// A failure is retried on the next tick; there is nobody to
			// report it to and the next Logs call surfaces real problems.
			_ = r.capLog(c)
		}
	}
}

// capLog keeps about the newest half of LogLimit when the log is over it,
// while the app keeps appending (O_APPEND).
//
// Where the file system can (ext4, xfs), the head is cut in place with
// FALLOC_FL_COLLAPSE_RANGE, which the kernel does under the inode lock, so
// nothing appended meanwhile is lost; it cuts whole blocks, so the kept
// part may start inside a line, which readers then skip (logMidLine).
// Elsewhere (tmpfs) the kept tail is copied to the front and the file
// truncated: bytes appended meanwhile are copied too, and only what lands
// between the last check and the truncate is lost.
func (r *Runtime) capLog(c *ctr) error {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	f := c.logF
	if f == nil {
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	c.noteGrowth(size, time.Now())
	if size <= r.cfg.LogLimit {
		return nil
	}
	buf := make([]byte, 64<<10)
	from := size - r.cfg.LogLimit/2
	// Begin the kept part with a whole line when there is one.
	if n, _ := f.ReadAt(buf[:min(int64(len(buf)), size-from)], from); n > 0 {
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 && i+1 < n {
			from += int64(i) + 1
		}
	}
	if blk := blockSize(st); blk > 0 {
		if cut := from - from%blk; cut > 0 && unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_COLLAPSE_RANGE, 0, cut) == nil {
			return c.cutLog(cut, cut < from)
		}
	}
	src, dst := from, int64(0)
	for round := 0; round < 4; round++ {
		for src < size {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), size-src)], src)
			if n > 0 {
				if _, werr := f.WriteAt(buf[:n], dst); werr != nil {
					return werr
				}
				src += int64(n)
				dst += int64(n)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if n == 0 {
				break
			}
		}
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Size() <= size || st.Size() > size+r.cfg.LogLimit/2 {
			break
		}
		size = st.Size()
	}
	if err := f.Truncate(dst); err != nil {
		return err
	}
	return c.cutLog(src-dst, false)
}

// cutLog records that n more bytes are gone from the front of the log, and
// whether what is kept starts inside a line.
func (c *ctr) cutLog(n int64, midLine bool) error {
	c.logBase += n
	c.logMidLine = midLine
	rec := strconv.FormatInt(c.logBase, 10)
	if midLine {
		rec += " " + midLineMark
	}
	return writeFileAtomic(filepath.Join(c.dir, logBaseFile), []byte(rec+"\n"), 0o600)
}

// midLineMark follows logBase in its file when the kept log starts inside
// a line.
const midLineMark = "mid-line"

func parseLogBase(b []byte) (base int64, midLine bool) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	base, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || base < 0 {
		return 0, false
	}
	return base, len(f) == 2 && f[1] == midLineMark
}

func blockSize(st os.FileInfo) int64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int64(sys.Blksize)
	}
	return 0
}

// Logs returns the last lines of the app's output (lines <= 0: all that is
// kept). A last line without its newline yet is included.
func (r *Runtime) Logs(name string, lines int) ([]string, error) {
	out, _, err := r.tail(name, lines, true)
	return out, err
}

// LogLines is Logs with the time each line was captured.
func (r *Runtime) LogLines(name string, lines int) ([]LogLine, error) {
	c, err := r.get(name)
	if err != nil {
		return nil, err
	}
	text, end, err := r.tail(name, lines, true)
	if err != nil || len(text) == 0 {
		return nil, err
	}
	// Walk back from the end, each line ending after its newline. (When
	// the last line has none yet, the others end a byte later than
	// counted: the capture time of a line's last character instead of its
	// newline, written in the same write but for odd apps.)
	out := make([]LogLine, len(text))
	for i := len(text) - 1; i >= 0; i-- {
		out[i] = LogLine{At: r.capturedAt(c, end), Text: text[i]}
		end -= int64(len(text[i])) + 1
	}
	return out, nil
}

// LogTail is Logs without an unfinished last line, plus the offset right
// after the lines returned: hand it to Follow for `logs -f` without a gap or
// a repeated line.
func (r *Runtime) LogTail(name string, lines int) ([]string, int64, error) {
	return r.tail(name, lines, false)
}

func (r *Runtime) tail(name string, lines int, unfinished bool) ([]string, int64, error) {
	c, err := r.get(name)
	if err != nil {
		return nil, 0, err
	}
	c.logMu.Lock()
	defer c.logMu.Unlock()
	f, err := r.logFile(c)
	if err != nil {
		return nil, 0, fmt.Errorf("lxc: logs %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("lxc: logs %s: %w", name, err)
	}
	size := st.Size()
	// Read one byte more than LogLimit: it tells whether the window starts
	// on a line boundary.
	from := max(0, size-r.cfg.LogLimit-1)
	buf := make([]byte, size-from)
	n, err := f.ReadAt(buf, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("lxc: logs %s: %w", name, err)
	}
	buf = buf[:n]
	partialStart := from == 0 && c.logMidLine
	if from > 0 && len(buf) > 0 {
		partialStart = buf[0] != '\n'
		buf = buf[1:]
		from++
	}
	if !unfinished {
		buf = buf[:bytes.LastIndexByte(buf, '\n')+1]
	}
	return lastLines(buf, lines, partialStart), c.logBase + from + int64(len(buf)), nil
}

// Follow calls out with each line of output from the logical offset from
// (see LogTail; from < 0: only new output), like tail -f. It returns nil
// once the container is stopped and everything written has been passed on,
// and ctx.Err() when ctx ends first. Output older than what is kept is
// skipped.
func (r *Runtime) Follow(ctx context.Context, name string, from int64, out func(line string)) error {
	return r.follow(ctx, name, from, func(line string, _ int64) { out(line) })
}

// FollowLines is Follow with each line's capture time (see LogLines).
func (r *Runtime) FollowLines(ctx context.Context, name string, from int64, out func(LogLine)) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	return r.follow(ctx, name, from, func(line string, end int64) { out(LogLine{At: r.capturedAt(c, end), Text: line}) })
}

// follow is Follow, telling out the logical offset right after each line.
func (r *Runtime) follow(ctx context.Context, name string, from int64, out func(line string, end int64)) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	pos := from
	if pos < 0 {
		if _, pos, err = r.LogTail(name, 1); err != nil {
			return err
		}
	}
	buf := make([]byte, 64<<10)
	var pending []byte
	// pending ends at pos, the logical offset after the last read.
	emit := func(data []byte) {
		pending = append(pending, data...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				if len(pending) >= maxLine {
					out(string(pending), pos)
					pending = pending[:0]
				}
				return
			}
			out(string(pending[:i]), pos-int64(len(pending))+int64(i)+1)
			pending = pending[i+1:]
		}
	}
	for {
		n, err := r.readLogAt(c, &pos, buf)
		if err != nil {
			return err
		}
		if n > 0 {
			emit(buf[:n])
			continue
		}
		st, err := r.state(c)
		if err != nil {
			return err
		}
		if st == "stopped" {
			// Output written just before the stop is in the file now.
			for {
				n, err := r.readLogAt(c, &pos, buf)
				if err != nil {
					return err
				}
				if n == 0 {
					break
				}
				emit(buf[:n])
			}
			if len(pending) > 0 {
				out(string(pending), pos)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(followInterval):
		}
	}
}

// readLogAt reads from the logical offset *pos and advances it.
func (r *Runtime) readLogAt(c *ctr, pos *int64, buf []byte) (int, error) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	f, err := r.logFile(c)
	if err != nil {
		return 0, fmt.Errorf("lxc: logs %s: %w", c.name, err)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	phys := *pos - c.logBase
	if phys < 0 {
		// Cut away meanwhile: continue with the oldest line kept.
		phys = 0
		if c.logMidLine {
			head := make([]byte, min(len(buf), maxLine))
			n, _ := f.ReadAt(head, 0)
			if i := bytes.IndexByte(head[:n], '\n'); i >= 0 {
				phys = int64(i) + 1
			}
		}
	}
	if phys > st.Size() {
		phys = st.Size() // the app truncated its own log
	}
	n, err := f.ReadAt(buf, phys)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	*pos = c.logBase + phys + int64(n)
	return n, nil
}
