// Package bus is the service bus between `upscale server` and the
// `upscale-agent` on every host: NATS with JetStream, either embedded in the
// server (StartEmbedded) or an existing deployment (`--bus nats://...`).
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
