-- The same schema as migrations/sqlite/0005_quotas.sql; see the comments
-- there. It may run again, as 0004: IF NOT EXISTS is MariaDB's only.

ALTER TABLE namespaces ADD COLUMN /*M! IF NOT EXISTS */ quota_apps INT NULL;

ALTER TABLE namespaces ADD COLUMN /*M! IF NOT EXISTS */ quota_instances INT NULL;

ALTER TABLE namespaces ADD COLUMN /*M! IF NOT EXISTS */ quota_memory BIGINT NULL;

ALTER TABLE namespaces ADD COLUMN /*M! IF NOT EXISTS */ quota_exec INT NULL;
