-- The same change as migrations/sqlite/0005_domain_proof.sql; see the
-- comments there. MariaDB and MySQL have no partial index: a stored column
-- that holds the hostname of a verified claim and NULL otherwise carries the
-- unique key (NULLs never collide). It may run again: the ADD COLUMNs say IF
-- NOT EXISTS on MariaDB, the UPDATE only touches rows that are neither
-- pending claims nor verified yet (all of them, on the first run), and the
-- key change comes last, in one statement that says IF NOT EXISTS where it
-- adds (MariaDB) and drops and adds the same primary key again.
ALTER TABLE domains
	ADD COLUMN /*M! IF NOT EXISTS */ token VARCHAR(64) NOT NULL DEFAULT '',
	ADD COLUMN /*M! IF NOT EXISTS */ checked_at BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN /*M! IF NOT EXISTS */ verified_at BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN /*M! IF NOT EXISTS */ failure VARCHAR(1024) NOT NULL DEFAULT '';

UPDATE domains SET checked_at = created_at, verified_at = created_at WHERE token = '' AND verified_at = 0;

ALTER TABLE domains
	ADD COLUMN /*M! IF NOT EXISTS */ verified_hostname VARCHAR(255) /*M! COLLATE utf8mb4_nopad_bin */
		AS (CASE WHEN verified_at <> 0 THEN hostname END) STORED,
	ADD UNIQUE KEY /*M! IF NOT EXISTS */ domains_verified (verified_hostname),
	DROP PRIMARY KEY,
	ADD PRIMARY KEY (hostname, namespace, app);
