-- Timestamps are UTC unix nanoseconds: one integer type that both engines
-- store, compare and sort alike.

CREATE TABLE namespaces (
	name       TEXT    NOT NULL PRIMARY KEY,
	created_at INTEGER NOT NULL
);

CREATE TABLE apps (
	namespace     TEXT    NOT NULL REFERENCES namespaces (name),
	name          TEXT    NOT NULL,
	deploy_branch TEXT    NOT NULL,
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (namespace, name)
);

-- namespace is NULL for admin keys and app is NULL for all but deploy keys,
-- so the foreign keys check (and cascade to) exactly the keys that have a
-- scope. scope exists for the unique index: NULLs never collide there, ''
-- does, which keeps admin key names unique among admin keys.
CREATE TABLE ssh_keys (
	fingerprint TEXT    NOT NULL PRIMARY KEY,
	name        TEXT    NOT NULL,
	role        TEXT    NOT NULL,
	namespace   TEXT    REFERENCES namespaces (name) ON DELETE CASCADE,
	app         TEXT,
	type        TEXT    NOT NULL,
	public_key  TEXT    NOT NULL,
	added_by    TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	scope       TEXT    NOT NULL GENERATED ALWAYS AS (COALESCE(namespace, '')) VIRTUAL,
	UNIQUE (scope, name),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

CREATE INDEX ssh_keys_app ON ssh_keys (namespace, app);

-- AUTOINCREMENT: an id is never reused, even after its app is deleted.
CREATE TABLE pushes (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	namespace  TEXT    NOT NULL,
	app        TEXT    NOT NULL,
	ref        TEXT    NOT NULL,
	old_commit TEXT    NOT NULL,
	new_commit TEXT    NOT NULL,
	subject    TEXT    NOT NULL,
	key_name   TEXT    NOT NULL,
	key_fp     TEXT    NOT NULL,
	at         INTEGER NOT NULL,
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

CREATE INDEX pushes_app_at ON pushes (namespace, app, at);
