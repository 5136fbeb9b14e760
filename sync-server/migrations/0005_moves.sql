-- Households move between areas (docs/SYNC-PROTOCOL.md, "Moves and transfers"; ADR 0008).
-- A departure is a feed row of the area a household left, with the area it went to and no
-- changes: the old area's devices remove their copies. The new area's row holds the whole
-- saved document.
ALTER TABLE feed ADD COLUMN moved_to {area};
CREATE INDEX IF NOT EXISTS feed_departures ON feed (doc_id, seq) WHERE moved_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS feed_departures_by_area ON feed (area, seq) WHERE moved_to IS NOT NULL;
-- Devices' requests to move a household out of their areas, decided by an operator whose
-- scope covers both areas. `reason` is sealed like residents' data.
CREATE TABLE IF NOT EXISTS transfer (
    id {serial_key}, device_id TEXT NOT NULL, request_id TEXT NOT NULL, doc_id TEXT NOT NULL,
    from_area {area} NOT NULL, to_area {area} NOT NULL, username TEXT NOT NULL, reason TEXT NOT NULL,
    status TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL,
    decided_by TEXT, decided_at BIGINT, UNIQUE (device_id, request_id));
CREATE INDEX IF NOT EXISTS transfer_by_status ON transfer (status, id);
CREATE INDEX IF NOT EXISTS transfer_by_doc ON transfer (doc_id, status);
-- Residents' life events (born, died, moved in, moved out) for the progress page's counts per
-- area and period. The day is an index token (like a date of birth), never the date itself;
-- rows are rewritten with each write of their household, so they follow it when it moves.
CREATE TABLE IF NOT EXISTS life_event (
    doc_id TEXT NOT NULL, n BIGINT NOT NULL, area {area} NOT NULL, kind TEXT NOT NULL, day_tag TEXT NOT NULL,
    PRIMARY KEY (doc_id, n));
CREATE INDEX IF NOT EXISTS life_event_by_day ON life_event (day_tag, area);
