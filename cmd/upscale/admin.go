package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/pflag"

	"github.com/upscalehq/upscale/commands"
	"github.com/upscalehq/upscale/keys"
)

// The local CLI hands its command to the running server over a unix socket
// in the data directory (root only), so that what needs the server's state
// (hosts, running apps) works from the box as well as over ssh.

type adminRequest struct {
	Args  []string `json:"args"`
	Stdin []byte   `json:"stdin,omitempty"`
}

type adminReply struct {
	Out  string `json:"out,omitempty"`
	Err  string `json:"err,omitempty"`
	Exit *int   `json:"exit,omitempty"`
}

func adminSocket(data string) string { return filepath.Join(data, "run", "admin.sock") }

// maxAdminStdin bounds what the local CLI forwards of its stdin (a key, an
// identity file).
const maxAdminStdin = 1 << 20

// serveAdmin runs forwarded commands as the local operator.
func serveAdmin(ctx context.Context, l net.Listener, env *commands.Env, remote string, log *slog.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			var req adminRequest
			if err := json.NewDecoder(io.LimitReader(conn, 2*maxAdminStdin)).Decode(&req); err != nil {
				log.Warn("admin socket: bad request", "err", err)
				return
			}
			out := &replyWriter{enc: json.NewEncoder(conn)}
			inv := commands.Invocation{Principal: keys.Local, Prog: "upscale", Remote: remote,
				Stdin: bytes.NewReader(req.Stdin), Stdout: out.stream(false), Stderr: out.stream(true)}
			// The command ends with the connection: a Ctrl-C at the CLI
			// stops a followed log.
			cctx, cancel := context.WithCancel(ctx)
			go func() { io.Copy(io.Discard, conn); cancel() }()
			code := commands.New(env, inv, nil).Execute(cctx, req.Args)
			cancel()
			out.mu.Lock()
			out.enc.Encode(adminReply{Exit: &code})
			out.mu.Unlock()
		}()
	}
}

type replyWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

type streamWriter struct {
	r   *replyWriter
	err bool
}

func (r *replyWriter) stream(stderr bool) io.Writer { return streamWriter{r, stderr} }

func (w streamWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	rep := adminReply{Out: string(p)}
	if w.err {
		rep = adminReply{Err: string(p)}
	}
	return len(p), w.r.enc.Encode(rep)
}

// globalFlags are the local CLI's own flags, which the server's command
// tree does not know.
var globalFlags = []string{"--data", "--db", "--config", "--domain", "--runtimes"}

// forward runs args on the running server of the data directory args
// name, if one answers; ok is false when none does.
func forward(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int, ok bool) {
	opts := &options{}
	fs := pflag.NewFlagSet("upscale", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	opts.register(fs)
	fs.BoolP("help", "h", false, "")
	if err := fs.Parse(args); err != nil {
		return 0, false
	}
	if err := opts.load(fs); err != nil {
		return 0, false
	}
	conn, err := net.Dial("unix", adminSocket(opts.Data))
	if err != nil {
		return 0, false
	}
	defer conn.Close()
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(a, "=")
		if isGlobal(name) {
			if !hasValue {
				i++
			}
			continue
		}
		rest = append(rest, a)
	}
	req := adminRequest{Args: rest}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice == 0 {
			req.Stdin, _ = io.ReadAll(io.LimitReader(f, maxAdminStdin))
		}
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return 0, false
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var rep adminReply
		if err := dec.Decode(&rep); err != nil {
			fmt.Fprintf(stderr, "error: the server went away: %v\n", err)
			return 1, true
		}
		if rep.Exit != nil {
			return *rep.Exit, true
		}
		io.WriteString(stdout, rep.Out)
		io.WriteString(stderr, rep.Err)
	}
}

func isGlobal(name string) bool {
	for _, g := range globalFlags {
		if name == g {
			return true
		}
	}
	return false
}
