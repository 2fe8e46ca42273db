-- registre_admin: who manages the web service's credentials (`registre tokens ...`, and the
-- console's staff later); the web service checks a token as registre_compliance, which reads
-- the hashes and nothing else of them. Re-running this file is harmless.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registre_admin') THEN
        EXECUTE 'CREATE ROLE registre_admin NOLOGIN';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO registre_admin', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'not the database owner: CONNECT for registre_admin left unchanged';
END $$;

GRANT USAGE ON SCHEMA credentials TO registre_admin, registre_compliance;
GRANT SELECT, INSERT, UPDATE ON credentials.tokens TO registre_admin;
GRANT SELECT ON credentials.tokens TO registre_compliance;
ALTER DEFAULT PRIVILEGES IN SCHEMA credentials
    GRANT SELECT, INSERT, UPDATE ON TABLES TO registre_admin;
