-- The residents' index tokens were 128-bit hex text pointing at a resident by two text ids
-- (some 110 bytes an entry): a province's token index (1.7 GB on SQLite, 5 GB with its heap
-- on PostgreSQL) did not stay in memory, and a commune's push read and wrote its random
-- pages from disk (docs/PERFORMANCE.md, issues 14 and 16). A resident now has a numeric id,
-- and a token is 64 bits of the keyed hash: an entry is two integers. The tokens are written
-- again at start-up (the search index's version changes with this migration, and a store that
-- records another version is re-indexed: logic::shipped_linkage_version).
CREATE TABLE person_entry (
    id {serial_key}, doc_id TEXT NOT NULL, member_id TEXT NOT NULL, area {area} NOT NULL,
    key_json TEXT NOT NULL, cccd TEXT, cccd_digits TEXT, dob TEXT, birth_year TEXT,
    UNIQUE (doc_id, member_id));
INSERT INTO person_entry (doc_id, member_id, area, key_json, cccd, cccd_digits, dob, birth_year)
    SELECT doc_id, member_id, area, key_json, cccd, cccd_digits, dob, birth_year FROM person
    ORDER BY area, doc_id, member_id;
DROP TABLE person;
ALTER TABLE person_entry RENAME TO person;
CREATE INDEX IF NOT EXISTS person_by_birth_day ON person (birth_year, dob, area);
DROP TABLE person_block;
CREATE TABLE person_token (
    token BIGINT NOT NULL, person_id BIGINT NOT NULL, PRIMARY KEY (token, person_id)) {without_rowid};
