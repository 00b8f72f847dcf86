-- The same schema as migrations/sqlite/0007_certs.sql; see the comments
-- there. cert_data's key is VARBINARY so that it compares by bytes, as in
-- SQLite. It may run again: every CREATE says IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS cert_data (
	k           VARBINARY(1024) NOT NULL PRIMARY KEY,
	v           MEDIUMBLOB      NOT NULL,
	modified_at BIGINT          NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS cert_locks (
	name       VARCHAR(512) NOT NULL PRIMARY KEY,
	owner      VARCHAR(255) NOT NULL,
	expires_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS cert_status (
	name       VARCHAR(512)  NOT NULL PRIMARY KEY,
	issuer     VARCHAR(255)  NOT NULL,
	state      VARCHAR(32)   NOT NULL,
	not_after  BIGINT        NOT NULL,
	last_error VARCHAR(2048) NOT NULL,
	failures   INT           NOT NULL,
	next_try   BIGINT        NOT NULL,
	updated_at BIGINT        NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS cert_quota (
	domain VARCHAR(255) NOT NULL PRIMARY KEY
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS cert_issues (
	id     BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
	domain VARCHAR(255) NOT NULL,
	name   VARCHAR(512) NOT NULL,
	at     BIGINT       NOT NULL,
	KEY cert_issues_domain (domain, at),
	FOREIGN KEY (domain) REFERENCES cert_quota (domain)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
