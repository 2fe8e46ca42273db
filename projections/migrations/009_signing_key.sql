-- The ledger's signing key leaves PostgreSQL (issue 11): it is no longer wrapped by the master
-- key that wraps the data keys, but kept on its own (REGISTRE_HOME/signing.key, 0600, or
-- REGISTRE_SIGNING_KEY[_FILE]). `registre run` moves an older wrapped key out before this
-- migration runs, so that the checkpoints it signed still verify.
DROP TABLE IF EXISTS integrity.signing_key;
