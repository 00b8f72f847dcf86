-- The certificate engine's state (package certs): certmagic's key-value
-- space (ACME accounts, certificates, private keys, challenge tokens, the
-- internal CA), the locks that let two servers share it, each name's
-- status for `certs list`, and the orders counted against a CA's weekly
-- quota per registered domain. Keys compare byte by byte (BINARY), which
-- the prefix ranges of ListCertData and DeleteCertData rely on.
CREATE TABLE cert_data (
	k           TEXT    NOT NULL PRIMARY KEY,
	v           BLOB    NOT NULL,
	modified_at INTEGER NOT NULL
);

CREATE TABLE cert_locks (
	name       TEXT    NOT NULL PRIMARY KEY,
	owner      TEXT    NOT NULL,
	expires_at INTEGER NOT NULL
);

CREATE TABLE cert_status (
	name       TEXT    NOT NULL PRIMARY KEY,
	issuer     TEXT    NOT NULL,
	state      TEXT    NOT NULL,
	not_after  INTEGER NOT NULL,
	last_error TEXT    NOT NULL,
	failures   INTEGER NOT NULL,
	next_try   INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);

-- One row per registered domain that ever had an order: the row a
-- reservation locks so that counting and inserting are one step.
CREATE TABLE cert_quota (
	domain TEXT NOT NULL PRIMARY KEY
);

CREATE TABLE cert_issues (
	id     INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	domain TEXT    NOT NULL REFERENCES cert_quota (domain),
	name   TEXT    NOT NULL,
	at     INTEGER NOT NULL
);

CREATE INDEX cert_issues_domain ON cert_issues (domain, at);
