-- The server's schema, one text for both backends: {serial_key}, {blob}, {area} and
-- {without_rowid} are put in by store::dialect. IF NOT EXISTS lets a store made
-- before migrations were recorded adopt this one (after store::dialect's fix-ups).
CREATE TABLE IF NOT EXISTS enrolment (
    token_hash TEXT PRIMARY KEY, area {area} NOT NULL, created_at BIGINT NOT NULL,
    used_at BIGINT, device_id TEXT);
CREATE TABLE IF NOT EXISTS device (
    device_id TEXT PRIMARY KEY, credential_hash TEXT NOT NULL UNIQUE, area {area} NOT NULL,
    enrolled_at BIGINT NOT NULL, last_sync_at BIGINT, revoked_at BIGINT);
CREATE TABLE IF NOT EXISTS doc (
    doc_id TEXT PRIMARY KEY, area {area} NOT NULL, snapshot {blob} NOT NULL, heads TEXT NOT NULL,
    updated_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS feed (
    seq {serial_key}, area {area} NOT NULL, doc_id TEXT NOT NULL,
    origin TEXT NOT NULL, changes {blob} NOT NULL, created_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS feed_by_area ON feed (area, seq);
CREATE TABLE IF NOT EXISTS person (
    doc_id TEXT NOT NULL, member_id TEXT NOT NULL, area {area} NOT NULL, key_json TEXT NOT NULL,
    cccd TEXT, cccd_digits TEXT, dob TEXT, birth_year TEXT, PRIMARY KEY (doc_id, member_id));
CREATE INDEX IF NOT EXISTS person_by_cccd ON person (cccd);
CREATE INDEX IF NOT EXISTS person_by_dob ON person (dob);
CREATE INDEX IF NOT EXISTS person_by_birth_year ON person (birth_year);
CREATE TABLE IF NOT EXISTS person_block (
    token TEXT NOT NULL, doc_id TEXT NOT NULL, member_id TEXT NOT NULL, PRIMARY KEY (token, doc_id, member_id))
    {without_rowid};
CREATE INDEX IF NOT EXISTS person_block_by_person ON person_block (doc_id, member_id);
CREATE TABLE IF NOT EXISTS conflict (
    id {serial_key}, doc_id TEXT NOT NULL, area {area} NOT NULL, path TEXT NOT NULL,
    values_json TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL, resolved_at BIGINT,
    resolved_by TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS conflict_open ON conflict (doc_id, path) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS duplicate (
    id {serial_key}, doc_a TEXT NOT NULL, member_a TEXT NOT NULL,
    doc_b TEXT NOT NULL, member_b TEXT NOT NULL, area {area} NOT NULL, score DOUBLE PRECISION NOT NULL,
    reasons_json TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL,
    UNIQUE (doc_a, member_a, doc_b, member_b));
CREATE TABLE IF NOT EXISTS audit (
    id {serial_key}, at BIGINT NOT NULL, device_id TEXT NOT NULL, username TEXT NOT NULL,
    doc_id TEXT NOT NULL, heads TEXT NOT NULL, action TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS household_stats (
    doc_id TEXT PRIMARY KEY, area {area} NOT NULL, members BIGINT NOT NULL, complete BIGINT NOT NULL,
    cccd_present BIGINT NOT NULL, cccd_valid BIGINT NOT NULL, first_seen_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS household_stats_by_area ON household_stats (area);
CREATE TABLE IF NOT EXISTS duplicate_decision (
    id {serial_key}, duplicate_id BIGINT NOT NULL, action TEXT NOT NULL,
    decided_by TEXT NOT NULL, decided_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS duplicate_decision_by_candidate ON duplicate_decision (duplicate_id, id);
CREATE TABLE IF NOT EXISTS resident_link (
    duplicate_id BIGINT NOT NULL, doc_a TEXT NOT NULL, member_a TEXT NOT NULL, doc_b TEXT NOT NULL,
    member_b TEXT NOT NULL, linked_by TEXT NOT NULL, linked_at BIGINT NOT NULL, undone_by TEXT, undone_at BIGINT);
CREATE TABLE IF NOT EXISTS operator (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL, created_at BIGINT NOT NULL,
    area {area} NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS session (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    expires_at BIGINT NOT NULL, area {area} NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS setting (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS device_key (
    device_id TEXT PRIMARY KEY, transfer_key TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS blob (
    id TEXT PRIMARY KEY, area {area} NOT NULL, device_id TEXT NOT NULL, total BIGINT NOT NULL,
    received BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, completed_at BIGINT);
CREATE INDEX IF NOT EXISTS blob_by_device ON blob (device_id);
CREATE TABLE IF NOT EXISTS blob_chunk (
    id TEXT NOT NULL, start_at BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (id, start_at));
