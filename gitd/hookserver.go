package gitd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/upscalehq/upscale/hooks"
)

// maxHookRequest bounds one hook request (10,000 ref updates fit easily).
const maxHookRequest = 4 << 20

// serveHook answers one hook client connection.
func (s *Server) serveHook(conn net.Conn) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HookTimeout)
	defer cancel()
	out := &hookOutput{enc: json.NewEncoder(conn)}
	var req hooks.Request
	if err := json.NewDecoder(io.LimitReader(conn, maxHookRequest)).Decode(&req); err != nil {
		out.exit(out.fail("malformed hook request"))
		return
	}
	p, ok := s.pushes.get(req.PushID)
	if !ok {
		out.exit(out.fail("this push is not known to the server"))
		return
	}
	say := func(l string) { out.line("%s", l) }
	var err error
	switch req.Hook {
	case hooks.PreReceive:
		hold := func(unlock func()) { s.pushes.holdUntilDone(req.PushID, unlock) }
		err = s.cfg.Pushes.PreReceive(ctx, p.principal, p.app, req, hold, say)
	case hooks.PostReceive:
		err = s.cfg.Pushes.PostReceive(ctx, p.principal, p.app, req, say)
	default:
		err = fmt.Errorf("unknown hook %q", req.Hook)
	}
	if err != nil {
		out.exit(out.fail("%v", err))
		return
	}
	out.exit(0)
}

// hookOutput writes replies to the hook client. Write errors (the pusher
// went away) are ignored: git aborts the push on its own then.
type hookOutput struct {
	enc *json.Encoder
}

func (o *hookOutput) line(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	// One reply per line keeps every line a "remote:" line of its own.
	for _, l := range strings.Split(msg, "\n") {
		_ = o.enc.Encode(hooks.Reply{Line: l})
	}
}

func (o *hookOutput) fail(format string, a ...any) int {
	o.line("error: "+format, a...)
	return 1
}

func (o *hookOutput) exit(code int) {
	_ = o.enc.Encode(hooks.Reply{Exit: &code})
}
