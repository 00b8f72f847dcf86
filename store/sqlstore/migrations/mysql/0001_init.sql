-- The same schema as migrations/sqlite; see the comments there. Differences:
-- indexed text is VARCHAR (InnoDB indexes no TEXT without a prefix length),
-- and utf8mb4_bin everywhere so that fingerprints compare case-sensitively
-- and sorting is by bytes, as in SQLite.

CREATE TABLE namespaces (
	name       VARCHAR(255) NOT NULL PRIMARY KEY,
	created_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE apps (
	namespace     VARCHAR(255) NOT NULL,
	name          VARCHAR(255) NOT NULL,
	deploy_branch TEXT         NOT NULL,
	created_at    BIGINT       NOT NULL,
	PRIMARY KEY (namespace, name),
	FOREIGN KEY (namespace) REFERENCES namespaces (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE ssh_keys (
	fingerprint VARCHAR(255) NOT NULL PRIMARY KEY,
	name        VARCHAR(255) NOT NULL,
	role        TEXT         NOT NULL,
	namespace   VARCHAR(255) NULL,
	app         VARCHAR(255) NULL,
	type        TEXT         NOT NULL,
	public_key  TEXT         NOT NULL,
	added_by    TEXT         NOT NULL,
	created_at  BIGINT       NOT NULL,
	scope       VARCHAR(255) GENERATED ALWAYS AS (COALESCE(namespace, '')) VIRTUAL,
	UNIQUE KEY ssh_keys_scope_name (scope, name),
	KEY ssh_keys_app (namespace, app),
	FOREIGN KEY (namespace) REFERENCES namespaces (name) ON DELETE CASCADE,
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE pushes (
	id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
	namespace  VARCHAR(255) NOT NULL,
	app        VARCHAR(255) NOT NULL,
	ref        TEXT         NOT NULL,
	old_commit TEXT         NOT NULL,
	new_commit TEXT         NOT NULL,
	subject    TEXT         NOT NULL,
	key_name   TEXT         NOT NULL,
	key_fp     TEXT         NOT NULL,
	at         BIGINT       NOT NULL,
	KEY pushes_app_at (namespace, app, at),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
