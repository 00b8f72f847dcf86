-- What an app carries besides its code: config vars, a formation, custom
-- domains and a history of events, each removed with the app. Releases may
-- lose their artifact to pruning, and instances run one process type each.

-- One row per var, so that setting some vars never rewrites (or, between
-- two writers, loses) the others.
CREATE TABLE config_vars (
	namespace TEXT NOT NULL,
	app       TEXT NOT NULL,
	name      TEXT NOT NULL,
	value     TEXT NOT NULL,
	PRIMARY KEY (namespace, app, name),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

-- formation is a JSON object from process type to instance count; an app
-- without one has no row.
CREATE TABLE formations (
	namespace TEXT NOT NULL,
	app       TEXT NOT NULL,
	formation TEXT NOT NULL,
	PRIMARY KEY (namespace, app),
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

-- hostname is the key: one app per hostname over the whole platform.
CREATE TABLE domains (
	hostname   TEXT    NOT NULL PRIMARY KEY,
	namespace  TEXT    NOT NULL,
	app        TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

CREATE INDEX domains_app ON domains (namespace, app);

-- AUTOINCREMENT, as for pushes: an id is never reused.
CREATE TABLE events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	namespace TEXT    NOT NULL,
	app       TEXT    NOT NULL,
	kind      TEXT    NOT NULL,
	message   TEXT    NOT NULL,
	by_name   TEXT    NOT NULL,
	at        INTEGER NOT NULL,
	FOREIGN KEY (namespace, app) REFERENCES apps (namespace, name) ON DELETE CASCADE
);

CREATE INDEX events_app_at ON events (namespace, app, at);

-- Existing releases keep their artifacts; existing instances run web ('').
ALTER TABLE releases ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;

ALTER TABLE instances ADD COLUMN process TEXT NOT NULL DEFAULT '';
