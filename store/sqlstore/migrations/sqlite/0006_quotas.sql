-- A namespace's own quotas; NULL means the operator's default (server
-- flags), so changing a flag reaches every namespace that set nothing.
ALTER TABLE namespaces ADD COLUMN quota_apps INTEGER;

ALTER TABLE namespaces ADD COLUMN quota_instances INTEGER;

ALTER TABLE namespaces ADD COLUMN quota_memory INTEGER;

ALTER TABLE namespaces ADD COLUMN quota_exec INTEGER;
