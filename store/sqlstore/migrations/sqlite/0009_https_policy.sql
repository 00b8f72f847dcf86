-- An app's HTTPS policy (docs/https.md): existing apps redirect HTTP to
-- HTTPS once they have a certificate and send no HSTS, the defaults.
ALTER TABLE apps ADD COLUMN no_https_redirect INTEGER NOT NULL DEFAULT 0;

ALTER TABLE apps ADD COLUMN hsts_max_age INTEGER NOT NULL DEFAULT 0;
