-- Progress rolled up per area as households are written (store/tx/progress.rs), not recounted
-- for each page: a province's page read a million household rows (docs/PERFORMANCE.md, issue 16).
CREATE TABLE IF NOT EXISTS area_progress (
    area {area} PRIMARY KEY, households BIGINT NOT NULL, residents BIGINT NOT NULL, complete BIGINT NOT NULL,
    cccd_present BIGINT NOT NULL, cccd_valid BIGINT NOT NULL, verified BIGINT NOT NULL,
    verified_residents BIGINT NOT NULL, review_waiting BIGINT NOT NULL, review_returned BIGINT NOT NULL,
    review_approved BIGINT NOT NULL);
INSERT INTO area_progress (area, households, residents, complete, cccd_present, cccd_valid, verified,
        verified_residents, review_waiting, review_returned, review_approved)
    SELECT area, count(*), sum(members), sum(complete), sum(cccd_present), sum(cccd_valid), sum(verified),
        sum(verified_residents), sum(CASE WHEN review = 'waiting' THEN 1 ELSE 0 END),
        sum(CASE WHEN review = 'returned' THEN 1 ELSE 0 END), sum(CASE WHEN review = 'approved' THEN 1 ELSE 0 END)
    FROM household_stats GROUP BY area;
-- Households first seen per area and day (the start of the day in Vietnam, Unix time).
CREATE TABLE IF NOT EXISTS area_new (
    area {area} NOT NULL, day BIGINT NOT NULL, households BIGINT NOT NULL, PRIMARY KEY (area, day));
INSERT INTO area_new (area, day, households)
    SELECT area, first_seen_at - ((first_seen_at + 25200) % 86400), count(*) FROM household_stats
    GROUP BY area, first_seen_at - ((first_seen_at + 25200) % 86400);
