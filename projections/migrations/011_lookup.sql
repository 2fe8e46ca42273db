-- The keyed lookup index (domain.md, question 9): which subjects hold an email or a phone.
--
-- One row per subject and kind: HMAC-SHA256, under a key derived from the master key (HKDF,
-- label "registre/lookup/v1"), of the normalised value (processors/rules/lookup.py). No clear
-- value is stored, and without the master key a row cannot be tested against a guess.
-- Written by the processors in the batch transaction that applies AccountCreated /
-- AccountUpdated, rebuilt by `registre rebuild`, and deleted in the transaction that destroys
-- the subject's contact key (projections/erasure_store.py: carry_out).
--
-- The analyst gets nothing here (no USAGE on schema projections, and no grant below); the
-- processors write it (007's default privileges), compliance reads it.
CREATE TABLE projections.contact_lookup (
    digest      bytea   NOT NULL CHECK (length(digest) = 32),
    kind        text    NOT NULL CHECK (kind IN ('email', 'phone')),
    subject_id  text    NOT NULL,
    PRIMARY KEY (subject_id, kind)
);
CREATE INDEX contact_lookup_digest ON projections.contact_lookup (digest, kind);

REVOKE ALL ON projections.contact_lookup FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registre_analyst') THEN
        REVOKE ALL ON projections.contact_lookup FROM registre_analyst;
        GRANT SELECT, INSERT, UPDATE, DELETE ON projections.contact_lookup TO registre_processor;
        GRANT SELECT ON projections.contact_lookup TO registre_compliance;
    END IF;
END $$;
