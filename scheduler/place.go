// Package scheduler decides where containers run. It is pure: hosts in,
// placements out, so it can be tested (and benchmarked) without hosts.
package scheduler

import (
	"container/heap"
	"errors"
	"fmt"
)

// Host is what placement needs to know of an up, active host.
type Host struct {
	Name       string
	Weight     int    // relative share of containers; 0 counts as 1
	MemFree    uint64 // bytes available
	Containers int    // containers it runs now
}

// Request is one app's need for new containers.
type Request struct {
	N      int
	Memory uint64 // each container's memory limit; a host needs this much free
	// Existing counts the app's instances already on each host, so that new
	// ones go elsewhere first.
	Existing map[string]int
}

// ErrNoHosts means no host is up to run anything.
var ErrNoHosts = errors.New("no host is up to run containers: is upscale-agent running?")

// ErrNoCapacity means hosts are up but none has room.
var ErrNoCapacity = errors.New("no host has room")

// Place picks hosts for r.N new containers: hosts without the app first,
// then the least loaded for their weight, then the one with the most free
// memory; a host is only chosen while it has r.Memory free.
func Place(r Request, hosts []Host) ([]string, error) {
	if r.N <= 0 {
		return nil, nil
	}
	if len(hosts) == 0 {
		return nil, ErrNoHosts
	}
	// One allocation for every slot: Place runs for each container of a
	// deploy over every host.
	slots := make([]slot, 0, len(hosts))
	for _, h := range hosts {
		if h.MemFree < r.Memory {
			continue
		}
		w := float64(h.Weight)
		if h.Weight <= 0 {
			w = 1
		}
		app := 0
		if len(r.Existing) > 0 {
			app = r.Existing[h.Name]
		}
		slots = append(slots, slot{host: h, app: app, load: h.Containers, free: h.MemFree, w: w})
	}
	out := make([]string, 0, r.N)
	if r.N <= linearMax {
		// A few containers (the usual deploy): a scan per container
		// beats building a heap of every host.
		for len(out) < r.N {
			best := -1
			for i := range slots {
				if slots[i].free >= r.Memory && (best < 0 || less(&slots[i], &slots[best])) {
					best = i
				}
			}
			if best < 0 {
				return nil, noRoom(r, len(out))
			}
			s := &slots[best]
			out = append(out, s.host.Name)
			s.app++
			s.load++
			s.free -= r.Memory
		}
		return out, nil
	}
	q := make(queue, len(slots))
	for i := range slots {
		q[i] = &slots[i]
	}
	heap.Init(&q)
	for len(out) < r.N {
		if len(q) == 0 {
			return nil, noRoom(r, len(out))
		}
		s := q[0]
		out = append(out, s.host.Name)
		s.app++
		s.load++
		s.free -= r.Memory
		if s.free < r.Memory {
			heap.Pop(&q)
		} else {
			heap.Fix(&q, 0)
		}
	}
	return out, nil
}

type slot struct {
	host Host
	app  int // this app's instances on it, placed ones included
	load int // all containers on it, placed ones included
	free uint64
	w    float64 // the weight, 1 when unset
}

type queue []*slot

func (q queue) Len() int { return len(q) }

// linearMax is the most containers Place places with a scan per container
// rather than a heap.
const linearMax = 8

func noRoom(r Request, placed int) error {
	return fmt.Errorf("%w: %d more container(s) of %d MiB would not fit on any up host", ErrNoCapacity, r.N-placed, r.Memory>>20)
}

func (q queue) Less(i, j int) bool { return less(q[i], q[j]) }

// less orders hosts for the next container: fewer of this app's instances,
// then less load for its weight, then more free memory, then by name.
func less(a, b *slot) bool {
	if a.app != b.app {
		return a.app < b.app
	}
	la, lb := float64(a.load)/a.w, float64(b.load)/b.w
	if la != lb {
		return la < lb
	}
	if a.free != b.free {
		return a.free > b.free
	}
	return a.host.Name < b.host.Name
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*slot)) }
func (q *queue) Pop() any {
	old := *q
	s := old[len(old)-1]
	*q = old[:len(old)-1]
	return s
}
