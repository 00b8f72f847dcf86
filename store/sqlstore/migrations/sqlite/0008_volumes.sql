-- Volumes: a namespace's replicated storage (GlusterFS), and the apps that
-- attach them. bricks is a JSON list of {host, path}. A volume cannot be
-- deleted while attached (no cascade from attachments to volumes); an app
-- deleted takes its attachments with it.
CREATE TABLE volumes (
	namespace  TEXT    NOT NULL,
	name       TEXT    NOT NULL,
	size       INTEGER NOT NULL,
	replicas   INTEGER NOT NULL,
	bricks     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (namespace, name),
	FOREIGN KEY (namespace) REFERENCES namespaces (name)
);

CREATE TABLE volume_attachments (
	namespace  TEXT    NOT NULL,
	app        TEXT    NOT NULL,
	volume     TEXT    NOT NULL,
	path       BLOB    NOT NULL,
	read_only  INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (namespace, app, volume),
	UNIQUE (namespace, app, path),
	FOREIGN KEY (namespace, volume) REFERENCES volumes (namespace, name),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

CREATE INDEX volume_attachments_volume ON volume_attachments (namespace, volume);
