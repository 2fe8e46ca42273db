-- Data-subject requests (GDPR art. 12(3)), for the open, overdue and done lists across subjects.
-- One row per request: the entry the customer-view fold keeps under doc->'requests' (doc below),
-- with the columns the lists filter and sort on. The deadline is the one the processors worked
-- out under their policy (receipt + request_response_months, + the extension's months). No
-- personal field: the subject id is pseudonymous. Written by projections/requests.py.
CREATE TABLE projections.requests (
    subject_id       text        NOT NULL,
    request_id       uuid        NOT NULL,
    kind             text        NOT NULL,
    channel          text        NOT NULL,
    received_at      timestamptz NOT NULL,
    deadline         timestamptz NOT NULL,
    extended_months  integer,
    completed_at     timestamptz,
    outcome          text,
    doc              jsonb       NOT NULL,
    PRIMARY KEY (subject_id, request_id)
);
CREATE INDEX requests_by_id ON projections.requests (request_id);
CREATE INDEX requests_pending ON projections.requests (deadline) WHERE completed_at IS NULL;
CREATE INDEX requests_done ON projections.requests (completed_at) WHERE completed_at IS NOT NULL;

-- Every ErasureRequested, by subject and instant: what a fulfilled erasure request is matched
-- with (the erasure certificates name their trigger, but not whether it was a deletion).
CREATE TABLE projections.erasure_requests (
    event_id     uuid        PRIMARY KEY,
    subject_id   text        NOT NULL,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX erasure_requests_subject ON projections.erasure_requests (subject_id, occurred_at);

-- The default privileges of 007_roles.sql give these to the processors (write) and compliance
-- (read) when the same role runs the migrations; granted by name as well for any other case.
GRANT SELECT, INSERT, UPDATE, DELETE ON projections.requests, projections.erasure_requests
    TO registre_processor;
GRANT SELECT ON projections.requests, projections.erasure_requests TO registre_compliance;
