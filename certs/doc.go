// Package certs is the certificate engine: it obtains and renews the TLS
// certificates HAProxy serves (ACME with HTTP-01 and, for a namespace's
// wildcard, DNS-01 through RFC 2136 updates; a local CA for names no public
// CA signs; certificates users bring), keeps them in Upscale's store through
// certmagic, and tells the router when one is ready. Private keys go to the
// router's callback and the store, never to a log line or a status.
package certs
