package bus

import (
	"github.com/nats-io/nats-server/v2/server"

	"github.com/upscalehq/upscale/names"
)

const (
	// Bucket is the object store holding release artifacts.
	Bucket = "upscale-artifacts"
	// bucketStream is the JetStream stream behind Bucket (nats.go naming).
	bucketStream = "OBJ_" + Bucket

	agentPrefix = "upscale.agent."
)

// AgentSubject is the subject of operation op on agent host.
func AgentSubject(host, op string) string { return agentPrefix + host + "." + op }

// agentInbox is the inbox prefix of agent host. It sits under _INBOX so an
// operator reading a NATS config recognises it, and has a fixed token
// ("agent") where a client's default inbox has a 22-character NUID, so no
// default inbox can fall inside an agent's grant.
func agentInbox(host string) string { return "_INBOX.agent." + host }

// AgentPermissions is what agent host may do on the bus, as NATS subject
// lists. An external NATS must grant exactly these to the agent's user; the
// embedded server does so itself. Publishing to an agent's own request
// subjects is allowed (heartbeats, events) but cannot reach other hosts:
// there are no allow_responses grants to bootstrap from.
func AgentPermissions(host string) (publish, subscribe []string, err error) {
	if err := names.Check("agent host", host); err != nil {
		return nil, nil, err
	}
	own := agentPrefix + host + ".>"
	publish = []string{
		own,
		// Reading artifacts: bind the bucket, then direct gets of the
		// meta record (last-by-subject form) and of the chunks. Nothing
		// that creates server-side state: see GetArtifact for why
		// consumers are out.
		"$JS.API.STREAM.INFO." + bucketStream,
		"$JS.API.DIRECT.GET." + bucketStream,
		"$JS.API.DIRECT.GET." + bucketStream + ".>",
	}
	subscribe = []string{own, agentInbox(host) + ".>"}
	return publish, subscribe, nil
}

func agentServerPermissions(host string) (*server.Permissions, error) {
	pub, sub, err := AgentPermissions(host)
	if err != nil {
		return nil, err
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}, nil
}
