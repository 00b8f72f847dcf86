package bus

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrNotFound is wrapped when an artifact (or the whole bucket) does
	// not exist.
	ErrNotFound = errors.New("artifact not found")
	// ErrCorrupt is wrapped when an artifact's content does not match the
	// digest recorded when it was stored.
	ErrCorrupt = errors.New("artifact corrupt")
)

// Artifact describes one stored object. SHA256 is lowercase hex, the form
// `sha256sum` prints and a release record keeps.
type Artifact struct {
	Name   string
	Size   int64
	SHA256 string
}

// artifactName allows what builders need (ns/app/v12.tar.gz) while keeping
// names safe to print and to map to a file name after a path check.
var artifactName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$`)

func checkArtifactName(name string) error {
	if !artifactName.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("bus: bad artifact name %.80q", name)
	}
	return nil
}

// Matchers for the permission violations that end an artifact operation.
// Each lists only the subjects its own operation publishes to, because a
// refusal arrives asynchronously and may belong to an earlier operation on
// the same connection: a failed Put's late refusal must not fail the Get
// that follows it. Put and Delete still overlap (meta record, purge), but a
// connection refused one of those is refused both.
const (
	apiPrefix  = "$JS.API."
	objPrefix  = "$O." + Bucket + "."
	metaPrefix = objPrefix + "M."
)

func readSubjects(s string) bool {
	return strings.HasPrefix(s, apiPrefix+"STREAM.INFO."+bucketStream) ||
		strings.HasPrefix(s, apiPrefix+"DIRECT.GET."+bucketStream)
}

func writeSubjects(name string) func(string) bool {
	meta := metaPrefix + base64.URLEncoding.EncodeToString([]byte(name))
	return func(s string) bool {
		return s == meta || strings.HasPrefix(s, objPrefix+"C.") ||
			s == apiPrefix+"STREAM.CREATE."+bucketStream || s == apiPrefix+"STREAM.PURGE."+bucketStream ||
			readSubjects(s)
	}
}

// objectStore binds the bucket once per connection; create is for writers,
// so a reader never creates an empty bucket by asking for a missing one.
func (c *Conn) objectStore(ctx context.Context, create bool) (jetstream.ObjectStore, error) {
	c.bucketMu.Lock()
	defer c.bucketMu.Unlock()
	if c.bucket != nil {
		return c.bucket, nil
	}
	obs, err := c.js.ObjectStore(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		obs, err = c.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      Bucket,
			Description: "Upscale release artifacts",
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another server won the race
			obs, err = c.js.ObjectStore(ctx, Bucket)
		}
	}
	if err != nil {
		return nil, err
	}
	c.bucket = obs
	return obs, nil
}

// PutArtifact stores r under name, replacing an artifact of that name once
// the new one is complete (so a retried build upload is safe). Artifacts are
// chunked by the object store; size is bounded only by the bus's storage.
func (c *Conn) PutArtifact(ctx context.Context, name string, r io.Reader) (Artifact, error) {
	if err := checkArtifactName(name); err != nil {
		return Artifact{}, err
	}
	wctx, done := c.watchDenials(ctx, writeSubjects(name))
	defer done()
	obs, err := c.objectStore(wctx, true)
	if err != nil {
		return Artifact{}, artifactErr(wctx, "put", name, err)
	}
	info, err := obs.Put(wctx, jetstream.ObjectMeta{Name: name}, r)
	if err != nil {
		return Artifact{}, artifactErr(wctx, "put", name, err)
	}
	a, err := toArtifact(info)
	if err != nil {
		return Artifact{}, artifactErr(wctx, "put", name, err)
	}
	return a, nil
}

// GetArtifact writes artifact name to w and checks it against the digest
// recorded at put time. On ErrCorrupt, w has already received the bad
// bytes: write to a temporary file and use it only after a nil error, and
// compare the returned SHA256 with the one the release record expects if
// the bus itself is not trusted.
//
// Chunks are read with batched direct gets rather than nats.go's
// ObjectStore.Get, which streams through a push consumer. Creating a push
// consumer takes a deliver subject that nats-server does not check against
// the creator's permissions, so granting it to agents would let one agent
// have JetStream publish stored bytes onto another agent's subjects. Direct
// gets only ever answer to the requester's own inbox.
func (c *Conn) GetArtifact(ctx context.Context, name string, w io.Writer) (Artifact, error) {
	if err := checkArtifactName(name); err != nil {
		return Artifact{}, err
	}
	wctx, done := c.watchDenials(ctx, readSubjects)
	defer done()
	obs, err := c.objectStore(wctx, false)
	if err != nil {
		return Artifact{}, artifactErr(wctx, "get", name, err)
	}
	info, err := obs.GetInfo(wctx, name)
	if err != nil {
		return Artifact{}, artifactErr(wctx, "get", name, err)
	}
	if info.Opts != nil && info.Opts.Link != nil {
		return Artifact{}, fmt.Errorf("get artifact %q: is a link, which upscale never stores", name)
	}
	want, err := toArtifact(info)
	if err != nil {
		return Artifact{}, artifactErr(wctx, "get", name, err)
	}
	h := sha256.New()
	n, err := c.readChunks(wctx, info, io.MultiWriter(w, h))
	if err != nil {
		return Artifact{}, artifactErr(wctx, "get", name, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != want.Size || got != want.SHA256 {
		return Artifact{}, fmt.Errorf("get artifact %q: %w: got %d bytes sha256 %s, want %d bytes sha256 %s",
			name, ErrCorrupt, n, got, want.Size, want.SHA256)
	}
	return want, nil
}

// Batches of chunks per direct get: 64 default-size chunks are 8 MB, few
// round trips for a large artifact without one reply hogging the stream.
const (
	chunkBatch      = 64
	chunkBatchBytes = 8 << 20
	// chunkWait bounds the wait for each message of a batch; JetStream
	// answers direct gets from memory or disk, never after long.
	chunkWait = 30 * time.Second
)

// readChunks copies the info.Chunks chunks of an object, in stream order,
// to w and returns the byte count.
func (c *Conn) readChunks(ctx context.Context, info *jetstream.ObjectInfo, w io.Writer) (int64, error) {
	if info.Chunks == 0 {
		return 0, nil
	}
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, 2*chunkBatchBytes)

	subject := objPrefix + "C." + info.NUID
	var written int64
	var seq uint64 // next stream sequence to look from
	for remaining := info.Chunks; remaining > 0; {
		req, _ := json.Marshal(map[string]any{
			"seq": seq, "next_by_subj": subject,
			"batch": min(remaining, chunkBatch), "max_bytes": chunkBatchBytes,
		})
		if err := c.nc.PublishRequest(apiPrefix+"DIRECT.GET."+bucketStream, inbox, req); err != nil {
			return written, err
		}
		for batchDone := false; !batchDone; {
			mctx, cancel := context.WithTimeout(ctx, chunkWait)
			msg, err := sub.NextMsgWithContext(mctx)
			cancel()
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				return written, fmt.Errorf("bucket %s does not answer direct gets: it needs allow_direct", Bucket)
			case err != nil && ctx.Err() != nil:
				return written, context.Cause(ctx)
			case err != nil:
				return written, fmt.Errorf("reading chunks: %w", err)
			}
			switch status := msg.Header.Get("Status"); status {
			case "":
				if remaining == 0 {
					// More chunks than the meta record lists: the digest
					// over the listed ones decides.
					continue
				}
				s, err := strconv.ParseUint(msg.Header.Get("Nats-Sequence"), 10, 64)
				if err != nil || s < seq {
					return written, fmt.Errorf("reading chunks: bad sequence %q", msg.Header.Get("Nats-Sequence"))
				}
				if _, err := w.Write(msg.Data); err != nil {
					return written, err
				}
				written += int64(len(msg.Data))
				seq, remaining = s+1, remaining-1
				// A server without batch direct get answers one message
				// and no end-of-batch marker.
				batchDone = msg.Header.Get("Nats-Num-Pending") == ""
			case "204": // end of batch
				batchDone = true
				if np := msg.Header.Get("Nats-Num-Pending"); np == "0" && remaining > 0 {
					return written, fmt.Errorf("%w: %d of %d chunks missing", ErrCorrupt, remaining, info.Chunks)
				}
			case "404":
				return written, fmt.Errorf("%w: %d of %d chunks missing", ErrCorrupt, remaining, info.Chunks)
			default:
				return written, fmt.Errorf("reading chunks: status %s %s", status, msg.Header.Get("Description"))
			}
		}
	}
	return written, nil
}

// DeleteArtifact removes artifact name. Deleting a missing artifact is not
// an error, so garbage collection of old releases can simply be retried.
func (c *Conn) DeleteArtifact(ctx context.Context, name string) error {
	if err := checkArtifactName(name); err != nil {
		return err
	}
	wctx, done := c.watchDenials(ctx, writeSubjects(name))
	defer done()
	obs, err := c.objectStore(wctx, false)
	if err == nil {
		err = obs.Delete(wctx, name)
	}
	if err != nil {
		if err := artifactErr(wctx, "delete", name, err); !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// artifactErr maps library errors to this package's, preferring the
// permission refusal that cut the operation short over the "timeout" or
// "canceled" the library reports for it.
func artifactErr(ctx context.Context, op, name string, err error) error {
	switch {
	case denied(ctx) != nil:
		err = denied(ctx)
	case errors.Is(err, jetstream.ErrObjectNotFound), errors.Is(err, jetstream.ErrBucketNotFound):
		err = ErrNotFound
	case errors.Is(err, jetstream.ErrDigestMismatch):
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return fmt.Errorf("%s artifact %q: %w", op, name, err)
}

func toArtifact(info *jetstream.ObjectInfo) (Artifact, error) {
	b64, ok := strings.CutPrefix(info.Digest, "SHA-256=")
	if !ok {
		return Artifact{}, fmt.Errorf("%w: digest %.80q is not SHA-256", ErrCorrupt, info.Digest)
	}
	sum, err := base64.URLEncoding.DecodeString(b64)
	if err != nil || len(sum) != sha256.Size {
		return Artifact{}, fmt.Errorf("%w: bad digest %.80q", ErrCorrupt, info.Digest)
	}
	return Artifact{Name: info.Name, Size: int64(info.Size), SHA256: hex.EncodeToString(sum)}, nil
}
