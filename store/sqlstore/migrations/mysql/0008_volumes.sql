-- The same schema as migrations/sqlite/0008_volumes.sql; see the comments
-- there. path is VARBINARY so that it compares by bytes, as in SQLite, and
-- so that the unique key on (namespace, app, path) fits InnoDB's 3072
-- bytes. It may run again: every CREATE says IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS volumes (
	namespace  VARCHAR(255) NOT NULL,
	name       VARCHAR(255) NOT NULL,
	size       BIGINT       NOT NULL,
	replicas   INT          NOT NULL,
	bricks     TEXT         NOT NULL,
	created_at BIGINT       NOT NULL,
	PRIMARY KEY (namespace, name),
	FOREIGN KEY (namespace) REFERENCES namespaces (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS volume_attachments (
	namespace  VARCHAR(255)    NOT NULL,
	app        VARCHAR(255)    NOT NULL,
	volume     VARCHAR(255)    NOT NULL,
	path       VARBINARY(1024) NOT NULL,
	read_only  BOOLEAN         NOT NULL,
	created_at BIGINT          NOT NULL,
	PRIMARY KEY (namespace, app, volume),
	UNIQUE KEY volume_attachments_path (namespace, app, path),
	KEY volume_attachments_volume (namespace, volume),
	FOREIGN KEY (namespace, volume) REFERENCES volumes (namespace, name),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
