-- The residents' index tokens in three levels, as a log-structured merge tree keeps its keys.
-- A token is a keyed hash: a commune's new tokens fall on random leaves of the index, and
-- a commune holds one new token for every hundred the province's index holds, so each push
-- of its households rewrote nearly every leaf it reached (on a province's store, a commune's
-- first push wrote some 900 MB of index pages where the index is 450 MB: issue 14). A push
-- now writes its tokens to `person_token_fresh`, small enough to stay in memory; the store
-- moves them in bulk, in token order, to `person_token_recent` and from there to
-- `person_token` (store::token_levels), so that each leaf of the large index is written once
-- for many tokens. A lookup reads the three (`person_token_any`).
CREATE TABLE person_token_fresh (
    token BIGINT NOT NULL, person_id BIGINT NOT NULL, PRIMARY KEY (token, person_id)) {without_rowid};
CREATE TABLE person_token_recent (
    token BIGINT NOT NULL, person_id BIGINT NOT NULL, PRIMARY KEY (token, person_id)) {without_rowid};
CREATE VIEW person_token_any AS
    SELECT token, person_id FROM person_token_fresh
    UNION ALL SELECT token, person_id FROM person_token_recent
    UNION ALL SELECT token, person_id FROM person_token;
