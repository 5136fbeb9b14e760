-- Which household documents refer to which attachment blobs (their photo fields), so that an
-- uploaded blob is checked against the content key a household of the uploader's area holds:
-- a blob is trusted (`verified`) only once it opened under that key and hashed to its id.
CREATE TABLE IF NOT EXISTS photo_ref (
    blob_id TEXT NOT NULL, doc_id TEXT NOT NULL, area {area} NOT NULL, PRIMARY KEY (blob_id, doc_id));
CREATE INDEX IF NOT EXISTS photo_ref_by_doc ON photo_ref (doc_id);
ALTER TABLE blob ADD COLUMN verified BIGINT NOT NULL DEFAULT 0;
