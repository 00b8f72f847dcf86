package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/upscalehq/upscale/msgtext"
)

// Size limits keep every frame well under NATS's 1 MB payload: a line or an
// error message that long is a bug or an attack, and anything bulky belongs
// in the object store.
const (
	maxLine    = 16 << 10  // one progress line or error message
	maxBody    = 256 << 10 // request or result JSON
	queueGroup = "upscale" // one handler instance answers each request

	replyToken  = "._reply."
	cancelToken = "._cancel."
)

// Frame kinds, in the order a call sees them.
const (
	kindAck       = "ack"
	kindProgress  = "progress"
	kindKeepalive = "keepalive"
	kindResult    = "result"
	kindError     = "error"
)

type requestEnvelope struct {
	// KeepaliveMS is how often the caller wants proof of life; derived
	// from its silence timeout so the two ends never disagree.
	KeepaliveMS int64           `json:"keepalive_ms"`
	Body        json.RawMessage `json:"body"`
}

type frame struct {
	Seq    uint64          `json:"seq"`
	Kind   string          `json:"kind"`
	Line   string          `json:"line,omitempty"`
	Cancel string          `json:"cancel,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

type cancelRequest struct {
	Reply string `json:"reply"`
}

// RemoteError is a handler's error as the caller sees it: the same text.
type RemoteError struct {
	Subject string
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// HandlerFunc serves one request. progress may be called from any
// goroutine until the handler returns; later calls are dropped.
type HandlerFunc func(ctx context.Context, req json.RawMessage, progress func(line string)) (any, error)

// Call sends req to the handler of subject, passes each progress line to
// progress (may be nil) in order, and decodes the result into resp (may be
// nil). A handler error comes back as *RemoteError. Cancelling ctx stops the
// wait and asks the handler to stop.
func (c *Conn) Call(ctx context.Context, subject string, req, resp any, progress func(line string)) error {
	if err := checkSubject(subject); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("call %s: %w", subject, context.Cause(ctx))
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("call %s: encode request: %w", subject, err)
	}
	data, err := json.Marshal(requestEnvelope{KeepaliveMS: max(c.silence/3, time.Millisecond).Milliseconds(), Body: body})
	if err != nil {
		return fmt.Errorf("call %s: encode request: %w", subject, err)
	}
	if len(data) > maxBody {
		return fmt.Errorf("call %s: request of %d bytes exceeds %d; put bulk data in the object store", subject, len(data), maxBody)
	}

	reply := subject + replyToken + nuid.Next()
	sub, err := c.nc.SubscribeSync(reply)
	if err != nil {
		return fmt.Errorf("call %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	// Frames come from one publisher in order; the default pending limit
	// would turn a chatty build into a slow-consumer error.
	_ = sub.SetPendingLimits(-1, 64<<20)

	wctx, done := c.watchDenials(ctx, func(s string) bool { return s == subject || s == reply })
	defer done()
	if err := c.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: data}); err != nil {
		return fmt.Errorf("call %s: %w", subject, err)
	}
	// After this round trip the server has answered our SUB and PUB: a
	// refused reply subscription or a no-responders status is already
	// queued, so the first nextFrame sees it instead of the silence timeout.
	fctx, fcancel := context.WithTimeout(wctx, c.silence)
	err = c.nc.FlushWithContext(fctx)
	fcancel()
	if err != nil {
		if perr := denied(wctx); perr != nil {
			return fmt.Errorf("call %s: %w", subject, perr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("call %s: %w", subject, context.Cause(ctx))
		}
		return fmt.Errorf("call %s: bus: %w", subject, err)
	}

	var next uint64
	var cancelSubject string
	for {
		msg, err := c.nextFrame(wctx, sub)
		if err != nil {
			if perr := denied(wctx); perr != nil {
				return fmt.Errorf("call %s: %w", subject, perr)
			}
			if ctx.Err() != nil {
				if cancelSubject != "" {
					c.sendCancel(cancelSubject, reply)
				}
				return fmt.Errorf("call %s: %w", subject, context.Cause(ctx))
			}
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				return noAnswer(subject, "")
			case errors.Is(err, context.DeadlineExceeded) && next == 0:
				return noAnswer(subject, " within "+c.silence.String())
			case errors.Is(err, context.DeadlineExceeded):
				return &noAnswerError{fmt.Sprintf("%s fell silent for %s mid-call", subject, c.silence)}
			case errors.Is(err, nats.ErrPermissionViolation):
				return fmt.Errorf("call %s: %w: subscription to %q", subject, ErrPermissionDenied, reply)
			default:
				return fmt.Errorf("call %s: %w", subject, err)
			}
		}
		f, err := decodeFrame(msg.Data)
		if err != nil {
			return fmt.Errorf("call %s: %w", subject, err)
		}
		if f.Seq != next {
			return fmt.Errorf("call %s: handler message %d arrived when %d was due: messages lost (bus reconnect?)", subject, f.Seq, next)
		}
		next++
		switch f.Kind {
		case kindAck:
			// Only cancel subjects of this subject's handlers: a forged
			// one would make us publish somewhere else on its behalf.
			if strings.HasPrefix(f.Cancel, subject+cancelToken) {
				cancelSubject = f.Cancel
			}
		case kindProgress:
			if progress != nil {
				progress(f.Line)
			}
		case kindKeepalive:
		case kindError:
			return &RemoteError{Subject: subject, Message: f.Error}
		case kindResult:
			if resp == nil {
				return nil
			}
			if err := json.Unmarshal(f.Result, resp); err != nil {
				return fmt.Errorf("call %s: decode reply: %w", subject, err)
			}
			return nil
		}
	}
}

// noAnswerError reads as the sentence a user sees at the end of a failed
// push, while still matching errors.Is(err, ErrNoAnswer).
type noAnswerError struct{ msg string }

func (e *noAnswerError) Error() string        { return e.msg }
func (e *noAnswerError) Is(target error) bool { return target == ErrNoAnswer }

func noAnswer(subject, within string) error {
	if strings.HasPrefix(subject, agentPrefix) {
		return &noAnswerError{fmt.Sprintf("no agent answered on %s%s: is upscale-agent running?", subject, within)}
	}
	return &noAnswerError{fmt.Sprintf("nothing answered on %s%s", subject, within)}
}

// nextFrame waits up to the silence timeout for the next frame. A missing
// handler shows up at once as a no-responders status; the timeout catches
// the rest (a handler that takes requests but never answers, an old agent).
func (c *Conn) nextFrame(ctx context.Context, sub *nats.Subscription) (*nats.Msg, error) {
	// A refused subscription is reported on entry (PermissionErrOnSubscribe);
	// the Flush in Call makes sure the refusal has arrived by then.
	tctx, cancel := context.WithTimeout(ctx, c.silence)
	defer cancel()
	return sub.NextMsgWithContext(tctx)
}

func (c *Conn) sendCancel(subject, reply string) {
	data, _ := json.Marshal(cancelRequest{Reply: reply})
	if err := c.nc.Publish(subject, data); err != nil {
		c.log.Debug("bus cancel not sent", "subject", subject, "err", err)
	}
}

// decodeFrame parses a frame from the handler side, which for the server is
// an agent's host answer: outside input, so strict about kinds.
func decodeFrame(data []byte) (frame, error) {
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		return frame{}, fmt.Errorf("bad frame from handler: %w", err)
	}
	switch f.Kind {
	case kindAck, kindProgress, kindKeepalive, kindError:
	case kindResult:
		if len(f.Result) == 0 {
			return frame{}, errors.New("bad frame from handler: result missing")
		}
	default:
		return frame{}, fmt.Errorf("bad frame from handler: unknown kind %.40q", f.Kind)
	}
	return f, nil
}

// checkSubject accepts literal subjects only: Handle on a wildcard would
// also receive our own reply and cancel subjects.
func checkSubject(s string) error {
	if s == "" || len(s) > 256 {
		return fmt.Errorf("bus: bad subject %.80q", s)
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.HasPrefix(tok, "_") ||
			strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("bus: bad subject %.80q", s)
		}
	}
	return nil
}

// Handle serves subject until stop is called or the connection closes.
// stop cancels the running handlers' contexts and waits for them to return,
// so their final frames are sent before an agent exits.
func (c *Conn) Handle(subject string, h HandlerFunc) (stop func(), err error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("bus: nil handler")
	}
	ctx, cancel := context.WithCancel(context.Background())
	hd := &handler{
		c:             c,
		subject:       subject,
		fn:            h,
		ctx:           ctx,
		cancel:        cancel,
		cancelSubject: subject + cancelToken + nuid.Next(),
		calls:         map[string]context.CancelFunc{},
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel()
		return nil, nats.ErrConnectionClosed
	}
	c.handlers[hd] = struct{}{}
	c.mu.Unlock()

	fail := func(err error) (func(), error) {
		hd.stop()
		return nil, fmt.Errorf("handle %s: %w", subject, err)
	}
	// The cancel subscription goes first: a request may arrive as soon as
	// the request subscription exists, and its caller may cancel at once.
	csub, first, err := c.subscribeChecked(hd.cancelSubject, "")
	if err != nil {
		return fail(err)
	}
	hd.loops.Add(1)
	go hd.serve(csub, first, hd.onCancel)
	rsub, first, err := c.subscribeChecked(subject, queueGroup)
	if err != nil {
		return fail(err)
	}
	hd.loops.Add(1)
	go hd.serve(rsub, first, hd.onRequest)
	return hd.stop, nil
}

type handler struct {
	c             *Conn
	subject       string
	fn            HandlerFunc
	ctx           context.Context
	cancel        context.CancelFunc
	cancelSubject string

	loops    sync.WaitGroup // subscription loops
	inflight sync.WaitGroup // running handler calls
	mu       sync.Mutex
	calls    map[string]context.CancelFunc // by reply subject
	stopOnce sync.Once
}

func (hd *handler) stop() {
	hd.stopOnce.Do(func() {
		hd.cancel()
		hd.loops.Wait()
		hd.inflight.Wait()
		hd.c.mu.Lock()
		delete(hd.c.handlers, hd)
		hd.c.mu.Unlock()
	})
}

func (hd *handler) serve(sub *nats.Subscription, first *nats.Msg, fn func(*nats.Msg)) {
	defer hd.loops.Done()
	defer sub.Unsubscribe()
	if first != nil {
		fn(first)
	}
	for {
		msg, err := sub.NextMsgWithContext(hd.ctx)
		switch {
		case err == nil:
			fn(msg)
		case hd.ctx.Err() != nil, errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubscription):
			return
		default:
			// Slow consumer and the like: requests were dropped, and their
			// callers will time out; keep serving the rest.
			hd.c.log.Warn("bus handler", "subject", sub.Subject, "err", err)
		}
	}
}

func (hd *handler) onCancel(msg *nats.Msg) {
	var cr cancelRequest
	if json.Unmarshal(msg.Data, &cr) != nil {
		return
	}
	hd.mu.Lock()
	cancel := hd.calls[cr.Reply]
	hd.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (hd *handler) onRequest(msg *nats.Msg) {
	// Frames go only to reply subjects of our own subject: a caller that
	// names some other subject as its reply would otherwise have this
	// handler publish there with the handler's permissions.
	if !strings.HasPrefix(msg.Reply, hd.subject+replyToken) {
		hd.c.log.Warn("bus request with foreign reply subject dropped", "subject", hd.subject, "reply", msg.Reply)
		return
	}
	ctx, cancel := context.WithCancel(hd.ctx)
	hd.mu.Lock()
	hd.calls[msg.Reply] = cancel
	hd.mu.Unlock()
	hd.inflight.Add(1)
	go func() {
		defer hd.inflight.Done()
		defer func() {
			hd.mu.Lock()
			delete(hd.calls, msg.Reply)
			hd.mu.Unlock()
			cancel()
		}()
		hd.run(ctx, cancel, msg)
	}()
}

func (hd *handler) run(ctx context.Context, cancel context.CancelFunc, msg *nats.Msg) {
	out := &replier{c: hd.c, subject: msg.Reply}
	// The ack is sent after the call is registered for cancellation, so a
	// caller that cancels after seeing it always finds the call.
	out.send(frame{Kind: kindAck, Cancel: hd.cancelSubject}, false)

	var env requestEnvelope
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		out.send(frame{Kind: kindError, Error: "bad request: " + err.Error()}, true)
		return
	}
	every := time.Duration(env.KeepaliveMS) * time.Millisecond
	every = min(max(every, 10*time.Millisecond), time.Minute)
	stopKeepalive := make(chan struct{})
	keepaliveDone := make(chan struct{})
	go func() {
		defer close(keepaliveDone)
		t := time.NewTicker(every)
		defer t.Stop()
		var down time.Time
		for {
			select {
			case <-t.C:
				// The caller gives up after three keepalives' worth of
				// silence; once this end has been cut off from the bus for
				// that long, nobody waits for the call (its caller gave up
				// or died with the server) and it is cancelled, so that a
				// build or command does not run on for nobody.
				switch {
				case hd.c.nc.IsConnected():
					down = time.Time{}
				case down.IsZero():
					down = time.Now()
				case time.Since(down) > 3*every:
					hd.c.log.Warn("bus call cancelled: cut off from the bus for longer than its caller waits", "subject", hd.subject, "for", time.Since(down).Round(time.Millisecond).String())
					cancel()
				}
				out.send(frame{Kind: kindKeepalive}, false)
			case <-stopKeepalive:
				return
			}
		}
	}()

	v, err := hd.call(ctx, env.Body, func(line string) {
		out.send(frame{Kind: kindProgress, Line: msgtext.Truncate(line, maxLine)}, false)
	})
	close(stopKeepalive)
	<-keepaliveDone
	if err != nil {
		out.send(frame{Kind: kindError, Error: msgtext.Truncate(err.Error(), maxLine)}, true)
		return
	}
	result, err := json.Marshal(v)
	if err != nil {
		out.send(frame{Kind: kindError, Error: "encode reply: " + err.Error()}, true)
		return
	}
	if len(result) > maxBody {
		out.send(frame{Kind: kindError, Error: fmt.Sprintf("reply of %d bytes exceeds %d", len(result), maxBody)}, true)
		return
	}
	out.send(frame{Kind: kindResult, Result: result}, true)
}

// call runs the handler and turns a panic into an error for the caller: an
// agent serving many requests must not die because one of them hit a bug.
func (hd *handler) call(ctx context.Context, body json.RawMessage, progress func(string)) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			hd.c.log.Error("bus handler panicked", "subject", hd.subject, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler for %s panicked: %v", hd.subject, r)
		}
	}()
	return hd.fn(ctx, body, progress)
}

// replier numbers and publishes one call's frames. The lock spans the
// publish so frames reach the connection's buffer in sequence order.
type replier struct {
	c       *Conn
	subject string
	mu      sync.Mutex
	seq     uint64
	done    bool
}

func (r *replier) send(f frame, final bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	f.Seq = r.seq
	data, err := json.Marshal(f)
	if err != nil { // only a result can fail, and it was marshalled already
		return
	}
	if err := r.c.nc.Publish(r.subject, data); err != nil {
		r.c.log.Warn("bus reply not sent", "subject", r.subject, "err", err)
	}
	r.seq++
	r.done = final
}
