-- The same schema as migrations/sqlite/0004_lifecycle.sql; see the comments
-- there. Differences as in 0001-0003, and:
--   - config values take up to 64 KiB, more than a TEXT column holds
--     (65535 bytes): MEDIUMTEXT;
--   - config var names and hostnames, which the store keeps as given, are
--     compared NO PAD, as SQLite compares them: under utf8mb4_bin 'A' and
--     'A ' are one key;
--   - it may run again, like 0003: the CREATEs say IF NOT EXISTS, and so do
--     the ALTERs on MariaDB. /*M! ... */ is a comment that only MariaDB
--     executes: MySQL has neither ADD COLUMN IF NOT EXISTS nor the NO PAD
--     collation of that name (its utf8mb4_bin stays PAD SPACE).

CREATE TABLE IF NOT EXISTS config_vars (
	namespace VARCHAR(255) NOT NULL,
	app       VARCHAR(255) NOT NULL,
	name      VARCHAR(255) /*M! COLLATE utf8mb4_nopad_bin */ NOT NULL,
	value     MEDIUMTEXT   NOT NULL,
	PRIMARY KEY (namespace, app, name),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS formations (
	namespace VARCHAR(255) NOT NULL,
	app       VARCHAR(255) NOT NULL,
	formation MEDIUMTEXT   NOT NULL,
	PRIMARY KEY (namespace, app),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS domains (
	hostname   VARCHAR(255) /*M! COLLATE utf8mb4_nopad_bin */ NOT NULL PRIMARY KEY,
	namespace  VARCHAR(255) NOT NULL,
	app        VARCHAR(255) NOT NULL,
	created_at BIGINT       NOT NULL,
	KEY domains_app (namespace, app),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS events (
	id        BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
	namespace VARCHAR(255) NOT NULL,
	app       VARCHAR(255) NOT NULL,
	kind      TEXT         NOT NULL,
	message   TEXT         NOT NULL,
	by_name   TEXT         NOT NULL,
	at        BIGINT       NOT NULL,
	KEY events_app_at (namespace, app, at),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE releases ADD COLUMN /*M! IF NOT EXISTS */ pruned BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE instances ADD COLUMN /*M! IF NOT EXISTS */ process VARCHAR(255) NOT NULL DEFAULT '';
