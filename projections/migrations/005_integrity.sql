-- Tamper evidence: signed checkpoints of each log partition's hash chain, and the Ed25519 key
-- that signs them (see processors/integrity.py). Both tables are append-only: a trigger
-- refuses UPDATE, DELETE and TRUNCATE, whoever asks.
CREATE SCHEMA IF NOT EXISTS integrity;

CREATE TABLE integrity.checkpoints (
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL CHECK ("partition" >= 0),
    "offset"     bigint      NOT NULL CHECK ("offset" >= 0),   -- last offset covered
    chain_hash   bytea       NOT NULL CHECK (length(chain_hash) = 32),
    signed_at    timestamptz NOT NULL,
    signature    bytea       NOT NULL CHECK (length(signature) = 64),  -- Ed25519
    PRIMARY KEY (topic, "partition", "offset")
);

-- One signing key, generated once. The private key is stored only encrypted:
-- nonce (12) | AES-256-GCM(master key, raw private key, aad = domain | public key).
-- The public key is in clear, for auditors who pin it.
CREATE TABLE integrity.signing_key (
    id               smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    algorithm        text        NOT NULL DEFAULT 'ed25519' CHECK (algorithm = 'ed25519'),
    public_key       bytea       NOT NULL CHECK (length(public_key) = 32),
    wrapped_private  bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION integrity.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'integrity.% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END;
$$;

CREATE TRIGGER checkpoints_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON integrity.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION integrity.refuse_change();

CREATE TRIGGER signing_key_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON integrity.signing_key
    FOR EACH STATEMENT EXECUTE FUNCTION integrity.refuse_change();
