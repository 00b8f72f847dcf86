// Package schedslice asks the kernel's fair scheduler (EEVDF, Linux 6.12
// and later) for a short time slice for the tasks that serve requests:
// HAProxy and the processes of apps that are up. Measured on two cores,
// what one app's deploys cost another app's latency was mostly wakeup
// delay: a woken HAProxy or app process waited for the task on the CPU
// (the agent, lxc-start, the server, a starting app) to finish its slice,
// about 1.5 ms there. A task with a shorter slice gets an earlier
// deadline, so it preempts a task with the default slice when it wakes
// (the kernel's PREEMPT_SHORT), without getting more CPU than its share.
// Older kernels ignore the request; Supported says which this is.
package schedslice

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Short is what serving tasks ask for: the kernel's lower bound.
const Short = 100 * time.Microsecond

// SetTask gives one thread (a tid; 0 for the calling thread) slice d,
// keeping its policy and nice value. A thread that has exited is no error.
func SetTask(tid int, d time.Duration) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return ignoreGone(err)
	}
	if attr.Policy != unix.SCHED_NORMAL && attr.Policy != unix.SCHED_BATCH {
		return nil // idle, real-time and deadline tasks keep what they have
	}
	attr.Runtime = uint64(d.Nanoseconds())
	return ignoreGone(unix.SchedSetAttr(tid, attr, 0))
}

// Slice is the slice thread tid runs with (its custom one or the
// kernel's default); 0 where the kernel has no EEVDF slices.
func Slice(tid int) (time.Duration, error) {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return 0, err
	}
	return time.Duration(attr.Runtime), nil
}

// SetProcess gives every thread of process pid slice d. Threads and
// children it creates later inherit it.
func SetProcess(pid int, d time.Duration) error {
	tids, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return ignoreGone(err)
	}
	var errs []error
	for _, t := range tids {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			errs = append(errs, SetTask(tid, d))
		}
	}
	return errors.Join(errs...)
}

// SetCgroup gives every thread in the cgroup directory dir and its
// descendants slice d: a container's processes, whatever their number.
// Threads are read from cgroup.threads (v2) or tasks (v1).
func SetCgroup(dir string, d time.Duration) error {
	var errs []error
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return ignoreGone(err)
		}
		if !e.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.threads"))
		if errors.Is(err, fs.ErrNotExist) {
			b, err = os.ReadFile(filepath.Join(path, "tasks"))
		}
		if err != nil {
			return ignoreGone(err)
		}
		for _, f := range strings.Fields(string(b)) {
			if tid, err := strconv.Atoi(f); err == nil {
				errs = append(errs, SetTask(tid, d))
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// Supported says whether this kernel keeps a custom slice: it tries on a
// thread of its own, which dies with the try.
func Supported() bool {
	ok := make(chan bool)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		ok <- SetTask(0, Short) == nil && sliceIs(0, Short)
	}()
	return <-ok
}

func sliceIs(tid int, d time.Duration) bool {
	got, err := Slice(tid)
	return err == nil && got == d
}

func ignoreGone(err error) error {
	if errors.Is(err, unix.ESRCH) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
