-- Every consent choice, one row per (event, purpose): the proof behind "what did S consent to
-- for purpose P at instant T". No personal field (the subject id is pseudonymous).
-- status: granted / refused / withdrawn for a choice, expired for the ledger's ConsentExpired
-- (choice_event_id names the choice that expired). (partition, offset) is the log position:
-- choices at the same instant are ordered by it.
CREATE TABLE projections.consent_history (
    subject_id       text        NOT NULL,
    purpose          text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    status           text        NOT NULL
                     CHECK (status IN ('granted', 'refused', 'withdrawn', 'expired')),
    event_id         uuid        NOT NULL,
    notice_version   text,
    mechanism        text,
    choice_event_id  uuid,
    partition        integer     NOT NULL,
    "offset"         bigint      NOT NULL,
    PRIMARY KEY (event_id, purpose)
);

-- The latest choice at or before T: one backward index scan.
CREATE INDEX consent_history_at ON projections.consent_history
    (subject_id, purpose, occurred_at, partition, "offset") WHERE status <> 'expired';

-- Whether that choice was recorded as expired.
CREATE INDEX consent_history_expiry ON projections.consent_history
    (choice_event_id, purpose, occurred_at) WHERE status = 'expired';
