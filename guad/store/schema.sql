-- The one schema of the guad DuckDB store. Idempotent: run on every Store.init().
-- No FOREIGN KEY clauses: DuckDB implements an UPDATE / INSERT OR REPLACE of a referenced
-- row as delete + insert and rejects it, which would forbid correcting a scan's label after
-- it was scored. Store checks references in code instead (unknown scan -> error).

CREATE TABLE IF NOT EXISTS meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');

-- One row per scan. path is relative to the database file's folder (portable when the
-- folder moves) unless the scan lies on another drive; Store resolves it.
CREATE TABLE IF NOT EXISTS scans (
    scan_id     VARCHAR PRIMARY KEY,
    site        VARCHAR NOT NULL,
    split       VARCHAR NOT NULL CHECK (split IN ('train', 'val', 'test')),
    label       VARCHAR NOT NULL CHECK (label IN ('normal', 'benign', 'critical')),
    finding     VARCHAR,            -- e.g. 'ich', 'lacune'; NULL for normals / unknown
    path        VARCHAR,            -- NIfTI file or DICOM folder; NULL for label-only imports
    lesion_ml   DOUBLE,             -- synthetic cohorts only
    seed        BIGINT,             -- synthetic cohorts only
    synth_size  INTEGER,            -- synthetic cohorts only: in-plane matrix (remake_scan)
    imported_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One row per scoring job. run_id is deterministic (Store.run_key: model, checkpoint hash,
-- sampler, t0, seed, params), so rerunning the same job resumes the same run.
CREATE TABLE IF NOT EXISTS scoring_runs (
    run_id          VARCHAR PRIMARY KEY,
    model           VARCHAR NOT NULL CHECK (model IN ('cmm', 'fgm')),
    checkpoint_hash VARCHAR NOT NULL,   -- 'external:<sha>' for scores imported from a CSV
    sampler         VARCHAR NOT NULL,   -- e.g. 'ddim-50'; 'import' for imported scores
    t0              INTEGER,            -- diffusion start step (400 CMM, 500 FGM in the paper)
    seed            BIGINT,
    params          VARCHAR,            -- JSON of anything else that defines the run
    note            VARCHAR,
    started         TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished        TIMESTAMP           -- NULL while running or interrupted
);

-- One row per (scan, model, run): the key makes a resumed run write nothing twice.
CREATE TABLE IF NOT EXISTS scores (
    scan_id    VARCHAR NOT NULL,
    model      VARCHAR NOT NULL CHECK (model IN ('cmm', 'fgm')),
    run_id     VARCHAR NOT NULL,
    score      DOUBLE,                  -- NULL when failed
    status     VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
    error      VARCHAR,                 -- the user-facing message when failed
    seconds    DOUBLE,                  -- wall time to score this scan
    maps_path  VARCHAR,                 -- saved difference maps, if any
    written_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (scan_id, model, run_id),
    CHECK ((status = 'ok' AND score IS NOT NULL AND NOT isnan(score))
        OR (status = 'failed' AND score IS NULL))
);

CREATE SEQUENCE IF NOT EXISTS operating_point_ids START 1;
CREATE TABLE IF NOT EXISTS operating_points (
    op_id   INTEGER PRIMARY KEY DEFAULT nextval('operating_point_ids'),
    name    VARCHAR NOT NULL,
    rule    VARCHAR NOT NULL,           -- 'paper' | 'joint' | 'conservative' | 'manual'
    target  VARCHAR,                    -- e.g. '99%', '>99%'; NULL for a manual point
    c_cmm   DOUBLE NOT NULL,            -- -inf allowed: that model excludes nothing
    c_fgm   DOUBLE NOT NULL,
    author  VARCHAR,
    created TIMESTAMP NOT NULL DEFAULT current_timestamp,
    note    VARCHAR
);

CREATE SEQUENCE IF NOT EXISTS review_ids START 1;
CREATE TABLE IF NOT EXISTS reviews (
    review_id INTEGER PRIMARY KEY DEFAULT nextval('review_ids'),
    scan_id   VARCHAR NOT NULL,
    verdict   VARCHAR NOT NULL CHECK (verdict IN ('true_miss', 'label_error', 'not_critical', 'other')),
    comment   VARCHAR,
    reviewer  VARCHAR,
    created   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Stores made before synth_size existed gain it here (idempotent).
ALTER TABLE scans ADD COLUMN IF NOT EXISTS synth_size INTEGER;
