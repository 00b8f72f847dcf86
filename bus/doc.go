// Package bus is the service bus between `upscale server` and the
// `upscale-agent` on every host: NATS with JetStream, either embedded in the
// server (StartEmbedded) or an existing deployment (`--bus nats://...`).
//
// # Transport security
//
// The embedded server listens with TLS only, and handshake first: it sends
// nothing, not even the INFO line, until the client has started TLS. On
// first start it creates a private CA (ECDSA P-256, 20 years) in Dir/tls
// and signs a server certificate (one year, renewed 30 days before expiry,
// at start or at the next handshake) for the advertised host, the host of
// Embedded.URL and EmbeddedConfig.TLSNames; a change of those names
// reissues it at start. Only the server certificate is ever reissued: the
// CA certificate is in every credentials file, and Connect trusts it alone
// and checks that the server's certificate names the host it dialled. So
// an agent on another host knows it reached the real bus even on a network
// its operator does not control, and the artifacts and calls it carries
// are encrypted. Moving Dir/tls away makes a new CA at the next start; every
// agent then needs new credentials.
//
// Credentials without a CA are for an external NATS: nats:// is plain
// text, tls:// verifies against the system roots. A pinned CA and a server
// that answers in plain text never connect (ErrUntrusted).
//
// A Conn survives outages by reconnecting; it ends for good only by Close
// or when the server refuses its credentials on reconnecting, which is how
// RemoveAgent reaches a connected agent: Done is closed and Err wraps
// ErrRevoked. Connect returns an ErrRevoked error too, at once.
//
// # Subjects
//
// Everything addressed to agent HOST lives under one prefix, so that a single
// permission pair confines an agent to its own traffic:
//
//	upscale.agent.HOST.OP                     requests to the agent (Call / Handle)
//	upscale.agent.HOST.OP._reply.ID           frames back to the caller of one call
//	upscale.agent.HOST.OP._cancel.INSTANCE    cancellations for one Handle
//	_INBOX.agent.HOST.>                       the agent's own inboxes (JetStream API replies)
//
// Replies travel on subjects inside the handler's namespace rather than on
// the caller's _INBOX, because the alternative, NATS "allow_responses", lets
// a client that can publish to its own subscriptions mint itself a one-shot
// grant to any subject: agent h1 would send itself a request whose reply
// subject is upscale.agent.h2.stop and then "answer" it.
//
// NATS does not check a request's reply subject against the sender's
// permissions, and JetStream answers API requests (direct gets included) on
// whatever reply subject it is given. So an agent can always make JetStream
// publish a message it did not write onto another agent's subjects. Such a
// message never carries a reply subject, and Handle drops every request
// whose reply is not a reply subject of its own: consume agent traffic
// through Handle and Call, never through a raw subscription that trusts the
// subject alone.
//
// # Call protocol
//
// A call is one request message carrying a JSON requestEnvelope, answered by
// a numbered stream of JSON frames: ack (names the cancel subject), progress
// lines, keepalives, then exactly one result or error frame. The sequence
// numbers let the caller notice a gap (lost frames across a reconnect) instead
// of silently dropping build output; keepalives let a long silent build step
// stay distinct from a dead agent.
//
// # Artifacts
//
// Release artifacts live in the JetStream object store bucket
// "upscale-artifacts", written with nats.go's object store so the standard
// `nats object` tooling can inspect them. Agents may read every artifact
// (any host can run any app) but never write or delete one, and they read
// with JetStream direct gets only: see GetArtifact for why consumers are not
// granted. AgentPermissions is the complete grant of an agent.
package bus
