// Package subids reserves the host uids and gids that unprivileged
// containers run as, in /etc/subuid and /etc/subgid, next to the ranges
// other users already hold.
//
// The files are shared with shadow's tools (useradd picks the first free
// 65536 ids from 100000 for every new user, and Debian cloud images give
// their first user exactly that range), so a range is never assumed: it is
// looked up or allocated around what is there, under the lock useradd
// itself takes, and kept for good once written.
package subids

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Owner is who holds the containers' ranges: LXC maps ids through shadow's
// newuidmap, which accepts only ranges of the calling user.
const Owner = "root"

// First is where allocation starts, shadow's default SUB_UID_MIN: ids
// below it are left to ordinary users and groups.
const First = 100000

// Files are the two maps and the lock that guards them.
type Files struct {
	UID, GID string
	// Lock is the file glibc's lckpwdf locks (shadow's tools hold it while
	// they rewrite the maps).
	Lock string
}

// System are this machine's files.
var System = Files{UID: "/etc/subuid", GID: "/etc/subgid", Lock: "/etc/.pwd.lock"}

// lockWait is how long Reserve waits for the lock: lckpwdf gives up after
// 15 s too.
const lockWait = 15 * time.Second

// Reserve returns the start of a range of size ids that Owner holds in
// both files and nobody else overlaps. With want != 0 it is exactly that
// range (the one the caller's containers were made with), added where it
// is missing and refused when another user holds part of it. With want == 0
// it is Owner's lowest range that fits, or the lowest free one from First,
// which is then written to both files.
func (f Files) Reserve(ctx context.Context, want, size uint32) (uint32, error) {
	return f.locked(ctx, size, func(uids, gids idMap) (uint64, error) {
		return pick(uids, gids, want, size)
	})
}

// pick is Reserve's choice, made under the lock.
func pick(uids, gids idMap, want, size uint32) (uint64, error) {
	var start uint64
	if want != 0 {
		if uint64(want)+uint64(size) > maxID {
			return 0, fmt.Errorf("subids: ids %d-%d go past %d", want, uint64(want)+uint64(size)-1, maxID-1)
		}
		for _, m := range []idMap{uids, gids} {
			if r, ok := m.taken(uint64(want), uint64(size)); ok {
				return 0, fmt.Errorf("subids: %s: ids %d-%d of the containers overlap %s's range %d-%d",
					m.path, want, uint64(want)+uint64(size)-1, r.Owner, r.Start, r.end()-1)
			}
		}
		start = uint64(want)
	} else if start = held(uids, gids, uint64(size)); start == 0 {
		if start = free(uids, gids, uint64(size)); start == 0 {
			return 0, fmt.Errorf("subids: no %d free ids in %s and %s", size, uids.path, gids.path)
		}
	}
	return start, nil
}

// Allocate reserves a new range of size ids for Owner: the lowest from
// First that no line of either file uses, Owner's own lines included, so
// that it is shared with no other container range on this machine (another
// namespace's, another agent's, the runtime's default). It is written to
// both files under the lock.
func (f Files) Allocate(ctx context.Context, size uint32) (uint32, error) {
	return f.locked(ctx, size, func(uids, gids idMap) (uint64, error) {
		if start := free(uids, gids, uint64(size)); start != 0 {
			return start, nil
		}
		return 0, fmt.Errorf("subids: no %d free ids in %s and %s", size, uids.path, gids.path)
	})
}

// locked reads both files under the lock, lets choose pick a range of size
// ids, and gives it to Owner in each file that does not already.
func (f Files) locked(ctx context.Context, size uint32, choose func(uids, gids idMap) (uint64, error)) (uint32, error) {
	if size == 0 {
		return 0, errors.New("subids: empty range")
	}
	unlock, err := lockFile(ctx, f.Lock)
	if err != nil {
		return 0, err
	}
	defer unlock()
	uids, err := readMap(f.UID)
	if err != nil {
		return 0, err
	}
	gids, err := readMap(f.GID)
	if err != nil {
		return 0, err
	}
	start, err := choose(uids, gids)
	if err != nil {
		return 0, err
	}
	for _, m := range []idMap{uids, gids} {
		if !m.holds(start, uint64(size)) {
			if err := m.add(start, uint64(size)); err != nil {
				return 0, err
			}
		}
	}
	return uint32(start), nil
}

// maxID bounds every range: uid 2^32-1 is "no uid".
const maxID = 1<<32 - 1

// Range is one line of a map: Owner may use ids Start to Start+Count-1.
type Range struct {
	Owner        string
	Start, Count uint64
}

func (r Range) end() uint64 { return r.Start + r.Count }

func (r Range) overlaps(start, count uint64) bool {
	return r.Start < start+count && start < r.end()
}

func (r Range) covers(start, count uint64) bool {
	return r.Start <= start && start+count <= r.end()
}

func (r Range) ours() bool { return r.Owner == Owner || r.Owner == "0" }

// Parse reads a map ("owner:start:count" lines), skipping what it cannot
// read the way shadow's tools do.
func Parse(data []byte) []Range {
	var out []Range
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || f[0] == "" {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		out = append(out, Range{Owner: f[0], Start: start, Count: count})
	}
	return out
}

// idMap is one file as read under the lock.
type idMap struct {
	path   string
	data   []byte
	ranges []Range
}

func readMap(path string) (idMap, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return idMap{}, fmt.Errorf("subids: %w", err)
	}
	return idMap{path: path, data: data, ranges: Parse(data)}, nil
}

// taken is the first range of another user that overlaps the ids.
func (m idMap) taken(start, count uint64) (Range, bool) {
	for _, r := range m.ranges {
		if !r.ours() && r.overlaps(start, count) {
			return r, true
		}
	}
	return Range{}, false
}

func (m idMap) holds(start, count uint64) bool {
	for _, r := range m.ranges {
		if r.ours() && r.covers(start, count) {
			return true
		}
	}
	return false
}

// held is the lowest start of size ids Owner holds in one file that the
// other file has for Owner or free, with nobody else on them; 0 if none.
func held(uids, gids idMap, size uint64) uint64 {
	best := uint64(0)
	for _, m := range []idMap{uids, gids} {
		for _, r := range m.ranges {
			if !r.ours() || r.Count < size || (best != 0 && r.Start >= best) {
				continue
			}
			if _, ok := uids.taken(r.Start, size); ok {
				continue
			}
			if _, ok := gids.taken(r.Start, size); ok {
				continue
			}
			best = r.Start
		}
	}
	return best
}

// free is the lowest start from First where size ids overlap no range of
// either file; 0 if there is none. A free range starts at First or right
// after some range, so those are the only candidates.
func free(uids, gids idMap, size uint64) uint64 {
	all := append(append([]Range(nil), uids.ranges...), gids.ranges...)
	best := uint64(0)
	try := func(s uint64) {
		if s < First || s+size > maxID || (best != 0 && s >= best) {
			return
		}
		for _, r := range all {
			if r.overlaps(s, size) {
				return
			}
		}
		best = s
	}
	try(First)
	for _, r := range all {
		try(r.end())
	}
	return best
}

// add appends Owner's range and replaces the file in one rename, as
// shadow's tools do, keeping its mode.
func (m idMap) add(start, count uint64) error {
	data := m.data
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = fmt.Appendf(data, "%s:%d:%d\n", Owner, start, count)
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(m.path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp := m.path + "+"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("subids: %w", err)
	}
	_, err = f.Write(data)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, m.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("subids: writing %s: %w", m.path, err)
	}
	return nil
}

// lockFile takes a write lock on path the way lckpwdf does, so useradd and
// other agents wait for us and we for them. An open-file-description lock
// conflicts with lckpwdf's record lock and also with another Reserve in
// this process, which a record lock would not.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("subids: lock: %w", err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			f.Close()
			return nil, fmt.Errorf("subids: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("subids: %s is locked (a useradd or usermod still running?): %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
