package hostagent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"

	"github.com/upscalehq/upscale/atomicfile"
	"github.com/upscalehq/upscale/hostagent/subids"
	"github.com/upscalehq/upscale/names"
)

// IDRangesFile is the record of namespaces' id ranges, in the agent's
// LXCPATH: the containers there and their files belong to those ranges.
const IDRangesFile = ".idranges"

// IDRanges gives each namespace its own range of host uids and gids for
// its containers (instances, builds and one-off commands alike), as LXD's
// security.idmap.isolated does: a process escaping one tenant's container
// is a host uid that owns none of another tenant's files, nor the images
// the other's containers run on.
//
// A namespace's range is allocated on this host the first time one of its
// containers is made here: a range no line of /etc/subuid or /etc/subgid
// uses, given to root there (LXC maps ids through newuidmap). It is
// recorded at once and kept for good, so it survives agent restarts and
// the namespace's later containers, and its images, share it.
type IDRanges struct {
	Path  string       // the record, LXCPATH/IDRangesFile
	Files subids.Files // where ranges are reserved: subids.System
	Size  uint32       // ids per range, 65536 when 0

	mu       sync.Mutex
	loaded   bool
	ranges   map[string]uint32
	reserved map[string]bool // checked in Files since this process started
}

// idRangesRecord is the file's content.
type idRangesRecord struct {
	Namespaces map[string]uint32 `json:"namespaces"`
}

func (r *IDRanges) size() uint32 {
	if r.Size == 0 {
		return 65536
	}
	return r.Size
}

// For returns the first id of namespace's range, allocating and recording
// it if it has none.
func (r *IDRanges) For(ctx context.Context, namespace string) (uint32, error) {
	if err := names.Check("namespace", namespace); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.loaded {
		data, err := os.ReadFile(r.Path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("id ranges: %w", err)
		}
		ranges, err := ParseIDRanges(data, r.size())
		if err != nil {
			// Left as it is: the containers there still run in those
			// ranges, and an operator can mend the file.
			return 0, fmt.Errorf("id ranges: %s: %w", r.Path, err)
		}
		r.ranges, r.reserved, r.loaded = ranges, map[string]bool{}, true
	}
	if base, ok := r.ranges[namespace]; ok {
		if !r.reserved[namespace] {
			// Still root's, or root's again (someone edited the files),
			// and nobody else's.
			if _, err := r.Files.Reserve(ctx, base, r.size()); err != nil {
				return 0, fmt.Errorf("namespace %s's id range: %w", namespace, err)
			}
			r.reserved[namespace] = true
		}
		return base, nil
	}
	base, err := r.Files.Allocate(ctx, r.size())
	if err != nil {
		return 0, fmt.Errorf("an id range for namespace %s: %w", namespace, err)
	}
	next := make(map[string]uint32, len(r.ranges)+1)
	for ns, b := range r.ranges {
		next[ns] = b
	}
	next[namespace] = base
	// A range allocated but not recorded (a crash right here) stays root's
	// in /etc/subuid unused: a leak of ids, never a range shared.
	if err := writeIDRanges(r.Path, next); err != nil {
		return 0, fmt.Errorf("id ranges: recording namespace %s's: %w", namespace, err)
	}
	r.ranges = next
	r.reserved[namespace] = true
	return base, nil
}

// ParseIDRanges reads the record. Ranges must be namespaces' (valid names),
// at least subids.First, of size ids below 2^32 and apart: two namespaces
// sharing ids is what the record exists to prevent.
func ParseIDRanges(data []byte, size uint32) (map[string]uint32, error) {
	ranges := map[string]uint32{}
	if len(bytes.TrimSpace(data)) == 0 {
		return ranges, nil
	}
	var rec idRangesRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("not a record of id ranges: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a record of id ranges: data after the record")
	}
	type entry struct {
		ns   string
		base uint32
	}
	var all []entry
	for ns, base := range rec.Namespaces {
		if err := names.Check("namespace", ns); err != nil {
			return nil, err
		}
		if base < subids.First || uint64(base)+uint64(size) > 1<<32-1 {
			return nil, fmt.Errorf("namespace %s: id range %d+%d is outside %d to 2^32-2", ns, base, size, subids.First)
		}
		all = append(all, entry{ns, base})
		ranges[ns] = base
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.base, b.base) })
	for i := 1; i < len(all); i++ {
		if uint64(all[i-1].base)+uint64(size) > uint64(all[i].base) {
			return nil, fmt.Errorf("namespaces %s and %s have overlapping id ranges (%d and %d)", all[i-1].ns, all[i].ns, all[i-1].base, all[i].base)
		}
	}
	return ranges, nil
}

// writeIDRanges replaces the record so that a crash leaves the old record
// or the new one, never a torn one.
func writeIDRanges(path string, ranges map[string]uint32) error {
	data, err := json.MarshalIndent(idRangesRecord{Namespaces: ranges}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}
