-- Console logins of compliance staff (`registre staff add|list|remove`, http.md) and their
-- sessions (applied once, like every migration: see projections/migrate.py).
--
-- credentials.staff: one row per login; the password is stored only as an argon2id hash
-- (salted, slow on purpose). Removing someone keeps the row (who could read, with which role,
-- until when: the access log names readers by these names) and frees the name.
--
-- credentials.sessions: one row per console session, found by the SHA-256 of the session
-- token the browser holds in its cookie (the token itself is never stored, so a dump of the
-- table opens no session). A session ends at expires_at (absolute), after an idle period
-- (last_seen_at), at logout (row deleted), or when its person is removed.
--
-- Who may do what: registre_admin (`registre staff`) adds and removes people and ends their
-- sessions; registre_compliance (the web service's login) reads the hashes to check a login
-- and opens, touches and ends sessions. Nobody else has anything in schema credentials.
CREATE TABLE credentials.staff (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    role        text        NOT NULL CHECK (role IN ('compliance', 'admin')),
    hash        text        NOT NULL CHECK (hash LIKE '$argon2id$%'),
    created_at  timestamptz NOT NULL,
    removed_at  timestamptz
);
-- One live person per name: the access log names readers by it.
CREATE UNIQUE INDEX staff_live_name ON credentials.staff (name) WHERE removed_at IS NULL;

CREATE TABLE credentials.sessions (
    id_hash       bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    staff_id      bigint      NOT NULL REFERENCES credentials.staff (id),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL
);
CREATE INDEX sessions_staff ON credentials.sessions (staff_id);
CREATE INDEX sessions_expiry ON credentials.sessions (expires_at);

REVOKE ALL ON credentials.staff, credentials.sessions FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registre_analyst') THEN
        REVOKE ALL ON credentials.staff, credentials.sessions
            FROM registre_analyst, registre_processor;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registre_publisher') THEN
        REVOKE ALL ON credentials.staff, credentials.sessions FROM registre_publisher;
    END IF;
END $$;

-- registre_admin: people (the default privileges of 013 gave it SELECT, INSERT, UPDATE on
-- both tables; sessions are the web service's to open, the admin's only to end).
GRANT SELECT, INSERT, UPDATE ON credentials.staff TO registre_admin;
REVOKE INSERT, UPDATE ON credentials.sessions FROM registre_admin;
GRANT SELECT, DELETE ON credentials.sessions TO registre_admin;

-- registre_compliance (the web service): check a login, open / touch / end a session.
REVOKE ALL ON credentials.staff, credentials.sessions FROM registre_compliance;
GRANT SELECT ON credentials.staff TO registre_compliance;
GRANT SELECT, INSERT, DELETE ON credentials.sessions TO registre_compliance;
GRANT UPDATE (last_seen_at) ON credentials.sessions TO registre_compliance;
