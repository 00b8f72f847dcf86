-- The same schema as migrations/sqlite/0008_https_policy.sql. It may run
-- again, like 0004: the ALTERs say IF NOT EXISTS on MariaDB.
ALTER TABLE apps ADD COLUMN /*M! IF NOT EXISTS */ no_https_redirect BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE apps ADD COLUMN /*M! IF NOT EXISTS */ hsts_max_age BIGINT NOT NULL DEFAULT 0;
