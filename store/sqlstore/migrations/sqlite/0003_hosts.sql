-- Hosts that run an upscale-agent. Whether one is up is not stored. weight
-- is its share of containers relative to the others; a draining host takes
-- no new ones. provider, instance_id and region say where it came from
-- ('' when they do not apply); host_key is the SSH host key seen when it
-- was added.
--
-- instances.host names a host but has no foreign key to this table:
-- instances may name hosts that were never registered (databases from
-- before this migration, tests, a host on its way in or out), so
-- RemoveHost counts them instead.
CREATE TABLE hosts (
	name        TEXT    NOT NULL PRIMARY KEY,
	address     TEXT    NOT NULL UNIQUE,
	subnet      TEXT    NOT NULL UNIQUE,
	weight      INTEGER NOT NULL CHECK (weight >= 1),
	state       TEXT    NOT NULL CHECK (state IN ('active', 'draining')),
	provider    TEXT    NOT NULL,
	instance_id TEXT    NOT NULL,
	region      TEXT    NOT NULL,
	host_key    TEXT    NOT NULL,
	created_at  INTEGER NOT NULL
);
