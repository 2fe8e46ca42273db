-- Bearer tokens of the web service (`registre tokens create|list|revoke`, http.md).
--
-- A token is `rgt_<id>_<secret>`: the id is not secret and finds the row, the secret is stored
-- only as an argon2id hash (salted, slow on purpose). The clear token is shown once, by
-- `registre tokens create`, and never stored. Revoking keeps the row (who had which scopes,
-- until when) and frees the name for a new token.
--
-- Schema `credentials` is the web service's own: no group role gets anything in it (neither the
-- processors, nor compliance, nor the analyst); only the role that runs registre's migrations
-- and the web service (the owner) reads it.
CREATE SCHEMA IF NOT EXISTS credentials;

CREATE TABLE credentials.tokens (
    id          text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    name        text        NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    hash        text        NOT NULL CHECK (hash LIKE '$argon2id$%'),
    scopes      text[]      NOT NULL CHECK (scopes <@ ARRAY['publish', 'compliance', 'admin']
                                            AND cardinality(scopes) > 0),
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
-- One live token per name: the access log names readers by their token's name.
CREATE UNIQUE INDEX tokens_live_name ON credentials.tokens (name) WHERE revoked_at IS NULL;

DO $$
BEGIN
    EXECUTE 'REVOKE ALL ON SCHEMA credentials FROM PUBLIC';
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registre_analyst') THEN
        REVOKE ALL ON SCHEMA credentials FROM registre_analyst, registre_compliance,
            registre_processor;
        REVOKE ALL ON ALL TABLES IN SCHEMA credentials FROM PUBLIC, registre_analyst,
            registre_compliance, registre_processor;
    END IF;
END $$;
