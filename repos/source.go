package repos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// Source is a commit in an app's repository, readable by git with Env
// (the quarantine variables during a push: the pushed objects are not in
// the repository's object store until the push is accepted).
type Source struct {
	Repo   string
	Env    []string
	Commit string
}

// Commit is what users see of a commit in releases and pushes.
type Commit struct {
	Subject string
	Author  string
}

// Info reads the commit's subject (git's: the first paragraph on one
// line) and author.
func (s Source) Info(ctx context.Context) (Commit, error) {
	out, err := s.git(ctx, nil, "log", "-1", "--format=%s%x00%an", s.Commit)
	if err != nil {
		return Commit{}, err
	}
	subject, author, _ := strings.Cut(strings.TrimRight(string(out), "\n"), "\x00")
	return Commit{Subject: subject, Author: author}, nil
}

// Archive writes the commit's tree as a tar to w.
func (s Source) Archive(ctx context.Context, w io.Writer) error {
	_, err := s.git(ctx, w, "archive", "--format=tar", s.Commit)
	return err
}

func (s Source) git(ctx context.Context, stdout io.Writer, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = s.Repo
	cmd.Env = Env(append([]string{"GIT_DIR=" + s.Repo}, s.Env...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// AppYAML reads app.yaml at the root of the commit with `git cat-file`
// (during a push the objects are still in quarantine, which go-git cannot
// see).
// problem is a user-facing reason the file cannot be used (missing, too
// big, not a file); err is the server's own failure.
func (s Source) AppYAML(ctx context.Context) (data []byte, problem string, err error) {
	data, problem, missing, err := s.blob(ctx, "app.yaml", appspec.MaxSize)
	if missing {
		problem = fmt.Sprintf("app.yaml: missing at the root of %s; add one, e.g. \"runtime: python\" (see docs/app-yaml.md)", msgtext.Short(s.Commit))
	}
	return data, problem, err
}

// ReadFile reads the file name at the root of the commit, as AppYAML reads
// app.yaml: problem says why it cannot be used (missing, a directory, over
// max bytes).
func (s Source) ReadFile(ctx context.Context, name string, max int64) (data []byte, problem string, err error) {
	data, problem, _, err = s.blob(ctx, name, max)
	return data, problem, err
}

// Files lists the names of the files at the root of the commit (regular
// files and links; not directories or submodules), what runtime detection
// looks at.
func (s Source) Files(ctx context.Context) ([]string, error) {
	out, err := s.git(ctx, nil, "ls-tree", "-z", s.Commit)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, entry := range strings.Split(string(out), "\x00") {
		// "MODE TYPE OBJECT\tNAME"; -z leaves names unquoted.
		meta, name, ok := strings.Cut(entry, "\t")
		if f := strings.Fields(meta); ok && len(f) == 3 && f[1] == "blob" {
			files = append(files, name)
		}
	}
	return files, nil
}

func (s Source) blob(ctx context.Context, name string, max int64) (data []byte, problem string, missing bool, err error) {
	if name == "" || strings.ContainsAny(name, "/\n\x00") {
		return nil, "", false, fmt.Errorf("read %q: not a name at the root of a repository", name)
	}
	repo, commit, env := s.Repo, s.Commit, s.Env
	cmd := exec.CommandContext(ctx, "git", "cat-file", "--batch")
	cmd.Dir = repo
	cmd.Env = Env(append([]string{"GIT_DIR=" + repo}, env...)...)
	cmd.Stdin = strings.NewReader(commit + ":" + name + "\n")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", false, err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", false, err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	r := bufio.NewReader(stdout)
	header, err := r.ReadString('\n')
	if err != nil {
		return nil, "", false, fmt.Errorf("git cat-file: %w", err)
	}
	f := strings.Fields(header)
	switch {
	case len(f) == 2 && f[1] == "missing":
		return nil, fmt.Sprintf("%s: missing at the root of %s", name, msgtext.Short(commit)), true, nil
	case len(f) != 3:
		return nil, "", false, fmt.Errorf("git cat-file: unexpected header %q", header)
	case f[1] == "tree":
		return nil, fmt.Sprintf("%s: at the root of %s is a directory, not a file", name, msgtext.Short(commit)), false, nil
	case f[1] != "blob":
		return nil, fmt.Sprintf("%s: at the root of %s is a %s, not a file", name, msgtext.Short(commit), f[1]), false, nil
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return nil, "", false, fmt.Errorf("git cat-file: bad size in %q", header)
	}
	if size > max {
		return nil, fmt.Sprintf("%s: %d bytes is over the %d KiB limit", name, size, max>>10), false, nil
	}
	data = make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, "", false, fmt.Errorf("git cat-file: %w", err)
	}
	return data, "", false, nil
}

// Head is the commit app's branch points at, or "" when the branch has no
// commit or git cannot read it. The error is only for a bad app name.
func (r *Repos) Head(ctx context.Context, app names.App, branch string) (string, error) {
	repo, err := r.Path(app)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--verify", "--quiet", "refs/heads/"+branch+"^{commit}")
	cmd.Dir = repo
	cmd.Env = Env("GIT_DIR=" + repo)
	out, err := cmd.Output()
	if err != nil {
		return "", nil
	}
	return strings.TrimSpace(string(out)), nil
}
