-- The same schema as migrations/sqlite/0003_hosts.sql; see the comments
-- there. Differences as in 0001 and 0002: indexed text is VARCHAR, and the
-- checks are named constraints. It may run again: a migration that failed
-- halfway (or ran but went unrecorded) can be finished by running it again
-- by hand.

CREATE TABLE IF NOT EXISTS hosts (
	name        VARCHAR(255) NOT NULL PRIMARY KEY,
	address     VARCHAR(255) NOT NULL,
	subnet      VARCHAR(255) NOT NULL,
	weight      BIGINT       NOT NULL,
	state       VARCHAR(16)  NOT NULL,
	provider    TEXT         NOT NULL,
	instance_id TEXT         NOT NULL,
	region      TEXT         NOT NULL,
	host_key    TEXT         NOT NULL,
	created_at  BIGINT       NOT NULL,
	UNIQUE KEY hosts_address (address),
	UNIQUE KEY hosts_subnet (subnet),
	CONSTRAINT hosts_weight CHECK (weight >= 1),
	CONSTRAINT hosts_state CHECK (state IN ('active', 'draining'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
