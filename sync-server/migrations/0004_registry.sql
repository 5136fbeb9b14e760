-- The registry in and out (docs/REGISTRY.md).
-- Each document's latest feed position: an export pages through an area's households by it.
ALTER TABLE doc ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
UPDATE doc SET seq = latest.seq FROM (SELECT doc_id, MAX(seq) AS seq FROM feed GROUP BY doc_id) AS latest
    WHERE latest.doc_id = doc.doc_id;
CREATE INDEX IF NOT EXISTS doc_by_seq ON doc (seq);
-- The household as its document reads (JSON, sealed like the document): exports read it
-- without loading Automerge. Written with every document; NULL for rows from before.
ALTER TABLE doc ADD COLUMN view {blob};
-- The heads a household's document had when the registry's last import wrote it: the base a
-- re-import is compared with, so that the registry changes only what it changed.
-- `row_tag` is a keyed hash of the row it imported (no residents' data): a row equal to it
-- is unchanged without opening the document.
CREATE TABLE IF NOT EXISTS import_base (doc_id TEXT PRIMARY KEY, heads TEXT NOT NULL, row_tag TEXT NOT NULL);
-- Read-only tokens of the export API, each bound to an area (hashed, revocable).
CREATE TABLE IF NOT EXISTS export_token (
    id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, area {area} NOT NULL, label TEXT NOT NULL,
    created_by TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT, last_used_at BIGINT);
-- Verification at the door and the operators' review (doorstep_core::verification), per household.
ALTER TABLE household_stats ADD COLUMN verified BIGINT NOT NULL DEFAULT 0;
ALTER TABLE household_stats ADD COLUMN verified_residents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE household_stats ADD COLUMN review TEXT NOT NULL DEFAULT 'not_submitted';
CREATE INDEX IF NOT EXISTS household_stats_by_review ON household_stats (review, area);
