-- Custom domains are claims that route only once their owner proved control
-- of the name in DNS. Several apps may claim one hostname while pending, so
-- the key becomes (hostname, namespace, app); "one app per hostname" now
-- holds for verified claims, kept by a partial unique index.
--
-- Domains added before proofs existed were routed already: they become
-- verified (at their creation time) rather than vanish from the router on
-- upgrade. They have no token.
CREATE TABLE domains_proof (
	hostname    TEXT    NOT NULL,
	namespace   TEXT    NOT NULL,
	app         TEXT    NOT NULL,
	token       TEXT    NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	checked_at  INTEGER NOT NULL DEFAULT 0,
	verified_at INTEGER NOT NULL DEFAULT 0,
	failure     TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (hostname, namespace, app),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

INSERT INTO domains_proof (hostname, namespace, app, created_at, checked_at, verified_at)
	SELECT hostname, namespace, app, created_at, created_at, created_at FROM domains;

DROP TABLE domains;

ALTER TABLE domains_proof RENAME TO domains;

CREATE INDEX domains_app ON domains (namespace, app);

CREATE UNIQUE INDEX domains_verified ON domains (hostname) WHERE verified_at <> 0;
