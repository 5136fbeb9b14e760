-- A compact first sync reads an area's saved documents in (area, doc_id) order, a page
-- at a time, without a scan of other areas' documents.
CREATE INDEX IF NOT EXISTS doc_by_area ON doc (area, doc_id);
