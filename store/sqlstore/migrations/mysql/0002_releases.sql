-- The same schema as migrations/sqlite/0002_releases.sql; see the comments
-- there. Differences: no partial indexes in MySQL, so one_live is a
-- generated column that is NULL except on the live release, and NULLs never
-- collide in a unique key (the ssh_keys.scope trick the other way round).
-- The ALTER comes last and the CREATEs may run again: a migration that
-- failed halfway can then be finished by running it again by hand.

CREATE TABLE IF NOT EXISTS releases (
	namespace     VARCHAR(255) NOT NULL,
	app           VARCHAR(255) NOT NULL,
	version       BIGINT       NOT NULL,
	git_commit    TEXT         NOT NULL,
	subject       TEXT         NOT NULL,
	author        TEXT         NOT NULL,
	runtime       TEXT         NOT NULL,
	config        MEDIUMTEXT   NOT NULL,
	artifact      TEXT         NOT NULL,
	digest        TEXT         NOT NULL,
	artifact_size BIGINT       NOT NULL,
	status        VARCHAR(16)  NOT NULL,
	failure       TEXT         NOT NULL,
	created_by    TEXT         NOT NULL,
	created_at    BIGINT       NOT NULL,
	one_live      TINYINT      GENERATED ALWAYS AS (IF(status = 'live', 1, NULL)) VIRTUAL,
	PRIMARY KEY (namespace, app, version),
	UNIQUE KEY releases_one_live (namespace, app, one_live),
	CONSTRAINT releases_status CHECK (status IN ('building', 'failed', 'built', 'live', 'superseded')),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS instances (
	name            VARCHAR(255) NOT NULL PRIMARY KEY,
	namespace       VARCHAR(255) NOT NULL,
	app             VARCHAR(255) NOT NULL,
	release_version BIGINT       NOT NULL,
	host            TEXT         NOT NULL,
	addr            TEXT         NOT NULL,
	created_at      BIGINT       NOT NULL,
	KEY instances_app (namespace, app, release_version),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE,
	FOREIGN KEY (namespace, app, release_version) REFERENCES releases (namespace, app, version) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE apps ADD COLUMN stopped BOOLEAN NOT NULL DEFAULT FALSE;
