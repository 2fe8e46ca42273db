-- Database roles (cluster-wide, created once per server) and what each may do in this database.
--
--   registre_processor   writes the projections, reads and destroys keys (stream processors).
--   registre_compliance  reads the projections, the erasure tombstones and the integrity
--                        checkpoints, appends to the access log; nothing of the key store.
--   registre_analyst     USAGE on schema analytics and SELECT on its views; nothing else.
--
-- The three are NOLOGIN groups: a login role is made a member of one of them (see
-- projections/roles.py, ensure_analyst_login). Row-level security with FORCE ROW LEVEL SECURITY
-- is on for the customer view and the access log: only the roles named in a policy (the two
-- roles above and the role that ran this migration, normally the owner) see or write rows,
-- whatever is granted later by mistake. Superusers bypass row-level security regardless: the
-- embedded default connects as its superuser, so there these are a guard against mistakes
-- rather than a boundary (it also trusts every local connection).
--
-- Re-running this file is harmless (roles, grants and policies are all guarded).

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['registre_processor', 'registre_compliance', 'registre_analyst'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user)
            THEN
                RAISE EXCEPTION 'role % is missing and % may not create roles', r, current_user
                    USING HINT = format('As an administrator: CREATE ROLE %I NOLOGIN;', r);
            END IF;
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database on this server
            END;
        END IF;
    END LOOP;
END $$;

-- Database: connecting is for everyone (PostgreSQL default); temporary objects only for the
-- two service roles (an analyst has no use for them).
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO registre_processor,'
                   ' registre_compliance', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO registre_analyst', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'not the database owner: database privileges left unchanged';
END $$;

-- No PUBLIC defaults on the non-analyst schemas, and nothing there for the analyst.
DO $$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['public', 'projections', 'keystore', 'tombstones', 'integrity'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s);
        BEGIN
            EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC, registre_analyst', s);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'not the owner of schema %: its PUBLIC privileges left unchanged', s;
        END;
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM PUBLIC, registre_analyst', s);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM PUBLIC, registre_analyst',
                       s);
    END LOOP;
END $$;

-- registre_processor: the projections, the key store (read, create, destroy), the tombstones,
-- the integrity checkpoints (append-only: their triggers refuse the rest anyway).
GRANT USAGE ON SCHEMA projections, keystore, tombstones, analytics TO registre_processor;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA projections TO registre_processor;
REVOKE UPDATE, DELETE ON projections.access_log FROM registre_processor;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA projections TO registre_processor;
GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA keystore TO registre_processor;
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA tombstones TO registre_processor;
ALTER DEFAULT PRIVILEGES IN SCHEMA projections
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO registre_processor;
ALTER DEFAULT PRIVILEGES IN SCHEMA projections
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO registre_processor;
ALTER DEFAULT PRIVILEGES IN SCHEMA keystore
    GRANT SELECT, INSERT, DELETE ON TABLES TO registre_processor;
ALTER DEFAULT PRIVILEGES IN SCHEMA tombstones GRANT SELECT, INSERT ON TABLES TO registre_processor;

-- registre_compliance: read the projections (not the analytics membership rows, which it has no
-- use for), append to the access log, read the tombstones. No USAGE on keystore: no data key.
GRANT USAGE ON SCHEMA projections, tombstones, analytics TO registre_compliance;
GRANT SELECT ON ALL TABLES IN SCHEMA projections TO registre_compliance;
REVOKE ALL ON projections.analytics_members FROM registre_compliance;
GRANT INSERT ON projections.access_log TO registre_compliance;
GRANT USAGE ON SEQUENCE projections.access_log_id_seq TO registre_compliance;
GRANT SELECT ON ALL TABLES IN SCHEMA tombstones TO registre_compliance;
REVOKE ALL ON SCHEMA keystore FROM registre_compliance;
REVOKE ALL ON ALL TABLES IN SCHEMA keystore FROM registre_compliance;
ALTER DEFAULT PRIVILEGES IN SCHEMA projections GRANT SELECT ON TABLES TO registre_compliance;
ALTER DEFAULT PRIVILEGES IN SCHEMA tombstones GRANT SELECT ON TABLES TO registre_compliance;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'integrity') THEN
        GRANT USAGE ON SCHEMA integrity TO registre_processor, registre_compliance;
        GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA integrity TO registre_processor;
        GRANT SELECT ON ALL TABLES IN SCHEMA integrity TO registre_compliance;
        ALTER DEFAULT PRIVILEGES IN SCHEMA integrity
            GRANT SELECT, INSERT ON TABLES TO registre_processor;
        ALTER DEFAULT PRIVILEGES IN SCHEMA integrity
            GRANT SELECT ON TABLES TO registre_compliance;
    END IF;
END $$;

-- registre_analyst: the analytics views, read only. Each view is granted by name: a table put in
-- schema analytics later is not readable until a migration grants it (no default privileges).
GRANT USAGE ON SCHEMA analytics TO registre_analyst;
REVOKE ALL ON ALL TABLES IN SCHEMA analytics FROM PUBLIC, registre_analyst;
DO $$
DECLARE
    v text;
BEGIN
    FOR v IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'analytics' AND c.relkind = 'v' ORDER BY 1 LOOP
        EXECUTE format('GRANT SELECT ON analytics.%I TO registre_analyst, registre_compliance,'
                       ' registre_processor', v);
    END LOOP;
END $$;

-- Row-level security, also for the owner (FORCE). The role running this migration (normally
-- the owner of the tables, and the role of the embedded default) is named in the policies
-- so that the processors and `registre rebuild` keep working when it is not a superuser.
ALTER TABLE projections.customer_view ENABLE ROW LEVEL SECURITY;
ALTER TABLE projections.customer_view FORCE ROW LEVEL SECURITY;
ALTER TABLE projections.access_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE projections.access_log FORCE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS customer_view_write ON projections.customer_view;
DROP POLICY IF EXISTS customer_view_read ON projections.customer_view;
DROP POLICY IF EXISTS access_log_read ON projections.access_log;
DROP POLICY IF EXISTS access_log_append ON projections.access_log;

DO $$
BEGIN
    -- Writers: every row, every command.
    EXECUTE format('CREATE POLICY customer_view_write ON projections.customer_view FOR ALL'
                   ' TO registre_processor, %I USING (true) WITH CHECK (true)', current_user);
    -- Compliance: reads every row (requests and disputes may concern anyone), writes none.
    CREATE POLICY customer_view_read ON projections.customer_view FOR SELECT
        TO registre_compliance USING (true);
    -- Access log: read and append only. No UPDATE or DELETE policy: even the owner changes no
    -- row (its triggers refuse as well), and an entry must name a reader and a case.
    EXECUTE format('CREATE POLICY access_log_read ON projections.access_log FOR SELECT'
                   ' TO registre_processor, registre_compliance, %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY access_log_append ON projections.access_log FOR INSERT'
                   ' TO registre_processor, registre_compliance, %I'
                   ' WITH CHECK (btrim(reader) <> %L AND btrim(case_ref) <> %L)',
                   current_user, '', '');
END $$;
