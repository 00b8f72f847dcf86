-- Releases and the instances that run them. Existing apps run.
ALTER TABLE apps ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;

-- version counts per app from 1 (CreateRelease takes the highest plus one),
-- so the app is part of the key. config is store.ReleaseConfig as JSON: the
-- store never queries into it, and a new field needs no migration.
CREATE TABLE releases (
	namespace     TEXT    NOT NULL,
	app           TEXT    NOT NULL,
	version       INTEGER NOT NULL,
	git_commit    TEXT    NOT NULL,
	subject       TEXT    NOT NULL,
	author        TEXT    NOT NULL,
	runtime       TEXT    NOT NULL,
	config        TEXT    NOT NULL,
	artifact      TEXT    NOT NULL,
	digest        TEXT    NOT NULL,
	artifact_size INTEGER NOT NULL,
	status        TEXT    NOT NULL CHECK (status IN ('building', 'failed', 'built', 'live', 'superseded')),
	failure       TEXT    NOT NULL,
	created_by    TEXT    NOT NULL,
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (namespace, app, version),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

-- At most one live release per app, whatever a bug in the Go code does.
CREATE UNIQUE INDEX releases_one_live ON releases (namespace, app) WHERE status = 'live';

-- name is the container name, unique over all hosts. The foreign key to
-- releases keeps an instance from naming a release its app does not have;
-- the one to apps is implied by it but says what deleting an app removes.
CREATE TABLE instances (
	name            TEXT    NOT NULL PRIMARY KEY,
	namespace       TEXT    NOT NULL,
	app             TEXT    NOT NULL,
	release_version INTEGER NOT NULL,
	host            TEXT    NOT NULL,
	addr            TEXT    NOT NULL,
	created_at      INTEGER NOT NULL,
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE,
	FOREIGN KEY (namespace, app, release_version) REFERENCES releases (namespace, app, version) ON DELETE CASCADE
);

CREATE INDEX instances_app ON instances (namespace, app, release_version);
