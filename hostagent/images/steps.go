package images

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// debootstrap prints a line or two per package ("I: Retrieving libc6
// 2.36", "I: Validating ...", "I: Unpacking ...": about 600 for an
// image), which would flood the first push of each runtime. steps shows
// them as a few numbered steps instead, with a count now and then, and
// passes on what is not an "I:" line (warnings, errors) as it is. All of
// the output is kept (bounded) to be shown whole when debootstrap fails.
type steps struct {
	emit    func(string)
	now     func() time.Time
	step    int             // of debootstrapSteps, 0 before the first
	seen    map[string]bool // packages of this step so far
	last    time.Time
	started time.Time

	all     []string
	allSize int
	dropped int
}

// debootstrapSteps are the steps of a debootstrap run, each begun by the
// first line matching it.
var debootstrapSteps = []struct {
	start *regexp.Regexp
	what  string
}{
	{regexp.MustCompile(`^I: Retrieving `), "downloading packages"},
	{regexp.MustCompile(`^I: Extracting `), "extracting packages"},
	{regexp.MustCompile(`^I: (Installing core packages|Unpacking required packages)`), "installing the required packages"},
	{regexp.MustCompile(`^I: (Unpacking|Configuring) the base system`), "installing the base packages"},
}

// packageLine is a line about one package, counted. Package names are
// lowercase, which leaves out the archive's index (InRelease, Packages).
var packageLine = regexp.MustCompile(`^I: (Retrieving|Extracting|Unpacking|Configuring) ([a-z0-9][a-z0-9+.-]*)( \S+)?$`)

// stepEvery is how often a long step says how far it got.
const stepEvery = 15 * time.Second

// What steps keeps of the output for a failure.
const (
	maxKeptLines = 2000
	maxKeptBytes = 256 << 10
)

func newSteps(emit func(string)) *steps {
	return &steps{emit: emit, now: time.Now, seen: map[string]bool{}}
}

func (s *steps) line(l string) {
	s.keep(l)
	if !strings.HasPrefix(l, "I: ") {
		s.emit("  " + l)
		return
	}
	for i := s.step; i < len(debootstrapSteps); i++ {
		if debootstrapSteps[i].start.MatchString(l) {
			s.begin(i + 1)
			break
		}
	}
	if l == "I: Base system installed successfully." {
		s.emit(fmt.Sprintf("  debootstrap: done in %s", s.now().Sub(s.started).Round(time.Second)))
		return
	}
	if m := packageLine.FindStringSubmatch(l); m != nil && !strings.Contains(l, " the base system") && !strings.Contains(l, " required packages") {
		s.seen[strings.TrimSuffix(m[2], "...")] = true
		if now := s.now(); s.step > 0 && now.Sub(s.last) >= stepEvery {
			s.last = now
			s.emit(fmt.Sprintf("  debootstrap [%d/%d] %s: %d so far", s.step, len(debootstrapSteps), debootstrapSteps[s.step-1].what, len(s.seen)))
		}
	}
}

func (s *steps) begin(step int) {
	now := s.now()
	if s.started.IsZero() {
		s.started = now
	}
	s.step, s.seen, s.last = step, map[string]bool{}, now
	s.emit(fmt.Sprintf("  debootstrap [%d/%d] %s", step, len(debootstrapSteps), debootstrapSteps[step-1].what))
}

func (s *steps) keep(l string) {
	if len(s.all) >= maxKeptLines || s.allSize+len(l) > maxKeptBytes {
		s.dropped++
		return
	}
	s.all = append(s.all, l)
	s.allSize += len(l)
}

// dump shows the whole output, for a failure.
func (s *steps) dump() {
	s.emit("  debootstrap's output:")
	for _, l := range s.all {
		s.emit("    " + l)
	}
	if s.dropped > 0 {
		s.emit(fmt.Sprintf("    (%d more lines not kept)", s.dropped))
	}
}
